/**
 * InfluxDB forwarder throughput: readings/s from a pre-filled lmdb local log into the harness's real
 * InfluxDB (Debian's 1.6 engine behind the `/api/v2/write` nginx, co-located on this machine), until
 * the cursor reaches the head. Baseline, measured in the same run against the same engine: a trivial
 * writer that POSTs the same lines, pre-built, in the same batch size (what the engine takes when the
 * writer costs nothing). Also: the forwarder's CPU side alone (decode + line building, one core), next
 * to building the same lines through the client's `Point`.
 *
 * Design bar: end to end into a co-located InfluxDB ≥ 250 k readings/s sustained (docs/storage.md).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Point } from '@influxdata/influxdb-client';
import { type DatabaseOptions, open as openLmdb } from 'lmdb';
import {
  type ChannelDescriptor,
  decodeFrame,
  descriptorHash,
  encodeFrame,
  type Telemetry,
  ValueType,
} from '../server/codec/index.ts';
import { createLogger } from '../server/log/index.ts';
import { createMetrics } from '../server/metrics/index.ts';
import { telemetryToReadings } from '../server/pipeline/readings.ts';
import { openDeadLetterStore } from '../server/storage/dead-letter.ts';
import { createInfluxForwarder } from '../server/storage/influx/forwarder.ts';
import { appendEntryLines, LineBuffer, SeriesPrefixCache } from '../server/storage/influx/line-protocol.ts';
import { type LocalLog, openLocalLog } from '../server/storage/local-log.ts';
import { encodeRecord, pooledBinary } from '../server/storage/local-log-record.ts';
import type { StoredEntry } from '../server/storage/types.ts';
import { type InfluxServer, startInflux } from '../test/harness/index.ts';
import type { BenchOptions, BenchReport, BenchRow } from './run.ts';
import { measureRate } from './run.ts';

export const name = 'forwarder';

const BAR = 250_000;
const BATCH_LINES = 20_000;
const DEVICES = 50;
/** The codec bench's "typical" frame: 8 channels × 4 samples (i16 fixed-point and f32). */
const CHANNELS: ChannelDescriptor[] = Array.from({ length: 8 }, (_, i) => ({
  index: i,
  key: `ch${i}`,
  unit: i % 2 === 0 ? '°C' : 'V',
  valueType: i % 2 === 0 ? ValueType.I16 : ValueType.F32,
  scaleExp: i % 2 === 0 ? -2 : 0,
  periodMs: 1000,
}));
const SAMPLES = 4;
const READINGS_PER_FRAME = CHANNELS.length * SAMPLES;
const HASH = descriptorHash(CHANNELS);
const T0 = Date.UTC(2024, 0, 18);

function frame(seq: number): Uint8Array {
  const telemetry: Telemetry = {
    type: 'telemetry',
    unsynced: false,
    bootId: 1,
    seq,
    descriptorHash: HASH,
    baseTime: T0 + seq * SAMPLES * 1000,
    blocks: CHANNELS.map((c) => ({
      channel: c.index,
      valueType: c.valueType,
      deltasMs: Array.from({ length: SAMPLES }, (_, i) => i * 1000),
      values: Array.from({ length: SAMPLES }, (_, i) =>
        c.valueType === ValueType.F32 ? Math.fround(3.3 + ((seq + i) % 50) / 100) : ((seq * 7 + i) % 5000) - 1000,
      ),
    })),
  };
  return encodeFrame(telemetry);
}

async function fill(log: LocalLog, frames: number): Promise<void> {
  const seqs = new Array<number>(DEVICES).fill(0);
  let pending: Promise<void>[] = [];
  for (let f = 0; f < frames; f++) {
    const d = f % DEVICES;
    const seq = (seqs[d] ?? 0) + 1;
    seqs[d] = seq;
    if (seq === 1) log.putDescriptors(`dev-${d}`, HASH, CHANNELS);
    pending.push(
      new Promise<void>((resolve, reject) =>
        log.append(
          {
            deviceId: `dev-${d}`,
            bootId: 1,
            seq,
            receivedAtMs: Date.now(),
            timeOffsetMs: 0,
            frame: frame(seq),
            minTimeMs: T0,
            maxTimeMs: T0 + 10 ** 10,
          },
          (err) => (err ? reject(err) : resolve()),
        ),
      ),
    );
    if (pending.length >= 2000) {
      await Promise.all(pending);
      pending = [];
    }
  }
  await Promise.all(pending);
}

async function resetDatabase(influx: InfluxServer): Promise<void> {
  await influx.influxQL(`DROP DATABASE "${influx.bucket}"`);
  await influx.influxQL(`CREATE DATABASE "${influx.bucket}"`);
}

/** One round: a fresh log of `frames` frames, forwarded to a fresh database; readings/s. */
async function forwardRound(influx: InfluxServer, frames: number): Promise<{ rate: number; lines: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'forwarder-bench-'));
  const metrics = createMetrics();
  const logger = createLogger('silent');
  const log = openLocalLog({
    dataDir: dir,
    maxBytes: 8 * 1024 ** 3,
    retentionHours: 24 * 3650,
    fullPolicy: 'backpressure',
    forwarding: true,
    metrics,
    logger,
    // As in production: every commit (appends while filling, the forwarder's cursor) waits for the flush.
  });
  const deadLetters = openDeadLetterStore({ dataDir: dir, metrics });
  try {
    await fill(log, frames);
    await resetDatabase(influx);
    const forwarder = createInfluxForwarder({
      config: {
        url: influx.url,
        token: influx.token,
        org: influx.org,
        bucket: influx.bucket,
        batchLines: BATCH_LINES,
        flushIntervalMs: 50,
        timeoutMs: 120_000,
        maxRetryDelayMs: 1000,
        statsIntervalMs: 0,
      },
      log,
      deadLetters,
      metrics,
      logger,
    });
    const t0 = performance.now();
    forwarder.start();
    while (log.forwardedOffset() < log.headOffset()) await new Promise((r) => setTimeout(r, 5));
    const seconds = (performance.now() - t0) / 1000;
    await forwarder.stop();
    const { rows } = await influx.influxQL('SELECT COUNT("value") AS n FROM "telemetry"');
    const expected = frames * READINGS_PER_FRAME;
    if (rows[0]?.n !== expected) throw new Error(`InfluxDB holds ${String(rows[0]?.n)} readings, expected ${expected}`);
    if (deadLetters.count() !== 0) throw new Error(`${deadLetters.count()} lines dead-lettered`);
    const lines: string[] = [];
    for (let after = 0; ; ) {
      const entries = log.readAfter(after, 1000);
      if (entries.length === 0) break;
      for (const e of entries) appendEntryLines(e, log.lookupDescriptors, lines);
      after = (entries.at(-1) as StoredEntry).offset;
    }
    return { rate: expected / seconds, lines };
  } finally {
    await log.close();
    await deadLetters.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The same lines, already built, POSTed in the same batch size, two requests in flight (as the forwarder). */
async function trivialWriterRound(influx: InfluxServer, lines: string[]): Promise<number> {
  await resetDatabase(influx);
  const url = `${influx.url}/api/v2/write?org=${influx.org}&bucket=${influx.bucket}&precision=ms`;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    [0, 1].map(async () => {
      for (let i = next; i < lines.length; i = next) {
        next += BATCH_LINES;
        const res = await fetch(url, { method: 'POST', body: lines.slice(i, i + BATCH_LINES).join('\n') });
        await res.text();
        if (res.status !== 204) throw new Error(`trivial writer got HTTP ${res.status}`);
      }
    }),
  );
  return lines.length / ((performance.now() - t0) / 1000);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1] as number;
}

export async function run(options: BenchOptions = { quick: false }): Promise<BenchReport> {
  const frames = options.quick ? 6_000 : 30_000;
  const rounds = options.quick ? 1 : 3;
  const rows: BenchRow[] = [];
  const notes: string[] = [];

  // CPU side alone: decode + lines for stored entries, one core.
  const entries: StoredEntry[] = Array.from({ length: 256 }, (_, i) => ({
    offset: i + 1,
    deviceId: `dev-${i % DEVICES}`,
    bootId: 1,
    seq: i + 1,
    receivedAtMs: 0,
    timeOffsetMs: 0,
    frame: frame(i + 1),
  }));
  const lookup = () => CHANNELS;
  // As the forwarder does it: each frame's lines written into a batch body that is reused once the
  // batch is full, series prefixes cached per (device, descriptor set).
  const cache = new SeriesPrefixCache();
  const body = new LineBuffer(BATCH_LINES * 96);
  const directBody = (n: number): number => {
    let total = 0;
    for (let k = 0; k < n; k++) {
      if (body.lines >= BATCH_LINES) body.reset();
      const result = body.appendFrame(entries[k % entries.length] as StoredEntry, lookup, cache);
      if (result.ok) total += result.readings;
    }
    return total;
  };
  const pointBody = (n: number): number => {
    let total = 0;
    for (let k = 0; k < n; k++) {
      const e = entries[k % entries.length] as StoredEntry;
      const { readings } = telemetryToReadings(e.deviceId, decodeFrame(e.frame) as Telemetry, CHANNELS, 0);
      for (const r of readings) {
        const p = new Point('telemetry').tag('device', r.deviceId).tag('channel', r.channel).tag('unit', r.unit);
        if (typeof r.value === 'boolean') p.booleanField('state', r.value);
        else p.floatField('value', r.value);
        total += (p.timestamp(r.timeMs).toLineProtocol({ convertTime: (t) => String(t) }) ?? '').length;
      }
    }
    return total;
  };
  // Alternating short measurements, so a load spike on the shared machine hits both sides alike.
  const directRates: number[] = [];
  const pointRates: number[] = [];
  for (let r = 0; r < (options.quick ? 3 : 7); r++) {
    directRates.push(measureRate(directBody, { quick: true }).median);
    pointRates.push(measureRate(pointBody, { quick: true }).median);
  }
  const direct = { median: median(directRates) };
  const viaPoint = { median: median(pointRates) };
  const pointBaseline = { label: 'same via Point', value: viaPoint.median * READINGS_PER_FRAME };
  rows.push({
    metric: 'decode + line building',
    value: direct.median * READINGS_PER_FRAME,
    unit: 'readings/s',
    baseline: pointBaseline,
    note: 'one core, no I/O',
  });

  rows.push(await measureLogReads(options.quick, frame));

  const influx = await startInflux();
  try {
    const forwarded: number[] = [];
    const trivial: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const { rate, lines } = await forwardRound(influx, frames);
      forwarded.push(rate);
      trivial.push(await trivialWriterRound(influx, lines));
    }
    rows.push({
      metric: 'forwarded into InfluxDB',
      value: median(forwarded),
      unit: 'readings/s',
      baseline: { label: 'trivial writer, same lines', value: median(trivial) },
      note: `bar ≥ ${BAR / 1000} k readings/s end to end`,
    });
    notes.push(
      `${frames} frames × ${READINGS_PER_FRAME} readings (8 channels × ${SAMPLES} samples, ${DEVICES} devices) pre-filled in a fresh lmdb local log per round; batches of ${BATCH_LINES} lines; median of ${rounds} round(s)`,
      'target: Debian influxd 1.6 behind the harness nginx (/api/v2/write), co-located; every round checks COUNT(value) in InfluxDB and zero dead letters',
      'trivial writer: the same lines pre-built, POSTed with fetch, two requests in flight (as the forwarder by default), into a fresh database; its rate is what the engine takes here',
      `load average at the end: ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} (the machine is shared: compare the ratio, not the absolute figures)`,
    );
  } finally {
    await influx.stop();
  }
  return { title: 'InfluxDB forwarder: local log → InfluxDB', rows, notes };
}

/**
 * Reading the log back, as the forwarder does (ranges of 256 records): the log's value encoding
 * (`pooledBinary`, a pooled copy per record) against lmdb's `binary` encoding (an ArrayBuffer per
 * record), the same records in one lmdb environment, one core, alternating rounds.
 */
async function measureLogReads(quick: boolean, frameOf: (seq: number) => Uint8Array): Promise<BenchRow> {
  const dir = mkdtempSync(join(tmpdir(), 'esp32hub-bench-logread-'));
  const root = openLmdb({ path: dir, maxDbs: 2, noMemInit: true, eventTurnBatching: false, mapSize: 2 ** 30 });
  try {
    const binary = root.openDB<Buffer, number>('binary', { encoding: 'binary' });
    const pooled = root.openDB<Buffer, number>('pooled', { encoder: pooledBinary } as DatabaseOptions);
    const records = 20_000;
    root.transactionSync(() => {
      for (let i = 1; i <= records; i++) {
        const record = encodeRecord({
          deviceId: `dev-${i % DEVICES}`,
          bootId: 1,
          seq: i,
          receivedAtMs: T0,
          timeOffsetMs: 0,
          minTimeMs: T0,
          maxTimeMs: T0,
          frame: frameOf(i),
        });
        binary.putSync(i, record);
        pooled.putSync(i, record);
      }
    });
    const reader = (db: typeof binary) => (n: number) => {
      let bytes = 0;
      for (let read = 0; read < n; ) {
        const start = 1 + (read % records);
        for (const { value } of db.getRange({ start, limit: 256 })) {
          bytes += value.length;
          read++;
        }
      }
      return bytes;
    };
    const pooledRates: number[] = [];
    const binaryRates: number[] = [];
    for (let r = 0; r < (quick ? 3 : 7); r++) {
      pooledRates.push(measureRate(reader(pooled), { quick: true }).median);
      binaryRates.push(measureRate(reader(binary), { quick: true }).median);
    }
    return {
      metric: 'log records read back (ranges of 256)',
      value: median(pooledRates),
      unit: 'records/s',
      baseline: { label: "lmdb's binary encoding", value: median(binaryRates) },
      note: 'one core; the forwarder reads every frame once (server/storage/local-log-record.ts, pooledBinary)',
    };
  } finally {
    await root.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
