/**
 * The history API over real HTTP on a loopback port, with an in-memory HistorySource that records
 * the queries it receives (the embedded store and InfluxDB sources are tested by their owners and
 * through buildHub).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { HubError } from '../../server/errors.ts';
import { anyOf, guardFrom, requireAdmin } from '../../server/http/auth.ts';
import {
  type HistoryPoint,
  type HistoryQuery,
  type HistoryResponse,
  type HistoryRoutesOptions,
  registerHistoryRoutes,
} from '../../server/http/history.ts';
import { createRouter } from '../../server/http/router.ts';
import { type Reply, request, type Served, serve } from '../unit/http-helpers.ts';

const ADMIN = 'admin-token-for-tests-0123456789abcdef';
const NOW = Date.UTC(2024, 4, 1, 12, 0, 0); // 2024-05-01T12:00:00Z
const MIN = 60_000;
type ErrorReply = { error: { code: string; message: string } };

/** Readings of dev-1: temp every minute for the hour before NOW, hum every 10 minutes. */
const STORED: (HistoryPoint & { deviceId: string })[] = [];
for (let t = NOW - 60 * MIN; t <= NOW; t += MIN) {
  STORED.push({ deviceId: 'dev-1', channel: 'temp', unit: '°C', timeMs: t, value: 20 + (t - NOW) / 3_600_000 });
  if ((t / MIN) % 10 === 0) STORED.push({ deviceId: 'dev-1', channel: 'hum', unit: '%', timeMs: t, value: 55 });
}

let served: Served | undefined;
let queries: HistoryQuery[];

function memorySource(): HistoryRoutesOptions['source'] {
  queries = [];
  return {
    async query(q) {
      queries.push(q);
      return STORED.filter(
        (r) =>
          r.deviceId === q.deviceId &&
          (q.channel === undefined || r.channel === q.channel) &&
          r.timeMs >= q.fromMs &&
          r.timeMs <= q.toMs,
      ).slice(0, q.limit);
    },
  };
}

async function start(options: Partial<HistoryRoutesOptions> = {}): Promise<void> {
  const router = createRouter();
  registerHistoryRoutes(router, { source: memorySource(), adminToken: ADMIN, now: () => NOW, ...options });
  served = await serve(router);
}

function get(path: string, token: string | null = ADMIN): Promise<Reply> {
  return request(served!.port, 'GET', path, token === null ? {} : { headers: { authorization: `Bearer ${token}` } });
}

afterEach(async () => {
  await served?.close();
  served = undefined;
});

describe('history API', () => {
  it('defaults to the last hour, 1000 readings, all channels', async () => {
    await start();
    const res = await get('/api/devices/dev-1/history');
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    // One more than the limit is asked for, to tell whether the answer is truncated.
    expect(queries).toEqual([{ deviceId: 'dev-1', fromMs: NOW - 60 * MIN, toMs: NOW, limit: 1001 }]);
    const body = res.json as HistoryResponse;
    expect(body).toMatchObject({
      deviceId: 'dev-1',
      channel: null,
      from: '2024-05-01T11:00:00.000Z',
      to: '2024-05-01T12:00:00.000Z',
      limit: 1000,
      truncated: false,
    });
    expect(body.readings).toHaveLength(61 + 7);
    // Exactly the four documented fields per reading (the source's deviceId is dropped).
    expect(body.readings[0]).toEqual({ channel: 'temp', unit: '°C', timeMs: NOW - 60 * MIN, value: 19 });
  });

  it('passes channel, ISO and Unix-ms bounds through exactly, both ends inclusive', async () => {
    await start();
    const res = await get(
      `/api/devices/dev-1/history?channel=hum&from=2024-05-01T13:20:00%2B02:00&to=${NOW - 20 * MIN}`,
    );
    expect(res.status).toBe(200);
    expect(queries[0]).toEqual({
      deviceId: 'dev-1',
      channel: 'hum',
      fromMs: NOW - 40 * MIN,
      toMs: NOW - 20 * MIN,
      limit: 1001,
    });
    const body = res.json as HistoryResponse;
    expect(body.channel).toBe('hum');
    expect(body.readings.map((r) => r.timeMs)).toEqual([NOW - 40 * MIN, NOW - 30 * MIN, NOW - 20 * MIN]);
  });

  it('accepts an unencoded "+" offset (which a query string turns into a space) and a date alone', async () => {
    await start();
    expect((await get('/api/devices/dev-1/history?from=2024-05-01T13:30:00+02:00')).status).toBe(200);
    expect(queries[0]?.fromMs).toBe(NOW - 30 * MIN);
    expect((await get('/api/devices/dev-1/history?from=2024-05-01&to=2024-05-01T12:00:00Z')).status).toBe(200);
    expect(queries[1]?.fromMs).toBe(Date.UTC(2024, 4, 1));
  });

  it('says when the answer is truncated and returns the earliest readings', async () => {
    await start();
    const res = await get('/api/devices/dev-1/history?channel=temp&limit=5');
    const body = res.json as HistoryResponse;
    expect(body.truncated).toBe(true);
    expect(body.readings.map((r) => r.timeMs)).toEqual([0, 1, 2, 3, 4].map((i) => NOW - (60 - i) * MIN));
    const exact = (await get('/api/devices/dev-1/history?channel=hum&limit=7')).json as HistoryResponse;
    expect([exact.readings.length, exact.truncated]).toEqual([7, false]);
  });

  it.each([
    ['from after to', `from=${NOW}&to=${NOW - 1}`, /from is after to/],
    ['a range over 31 days', `from=2024-03-01&to=2024-05-01`, /longer than 31 days/],
    ['limit 0', 'limit=0', /limit must be an integer in 1\.\.10000/],
    ['limit over the maximum', 'limit=10001', /limit/],
    ['a fractional limit', 'limit=1.5', /limit/],
    ['a word for a limit', 'limit=all', /limit/],
    ['a bad channel key', 'channel=Temp', /channel must be a channel key/],
    ['a date-time without a zone', 'from=2024-05-01T10:00:00', /needs Z or an offset/],
    ['an impossible date', 'from=2024-02-30', /not a valid date/],
    ['garbage time', 'to=yesterday', /to must be Unix milliseconds or ISO-8601/],
    ['an unknown parameter', 'chanel=temp', /unknown query parameter "chanel"/],
    ['a repeated parameter', 'channel=temp&channel=hum', /repeated/],
  ])('answers 400 naming the problem for %s', async (_name, query, message) => {
    await start();
    const res = await get(`/api/devices/dev-1/history?${query}`);
    expect(res.status).toBe(400);
    const { error } = res.json as ErrorReply;
    expect(error.code).toBe('BAD_REQUEST');
    expect(error.message).toMatch(message);
    expect(queries).toEqual([]);
  });

  it('answers 400 for a device id outside the alphabet, and 404 for an unknown device when told', async () => {
    await start({ deviceExists: (id) => id === 'dev-1' });
    expect((await get('/api/devices/bad%20id/history')).status).toBe(400);
    const res = await get('/api/devices/ghost/history');
    expect(res.status).toBe(404);
    expect((res.json as ErrorReply).error.code).toBe('NOT_FOUND');
    expect((await get('/api/devices/dev-1/history')).status).toBe(200);
  });

  it("answers with the source's coded errors", async () => {
    let fail: HubError = new HubError('INTERNAL', 'InfluxDB query failed: connection refused');
    await start({
      source: {
        query() {
          throw fail;
        },
      },
    });
    const down = await get('/api/devices/dev-1/history');
    expect(down.status).toBe(500);
    expect(down.json).toEqual({ error: { code: 'INTERNAL', message: 'InfluxDB query failed: connection refused' } });
    fail = new HubError('BAD_REQUEST', 'limit must be an integer in 1..100000');
    expect((await get('/api/devices/dev-1/history')).status).toBe(400);
  });

  it('accepts a synchronous source (the local log answers synchronously)', async () => {
    await start({ source: { query: (q) => STORED.filter((r) => r.channel === 'hum').slice(0, q.limit) } });
    const body = (await get('/api/devices/dev-1/history')).json as HistoryResponse;
    expect(body.readings).toHaveLength(7);
  });
});

describe('history API auth', () => {
  it('by default needs the admin token', async () => {
    await start();
    const missing = await get('/api/devices/dev-1/history', null);
    expect(missing.status).toBe(401);
    expect(missing.headers['www-authenticate']).toMatch(/^Bearer/);
    expect((await get('/api/devices/dev-1/history', 'wrong')).status).toBe(401);
    expect(queries).toEqual([]);
  });

  it('is unavailable (404 saying why) with neither a guard nor an admin token', async () => {
    await start({ adminToken: null });
    const res = await get('/api/devices/dev-1/history');
    expect(res.status).toBe(404);
    expect((res.json as ErrorReply).error.message).toMatch(/HUB_ADMIN_TOKEN/);
  });

  it('takes a dashboard credential through the guard hook, with the admin token as an alternative', async () => {
    const dashboard = guardFrom((req) =>
      req.headers.cookie === 'hub_session=ok'
        ? { ok: true }
        : { ok: false, code: 'UNAUTHORIZED', message: 'log in at /login' },
    );
    await start({ guard: anyOf(dashboard, requireAdmin(ADMIN)) });
    const port = served!.port;
    expect(
      (await request(port, 'GET', '/api/devices/dev-1/history', { headers: { cookie: 'hub_session=ok' } })).status,
    ).toBe(200);
    expect((await get('/api/devices/dev-1/history')).status).toBe(200);
    const refused = await request(port, 'GET', '/api/devices/dev-1/history', { headers: { cookie: 'hub_session=no' } });
    expect(refused.status).toBe(401);
    expect((refused.json as ErrorReply).error.message).toBe('log in at /login');
  });
});
