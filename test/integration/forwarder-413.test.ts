/**
 * 413 against the real engine: the harness InfluxDB started with a small `[http] max-body-size`, so
 * a full batch is refused with a real HTTP 413 and the forwarder must split it until the halves fit.
 * Source: the real lmdb local log.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { descriptorHash, encodeFrame, ValueType } from '../../server/codec/index.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics } from '../../server/metrics/index.ts';
import { openDeadLetterStore } from '../../server/storage/dead-letter.ts';
import { createInfluxForwarder } from '../../server/storage/influx/forwarder.ts';
import { openLocalLog } from '../../server/storage/local-log.ts';
import { type InfluxServer, startInflux } from '../harness/index.ts';

const MAX_BODY_BYTES = 16 * 1024;
const CHANNELS = Array.from({ length: 8 }, (_, i) => ({
  index: i,
  key: `ch${i}`,
  unit: 'V',
  valueType: ValueType.U16,
  scaleExp: -3,
  periodMs: 1000,
}));
const HASH = descriptorHash(CHANNELS);
const T0 = Date.UTC(2024, 0, 18, 12);

let influx: InfluxServer;

beforeAll(async () => {
  influx = await startInflux({ maxBodyBytes: MAX_BODY_BYTES });
}, 120_000);

afterAll(async () => {
  await influx?.stop();
});

describe('forwarder → InfluxDB with a small max-body-size', () => {
  it('splits a batch the engine refuses with 413 until every part fits; stores every reading once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'forwarder-413-'));
    const metrics = createMetrics();
    const logger = createLogger('silent');
    const log = openLocalLog({
      dataDir: dir,
      maxBytes: 64 * 1024 * 1024,
      retentionHours: 24,
      fullPolicy: 'backpressure',
      forwarding: true,
      metrics,
      logger,
    });
    const deadLetters = openDeadLetterStore({ dataDir: dir, metrics });
    const frames = 100;
    const samples = 4;
    try {
      log.putDescriptors('esp-1', HASH, CHANNELS);
      for (let seq = 1; seq <= frames; seq++) {
        const frame = encodeFrame({
          type: 'telemetry',
          unsynced: false,
          bootId: 3,
          seq,
          descriptorHash: HASH,
          baseTime: T0 + seq * 10_000,
          blocks: CHANNELS.map((c) => ({
            channel: c.index,
            valueType: c.valueType,
            deltasMs: Array.from({ length: samples }, (_, i) => i * 1000),
            values: Array.from({ length: samples }, (_, i) => 3000 + seq + i),
          })),
        });
        await new Promise<void>((resolve, reject) =>
          log.append(
            {
              deviceId: 'esp-1',
              bootId: 3,
              seq,
              receivedAtMs: Date.now(),
              timeOffsetMs: 0,
              frame,
              minTimeMs: T0,
              maxTimeMs: T0 + 2_000_000,
            },
            (err) => (err ? reject(err) : resolve()),
          ),
        );
      }
      const forwarder = createInfluxForwarder({
        config: {
          url: influx.url,
          token: influx.token,
          org: influx.org,
          bucket: influx.bucket,
          batchLines: 5000,
          flushIntervalMs: 50,
          timeoutMs: 10_000,
          maxRetryDelayMs: 500,
          statsIntervalMs: 0,
        },
        log,
        deadLetters,
        metrics,
        logger,
      });
      forwarder.start();
      const deadline = Date.now() + 60_000;
      while (log.forwardedOffset() < log.headOffset() && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      await forwarder.stop();
      expect(log.forwardedOffset()).toBe(log.headOffset());

      const readings = frames * CHANNELS.length * samples; // 3200 lines, ~200 KB: far over 16 KiB
      const { rows } = await influx.influxQL('SELECT COUNT("value") AS n, SUM("value") AS s FROM "telemetry"');
      expect(rows[0]?.n).toBe(readings);
      let sum = 0;
      for (let seq = 1; seq <= frames; seq++) for (let i = 0; i < samples; i++) sum += (3000 + seq + i) / 1000;
      expect(rows[0]?.s as number).toBeCloseTo(sum * CHANNELS.length, 6);

      const failures = Object.fromEntries(
        (await metrics.writeFailures.get()).values.map((v) => [v.labels.status, v.value]),
      );
      expect(failures['413']).toBeGreaterThan(0);
      expect(deadLetters.count()).toBe(0);
      expect((await metrics.forwardedLines.get()).values[0]?.value).toBe(readings);
    } finally {
      await log.close();
      await deadLetters.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
