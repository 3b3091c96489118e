/**
 * Downsampled history for the device page (`?buckets=`) and CSV export (`?format=csv`), over real
 * HTTP: through a source that only pages (`query`), and on InfluxDB (the real 1.x engine behind
 * nginx, see docs/testing.md) with the InfluxQL `GROUP BY time()` statements, which must give the
 * same buckets as the embedded store's one-pass downsampler on the same readings.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { configFrom } from '../../server/config/index.ts';
import { type DownsampledResponse, type HistoryPoint, registerHistoryRoutes } from '../../server/http/history.ts';
import { createRouter } from '../../server/http/router.ts';
import { buildHub } from '../../server/hub.ts';
import { createLogger } from '../../server/log/index.ts';
import { Downsampler } from '../../server/storage/downsample.ts';
import { influxDownsample } from '../../server/storage/influx/downsample.ts';
import { createInfluxHistory } from '../../server/storage/influx/history.ts';
import { readingToLine } from '../../server/storage/influx/line-protocol.ts';
import type { Reading } from '../../server/storage/types.ts';
import { type InfluxServer, startInflux } from '../harness/index.ts';
import { type Reply, request, type Served, serve } from '../unit/http-helpers.ts';

const ADMIN = 'admin-token-for-tests-0123456789abcdef';
const T0 = Date.UTC(2024, 4, 1, 0, 0, 0);
const HOUR = 3_600_000;

/** dev-1: `temp` every second for 2 h with a 10-minute hole at 00:30; `door` (bool) every 10 s. */
function readings(): Reading[] {
  const out: Reading[] = [];
  for (let t = T0; t < T0 + 2 * HOUR; t += 1000) {
    const inHole = t >= T0 + 30 * 60_000 && t < T0 + 40 * 60_000;
    if (!inHole)
      out.push({ deviceId: 'dev-1', channel: 'temp', unit: '°C', timeMs: t, value: 20 + Math.sin(t / 60_000) });
    if ((t - T0) % 10_000 === 0) {
      out.push({ deviceId: 'dev-1', channel: 'door', unit: '', timeMs: t, value: (t - T0) % 600_000 < 300_000 });
    }
  }
  return out.sort((a, b) => a.timeMs - b.timeMs || (a.channel < b.channel ? -1 : 1));
}
const STORED = readings();

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

function get(path: string): Promise<Reply> {
  return request(served!.port, 'GET', path, { headers: { authorization: `Bearer ${ADMIN}` } });
}

describe('history route: buckets and CSV through a paging source', () => {
  const pagingSource = {
    pages: 0,
    query(q: { deviceId: string; channel?: string | undefined; fromMs: number; toMs: number; limit: number }) {
      this.pages++;
      return STORED.filter(
        (r) => (q.channel === undefined || r.channel === q.channel) && r.timeMs >= q.fromMs && r.timeMs <= q.toMs,
      ).slice(0, q.limit) as HistoryPoint[];
    },
  };

  async function start(): Promise<void> {
    const router = createRouter();
    pagingSource.pages = 0;
    registerHistoryRoutes(router, { source: pagingSource, adminToken: ADMIN, now: () => T0 + 2 * HOUR });
    served = await serve(router);
  }

  it('answers min/mean/max per bucket with empty buckets left out (a gap stays a gap)', async () => {
    await start();
    const res = await get(`/api/devices/dev-1/history?channel=temp&from=${T0}&to=${T0 + HOUR - 1}&buckets=60`);
    expect(res.status).toBe(200);
    const body = res.json as DownsampledResponse;
    expect(body.bucketMs).toBe(60_000);
    const temp = body.series[0]!;
    expect(body.series.map((s) => s.channel)).toEqual(['temp']);
    // 60 minutes minus the 10 of the hole, 60 readings each: every reading counted once across pages.
    expect(temp.t).toHaveLength(50);
    expect(temp.count.every((c) => c === 60)).toBe(true);
    expect(temp.t).not.toContain(T0 + 35 * 60_000);
    expect(temp.t).toContain(T0 + 29 * 60_000);
    expect(temp.t).toContain(T0 + 40 * 60_000);
    expect(temp.intervalMs).toBe(1000);
    for (let i = 0; i < temp.t.length; i++) {
      expect(temp.min[i]!).toBeLessThanOrEqual(temp.mean[i]!);
      expect(temp.mean[i]!).toBeLessThanOrEqual(temp.max[i]!);
    }
    // 3,000 readings through 10,000-reading pages: one page.
    expect(pagingSource.pages).toBe(1);
  });

  it('pages through a source without scan, counting readings at a page boundary once', async () => {
    // 4 channels every second for 3,000 s: 12,000 readings, a page boundary between two instants.
    const big: HistoryPoint[] = [];
    for (let t = T0; t < T0 + 3_000_000; t += 1000) {
      for (const channel of ['a', 'b', 'c', 'd']) big.push({ channel, unit: '', timeMs: t, value: 1 });
    }
    let pages = 0;
    const router = createRouter();
    registerHistoryRoutes(router, {
      adminToken: ADMIN,
      now: () => T0 + HOUR,
      source: {
        query(q) {
          pages++;
          return big.filter((r) => r.timeMs >= q.fromMs && r.timeMs <= q.toMs).slice(0, q.limit);
        },
      },
    });
    served = await serve(router);
    const res = await get(`/api/devices/dev-1/history?from=${T0}&to=${T0 + HOUR - 1}&buckets=50`);
    const body = res.json as DownsampledResponse;
    expect(body.series.map((s) => s.count.reduce((a, b) => a + b, 0))).toEqual([3000, 3000, 3000, 3000]);
    expect(pages).toBe(2);
  });

  it('bool channels come back as bool series (fraction of true as the mean)', async () => {
    await start();
    const res = await get(`/api/devices/dev-1/history?from=${T0}&to=${T0 + 2 * HOUR - 1}&buckets=120`);
    const body = res.json as DownsampledResponse;
    const total = body.series.reduce((n, s) => n + s.count.reduce((a, b) => a + b, 0), 0);
    expect(total).toBe(STORED.length);
    const door = body.series.find((s) => s.channel === 'door')!;
    expect(door.bool).toBe(true);
    expect(door.mean[0]).toBe(1); // open the first 5 minutes of each 10
    expect(door.mean[5]).toBe(0);
  });

  it('exports the range as CSV, raw or bucketed, as a download', async () => {
    await start();
    const raw = await get(`/api/devices/dev-1/history?channel=temp&from=${T0}&to=${T0 + 2999}&format=csv`);
    expect(raw.status).toBe(200);
    expect(raw.headers['content-type']).toMatch(/^text\/csv/);
    expect(raw.headers['content-disposition']).toMatch(/^attachment; filename="dev-1-temp-2024-05-01T00-00-00-000Z/);
    const lines = raw.text.trim().split('\n');
    expect(lines[0]).toBe('time,time_ms,channel,unit,value');
    expect(lines).toHaveLength(4);
    expect(lines[1]).toBe(`2024-05-01T00:00:00.000Z,${T0},temp,°C,${STORED[1]!.value}`);
    const bucketed = await get(
      `/api/devices/dev-1/history?channel=temp&from=${T0}&to=${T0 + HOUR - 1}&buckets=4&format=csv`,
    );
    const rows = bucketed.text.trim().split('\n');
    expect(rows[0]).toBe('time,time_ms,channel,unit,min,mean,max,count');
    expect(rows).toHaveLength(5);
    expect(rows[1]).toMatch(/^2024-05-01T00:00:00.000Z,\d+,temp,°C,[-\d.]+,[-\d.]+,[-\d.]+,900$/);
  });

  it.each([
    ['buckets=0', /buckets must be an integer in 1\.\.8000/],
    ['buckets=8001', /buckets/],
    ['buckets=wide', /buckets/],
    ['format=xml', /format/],
  ])('answers 400 for %s', async (query, message) => {
    await start();
    const res = await get(`/api/devices/dev-1/history?${query}`);
    expect(res.status).toBe(400);
    expect((res.json as { error: { message: string } }).error.message).toMatch(message);
  });
});

describe('downsampling on InfluxDB (InfluxQL GROUP BY time())', () => {
  let influx: InfluxServer;

  beforeAll(async () => {
    influx = await startInflux({ bucket: 'downsample' });
    const lines = STORED.map(readingToLine);
    for (let i = 0; i < lines.length; i += 5000) {
      const res = await fetch(`${influx.engineUrl}/write?db=${influx.bucket}&precision=ms`, {
        method: 'POST',
        body: lines.slice(i, i + 5000).join('\n'),
      });
      expect(res.status).toBe(204);
    }
  }, 120_000);

  afterAll(async () => {
    await influx?.stop();
  });

  it('through the hub: with InfluxDB configured, ?buckets= is answered by InfluxDB', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dashboard-history-hub-'));
    const config = configFrom({
      HUB_HOST: '127.0.0.1',
      HUB_PORT: '0',
      HUB_DATA_DIR: dir,
      HUB_ADMIN_TOKEN: ADMIN,
      INFLUX_URL: influx.url,
      INFLUX_TOKEN: influx.token,
      INFLUX_ORG: influx.org,
      INFLUX_BUCKET: influx.bucket,
      INFLUX_STATS_INTERVAL_MS: '0',
    });
    const hub = buildHub(config, { logger: createLogger('silent'), authenticate: () => null });
    try {
      const { port } = await hub.start();
      const res = await request(port, 'GET', `/api/devices/dev-1/history?from=${T0}&to=${T0 + HOUR - 1}&buckets=60`, {
        headers: { authorization: `Bearer ${ADMIN}` },
      });
      expect(res.status).toBe(200);
      const body = res.json as DownsampledResponse;
      const temp = body.series.find((s) => s.channel === 'temp')!;
      // Only InfluxDB holds these readings (the hub's own store is empty): 50 minutes outside the hole.
      expect(temp.t).toHaveLength(50);
      expect(temp.count.every((c) => c === 60)).toBe(true);
      expect(body.series.find((s) => s.channel === 'door')?.bool).toBe(true);
    } finally {
      await hub.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([
    ['minute buckets over 2 h', T0, T0 + 2 * HOUR - 1, 120],
    ['buckets not aligned on the epoch', T0 + 12_345, T0 + HOUR + 54_321, 97],
  ])('gives the same buckets as the embedded downsampler: %s', async (_name, fromMs, toMs, buckets) => {
    const history = createInfluxHistory({
      url: influx.url,
      token: influx.token,
      org: influx.org,
      bucket: influx.bucket,
      timeoutMs: 30_000,
    } as Parameters<typeof createInfluxHistory>[0]);
    const got = await influxDownsample(history, { deviceId: 'dev-1', fromMs, toMs, buckets });
    const local = new Downsampler(fromMs, toMs, buckets);
    for (const r of STORED) local.add(r.channel, r.unit, r.timeMs, r.value);
    const want = local.finish();
    expect(got.bucketMs).toBe(want.bucketMs);
    expect(got.series.map((s) => [s.channel, s.unit, s.bool])).toEqual(
      want.series.map((s) => [s.channel, s.unit, s.bool]),
    );
    for (let k = 0; k < want.series.length; k++) {
      const g = got.series[k]!;
      const w = want.series[k]!;
      expect(g.t).toEqual(w.t);
      expect(g.count).toEqual(w.count);
      expect(g.min).toEqual(w.min);
      expect(g.max).toEqual(w.max);
      for (let i = 0; i < w.mean.length; i++) expect(g.mean[i]).toBeCloseTo(w.mean[i]!, 9);
    }
    // The hole is a hole in both.
    const temp = got.series.find((s) => s.channel === 'temp')!;
    expect(temp.t.some((t) => t >= T0 + 31 * 60_000 && t < T0 + 39 * 60_000)).toBe(false);
  });
});
