/**
 * What each chaos device sent and what the hub acknowledged, kept independently of the hub: every
 * sample's time and value per channel, which samples each frame (boot, seq) carried, and the highest
 * cumulative ACK [PROTO-3.5]. The reconciler compares this ledger with the store.
 *
 * Memory: typed arrays, 8 bytes per sample time and per reading (10 min at 5 k readings/s ≈ 30 MB).
 * A chaos device never reboots, so a ledger covers one boot.
 */
import { type ChannelDescriptor, ValueType } from '../../server/codec/index.ts';

/**
 * The chaos devices' channels: one of each value family the hub maps differently [PROTO-4]
 * (fixed-point signed and unsigned, bool → `state`, f32).
 */
export const CHAOS_CHANNELS: readonly ChannelDescriptor[] = Object.freeze([
  { index: 0, key: 'temperature', unit: '°C', valueType: ValueType.I16, scaleExp: -2, periodMs: 0 },
  { index: 1, key: 'humidity', unit: '%', valueType: ValueType.U16, scaleExp: -1, periodMs: 0 },
  { index: 2, key: 'door', unit: '', valueType: ValueType.BOOL, scaleExp: 0, periodMs: 0 },
  { index: 3, key: 'voltage', unit: 'V', valueType: ValueType.F32, scaleExp: 0, periodMs: 0 },
]);

/** Raw sample value of channel `ch` at sample index `k` of device number `dev` (varies sample to sample). */
export function rawValue(dev: number, ch: number, k: number): number | boolean {
  switch (ch) {
    case 0:
      return 1500 + ((k * 37 + dev * 101) % 1500); // 15.00 .. 29.99 °C
    case 1:
      return 300 + ((k * 13 + dev * 7) % 600); // 30.0 .. 89.9 %
    case 2:
      return (k + dev) % 7 < 3;
    default:
      return Math.fround(3 + ((k * 29 + dev) % 1000) / 1000);
  }
}

/**
 * The value the store must hold for a raw sample, as docs/protocol.md §4 defines it: fixed-point
 * integers scaled by 10^scaleExp (divided, so 2345 × 10^-2 is exactly 23.45), f32 as the shortest
 * decimal that reads back as the same float32, bool as itself. Written from the protocol document,
 * not taken from the hub's code.
 */
export function storedValue(channel: ChannelDescriptor, raw: number | boolean): number | boolean {
  if (typeof raw === 'boolean') return raw;
  if (channel.valueType === ValueType.F32) {
    for (let digits = 1; digits <= 9; digits++) {
      const d = Number(raw.toPrecision(digits));
      if (Math.fround(d) === raw) return d;
    }
  }
  if (channel.scaleExp < 0) return raw / 10 ** -channel.scaleExp;
  if (channel.scaleExp > 0) return raw * 10 ** channel.scaleExp;
  return raw;
}

/** A Float64Array that grows by doubling. */
export class GrowableF64 {
  private data = new Float64Array(1024);
  length = 0;

  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }

  at(i: number): number {
    return this.data[i] as number;
  }

  /** Index of `v` in an ascending array, or -1. */
  indexOfSorted(v: number): number {
    let lo = 0;
    let hi = this.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const x = this.data[mid] as number;
      if (x === v) return mid;
      if (x < v) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }
}

/** One device's ledger. */
export class DeviceLedger {
  /** Sample times (Unix ms), strictly ascending: every channel is sampled at each of them. */
  readonly times = new GrowableF64();
  /** Expected stored value per channel and sample (bool as 1/0). */
  readonly values: GrowableF64[];
  /** `frameEnds[seq]` = number of samples in frames 1..seq (index 0 = 0). */
  private readonly frameEnds: number[] = [0];
  /** Highest seq covered by an ACK (or by WELCOME's last ack) of this boot; 0 when none. */
  ackedSeq = 0;
  /** Samples taken but not yet put into a frame. */
  private framedSamples = 0;

  constructor(
    readonly deviceId: string,
    readonly bootId: number,
    readonly channels: readonly ChannelDescriptor[] = CHAOS_CHANNELS,
  ) {
    this.values = channels.map(() => new GrowableF64());
  }

  /** Records one sample of every channel (raw values, in channel order). */
  addSample(timeMs: number, raw: readonly (number | boolean)[]): void {
    if (this.times.length > 0 && timeMs <= this.times.at(this.times.length - 1)) {
      throw new RangeError('sample times must ascend');
    }
    this.times.push(timeMs);
    this.channels.forEach((ch, i) => {
      const v = storedValue(ch, raw[i] as number | boolean);
      (this.values[i] as GrowableF64).push(typeof v === 'boolean' ? (v ? 1 : 0) : v);
    });
  }

  /** The samples recorded since the last frame become frame `seq` (the next one). Returns [first, end). */
  closeFrame(seq: number): [number, number] {
    if (seq !== this.frameEnds.length) throw new RangeError(`frame ${seq} out of order`);
    const first = this.framedSamples;
    this.frameEnds.push(this.times.length);
    this.framedSamples = this.times.length;
    return [first, this.times.length];
  }

  /** Highest seq framed so far. */
  get lastSeq(): number {
    return this.frameEnds.length - 1;
  }

  /** Records a cumulative ACK; returns false when it goes backwards or beyond what was framed. */
  ack(seq: number): boolean {
    if (seq > this.lastSeq) return false;
    if (seq > this.ackedSeq) this.ackedSeq = seq;
    return true;
  }

  /** Samples covered by ACKs: indexes [0, ackedSamples). */
  get ackedSamples(): number {
    return this.frameEnds[this.ackedSeq] as number;
  }

  /** Samples put into frames: indexes [0, framedSampleCount). */
  get framedSampleCount(): number {
    return this.frameEnds[this.lastSeq] as number;
  }

  /** The expected stored value of channel `ch` at sample `i`. */
  expected(ch: number, i: number): number | boolean {
    const v = (this.values[ch] as GrowableF64).at(i);
    return (this.channels[ch] as ChannelDescriptor).valueType === ValueType.BOOL ? v === 1 : v;
  }

  /** Acknowledged readings (samples × channels). */
  get ackedReadings(): number {
    return this.ackedSamples * this.channels.length;
  }
}
