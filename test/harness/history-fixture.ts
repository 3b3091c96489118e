/**
 * History written straight into a hub's embedded store (the local log in `dataDir`), as the ingest
 * would have stored it: a device sampling every second for `seconds` seconds up to `endMs`, three
 * channels (a float `temperature` in °C, a fixed-point `power` in W, a bool `relay` on for the first
 * half of every hour), one frame per minute of samples, and an optional hole with no data. Fast: a
 * day is 1,440 frames. Used by the device-page tests and bench/browser.bench.ts.
 */
import { descriptorHash, encodeFrame, type Telemetry, ValueType } from '../../server/codec/index.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics } from '../../server/metrics/index.ts';
import { openLocalLog } from '../../server/storage/local-log.ts';

export const HISTORY_CHANNELS = [
  { index: 0, key: 'temperature', unit: '°C', valueType: ValueType.F32, scaleExp: 0, periodMs: 1000 },
  { index: 1, key: 'power', unit: 'W', valueType: ValueType.I32, scaleExp: -1, periodMs: 1000 },
  { index: 2, key: 'relay', unit: '', valueType: ValueType.BOOL, scaleExp: 0, periodMs: 1000 },
];
/** Samples per frame. */
const PER_FRAME = 60;

export interface HistoryFixture {
  dataDir: string;
  deviceId: string;
  /** Time of the last sample (Unix ms, whole seconds). */
  endMs: number;
  seconds: number;
  /** [from, to) without data. */
  hole?: [number, number];
}

/** Writes the readings; resolves with the number of samples per channel stored. */
export async function writeHistory(f: HistoryFixture): Promise<number> {
  const hash = descriptorHash(HISTORY_CHANNELS);
  const log = openLocalLog({
    dataDir: f.dataDir,
    maxBytes: 1024 * 1024 * 1024,
    retentionHours: 24 * 30,
    fullPolicy: 'backpressure',
    forwarding: false,
    metrics: createMetrics(),
    logger: createLogger('silent'),
  });
  log.putDescriptors(f.deviceId, hash, HISTORY_CHANNELS);
  log.putDevice(f.deviceId, {
    firstSeenMs: f.endMs - f.seconds * 1000,
    lastAck: null,
    maxSpanMs: (PER_FRAME - 1) * 1000,
    descriptorHash: hash,
  });
  const [holeFrom, holeTo] = f.hole ?? [0, 0];
  const start = f.endMs - (f.seconds - 1) * 1000;
  const appends: Promise<void>[] = [];
  let seq = 0;
  let stored = 0;
  for (let base = start; base <= f.endMs; base += PER_FRAME * 1000) {
    const times: number[] = [];
    for (let i = 0; i < PER_FRAME; i++) {
      const t = base + i * 1000;
      if (t <= f.endMs && !(t >= holeFrom && t < holeTo)) times.push(t);
    }
    const first = times[0];
    const last = times[times.length - 1];
    if (first === undefined || last === undefined) continue;
    const deltas = times.map((t) => t - first);
    const telemetry: Telemetry = {
      type: 'telemetry',
      unsynced: false,
      bootId: 1,
      seq: ++seq,
      descriptorHash: hash,
      baseTime: first,
      blocks: [
        {
          channel: 0,
          valueType: ValueType.F32,
          deltasMs: deltas,
          values: times.map((t) => 20 + 5 * Math.sin(t / 3_600_000)),
        },
        {
          channel: 1,
          valueType: ValueType.I32,
          deltasMs: deltas,
          values: times.map((t) => 120_000 + ((t / 1000) % 600) * 100),
        },
        {
          channel: 2,
          valueType: ValueType.BOOL,
          deltasMs: deltas,
          values: times.map((t) => t % 3_600_000 < 1_800_000),
        },
      ],
    };
    stored += times.length;
    const frame = encodeFrame(telemetry);
    const entry = {
      deviceId: f.deviceId,
      bootId: 1,
      seq,
      receivedAtMs: last + 50,
      timeOffsetMs: 0,
      frame,
      minTimeMs: first,
      maxTimeMs: last,
    };
    appends.push(new Promise((resolve, reject) => log.append(entry, (err) => (err ? reject(err) : resolve()))));
  }
  await Promise.all(appends);
  await log.close();
  return stored;
}
