// Smoke test of the real InfluxDB used by integration tests: the real client writes through the
// nginx-served /api/v2/write into the real 1.x engine, and InfluxQL reads it back (docs/testing.md).
import {
  HttpError,
  InfluxDB,
  type Logger,
  Point,
  setLogger,
  type WritePrecisionType,
} from '@influxdata/influxdb-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InfluxServer, startInflux } from '../harness/index.ts';

describe('real InfluxDB behind the v2 write endpoint', () => {
  let influx: InfluxServer;
  let previousLogger: Logger;

  beforeAll(async () => {
    // Some writes here fail on purpose; keep the client's console logging out of the test output.
    previousLogger = setLogger({ error: () => {}, warn: () => {} });
    influx = await startInflux({ bucket: 'smoke' });
  });

  afterAll(async () => {
    setLogger(previousLogger);
    await influx?.stop();
  });

  function writeApi(precision: WritePrecisionType = 'ms') {
    const client = new InfluxDB({ url: influx.url, token: influx.token });
    // No client-side retries: these tests look at the engine's first answer.
    return client.getWriteApi(influx.org, influx.bucket, precision, { maxRetries: 0, flushInterval: 0 });
  }

  it('stores a Point written with WriteApi and returns it through InfluxQL', async () => {
    const api = writeApi('ms');
    api.writePoint(
      new Point('env')
        .tag('device', 'esp-01')
        .tag('channel', 'temp_c')
        .floatField('value', 21.5)
        .timestamp(1_700_000_000_123),
    );
    await api.flush();
    await api.close();

    const { rows, series } = await influx.influxQL(`SELECT "value", "device", "channel" FROM "env"`);
    expect(series.map((s) => s.name)).toEqual(['env']);
    expect(rows).toEqual([{ time: 1_700_000_000_123, value: 21.5, device: 'esp-01', channel: 'temp_c' }]);
  });

  it('maps the v2 precisions s and us to the same instant as ms', async () => {
    const seconds = writeApi('s');
    seconds.writePoint(new Point('precision').tag('unit', 's').intField('n', 1).timestamp(1_700_000_100));
    await seconds.close();
    const micros = writeApi('us');
    micros.writePoint(new Point('precision').tag('unit', 'us').intField('n', 2).timestamp(1_700_000_100_000_000));
    await micros.close();

    const { rows } = await influx.influxQL(`SELECT "n" FROM "precision" GROUP BY "unit"`);
    expect(rows).toEqual([
      { unit: 's', time: 1_700_000_100_000, n: 1 },
      { unit: 'us', time: 1_700_000_100_000, n: 2 },
    ]);
  });

  it('stores every line of a large (gzip-compressed) batch', async () => {
    const api = writeApi('ms');
    for (let i = 0; i < 500; i++) {
      api.writePoint(
        new Point('batch')
          .tag('device', `esp-${i % 5}`)
          .intField('seq', i)
          .timestamp(1_700_000_200_000 + i),
      );
    }
    await api.close();

    const { rows } = await influx.influxQL(`SELECT count("seq") AS "n", sum("seq") AS "total" FROM "batch"`);
    expect(rows).toEqual([{ time: 0, n: 500, total: (499 * 500) / 2 }]);
  });

  it('answers a field-type conflict with a real HTTP 400 and keeps the batch’s valid lines', async () => {
    const first = writeApi('ms');
    first.writePoint(
      new Point('conflict').tag('device', 'esp-02').floatField('value', 1.5).timestamp(1_700_000_300_000),
    );
    await first.close();

    const second = writeApi('ms');
    second.writePoint(
      new Point('conflict').tag('device', 'esp-02').stringField('value', 'oops').timestamp(1_700_000_300_001),
    );
    second.writePoint(
      new Point('conflict').tag('device', 'esp-02').floatField('value', 2.5).timestamp(1_700_000_300_002),
    );
    const error = await second.flush().then(
      () => undefined,
      (err: unknown) => err,
    );
    await second.close().catch(() => {});

    expect(error).toBeInstanceOf(HttpError);
    expect((error as HttpError).statusCode).toBe(400);
    expect((error as HttpError).body).toMatch(/field type conflict/);
    // InfluxDB 1.x reports a "partial write": the conflicting line is dropped, the others are stored.
    const { rows } = await influx.influxQL(`SELECT "value" FROM "conflict"`);
    expect(rows).toEqual([
      { time: 1_700_000_300_000, value: 1.5 },
      { time: 1_700_000_300_002, value: 2.5 },
    ]);
  });

  it('survives an engine outage: 502 from the proxy meanwhile, data intact after restart', async () => {
    const before = writeApi('ms');
    before.writePoint(new Point('outage').intField('n', 1).timestamp(1_700_000_400_000));
    await before.close();

    await influx.stopEngine();
    const health = await fetch(`${influx.url}/health`);
    expect(health.status).toBe(503);
    const during = writeApi('ms');
    during.writePoint(new Point('outage').intField('n', 2).timestamp(1_700_000_400_001));
    const error = await during.flush().then(
      () => undefined,
      (err: unknown) => err,
    );
    await during.close().catch(() => {});
    expect((error as HttpError).statusCode).toBe(502);

    await influx.startEngine();
    expect(await (await fetch(`${influx.url}/health`)).json()).toMatchObject({ status: 'pass' });
    const after = writeApi('ms');
    after.writePoint(new Point('outage').intField('n', 3).timestamp(1_700_000_400_002));
    await after.close();

    const { rows } = await influx.influxQL(`SELECT "n" FROM "outage"`);
    expect(rows).toEqual([
      { time: 1_700_000_400_000, n: 1 },
      { time: 1_700_000_400_002, n: 3 },
    ]);
  });

  it('answers a body above maxBodyBytes with a real 413, gzip-compressed or not, and stops cleanly', async () => {
    const small = await startInflux({ maxBodyBytes: 500 });
    try {
      const statusFor = async (gzipThreshold: number): Promise<number | undefined> => {
        const client = new InfluxDB({ url: small.url, token: small.token });
        const api = client.getWriteApi(small.org, small.bucket, 'ms', {
          maxRetries: 0,
          flushInterval: 0,
          gzipThreshold,
        });
        for (let i = 0; i < 200; i++)
          api.writePoint(new Point('big').intField('n', i).timestamp(1_700_000_500_000 + i));
        const error = await api.flush().then(
          () => undefined,
          (err: unknown) => err,
        );
        await api.close().catch(() => {});
        return (error as HttpError | undefined)?.statusCode;
      };
      expect(await statusFor(Number.MAX_SAFE_INTEGER)).toBe(413); // plain body: refused by the engine
      expect(await statusFor(1_000)).toBe(413); // gzip body (the client's default): refused by nginx
      expect((await small.influxQL('SELECT count("n") FROM "big"')).rows).toEqual([]);
    } finally {
      await small.stop();
    }
    await expect(fetch(`${small.url}/ping`)).rejects.toThrow();
    await expect(fetch(`${small.engineUrl}/ping`)).rejects.toThrow();
  });
});
