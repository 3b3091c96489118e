/**
 * The simulator's building blocks: seeded randomness, realistic sensors, the telemetry generator the
 * benchmarks share, the outbox's cumulative-ACK rule and the latency histogram.
 */
import { describe, expect, it } from 'vitest';
import { Outbox, type OutboxEntry } from '../../firmware-sim/outbox.ts';
import { Rng } from '../../firmware-sim/rng.ts';
import { CHANNELS, Channel, channelDescriptors, drawProfile, SensorSuite } from '../../firmware-sim/sensors.ts';
import { DeviceStats, LatencyHistogram, sumStats } from '../../firmware-sim/stats.ts';
import { countReadings, FrameBuilder, FrameLoop, Sampler, TelemetryGenerator } from '../../firmware-sim/telemetry.ts';
import {
  decodeFrame,
  descriptorHash,
  encodeFrame,
  RECOMMENDED_UPLINK_BYTES,
  type Telemetry,
} from '../../server/codec/index.ts';
import { telemetryToReadings } from '../../server/pipeline/readings.ts';

const start = Date.UTC(2025, 5, 1, 0, 0, 0);
const HOUR = 3_600_000;

describe('Rng', () => {
  it('repeats for a seed, differs across seeds, and forks independent streams', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const seqA = Array.from({ length: 100 }, () => a.u32());
    expect(Array.from({ length: 100 }, () => b.u32())).toEqual(seqA);
    const c = new Rng(43);
    expect(Array.from({ length: 100 }, () => c.u32())).not.toEqual(seqA);
    // A fork does not depend on how much the parent was used.
    const used = new Rng(42);
    for (let i = 0; i < 1000; i++) used.u32();
    expect(used.fork('sensors', 3).u32()).toBe(new Rng(42).fork('sensors', 3).u32());
    expect(new Rng(42).fork('sensors', 3).u32()).not.toBe(new Rng(42).fork('sensors', 4).u32());
    expect(new Rng(42).fork('sensors', 3).u32()).not.toBe(new Rng(42).fork('net', 3).u32());
  });

  it('draws plausible distributions', () => {
    const r = new Rng(7);
    const n = 20_000;
    let sum = 0;
    let sq = 0;
    let below = 0;
    for (let i = 0; i < n; i++) {
      const x = r.normal();
      sum += x;
      sq += x * x;
      if (r.next() < 0.25) below++;
    }
    expect(Math.abs(sum / n)).toBeLessThan(0.05);
    expect(Math.abs(sq / n - 1)).toBeLessThan(0.05);
    expect(Math.abs(below / n - 0.25)).toBeLessThan(0.02);
    for (let i = 0; i < 1000; i++) {
      const v = r.int(3, 5);
      expect(v === 3 || v === 4 || v === 5).toBe(true);
      expect(r.nonZeroU32(v)).not.toBe(0);
    }
  });
});

describe('sensors', () => {
  it('produce values in physical ranges over days, in their fixed-point encodings', () => {
    for (let seed = 1; seed <= 8; seed++) {
      const s = new SensorSuite(new Rng(seed));
      s.missingRate = 0;
      for (let t = 0; t < 3 * 24 * HOUR; t += 15 * 60_000) {
        const now = start + t;
        const temp = s.read(Channel.TEMPERATURE, now, t) as number;
        expect(temp / 100).toBeGreaterThan(-25);
        expect(temp / 100).toBeLessThan(50);
        const rh = s.read(Channel.HUMIDITY, now, t) as number;
        expect(rh / 100).toBeGreaterThanOrEqual(3);
        expect(rh / 100).toBeLessThanOrEqual(99.5);
        const hPa = (s.read(Channel.PRESSURE, now, t) as number) / 100;
        expect(hPa).toBeGreaterThan(900);
        expect(hPa).toBeLessThan(1070);
        const v = (s.read(Channel.BATTERY_V, now, t) as number) / 1000;
        expect(v).toBeGreaterThanOrEqual(3.0);
        expect(v).toBeLessThanOrEqual(4.2);
        const rssi = s.read(Channel.RSSI_DBM, now, t) as number;
        expect(rssi).toBeGreaterThanOrEqual(-110);
        expect(rssi).toBeLessThanOrEqual(-20);
        const heap = s.read(Channel.HEAP_FREE, now, t) as number;
        expect(heap % 4).toBe(0);
        expect(heap).toBeGreaterThanOrEqual(8192);
        expect(s.read(Channel.UPTIME_S, now, t)).toBe(Math.floor(t / 1000));
        expect(s.read(Channel.LED, now, t)).toBe(false);
      }
    }
  });

  it('follow a daily cycle: afternoons are warmer than nights', () => {
    let warmer = 0;
    for (let seed = 1; seed <= 20; seed++) {
      const rng = new Rng(seed);
      const profile = { ...drawProfile(rng), utcOffsetHours: 0 };
      const s = new SensorSuite(rng, profile);
      s.missingRate = 0;
      let afternoon = 0;
      let night = 0;
      for (let day = 0; day < 5; day++) {
        const base = start + day * 24 * HOUR;
        afternoon += s.read(Channel.TEMPERATURE, base + 15 * HOUR, 0) as number;
        night += s.read(Channel.TEMPERATURE, base + 3 * HOUR, 0) as number;
      }
      if (afternoon > night) warmer++;
    }
    expect(warmer).toBeGreaterThanOrEqual(18);
  });

  it('drain the battery, and charge it again when low', () => {
    const s = new SensorSuite(new Rng(3));
    const volts: number[] = [];
    for (let t = 0; t < 14 * 24 * HOUR; t += 10 * 60_000) volts.push(s.read(Channel.BATTERY_V, start + t, t) as number);
    let falls = 0;
    let rises = 0;
    for (let i = 1; i < volts.length; i++) {
      const d = (volts[i] as number) - (volts[i - 1] as number);
      if (d < -5) falls++;
      if (d > 20) rises++;
    }
    expect(falls).toBeGreaterThan(100);
    expect(rises).toBeGreaterThan(3);
    expect(Math.min(...volts)).toBeGreaterThanOrEqual(3400);
  });

  it('report an occasional failed read as a missing sample', () => {
    const s = new SensorSuite(new Rng(5));
    s.missingRate = 0.5;
    const values = Array.from({ length: 200 }, (_, i) => s.read(Channel.TEMPERATURE, start + i * 1000, i * 1000));
    expect(values.filter((v) => v === null).length).toBeGreaterThan(50);
    expect(values.filter((v) => typeof v === 'number').length).toBeGreaterThan(50);
  });
});

describe('frames', () => {
  it('mix channels at their own rates and stay within 1 KiB however many ticks are asked for', () => {
    const sampler = new Sampler(new SensorSuite(new Rng(1)));
    const b = new FrameBuilder();
    const frames: Telemetry[] = [];
    for (let tick = 0; tick < 2000; tick++) {
      if (!b.empty && b.bytes + sampler.tickBytesBound > RECOMMENDED_UPLINK_BYTES)
        frames.push(b.take(1, frames.length + 1, 7));
      sampler.tick(b, start + tick * 100, start + tick * 100, tick * 100, false);
    }
    expect(frames.length).toBeGreaterThan(10);
    for (const f of frames) {
      const bytes = encodeFrame(f);
      expect(bytes.length).toBeLessThanOrEqual(RECOMMENDED_UPLINK_BYTES);
      expect(f.blocks.map((x) => x.channel)).toEqual([...f.blocks.map((x) => x.channel)].sort((x, y) => x - y));
    }
    const f = frames[0] as Telemetry;
    const count = (ch: number) => f.blocks.find((x) => x.channel === ch)?.values.length ?? 0;
    // Pressure every 2nd tick, battery every 5th (± the frame's partial period).
    expect(Math.abs(count(Channel.TEMPERATURE) - 2 * count(Channel.PRESSURE))).toBeLessThanOrEqual(1);
    expect(Math.abs(count(Channel.TEMPERATURE) - 5 * count(Channel.BATTERY_V))).toBeLessThanOrEqual(4);
  });

  it('FrameBuilder predicts the encoded size exactly', () => {
    const sampler = new Sampler(new SensorSuite(new Rng(11)));
    for (let ticks = 1; ticks <= 40; ticks++) {
      const b = new FrameBuilder();
      for (let t = 0; t < ticks; t++) sampler.tick(b, start + t * 250, 1_000_000 + t * 250, t * 250, true);
      const predicted = b.bytes;
      expect(encodeFrame(b.take(9, 1, 5)).length).toBe(predicted);
    }
  });
});

describe('TelemetryGenerator (shared with the ingest benchmark)', () => {
  it('produces consecutive, decodable frames that map to readings with the hub’s own mapping', () => {
    const gen = new TelemetryGenerator({ seed: 42, index: 7, ticksPerFrame: 8 });
    expect(gen.descriptorHash).toBe(descriptorHash(gen.channels));
    const descriptors = decodeFrame(gen.descriptorsFrame());
    expect(descriptors).toEqual({ type: 'descriptors', channels: gen.channels });
    const hello = decodeFrame(gen.helloFrame('bench-7'));
    expect(hello).toMatchObject({
      type: 'hello',
      deviceId: 'bench-7',
      bootId: gen.bootId,
      descriptorHash: gen.descriptorHash,
    });
    let readings = 0;
    let lastTime = 0;
    for (let i = 1; i <= 50; i++) {
      const bytes = gen.nextFrame();
      const t = decodeFrame(bytes) as Telemetry;
      expect(t.seq).toBe(i);
      expect(t.bootId).toBe(gen.bootId);
      expect(t.unsynced).toBe(false);
      expect(t.baseTime).toBeGreaterThan(lastTime);
      lastTime = t.baseTime;
      readings += telemetryToReadings('bench-7', t, gen.channels, 0).readings.length;
    }
    expect(readings).toBe(gen.readings);
    expect(readings).toBeGreaterThan(50 * 8 * 2);
  });

  it('is deterministic for a seed and index, different across indexes', () => {
    const frames = (index: number) => {
      const g = new TelemetryGenerator({ seed: 1, index });
      return Array.from({ length: 20 }, () => Buffer.from(g.nextFrame()).toString('hex'));
    };
    expect(frames(3)).toEqual(frames(3));
    expect(frames(3)).not.toEqual(frames(4));
  });

  it('handles fractional sample intervals (e.g. 3 frames/s × 4 ticks = 83.3 ms)', () => {
    const gen = new TelemetryGenerator({ sampleIntervalMs: 1000 / 12 });
    expect(gen.channels.every((c) => Number.isInteger(c.periodMs))).toBe(true);
    for (let i = 0; i < 30; i++) expect(decodeFrame(gen.nextFrame()).type).toBe('telemetry');
    expect(decodeFrame(gen.helloFrame('x')).type).toBe('hello');
  });

  it('uses the same channel table as the devices', () => {
    const gen = new TelemetryGenerator({ sampleIntervalMs: 250 });
    expect(gen.channels).toEqual(channelDescriptors(250));
    expect(gen.channels.map((c) => c.key)).toEqual(CHANNELS.map((c) => c.key));
    const m = gen.nextTelemetry();
    expect(countReadings(m)).toBeGreaterThan(0);
  });
});

describe('FrameLoop (load generators)', () => {
  it('replays the pool with consecutive seqs and later times, each copy a valid frame', () => {
    const loop = new FrameLoop(new TelemetryGenerator({ seed: 2, index: 1 }), 10);
    const channels = loop.generator.channels;
    const seen = new Set<string>();
    let lastBase = 0;
    let readings = 0;
    const first = decodeFrame(loop.next()) as Telemetry;
    lastBase = first.baseTime;
    readings += telemetryToReadings('d', first, channels, 0).readings.length;
    for (let i = 2; i <= 25; i++) {
      const bytes = loop.next();
      const t = decodeFrame(bytes) as Telemetry; // CRC and every field check out
      expect(t.seq).toBe(i);
      expect(t.bootId).toBe(loop.generator.bootId);
      expect(t.baseTime).toBeGreaterThan(lastBase);
      lastBase = t.baseTime;
      for (const r of telemetryToReadings('d', t, channels, 0).readings) {
        const key = `${r.channel}|${r.timeMs}`;
        expect(seen.has(key)).toBe(false); // never an earlier timestamp again: no overwrites downstream
        seen.add(key);
        readings++;
      }
    }
    expect(loop.readings).toBe(readings);
    expect(loop.nextSeq).toBe(26);
    // The same sensor content as the generator's own frames, loop after loop.
    const again = new FrameLoop(new TelemetryGenerator({ seed: 2, index: 1 }), 10);
    const a = decodeFrame(again.next()) as Telemetry;
    for (let i = 0; i < 9; i++) again.next();
    const b = decodeFrame(again.next()) as Telemetry;
    expect(b.blocks).toEqual(a.blocks);
    expect(b.seq).toBe(11);
  });
});

describe('Outbox', () => {
  const entry = (bootId: number, seq: number): OutboxEntry => ({
    bootId,
    seq,
    bytes: new Uint8Array(1),
    samples: 1,
    readings: 1,
    sends: 1,
    lastSentAt: 0,
    message: null,
  });

  it('drops the oldest entry when full', () => {
    const o = new Outbox(3);
    expect(o.push(entry(1, 1))).toBeNull();
    o.push(entry(1, 2));
    o.push(entry(1, 3));
    expect(o.push(entry(1, 4))?.seq).toBe(1);
    expect([0, 1, 2].map((i) => o.at(i).seq)).toEqual([2, 3, 4]);
    expect(o.shift()?.seq).toBe(2);
    expect(o.length).toBe(2);
  });

  it('applies a cumulative ACK across boots [PROTO-3.5]', () => {
    const o = new Outbox(10);
    for (const [b, s] of [
      [7, 8],
      [7, 9],
      [5, 1],
      [5, 2],
      [5, 3],
    ] as const)
      o.push(entry(b, s));
    expect(o.coveredBy(7, 8)).toBe(1);
    expect(o.coveredBy(7, 100)).toBe(2); // not the later boot's frames
    expect(o.coveredBy(5, 2)).toBe(4); // the earlier boot's frames before it, too
    expect(o.coveredBy(5, 2, 3)).toBe(3); // only what was sent on this connection
    expect(o.coveredBy(9, 1)).toBe(0); // unknown boot
    expect(o.coveredBy(7, 7)).toBe(0); // already freed
    expect(o.lastSeqOf(5)).toBe(3);
  });
});

describe('LatencyHistogram and stats', () => {
  it('gives quantiles within its bucket resolution and merges', () => {
    const h = new LatencyHistogram();
    for (let i = 1; i <= 1000; i++) h.record(i / 10); // 0.1 .. 100 ms
    const p50 = h.quantile(0.5) as number;
    const p99 = h.quantile(0.99) as number;
    expect(Math.abs(p50 - 50) / 50).toBeLessThan(0.03);
    expect(Math.abs(p99 - 99) / 99).toBeLessThan(0.03);
    expect(new LatencyHistogram().quantile(0.5)).toBeNull();
    const other = new LatencyHistogram();
    for (let i = 0; i < 1000; i++) other.record(1000);
    h.merge(other);
    expect(h.count).toBe(2000);
    expect(Math.abs((h.quantile(0.99) as number) - 1000) / 1000).toBeLessThan(0.03);
    expect(h.maxMs).toBe(1000);
  });

  it('sums device counters and by-code records', () => {
    const a = new DeviceStats();
    const b = new DeviceStats();
    a.framesAcked = 3;
    b.framesAcked = 4;
    a.errorsByCode.BAD_CRC = 1;
    b.errorsByCode.BAD_CRC = 2;
    b.errorsByCode.TRUNCATED = 1;
    a.latency.record(5);
    b.latency.record(7);
    const t = sumStats([a, b]);
    expect(t.framesAcked).toBe(7);
    expect(t.errorsByCode).toEqual({ BAD_CRC: 3, TRUNCATED: 1 });
    expect(t.latency.count).toBe(2);
  });
});
