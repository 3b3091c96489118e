/**
 * The chaos fleet: devices written against docs/protocol.md (the codec in `server/codec` only encodes
 * and decodes frames), independent of the hub's code and of the simulator.
 *
 * Each device behaves like the firmware where it matters for data loss:
 * - it samples on its own clock whether or not it is connected, into an outbox of encoded frames;
 * - it frees frames only when an ACK (or WELCOME's last ack) covers them [PROTO-3.5], and after every
 *   reconnect replays everything not yet acknowledged, byte-identical [PROTO-5];
 * - a non-fatal STORAGE_FULL or UNKNOWN_DESCRIPTORS makes it stop, wait, and replay from its oldest
 *   unacknowledged frame [PROTO-5.2, PROTO-5.5];
 * - it reconnects with exponential backoff and ±20 % jitter [PROTO-5.6], but from 100 ms up to 1 s
 *   (not 1 s up to 60 s) so that "time to resume" measures the hub, not the device's backoff.
 * Everything sent and acknowledged goes into a {@link DeviceLedger}; anomalies the hub must never
 * cause (an ACK for a frame never sent, a WELCOME whose last ack is behind an ACK already received)
 * are counted.
 */
import { randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import {
  type Block,
  decodeFrame,
  descriptorHash,
  encodeFrame,
  type Message,
  SUBPROTOCOL,
} from '../../server/codec/index.ts';
import { CHAOS_CHANNELS, DeviceLedger, rawValue } from './ledger.ts';

/** Wire codes from docs/errors.md that a device acts on. */
const WIRE = { UNKNOWN_DESCRIPTORS: 203, STORAGE_FULL: 300 } as const;
const HASH = descriptorHash([...CHAOS_CHANNELS]);
/** At most this many samples per channel in one frame (keeps frames near 1 KiB [PROTO-1.4]). */
const MAX_SAMPLES_PER_FRAME = 50;
/** How long a refused device waits before replaying (STORAGE_FULL, UNKNOWN_DESCRIPTORS). */
const REFUSED_RETRY_MS = 250;
const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 1000;

export interface FleetDeviceSpec {
  id: string;
  token: string;
}

export interface FleetOptions {
  /** `ws://host:port/v1/device`. */
  url: string;
  devices: readonly FleetDeviceSpec[];
  /** Target readings per second over the whole fleet (4 channels per sample). */
  readingsPerSec: number;
  /** How often each device closes a frame (ms). Default 50. */
  framePeriodMs?: number;
  /** Frames sent and not yet acknowledged per device before it waits. Default 1024. */
  window?: number;
}

export interface FleetCounters {
  /** ACK frames received. */
  acks: number;
  /** ACKs naming a seq above the highest framed one (the hub acknowledged what it never received). */
  ackBeyondSent: number;
  /** WELCOMEs whose last ack is behind an ACK the device had received (the hub forgot an ACK). */
  welcomeBehindAck: number;
  /** Non-fatal STORAGE_FULL errors received. */
  storageFull: number;
  /** Other ERROR frames received, by wire code. */
  errors: Map<number, number>;
  /** Connections opened (handshake succeeded). */
  connects: number;
  /** Connection attempts that failed (refused handshake, connection refused, ...). */
  connectFailures: number;
  /** Close codes seen. */
  closes: Map<number, number>;
  /** Frames sent, replays included. */
  framesSent: number;
  /** Frames from the hub that did not decode. */
  undecodable: number;
}

interface OutboxEntry {
  seq: number;
  bytes: Uint8Array;
}

class ChaosDevice {
  readonly ledger: DeviceLedger;
  /** Frames not yet acknowledged, oldest first: outbox[head..]. */
  private outbox: OutboxEntry[] = [];
  private head = 0;
  /** Index into `outbox` of the next frame to send. */
  private next = 0;
  private ws: WebSocket | null = null;
  private ready = false;
  private refusedUntil = 0;
  private refusedTimer: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private backoffMs = RECONNECT_MIN_MS;
  private sampleIndex = 0;
  private readonly bootAtMs: number;
  private nextSampleMs: number;
  private stopped = false;
  /** performance.now() of the first ACK since {@link mark}, or null. */
  firstAckSinceMark: number | null = null;
  connected = false;

  constructor(
    readonly spec: FleetDeviceSpec,
    readonly number: number,
    private readonly fleet: ChaosFleet,
    private readonly samplePeriodMs: number,
  ) {
    this.ledger = new DeviceLedger(spec.id, randomInt(1, 2 ** 32));
    // "Booted" a minute ago: HELLO's uptime then puts the hub's first sighting well before the first
    // sample, so no sample is clamped as "before the device's first sighting" [PROTO-3.4.1].
    const now = Date.now();
    this.bootAtMs = now - 60_000;
    this.nextSampleMs = now;
  }

  get unacked(): number {
    return this.outbox.length - this.head;
  }

  /** Takes the samples due by `nowMs` and closes frames of them (called every frame period). */
  sample(nowMs: number): void {
    if (this.stopped) return;
    const times: number[] = [];
    while (this.nextSampleMs <= nowMs) {
      times.push(this.nextSampleMs);
      this.nextSampleMs += this.samplePeriodMs;
    }
    for (let i = 0; i < times.length; i += MAX_SAMPLES_PER_FRAME) this.frame(times.slice(i, i + MAX_SAMPLES_PER_FRAME));
    this.pump();
  }

  private frame(times: number[]): void {
    if (times.length === 0) return;
    const base = times[0] as number;
    const blocks: Block[] = CHAOS_CHANNELS.map((ch) => ({
      channel: ch.index,
      valueType: ch.valueType,
      deltasMs: times.map((t) => t - base),
      values: [] as (number | boolean)[],
    }));
    for (const t of times) {
      const raw = CHAOS_CHANNELS.map((_, c) => rawValue(this.number, c, this.sampleIndex));
      this.sampleIndex++;
      raw.forEach((v, c) => {
        (blocks[c] as Block).values.push(v);
      });
      this.ledger.addSample(t, raw);
    }
    const seq = this.ledger.lastSeq + 1;
    this.ledger.closeFrame(seq);
    const bytes = encodeFrame({
      type: 'telemetry',
      unsynced: false,
      bootId: this.ledger.bootId,
      seq,
      descriptorHash: HASH,
      baseTime: base,
      blocks,
    });
    this.outbox.push({ seq, bytes });
  }

  /** Sends what the window allows. */
  pump(): void {
    const ws = this.ws;
    if (!ws || !this.ready || ws.readyState !== WebSocket.OPEN || performance.now() < this.refusedUntil) return;
    const limit = this.head + this.fleet.window;
    const before = this.next;
    while (this.next < this.outbox.length && this.next < limit) {
      ws.send((this.outbox[this.next] as OutboxEntry).bytes);
      this.next++;
      this.fleet.counters.framesSent++;
    }
    if (this.next > before) this.fleet.sent();
  }

  connect(): void {
    if (this.stopped || this.ws) return;
    const ws = new WebSocket(this.fleet.url, [SUBPROTOCOL], {
      headers: { Authorization: `Bearer ${this.spec.token}` },
      perMessageDeflate: false,
      handshakeTimeout: 10_000,
    });
    this.ws = ws;
    let opened = false;
    ws.on('open', () => {
      opened = true;
      this.connected = true;
      this.fleet.counters.connects++;
      ws.send(
        encodeFrame({
          type: 'hello',
          timeSynced: true,
          deviceId: this.spec.id,
          firmwareVersion: 'chaos-1',
          maxProtocolVersion: 1,
          bootId: this.ledger.bootId,
          resetReason: 1,
          uptimeMs: Date.now() - this.bootAtMs,
          descriptorHash: HASH,
          bufferedFrames: this.unacked,
          droppedFrames: 0,
        }),
      );
    });
    ws.on('message', (data: Buffer) => {
      let m: Message;
      try {
        m = decodeFrame(new Uint8Array(data));
      } catch {
        this.fleet.counters.undecodable++;
        return;
      }
      this.onMessage(m);
    });
    ws.on('unexpected-response', (_req, res) => {
      res.resume();
      ws.terminate();
    });
    ws.on('error', () => undefined);
    ws.on('close', (code) => {
      if (opened) this.fleet.count(this.fleet.counters.closes, code);
      else this.fleet.counters.connectFailures++;
      this.ws = null;
      this.ready = false;
      this.connected = false;
      this.scheduleReconnect();
    });
  }

  private onMessage(m: Message): void {
    const c = this.fleet.counters;
    switch (m.type) {
      case 'welcome': {
        const last = m.lastAck;
        if (
          this.ledger.ackedSeq > 0 &&
          (last === null || last.bootId !== this.ledger.bootId || last.seq < this.ledger.ackedSeq)
        ) {
          c.welcomeBehindAck++;
        }
        // WELCOME's last ack frees like an ACK: the hub says these frames are durable.
        if (last !== null && last.bootId === this.ledger.bootId) this.acked(last.seq);
        if (!m.descriptorsKnown) this.ws?.send(encodeFrame({ type: 'descriptors', channels: [...CHAOS_CHANNELS] }));
        this.ready = true;
        this.backoffMs = RECONNECT_MIN_MS;
        this.next = this.head; // replay everything not acknowledged
        this.pump();
        break;
      }
      case 'ack':
        c.acks++;
        if (this.firstAckSinceMark === null) this.firstAckSinceMark = performance.now();
        if (m.bootId === this.ledger.bootId) this.acked(m.seq);
        break;
      case 'error':
        if (m.fatal) {
          this.fleet.count(c.errors, m.code);
          break; // the hub closes; replay happens after the reconnect
        }
        if (m.code === WIRE.STORAGE_FULL) c.storageFull++;
        else this.fleet.count(c.errors, m.code);
        if (m.code === WIRE.UNKNOWN_DESCRIPTORS) {
          this.ws?.send(encodeFrame({ type: 'descriptors', channels: [...CHAOS_CHANNELS] }));
        }
        // Refused: the hub ignores later frames until the refused one is replayed; wait, then replay.
        this.refusedUntil = performance.now() + REFUSED_RETRY_MS;
        if (this.refusedTimer === null) {
          this.refusedTimer = setTimeout(() => {
            this.refusedTimer = null;
            this.next = this.head;
            this.pump();
          }, REFUSED_RETRY_MS);
        }
        break;
      case 'command':
        // Not part of the chaos runs; answer "unsupported" so the hub's command does not dangle.
        this.ws?.send(encodeFrame({ type: 'command_result', commandId: m.commandId, status: 2, message: '' }));
        break;
      default:
        break;
    }
  }

  private acked(seq: number): void {
    if (!this.ledger.ack(seq)) {
      this.fleet.counters.ackBeyondSent++;
      return;
    }
    while (this.head < this.outbox.length && (this.outbox[this.head] as OutboxEntry).seq <= this.ledger.ackedSeq) {
      this.head++;
    }
    if (this.next < this.head) this.next = this.head;
    // Compact now and then so freed frames are released.
    if (this.head > 4096 && this.head * 2 > this.outbox.length) {
      this.outbox = this.outbox.slice(this.head);
      this.next -= this.head;
      this.head = 0;
    }
    this.pump();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    const delay = this.backoffMs * (0.8 + Math.random() * 0.4);
    this.backoffMs = Math.min(this.backoffMs * 2, RECONNECT_MAX_MS);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
  }

  /**
   * Resolves once the hub answered a WebSocket ping sent now (at once when not connected). The hub
   * writes to one socket in order, so every ACK it sent before the pong has been received by then.
   */
  roundTrip(): Promise<void> {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        ws.off('pong', done);
        ws.off('close', done);
        resolve();
      };
      ws.on('pong', done);
      ws.on('close', done);
      ws.ping();
    });
  }

  stopSampling(): void {
    // Samples up to now are framed; none after.
    this.sample(Date.now());
    this.nextSampleMs = Number.POSITIVE_INFINITY;
  }

  close(): Promise<void> {
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.refusedTimer) clearTimeout(this.refusedTimer);
    this.reconnectTimer = null;
    const ws = this.ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        ws.terminate();
        resolve();
      }, 2000);
      ws.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      ws.close(1000);
    });
  }
}

/** A fleet of chaos devices sharing one sampling timer. */
export class ChaosFleet {
  readonly url: string;
  readonly window: number;
  readonly counters: FleetCounters = {
    acks: 0,
    ackBeyondSent: 0,
    welcomeBehindAck: 0,
    storageFull: 0,
    errors: new Map(),
    connects: 0,
    connectFailures: 0,
    closes: new Map(),
    framesSent: 0,
    undecodable: 0,
  };
  readonly samplePeriodMs: number;
  private readonly devices: ChaosDevice[];
  private timer: NodeJS.Timeout | null = null;
  private sendWaiters: (() => void)[] = [];

  constructor(opts: FleetOptions) {
    this.url = opts.url;
    this.window = opts.window ?? 1024;
    // Every device samples its 4 channels every `samplePeriodMs`: readings/s = devices × 4 × 1000 / period.
    const channels = CHAOS_CHANNELS.length;
    this.samplePeriodMs = Math.max(
      1,
      Math.round((opts.devices.length * channels * 1000) / Math.max(1, opts.readingsPerSec)),
    );
    this.devices = opts.devices.map((spec, i) => new ChaosDevice(spec, i, this, this.samplePeriodMs));
    const period = opts.framePeriodMs ?? 50;
    this.start = () => {
      for (const d of this.devices) d.connect();
      this.timer = setInterval(() => {
        const now = Date.now();
        for (const d of this.devices) d.sample(now);
      }, period);
    };
  }

  /** Starts sampling and connecting. */
  readonly start: () => void;

  /** The readings per second the fleet produces (after rounding the sample period). */
  get readingsPerSec(): number {
    return (this.devices.length * CHAOS_CHANNELS.length * 1000) / this.samplePeriodMs;
  }

  get ledgers(): DeviceLedger[] {
    return this.devices.map((d) => d.ledger);
  }

  /** Readings covered by ACKs, over the fleet. */
  ackedReadings(): number {
    let n = 0;
    for (const d of this.devices) n += d.ledger.ackedReadings;
    return n;
  }

  /** Frames not yet acknowledged, over the fleet. */
  unackedFrames(): number {
    let n = 0;
    for (const d of this.devices) n += d.unacked;
    return n;
  }

  connectedDevices(): number {
    return this.devices.filter((d) => d.connected).length;
  }

  /** Starts a measurement: every device forgets when it last got an ACK. */
  mark(): void {
    for (const d of this.devices) d.firstAckSinceMark = null;
  }

  /** performance.now() by which every device had an ACK since {@link mark}, or null if one has not. */
  allAckedSinceMark(): number | null {
    let latest = 0;
    for (const d of this.devices) {
      if (d.firstAckSinceMark === null) return null;
      latest = Math.max(latest, d.firstAckSinceMark);
    }
    return latest;
  }

  /** Every connected device's ping answered: all ACKs the hub sent before now have arrived. */
  async roundTrip(): Promise<void> {
    await Promise.all(this.devices.map((d) => d.roundTrip()));
  }

  /** Stops sampling (what was sampled stays in the outboxes until acknowledged). */
  stopSampling(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const d of this.devices) d.stopSampling();
  }

  /** Closes every connection and stops reconnecting. */
  async close(): Promise<void> {
    this.stopSampling();
    await Promise.all(this.devices.map((d) => d.close()));
  }

  /** Resolves right after the next frames go on the wire (to inject a fault while they are in flight). */
  afterNextSend(): Promise<void> {
    return new Promise((resolve) => this.sendWaiters.push(resolve));
  }

  sent(): void {
    if (this.sendWaiters.length === 0) return;
    const waiters = this.sendWaiters.splice(0);
    for (const w of waiters) w();
  }

  count(map: Map<number, number>, key: number): void {
    map.set(key, (map.get(key) ?? 0) + 1);
  }
}

/** Polls `cond` every `intervalMs` until it is true; throws `what` after `timeoutMs`. */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs: number,
  intervalMs = 50,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (performance.now() > deadline) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s: ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
