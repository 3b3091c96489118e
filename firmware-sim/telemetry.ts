/**
 * Building TELEMETRY frames from sensor samples [PROTO-3.4]: the one code path the simulated devices,
 * the demos and the ingest benchmark share. `TelemetryGenerator` is the benchmark's entry point: it
 * produces a board's frames on a virtual timeline without sockets or timers.
 */

import { crc32 } from 'node:zlib';
import {
  type Block,
  type ChannelDescriptor,
  descriptorHash,
  encodeFrame,
  HEADER_BYTES,
  Limits,
  RECOMMENDED_UPLINK_BYTES,
  ResetReason,
  type SampleValue,
  type SampleValueTypeId,
  type Telemetry,
  ValueType,
} from '../server/codec/index.ts';
import { Rng } from './rng.ts';
import { CHANNELS, type ChannelSpec, channelDescriptors, SensorSuite } from './sensors.ts';

/** Fixed TELEMETRY payload before the blocks: bootId, seq, hash, baseTime, blockCount. */
const TELEMETRY_FIXED_BYTES = 4 + 4 + 4 + 8 + 1;
const BLOCK_HEADER_BYTES = 3;

export function valueBytes(valueType: number): number {
  switch (valueType) {
    case ValueType.BOOL:
    case ValueType.I8:
    case ValueType.U8:
      return 1;
    case ValueType.I16:
    case ValueType.U16:
      return 2;
    default:
      return 4;
  }
}

function varintBytes(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x20_0000 ? 3 : v < 0x1000_0000 ? 4 : 5;
}

interface PendingBlock {
  channel: number;
  valueType: SampleValueTypeId;
  deltasMs: number[];
  values: SampleValue[];
}

/**
 * Accumulates samples of mixed channels for one frame and knows its encoded size as it grows, so a
 * frame is sealed before it passes the uplink limit (≤ 1 KiB recommended [PROTO-1.4]).
 */
export class FrameBuilder {
  /** Time domain of the frame: Unix ms, or uptime ms when `unsynced`. Fixed by the first sample. */
  baseTime = 0;
  unsynced = false;
  samples = 0;
  /** Encoded size of the frame built so far, header and CRC included. */
  bytes = 0;
  private blocks: (PendingBlock | undefined)[] = [];
  private used: number[] = [];

  get empty(): boolean {
    return this.samples === 0;
  }

  /** Adds one sample; the first sample of a frame fixes its base time and time domain. */
  add(channel: number, valueType: SampleValueTypeId, timeMs: number, value: SampleValue, unsynced: boolean): void {
    if (this.samples === 0) {
      this.baseTime = timeMs;
      this.unsynced = unsynced;
      this.bytes = HEADER_BYTES + TELEMETRY_FIXED_BYTES + 4;
    }
    let block = this.blocks[channel];
    if (!block) {
      block = { channel, valueType, deltasMs: [], values: [] };
      this.blocks[channel] = block;
      this.used.push(channel);
      this.bytes += BLOCK_HEADER_BYTES;
    }
    const delta = timeMs - this.baseTime;
    block.deltasMs.push(delta);
    block.values.push(value);
    this.bytes += varintBytes(delta * 2 + (value === null ? 1 : 0)) + (value === null ? 0 : valueBytes(valueType));
    this.samples++;
  }

  /** Most samples any one block holds (a block carries at most 255 [PROTO-3.4]). */
  maxBlockSamples(): number {
    let m = 0;
    for (const ch of this.used) m = Math.max(m, this.blocks[ch]?.deltasMs.length ?? 0);
    return m;
  }

  /** Returns the TELEMETRY message (blocks in channel order, so the bytes are canonical) and resets. */
  take(bootId: number, seq: number, hash: number): Telemetry {
    this.used.sort((a, b) => a - b);
    const blocks: Block[] = new Array(this.used.length);
    for (let i = 0; i < this.used.length; i++) {
      const b = this.blocks[this.used[i] as number] as PendingBlock;
      blocks[i] = b;
      this.blocks[b.channel] = undefined;
    }
    const message: Telemetry = {
      type: 'telemetry',
      unsynced: this.unsynced,
      bootId,
      seq,
      descriptorHash: hash,
      baseTime: this.baseTime,
      blocks,
    };
    this.used = [];
    this.samples = 0;
    this.bytes = 0;
    return message;
  }
}

/**
 * Reads the board's sensors on each sample tick and feeds the builder: the channels due on that tick
 * (temperature every tick, pressure every 2nd, battery every 5th…), all stamped with the tick's time.
 */
export class Sampler {
  readonly sensors: SensorSuite;
  readonly specs: readonly ChannelSpec[];
  private tickNo = 0;
  /** Upper bound of the bytes one tick can add to a frame (every channel due, new blocks). */
  readonly tickBytesBound: number;

  constructor(sensors: SensorSuite, specs: readonly ChannelSpec[] = CHANNELS) {
    this.sensors = sensors;
    this.specs = specs;
    this.tickBytesBound = specs.reduce((n, s) => n + BLOCK_HEADER_BYTES + 5 + valueBytes(s.valueType), 0);
  }

  /** Restarts the tick count at boot. */
  reset(): void {
    this.tickNo = 0;
  }

  /**
   * Samples every channel due on this tick. `hostMs` drives the physics, `deviceTimeMs` is the
   * timestamp the device writes (Unix ms, or uptime when `unsynced`), `uptimeMs` feeds `uptime_s`.
   */
  tick(builder: FrameBuilder, hostMs: number, deviceTimeMs: number, uptimeMs: number, unsynced: boolean): number {
    const n = this.tickNo++;
    let added = 0;
    for (const s of this.specs) {
      if (s.everyTicks === 0 || n % s.everyTicks !== 0) continue;
      builder.add(s.index, s.valueType, deviceTimeMs, this.sensors.read(s.index, hostMs, uptimeMs), unsynced);
      added++;
    }
    return added;
  }
}

/** Options of `TelemetryGenerator`; every field has a default. */
export interface GeneratorOptions {
  /** Fleet seed (default 1). */
  seed?: number;
  /** Device number inside the fleet: a different board (profile, noise) per index. */
  index?: number;
  /** Unix ms of the first sample (default 2025-01-15T06:00:00Z: a fixed value keeps frames reproducible). */
  startTimeMs?: number;
  /** Sample tick period in ms (default 1000). */
  sampleIntervalMs?: number;
  /** Sample ticks per frame (default 4: ~14 readings, ~85 bytes). */
  ticksPerFrame?: number;
  /** Boot id (default: drawn from the seed). */
  bootId?: number;
  /** Frame size limit in bytes (default 1024). */
  maxFrameBytes?: number;
}

/**
 * A board's telemetry on a virtual timeline: `nextTelemetry()` / `nextFrame()` return consecutive
 * synced TELEMETRY frames (seq 1, 2, …) of realistic mixed-channel samples, deterministic for a seed.
 * No sockets, no timers: benchmarks pre-generate or generate inline, demos and devices share the code.
 *
 * @example
 * const gen = new TelemetryGenerator({ seed: 42, index: 7 });
 * ws.send(gen.helloFrame('bench-7'));   // then DESCRIPTORS unless WELCOME says known
 * ws.send(gen.descriptorsFrame());
 * for (let i = 0; i < 1000; i++) ws.send(gen.nextFrame());
 */
export class TelemetryGenerator {
  readonly channels: ChannelDescriptor[];
  readonly descriptorHash: number;
  readonly bootId: number;
  readonly sampleIntervalMs: number;
  readonly ticksPerFrame: number;
  /** Seq the next frame gets. */
  seq = 1;
  /** Readings (non-missing samples) generated so far. */
  readings = 0;
  private readonly builder = new FrameBuilder();
  private readonly sampler: Sampler;
  private readonly startMs: number;
  private readonly maxFrameBytes: number;
  private tickIndex = 0;

  constructor(options: GeneratorOptions = {}) {
    const root = new Rng(options.seed ?? 1);
    const index = options.index ?? 0;
    this.sampleIntervalMs = options.sampleIntervalMs ?? 1000;
    this.ticksPerFrame = Math.min(Limits.maxSamplesPerBlock, Math.max(1, options.ticksPerFrame ?? 4));
    this.startMs = options.startTimeMs ?? Date.UTC(2025, 0, 15, 6, 0, 0);
    this.maxFrameBytes = options.maxFrameBytes ?? RECOMMENDED_UPLINK_BYTES;
    this.bootId = options.bootId ?? root.fork('boot', index).nonZeroU32();
    this.sampler = new Sampler(new SensorSuite(root.fork('sensors', index)));
    this.channels = channelDescriptors(this.sampleIntervalMs);
    this.descriptorHash = descriptorHash(this.channels);
  }

  /** The next TELEMETRY message; its base time is the virtual time of its first tick. */
  nextTelemetry(): Telemetry {
    const b = this.builder;
    for (let t = 0; t < this.ticksPerFrame; t++) {
      if (!b.empty && b.bytes + this.sampler.tickBytesBound > this.maxFrameBytes) break;
      const timeMs = Math.floor(this.startMs + this.tickIndex * this.sampleIntervalMs);
      this.sampler.tick(b, timeMs, timeMs, timeMs - this.startMs + 1000, false);
      this.tickIndex++;
    }
    const message = b.take(this.bootId, this.seq++, this.descriptorHash);
    this.readings += countReadings(message);
    return message;
  }

  /** The next TELEMETRY frame, encoded. */
  nextFrame(): Uint8Array {
    return encodeFrame(this.nextTelemetry());
  }

  /** A HELLO for this board (synced clock, nothing buffered). */
  helloFrame(deviceId: string, firmwareVersion = 'sim-1.0.0'): Uint8Array {
    return encodeFrame({
      type: 'hello',
      timeSynced: true,
      deviceId,
      firmwareVersion,
      maxProtocolVersion: 1,
      bootId: this.bootId,
      resetReason: ResetReason.POWER_ON,
      uptimeMs: Math.floor(1000 + this.tickIndex * this.sampleIntervalMs),
      descriptorHash: this.descriptorHash,
      bufferedFrames: 0,
      droppedFrames: 0,
    });
  }

  /** The DESCRIPTORS frame whose hash the TELEMETRY frames carry. */
  descriptorsFrame(): Uint8Array {
    return encodeFrame({ type: 'descriptors', channels: this.channels });
  }
}

/** Byte offsets inside an encoded TELEMETRY frame: 8-byte header, then bootId, seq, hash, baseTime [PROTO-3.4]. */
const SEQ_OFFSET = 8 + 4;
const BASE_TIME_OFFSET = 8 + 12;

/**
 * Realistic frames at copy speed, for load generators that must outrun the hub on a shared machine:
 * `size` frames from a `TelemetryGenerator`, replayed in a loop. Each `next()` returns a fresh copy
 * with seq continuing (1, 2, …, so the hub stores every frame rather than deduplicating it) and the
 * base time moved on by whole loops (so readings never land on earlier timestamps); the copy is
 * re-sealed with its CRC-32 [PROTO-2.6]. Tests hold the result to the codec.
 *
 * @example
 * const loop = new FrameLoop(new TelemetryGenerator({ seed: 42, index: i }));
 * ws.send(loop.generator.helloFrame(id)); ws.send(loop.generator.descriptorsFrame());
 * setInterval(() => ws.send(loop.next()), 10);
 */
export class FrameLoop {
  readonly generator: TelemetryGenerator;
  /** Readings in one pass over the pool. */
  readonly readingsPerLoop: number;
  /** Readings (non-missing samples) handed out so far. */
  readings = 0;
  private readonly pool: Uint8Array[];
  private readonly poolReadings: number[];
  private readonly spanMs: number;
  private i = 0;
  private seq = 1;

  constructor(generator: TelemetryGenerator, size = 256) {
    if (generator.seq !== 1) throw new RangeError('FrameLoop needs a fresh generator (seq 1)');
    this.generator = generator;
    this.pool = [];
    this.poolReadings = [];
    let first = 0;
    for (let k = 0; k < size; k++) {
      const t = generator.nextTelemetry();
      if (k === 0) first = t.baseTime;
      this.pool.push(encodeFrame(t));
      this.poolReadings.push(countReadings(t));
    }
    // One loop later, everything happens `spanMs` later: the time the pool covers.
    this.spanMs = generator.nextTelemetry().baseTime - first;
    this.readingsPerLoop = this.poolReadings.reduce((a, b) => a + b, 0);
  }

  /** Seq the next frame gets. */
  get nextSeq(): number {
    return this.seq;
  }

  next(): Uint8Array {
    const k = this.i;
    const src = this.pool[k] as Uint8Array;
    const loops = Math.floor((this.seq - 1) / this.pool.length);
    const out = new Uint8Array(src.length);
    out.set(src);
    const view = new DataView(out.buffer);
    view.setUint32(SEQ_OFFSET, this.seq, true);
    if (loops > 0) {
      const base = view.getUint32(BASE_TIME_OFFSET, true) + view.getUint32(BASE_TIME_OFFSET + 4, true) * 0x1_0000_0000;
      const t = base + loops * this.spanMs;
      view.setUint32(BASE_TIME_OFFSET, t % 0x1_0000_0000, true);
      view.setUint32(BASE_TIME_OFFSET + 4, Math.floor(t / 0x1_0000_0000), true);
    }
    view.setUint32(out.length - 4, crc32(out.subarray(0, out.length - 4)), true);
    this.readings += this.poolReadings[k] as number;
    this.seq++;
    this.i = k + 1 === this.pool.length ? 0 : k + 1;
    return out;
  }
}

/** Non-missing samples of a TELEMETRY message: what the hub stores as readings. */
export function countReadings(t: Telemetry): number {
  let n = 0;
  for (const b of t.blocks) for (const v of b.values) if (v !== null) n++;
  return n;
}

/** All samples of a TELEMETRY message, missing ones included. */
export function countSamples(t: Telemetry): number {
  let n = 0;
  for (const b of t.blocks) n += b.values.length;
  return n;
}
