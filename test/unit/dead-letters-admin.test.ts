/**
 * Operating dead letters: the admin API routes (real router over loopback HTTP, real lmdb store,
 * replay through the real influxdb-client to a scripted write endpoint), the `deadLetters` check of
 * `/readyz`, and the `dead-letters` CLI run in-process on the same kind of store.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { registerDeadLetterRoutes } from '../../server/http/dead-letters.ts';
import { deadLetterCheck } from '../../server/http/health.ts';
import { createRouter } from '../../server/http/router.ts';
import { createMetrics, type Metrics } from '../../server/metrics/index.ts';
import { type OpenDeadLetterStore, openDeadLetterStore } from '../../server/storage/dead-letter.ts';
import { runDeadLettersCli } from '../../server/storage/dead-letters-cli.ts';
import { createDeadLetterReplayer } from '../../server/storage/influx/replay.ts';
import { FakeInflux, influxConfig } from './forwarder-fakes.ts';
import { capturingLogger, type Reply, request, type Served, serve } from './http-helpers.ts';

const ADMIN = 'admin-token-for-tests-0123456789abcdef';
const CONFLICT = 'partial write: field type conflict: input field "value" is type float, already exists as type string';

let dir: string;
let metrics: Metrics;
let store: OpenDeadLetterStore;
let influx: FakeInflux;
let influxUrl: string;
let served: Served | null = null;
let log: ReturnType<typeof capturingLogger>;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dead-letters-admin-'));
  metrics = createMetrics();
  log = capturingLogger();
  store = openDeadLetterStore({ dataDir: dir, metrics, logger: log.logger });
  influx = new FakeInflux();
  influxUrl = await influx.listen();
});

afterEach(async () => {
  await served?.close();
  served = null;
  await store.close();
  await influx.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Three records: two conflicts (400) and one parse error (400), lines `m,k=<tag> v=<n> <ts>`. */
async function seed(): Promise<void> {
  await store.put(['m,k=a v=1 1', 'm,k=a v=2 2', 'm,k=a v=3 3'], CONFLICT, 400);
  await store.put(['m,k=b v=4 4'], 'unable to parse', 400);
  await store.put(['m,k=c v=5 5', 'm,k=c v=6 6'], CONFLICT, 422);
}

async function startApi(adminToken: string | null = ADMIN): Promise<void> {
  const router = createRouter({ logger: log.logger });
  const replayer = createDeadLetterReplayer({
    config: influxConfig(influxUrl),
    store,
    metrics,
    logger: log.logger,
  });
  registerDeadLetterRoutes(router, {
    admin: { store, replay: (req) => replayer.replay(req) },
    adminToken,
    logger: log.logger,
  });
  served = await serve(router);
}

function call(method: string, path: string, body?: unknown, token: string | null = ADMIN): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  return request((served as Served).port, method, path, {
    headers,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

type Page = {
  totals: { lines: number; records: number };
  records: { id: number; lines: string[] }[];
  next: number | null;
};

describe('admin API /api/admin/dead-letters', () => {
  it('is behind the admin token: 404 when none is configured, 401 with a wrong one', async () => {
    await startApi(null);
    expect((await call('GET', '/api/admin/dead-letters')).status).toBe(404);
    await served?.close();
    await startApi();
    const wrong = await call('GET', '/api/admin/dead-letters', undefined, 'nope');
    expect(wrong.status).toBe(401);
    expect((await call('DELETE', '/api/admin/dead-letters?all=true', undefined, null)).status).toBe(401);
  });

  it('lists with paging and filters, shows one record, and refuses bad parameters', async () => {
    await seed();
    await startApi();
    const first = await call('GET', '/api/admin/dead-letters?limit=2&lines=1');
    expect(first.status).toBe(200);
    expect(first.headers['cache-control']).toBe('no-store');
    const page = first.json as Page;
    expect(page.totals).toMatchObject({ records: 3, lines: 6 });
    expect(page.records.map((r) => [r.id, r.lines])).toEqual([
      [1, ['m,k=a v=1 1']],
      [2, ['m,k=b v=4 4']],
    ]);
    expect(page.next).toBe(2);
    const second = (await call('GET', '/api/admin/dead-letters?after=2')).json as Page;
    expect(second.records.map((r) => r.id)).toEqual([3]);
    expect(second.next).toBeNull();
    const conflicts = (await call('GET', '/api/admin/dead-letters?reason=TYPE%20CONFLICT&status=422')).json as Page;
    expect(conflicts.records.map((r) => r.id)).toEqual([3]);

    const one = await call('GET', '/api/admin/dead-letters/1');
    expect(one.json).toMatchObject({
      id: 1,
      status: 400,
      lineCount: 3,
      replays: 0,
      lines: ['m,k=a v=1 1', 'm,k=a v=2 2', 'm,k=a v=3 3'],
    });
    expect((await call('GET', '/api/admin/dead-letters/99')).status).toBe(404);
    expect((await call('GET', '/api/admin/dead-letters/abc')).status).toBe(400);
    expect((await call('GET', '/api/admin/dead-letters?limit=0')).status).toBe(400);
    expect((await call('GET', '/api/admin/dead-letters?status=x')).status).toBe(400);
  });

  it('drops by filter or id, never everything by accident, and audit-logs it', async () => {
    await seed();
    await startApi();
    const refused = await call('DELETE', '/api/admin/dead-letters');
    expect(refused.status).toBe(400);
    expect((await call('DELETE', '/api/admin/dead-letters?all=true&reason=parse')).status).toBe(400);
    expect(store.totals().lines).toBe(6);

    expect((await call('DELETE', '/api/admin/dead-letters?reason=parse')).json).toEqual({
      dropped: { records: 1, lines: 1 },
    });
    expect((await call('DELETE', '/api/admin/dead-letters/3')).json).toEqual({ dropped: { records: 1, lines: 2 } });
    expect((await call('DELETE', '/api/admin/dead-letters/3')).status).toBe(404);
    expect(store.query({ limit: 10 }).records.map((r) => r.id)).toEqual([1]);
    expect((await call('DELETE', '/api/admin/dead-letters?all=true')).json).toEqual({
      dropped: { records: 1, lines: 3 },
    });
    expect(store.totals()).toMatchObject({ records: 0, lines: 0, bytes: 0 });
    const audits = log.lines.filter((l) => l.msg === 'admin API changed dead letters');
    expect(audits.map((a) => a.action)).toEqual(['drop', 'drop', 'drop']);
    expect(log.raw.join('\n')).not.toContain(ADMIN);
  });

  it('replays: accepted lines leave, lines rejected again stay with the new reason', async () => {
    await seed();
    await startApi();
    // InfluxDB still rejects tag k=c (bisection finds those lines), accepts the rest.
    influx.reply = (req) =>
      req.lines.some((l) => l.includes('k=c'))
        ? { status: 422, body: '{"code":"unprocessable entity","message":"still conflicting"}' }
        : { status: 204 };
    const res = await call('POST', '/api/admin/dead-letters/replay', {});
    expect(res.status).toBe(200);
    expect(res.json).toEqual({
      records: 3,
      storedLines: 4,
      rejectedLines: 2,
      skippedRecords: 0,
      complete: true,
      stoppedBy: null,
    });
    expect([...influx.stored].sort()).toEqual(['m,k=a v=1 1', 'm,k=a v=2 2', 'm,k=a v=3 3', 'm,k=b v=4 4']);
    const left = store.query({ limit: 10 }).records;
    expect(left.map((r) => [r.lines, r.status, r.replays])).toEqual([[['m,k=c v=5 5', 'm,k=c v=6 6'], 422, 1]]);
    expect(left[0]?.reason).toContain('still conflicting');
    expect((await metrics.deadLetterReplayed.get()).values.map((v) => [v.labels.outcome, v.value])).toEqual([
      ['stored', 4],
      ['rejected', 2],
    ]);
    // Lines rejected again are not new dead letters: the forwarder's counter is untouched.
    expect((await metrics.deadLettered.get()).values[0]?.value ?? 0).toBe(0);
  });

  it('never sends stored frames that could not become lines (status 0): they are not line protocol', async () => {
    await store.put(['# frame device=d boot=1 seq=2 hex=4553'], 'UNKNOWN_DESCRIPTORS: no descriptor set', 0);
    await store.put(['m,k=a v=1 1'], CONFLICT, 400);
    await startApi();
    const res = await call('POST', '/api/admin/dead-letters/replay', {});
    expect(res.json).toMatchObject({ records: 1, storedLines: 1, skippedRecords: 1, complete: true });
    expect(influx.requests.flatMap((r) => r.lines)).toEqual(['m,k=a v=1 1']);
    expect(store.query({ limit: 10 }).records.map((r) => r.status)).toEqual([0]);
  });

  it('replays a filter only, to another bucket when asked', async () => {
    await seed();
    await startApi();
    const res = await call('POST', '/api/admin/dead-letters/replay', { reason: 'parse', bucket: 'fresh' });
    expect(res.json).toMatchObject({ records: 1, storedLines: 1, rejectedLines: 0 });
    expect(influx.requests.map((r) => r.query.get('bucket'))).toEqual(['fresh']);
    expect(store.totals().lines).toBe(5);
    expect((await call('POST', '/api/admin/dead-letters/replay', { nope: 1 })).status).toBe(400);
    expect((await call('POST', '/api/admin/dead-letters/replay', { ids: ['x'] })).status).toBe(400);
  });

  it('stops a replay at the first transient failure without waiting, leaving the records untouched', async () => {
    await seed();
    await startApi();
    influx.reply = () => ({ status: 503, body: 'overloaded' });
    const res = await call('POST', '/api/admin/dead-letters/replay', {});
    expect(res.json).toEqual({
      records: 0,
      storedLines: 0,
      rejectedLines: 0,
      skippedRecords: 0,
      complete: false,
      stoppedBy: { status: 503, reason: 'overloaded' },
    });
    expect(influx.requests).toHaveLength(1);
    expect(store.totals()).toMatchObject({ records: 3, lines: 6 });
  });
});

describe('the deadLetters check of /readyz', () => {
  const totals = { records: 1, lines: 10, bytes: 1000, maxBytes: 10_000 };
  const recent = { windowMs: 300_000, lines: 0, evictedLines: 0 };

  it('is ok with old dead letters only, warns on new ones or a nearly full store, and says when evicting', () => {
    expect(deadLetterCheck(totals, recent)).toEqual({
      state: 'ok',
      windowSeconds: 300,
      newLines: 0,
      perSecond: 0,
      evictedLines: 0,
      storedLines: 10,
      storedBytes: 1000,
      maxBytes: 10_000,
      usedRatio: 0.1,
    });
    expect(deadLetterCheck(totals, { ...recent, lines: 150 })).toMatchObject({ state: 'warning', perSecond: 0.5 });
    expect(deadLetterCheck({ ...totals, bytes: 8000 }, recent)).toMatchObject({ state: 'warning', usedRatio: 0.8 });
    expect(deadLetterCheck(totals, { ...recent, lines: 10, evictedLines: 3 })).toMatchObject({
      state: 'evicting',
      evictedLines: 3,
    });
  });
});

describe('npm run hub -- dead-letters', () => {
  async function cli(args: string[], env: Record<string, string> = {}) {
    let stdout = '';
    let stderr = '';
    const code = await runDeadLettersCli(args, {
      env: { HUB_DATA_DIR: dir, ...env },
      stdout: { write: (t: string) => (stdout += t) },
      stderr: { write: (t: string) => (stderr += t) },
    });
    return { code, stdout, stderr };
  }
  const influxEnv = () => ({
    INFLUX_URL: influxUrl,
    INFLUX_TOKEN: 'test-token-0123456789abcdef0123456789abcdef',
    INFLUX_ORG: 'org',
    INFLUX_BUCKET: 'telemetry',
  });

  it('says so, and creates nothing, when the data directory holds no dead-letter store', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'dead-letters-none-'));
    try {
      const r = await cli(['list', '--data-dir', empty]);
      expect(r).toMatchObject({ code: 0, stderr: '' });
      expect(r.stdout).toContain('No dead-letter store at');
      expect(readdirSync(empty)).toEqual([]);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('refuses unclear commands with exit code 2', async () => {
    for (const args of [
      [],
      ['nope'],
      ['drop'],
      ['drop', '--all', '--reason', 'x'],
      ['list', '--bucket', 'b'],
      ['list', '--limit', '0'],
      ['replay'],
    ]) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain('error:');
    }
    expect(store.totals().lines).toBe(0);
  });

  it('lists (text with a paging hint, or JSON) and drops, on the store a hub also has open', async () => {
    await seed();
    const text = await cli(['list', '--limit', '2', '--lines', '1']);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('6 dead-lettered line(s) in 3 record(s)');
    expect(text.stdout).toContain('#1  ');
    expect(text.stdout).toContain('  … 2 more');
    expect(text.stdout).toContain('More: add --after 2');
    const json = JSON.parse((await cli(['list', '--json', '--status', '422'])).stdout) as Page;
    expect(json.records.map((r) => r.id)).toEqual([3]);

    const dropped = await cli(['drop', '--id', '1', '--id', '3']);
    expect(dropped).toMatchObject({ code: 0, stdout: 'Dropped 5 line(s) in 2 record(s).\n' });
    // The other handle (the "hub") sees the change at once: totals live in the store, not in memory.
    expect(store.totals()).toMatchObject({ records: 1, lines: 1 });
  });

  it('replays with the INFLUX_* settings; exit 1 and nothing changed when InfluxDB is down', async () => {
    await seed();
    influx.reply = () => ({ status: 503, body: 'down for maintenance' });
    const down = await cli(['replay'], influxEnv());
    expect(down.code).toBe(1);
    expect(down.stdout).toContain('Stopped early: InfluxDB answered 503: down for maintenance');
    expect(store.totals().lines).toBe(6);

    influx.reply = () => ({ status: 204 });
    const up = await cli(['replay', '--json'], influxEnv());
    expect(up.code).toBe(0);
    expect(JSON.parse(up.stdout)).toMatchObject({ records: 3, storedLines: 6, rejectedLines: 0, bucket: 'telemetry' });
    expect(store.totals()).toMatchObject({ records: 0, lines: 0 });
    expect(influx.stored.size).toBe(6);
  });
});
