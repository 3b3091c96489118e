/**
 * The InfluxDB forwarder against real servers: the real lmdb local log as its source and a real
 * InfluxDB engine (Debian's 1.6 `influxd` behind the harness's nginx, which serves `/api/v2/write`
 * as InfluxDB 1.8+ does) as its target, written through the real `@influxdata/influxdb-client`.
 * Every check reads back through InfluxQL. Field-type conflicts are the engine's own 400s.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type ChannelDescriptor,
  decodeFrame,
  descriptorHash,
  encodeFrame,
  type SampleValue,
  type Telemetry,
  ValueType,
} from '../../server/codec/index.ts';
import type { InfluxConfig } from '../../server/config/index.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics, type Metrics } from '../../server/metrics/index.ts';
import { telemetryToReadings } from '../../server/pipeline/readings.ts';
import { type OpenDeadLetterStore, openDeadLetterStore } from '../../server/storage/dead-letter.ts';
import { createInfluxForwarder, type InfluxForwarder } from '../../server/storage/influx/forwarder.ts';
import { createInfluxHistory } from '../../server/storage/influx/history.ts';
import { readingToLine } from '../../server/storage/influx/line-protocol.ts';
import { createStatsWriter } from '../../server/storage/influx/stats.ts';
import { type LocalLog, openLocalLog } from '../../server/storage/local-log.ts';
import type { Reading } from '../../server/storage/types.ts';
import { type InfluxServer, startInflux } from '../harness/index.ts';

const CHANNELS: ChannelDescriptor[] = [
  { index: 0, key: 'temp', unit: '°C', valueType: ValueType.I16, scaleExp: -2, periodMs: 1000 },
  { index: 1, key: 'rssi', unit: 'dBm', valueType: ValueType.I8, scaleExp: 0, periodMs: 1000 },
  { index: 2, key: 'relay', unit: '', valueType: ValueType.BOOL, scaleExp: 0, periodMs: 0 },
  { index: 3, key: 'vbat', unit: 'V', valueType: ValueType.F32, scaleExp: 0, periodMs: 1000 },
  { index: 4, key: 'uptime', unit: 's', valueType: ValueType.U32, scaleExp: 0, periodMs: 1000 },
  { index: 5, key: 'tiny', unit: 'A', valueType: ValueType.I32, scaleExp: -9, periodMs: 1000 },
];
const HASH = descriptorHash(CHANNELS);

/** Shard groups of an infinite-retention policy span 7 days from the epoch (Thursdays 00:00 UTC). */
const WEEK_A = Date.UTC(2024, 0, 4, 12); // Thu 2024-01-04: shard [Jan 4, Jan 11)
const WEEK_B = Date.UTC(2024, 0, 18, 12); // Thu 2024-01-18: shard [Jan 18, Jan 25)

let influx: InfluxServer;
let dir: string;
let log: LocalLog;
let deadLetters: OpenDeadLetterStore;
let metrics: Metrics;
let forwarder: InfluxForwarder | null = null;
let seq = 0;

beforeAll(async () => {
  influx = await startInflux();
}, 120_000);

afterAll(async () => {
  await influx?.stop();
});

beforeEach(async () => {
  // A fresh database per test: field types live on in shards even after DROP SERIES.
  await influx.influxQL(`DROP DATABASE "${influx.bucket}"`);
  await influx.influxQL(`CREATE DATABASE "${influx.bucket}"`);
  dir = mkdtempSync(join(tmpdir(), 'forwarder-it-'));
  metrics = createMetrics();
  log = openLocalLog({
    dataDir: dir,
    maxBytes: 256 * 1024 * 1024,
    retentionHours: 24 * 3650,
    fullPolicy: 'backpressure',
    forwarding: true,
    metrics,
    logger: createLogger('silent'),
  });
  deadLetters = openDeadLetterStore({ dataDir: dir, metrics });
});

afterEach(async () => {
  await forwarder?.stop();
  forwarder = null;
  await log.close();
  await deadLetters.close();
  rmSync(dir, { recursive: true, force: true });
});

function config(overrides: Partial<InfluxConfig> = {}): InfluxConfig {
  return {
    url: influx.url,
    token: influx.token,
    org: influx.org,
    bucket: influx.bucket,
    batchLines: 5000,
    flushIntervalMs: 50,
    timeoutMs: 10_000,
    maxRetryDelayMs: 500,
    statsIntervalMs: 0,
    ...overrides,
  };
}

function start(overrides: Partial<InfluxConfig> = {}): InfluxForwarder {
  forwarder = createInfluxForwarder({
    config: config(overrides),
    log,
    deadLetters,
    metrics,
    logger: createLogger('silent'),
  });
  forwarder.start();
  return forwarder;
}

function defaultValue(ch: number, i: number, s: number): SampleValue {
  switch (ch) {
    case 0:
      return ((s * 37 + i) % 6000) - 1000; // −10.00 .. 49.99 °C
    case 1:
      return -((s + i) % 100);
    case 2:
      return (s + i) % 3 === 0;
    case 3:
      return Math.fround(3.3 + ((s + i) % 10) / 100);
    case 4:
      return 4_000_000_000 + s * 10 + i;
    default:
      return (s % 5) + 1; // 1e-9 .. 5e-9 A: written in exponent form
  }
}

/** Appends one TELEMETRY frame to the local log, durably. Returns its readings as the hub maps them. */
async function appendFrame(opts: {
  device?: string;
  baseTime: number;
  samples?: number;
  channels?: number[];
  timeOffsetMs?: number;
  unsynced?: boolean;
}): Promise<Reading[]> {
  const device = opts.device ?? 'esp-1';
  seq++;
  const samples = opts.samples ?? 3;
  const telemetry: Telemetry = {
    type: 'telemetry',
    unsynced: opts.unsynced ?? false,
    bootId: 11,
    seq,
    descriptorHash: HASH,
    baseTime: opts.baseTime,
    blocks: (opts.channels ?? [0, 1, 2, 3, 4, 5]).map((ch) => ({
      channel: ch,
      valueType: (CHANNELS[ch] as ChannelDescriptor).valueType,
      deltasMs: Array.from({ length: samples }, (_, i) => i * 10),
      values: Array.from({ length: samples }, (_, i) => defaultValue(ch, i, seq)),
    })),
  };
  const frame = encodeFrame(telemetry);
  const decoded = decodeFrame(frame) as Telemetry;
  const timeOffsetMs = opts.timeOffsetMs ?? 0;
  const { readings } = telemetryToReadings(device, decoded, CHANNELS, timeOffsetMs);
  const times = readings.map((r) => r.timeMs);
  log.putDescriptors(device, HASH, CHANNELS);
  await new Promise<void>((resolve, reject) =>
    log.append(
      {
        deviceId: device,
        bootId: 11,
        seq,
        receivedAtMs: Date.now(),
        timeOffsetMs,
        frame,
        minTimeMs: Math.min(...times),
        maxTimeMs: Math.max(...times),
      },
      (err) => (err ? reject(err) : resolve()),
    ),
  );
  return readings;
}

async function caughtUp(timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (log.forwardedOffset() < log.headOffset()) {
    if (Date.now() > deadline) {
      throw new Error(`forwarder stuck: ${JSON.stringify(forwarder?.status())}\n${influx.logs()}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Every telemetry point in InfluxDB as `{device, channel, unit, time, value|state}` rows, sorted. */
async function storedPoints(where = ''): Promise<Record<string, unknown>[]> {
  const { rows } = await influx.influxQL(
    `SELECT "value", "state", "device", "channel", "unit" FROM "telemetry" ${where}`,
  );
  return rows.sort(byKey);
}

function asRow(r: Reading): Record<string, unknown> {
  return {
    time: r.timeMs,
    device: r.deviceId,
    channel: r.channel,
    unit: r.unit === '' ? null : r.unit,
    value: typeof r.value === 'number' ? r.value : null,
    state: typeof r.value === 'boolean' ? r.value : null,
  };
}

function byKey(a: Record<string, unknown>, b: Record<string, unknown>): number {
  const ka = `${a.device}|${a.channel}|${String(a.time).padStart(15, '0')}`;
  const kb = `${b.device}|${b.channel}|${String(b.time).padStart(15, '0')}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

describe('forwarder → real InfluxDB', () => {
  it('stores exactly the readings of the log: values, ms timestamps, tags and field types', async () => {
    const expected: Reading[] = [];
    for (let i = 0; i < 20; i++) expected.push(...(await appendFrame({ baseTime: WEEK_B + i * 1000 })));
    // An unsynced frame: uptime base time plus the persisted offset [PROTO-3.4.1].
    expected.push(...(await appendFrame({ baseTime: 5000, unsynced: true, timeOffsetMs: WEEK_B + 3_600_000 })));
    expected.push(...(await appendFrame({ device: 'esp-2', baseTime: WEEK_B + 500 })));
    start();
    await caughtUp();

    const rows = await storedPoints();
    expect(rows).toEqual(expected.map(asRow).sort(byKey));
    expect(rows).toHaveLength(22 * 6 * 3);

    const fields = await influx.influxQL('SHOW FIELD KEYS FROM "telemetry"');
    expect(fields.rows.map((r) => [r.fieldKey, r.fieldType]).sort()).toEqual([
      ['state', 'boolean'],
      ['value', 'float'],
    ]);
    const tags = await influx.influxQL('SHOW TAG KEYS FROM "telemetry"');
    expect(tags.rows.map((r) => r.tagKey).sort()).toEqual(['channel', 'device', 'unit']);
    expect((await metrics.forwardedLines.get()).values[0]?.value).toBe(expected.length);
    expect(forwarder!.status()).toMatchObject({ state: 'idle', lagSeconds: 0, deadLetteredLines: 0 });
  });

  it('answers history queries in InfluxQL with the same readings', async () => {
    const expected: Reading[] = [];
    for (let i = 0; i < 5; i++) expected.push(...(await appendFrame({ baseTime: WEEK_B + i * 1000 })));
    await appendFrame({ device: 'esp-2', baseTime: WEEK_B });
    start();
    await caughtUp();
    const history = createInfluxHistory(config());
    const byTimeThenChannel = (a: Reading, b: Reading) => a.timeMs - b.timeMs || (a.channel < b.channel ? -1 : 1);

    const temp = await history.query({
      deviceId: 'esp-1',
      channel: 'temp',
      fromMs: WEEK_B,
      toMs: WEEK_B + 10_000,
      limit: 1000,
    });
    expect(temp).toEqual(expected.filter((r) => r.channel === 'temp'));

    const all = await history.query({ deviceId: 'esp-1', fromMs: WEEK_B, toMs: WEEK_B + 10_000, limit: 1000 });
    expect(all).toEqual([...expected].sort(byTimeThenChannel));

    const firstTwo = await history.query({
      deviceId: 'esp-1',
      channel: 'relay',
      fromMs: WEEK_B,
      toMs: WEEK_B + 10_000,
      limit: 2,
    });
    expect(firstTwo).toEqual(expected.filter((r) => r.channel === 'relay').slice(0, 2));
    expect(firstTwo.every((r) => typeof r.value === 'boolean')).toBe(true);
  });

  it('rides out an InfluxDB outage mid-stream: retries, then nothing is lost or duplicated', async () => {
    const expected: Reading[] = [];
    start({ batchLines: 200, flushIntervalMs: 20 });
    for (let i = 0; i < 30; i++) expected.push(...(await appendFrame({ baseTime: WEEK_B + i * 1000 })));
    await caughtUp();

    await influx.stopEngine();
    for (let i = 30; i < 90; i++) expected.push(...(await appendFrame({ baseTime: WEEK_B + i * 1000 })));
    // The forwarder is failing and backing off (nginx answers 502 for the dead engine).
    const deadline = Date.now() + 30_000;
    while (forwarder!.status().state !== 'retrying' && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    expect(forwarder!.status().state).toBe('retrying');
    expect(forwarder!.status().lastError?.status).toBe(502);
    expect(log.forwardedOffset()).toBeLessThan(log.headOffset());
    // Several failed attempts while down (counted per status), then more frames arrive.
    const failed502 = async () =>
      (await metrics.writeFailures.get()).values.find((v) => v.labels.status === '502')?.value ?? 0;
    const failing = Date.now() + 30_000;
    while ((await failed502()) < 2 && Date.now() < failing) await new Promise((r) => setTimeout(r, 20));
    expect(await failed502()).toBeGreaterThanOrEqual(2);
    for (let i = 90; i < 120; i++) expected.push(...(await appendFrame({ baseTime: WEEK_B + i * 1000 })));

    await influx.startEngine();
    await caughtUp();
    const rows = await storedPoints();
    expect(rows).toEqual(expected.map(asRow).sort(byKey));
    const { rows: counts } = await influx.influxQL('SELECT COUNT("value") AS n FROM "telemetry"');
    expect(counts[0]?.n).toBe(expected.filter((r) => typeof r.value === 'number').length);
    expect(deadLetters.count()).toBe(0);
  });

  it('field-type conflict: dead-letters exactly the conflicting lines with the reason, stores the rest, keeps going', async () => {
    // Another writer got there first: `value` is a string in week A's shard. Field types are fixed
    // per measurement, field and shard, so every numeric line for week A now conflicts, while
    // booleans (`state`) in week A and everything in week B's shard are fine.
    const legacy = `telemetry,channel=legacy,device=old-logger value="n/a" ${WEEK_A}`;
    const res = await fetch(`${influx.engineUrl}/write?db=${influx.bucket}&precision=ms`, {
      method: 'POST',
      body: legacy,
    });
    expect(res.status).toBe(204);

    const weekA: Reading[] = [];
    const weekB: Reading[] = [];
    for (let i = 0; i < 10; i++) {
      weekB.push(...(await appendFrame({ baseTime: WEEK_B + i * 1000 })));
      weekA.push(...(await appendFrame({ baseTime: WEEK_A + i * 1000 })));
    }
    start();
    await caughtUp();

    const conflicting = weekA.filter((r) => typeof r.value === 'number');
    const fine = [...weekB, ...weekA.filter((r) => typeof r.value === 'boolean')];
    const letters = deadLetters.list(10_000);
    expect(letters.map((l) => l.line).sort()).toEqual(conflicting.map(readingToLine).sort());
    for (const l of letters) {
      expect(l.status).toBe(400);
      expect(l.reason).toContain('field type conflict');
    }
    expect((await metrics.deadLettered.get()).values[0]?.value).toBe(conflicting.length);
    expect(await storedPoints('WHERE "device" = \'esp-1\'')).toEqual(fine.map(asRow).sort(byKey));

    // The forwarder keeps going.
    const later = await appendFrame({ baseTime: WEEK_B + 3_600_000 });
    await caughtUp();
    expect(await storedPoints(`WHERE time >= ${WEEK_B + 3_600_000}ms`)).toEqual(later.map(asRow).sort(byKey));
  });

  it('resumes from the durable cursor after a restart, rewriting nothing twice in effect', async () => {
    const expected: Reading[] = [];
    for (let i = 0; i < 10; i++) expected.push(...(await appendFrame({ baseTime: WEEK_B + i * 1000 })));
    start();
    await caughtUp();
    await forwarder!.stop();
    const cursor = log.forwardedOffset();
    expect(cursor).toBe(log.headOffset());
    for (let i = 10; i < 15; i++) expected.push(...(await appendFrame({ baseTime: WEEK_B + i * 1000 })));
    start();
    await caughtUp();
    expect(await storedPoints()).toEqual(expected.map(asRow).sort(byKey));
    expect((await metrics.forwardedLines.get()).values[0]?.value).toBe(expected.length);
  });

  it('writes hub_stats points with float fields tagged by hub id', async () => {
    const fwd = start();
    // Wired as server/hub.ts does: the stats writer hands its points to the forwarder.
    const stats = createStatsWriter({
      metrics,
      hubId: 'hub-it',
      intervalMs: 100,
      submit: (lines) => fwd.submitStats(lines),
      logger: createLogger('silent'),
    });
    stats.start();
    try {
      await appendFrame({ baseTime: WEEK_B });
      const deadline = Date.now() + 30_000;
      let rows: Record<string, unknown>[] = [];
      while (rows.length < 2 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        rows = (await influx.influxQL('SELECT * FROM "hub_stats"')).rows;
      }
      expect(rows.length).toBeGreaterThanOrEqual(2);
      expect(rows[1]).toMatchObject({
        hub: 'hub-it',
        forwarded_lines: expect.any(Number),
        local_log_unforwarded_frames: expect.any(Number),
        frames_per_s: expect.any(Number),
        device_sessions: 0,
      });
      const fields = await influx.influxQL('SHOW FIELD KEYS FROM "hub_stats"');
      expect(new Set(fields.rows.map((r) => r.fieldType))).toEqual(new Set(['float']));
    } finally {
      stats.stop();
    }
  });
});
