/**
 * The dead-letter store on the real lmdb: what it keeps, the byte cap (eviction counted in metrics
 * and logged at warn, rate-limited), paging and filters, drop, and settling a replay.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { open } from 'lmdb';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics, type Metrics } from '../../server/metrics/index.ts';
import { openDeadLetterStore, RECENT_WINDOW_MS, RECORD_OVERHEAD_BYTES } from '../../server/storage/dead-letter.ts';
import { createDeadLetterReporter, type PersistedSummary } from '../../server/storage/influx/batch-dead-letters.ts';

let dir: string;
let metrics: Metrics;
let logLines: Record<string, unknown>[];

const sink = () =>
  new Writable({
    write(chunk, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) logLines.push(JSON.parse(l));
      cb();
    },
  });

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'dead-letter-test-'));
  metrics = createMetrics();
  logLines = [];
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function value(metric: { get(): Promise<{ values: { value: number }[] }> | { values: { value: number }[] } }) {
  return (await metric.get()).values[0]?.value ?? 0;
}

/** Bytes a record of these lines and reason counts against the cap. */
function bytesOf(lines: string[], reason: string): number {
  return RECORD_OVERHEAD_BYTES + Buffer.byteLength(reason) + lines.reduce((n, l) => n + Buffer.byteLength(l) + 1, 0);
}

const warnings = () => logLines.filter((l) => l.level === 40 && String(l.msg).includes('evicted'));

describe('dead-letter store (lmdb)', () => {
  it('keeps lines with their reason and status, lists newest first, and survives a reopen', async () => {
    let t = 1000;
    const store = openDeadLetterStore({ dataDir: dir, metrics, now: () => t });
    expect(store.path).toBe(join(dir, 'dead-letters'));
    await store.put(['a 1', 'b 2'], 'field type conflict', 400);
    t = 2000;
    await store.put(['c 3'], 'unprocessable', 422);
    await store.flushed();
    expect(store.count()).toBe(3);
    expect(store.list(10)).toEqual([
      { atMs: 2000, status: 422, reason: 'unprocessable', line: 'c 3' },
      { atMs: 1000, status: 400, reason: 'field type conflict', line: 'b 2' },
      { atMs: 1000, status: 400, reason: 'field type conflict', line: 'a 1' },
    ]);
    expect(store.list(2).map((e) => e.line)).toEqual(['c 3', 'b 2']);
    expect(store.list(0)).toEqual([]);
    expect(store.totals()).toEqual({
      records: 2,
      lines: 3,
      bytes: bytesOf(['a 1', 'b 2'], 'field type conflict') + bytesOf(['c 3'], 'unprocessable'),
      maxBytes: 1024 ** 3,
    });
    expect(await value(metrics.deadLetterLines)).toBe(3);
    await store.close();

    const again = openDeadLetterStore({ dataDir: dir, metrics });
    expect(again.count()).toBe(3);
    expect(again.list(1)).toEqual([{ atMs: 2000, status: 422, reason: 'unprocessable', line: 'c 3' }]);
    await again.put(['d 4'], 'x', 400);
    expect(again.list(1)[0]?.line).toBe('d 4');
    await again.close();
  });

  it('is bounded by bytes: the oldest records go first, counted in the metric and logged at warn', async () => {
    const line = 'x'.repeat(100);
    const reason = 'r';
    const perRecord = bytesOf([line, line], reason);
    const store = openDeadLetterStore({
      dataDir: dir,
      metrics,
      maxBytes: Math.max(1024, perRecord * 5),
      logger: createLogger('info', sink()),
    });
    // Room for exactly 5 two-line records (each 64 + 1 + 2 × 101 = 267 bytes).
    const capRecords = Math.floor(store.maxBytes / perRecord);
    for (let i = 0; i < capRecords; i++) await store.put([line, line], reason, 400);
    expect(await value(metrics.deadLetterEvicted)).toBe(0);
    expect(warnings()).toEqual([]);

    await store.put([line, line], reason, 400);
    expect(store.totals().records).toBe(capRecords);
    expect(store.totals().bytes).toBeLessThanOrEqual(store.maxBytes);
    expect(await value(metrics.deadLetterEvicted)).toBe(2);
    expect(store.recent().evictedLines).toBe(2);
    // Loud: one warn line naming what was lost and what to do.
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatchObject({ evictedLines: 2, evictedRecords: 1, maxBytes: store.maxBytes });
    expect(String(warnings()[0]?.msg)).toContain('INFLUX_DEAD_LETTER_MAX_BYTES');
    // The oldest went: ids 1 is gone, the newest is kept.
    expect(store.query({ limit: 100 }).records.map((r) => r.id)).toEqual(
      Array.from({ length: capRecords }, (_, i) => i + 2),
    );
    await store.close();
  });

  it('rate-limits eviction warnings: evictions in between are summed into the next line', async () => {
    let t = 0;
    const line = 'y'.repeat(200);
    const store = openDeadLetterStore({
      dataDir: dir,
      metrics,
      maxBytes: 1024,
      logger: createLogger('info', sink()),
      evictionLogIntervalMs: 10_000,
      now: () => t,
    });
    const fit = Math.floor(1024 / bytesOf([line], 'r')); // 3
    for (let i = 0; i < 20; i++) await store.put([line], 'r', 400);
    expect(await value(metrics.deadLetterEvicted)).toBe(20 - fit);
    // One line at once (the first eviction); the others wait for the interval.
    expect(warnings().map((w) => w.evictedLines)).toEqual([1]);
    t = 10_000;
    await store.put([line], 'r', 400);
    expect(warnings().map((w) => w.evictedLines)).toEqual([1, 20 - fit]);
    expect(await value(metrics.deadLetterEvicted)).toBe(21 - fit);
    // Whatever is pending at close is logged too.
    await store.put([line], 'r', 400);
    await store.close();
    expect(warnings().map((w) => w.evictedLines)).toEqual([1, 20 - fit, 1]);
  });

  it('keeps the newest lines of one put larger than the cap; the rest count as evicted', async () => {
    const store = openDeadLetterStore({ dataDir: dir, metrics, maxBytes: 1024 });
    const lines = Array.from({ length: 20 }, (_, i) => `${String(i).padStart(2, '0')}${'z'.repeat(98)}`);
    await store.put(lines, 'big', 413);
    const kept = store.list(100).map((e) => e.line.slice(0, 2));
    expect(kept).toEqual(['19', '18', '17', '16', '15', '14', '13', '12', '11']);
    expect(await value(metrics.deadLetterEvicted)).toBe(11);
    expect(store.recent()).toEqual({ windowMs: RECENT_WINDOW_MS, lines: 20, evictedLines: 11 });
    await store.close();
  });

  it('counts new dead letters over the last five minutes only', async () => {
    let t = 1_000_000;
    const store = openDeadLetterStore({ dataDir: dir, metrics, now: () => t });
    await store.put(['a', 'b'], 'r', 400);
    t += 60_000;
    await store.put(['c'], 'r', 400);
    expect(store.recent().lines).toBe(3);
    t += RECENT_WINDOW_MS - 30_000;
    expect(store.recent().lines).toBe(1);
    t += 60_000;
    expect(store.recent().lines).toBe(0);
    expect(store.count()).toBe(3);
    await store.close();
  });

  it('pages records oldest first, filters by reason (substring, any case) and status', async () => {
    const store = openDeadLetterStore({ dataDir: dir, metrics });
    await store.put(['a 1', 'a 2', 'a 3'], 'partial write: field type conflict', 400);
    await store.put(['b 1'], 'unable to parse', 400);
    await store.put(['c 1'], 'Request Entity Too Large', 413);
    await store.put(['d 1'], 'partial write: FIELD TYPE CONFLICT', 422);

    const first = store.query({ limit: 2, maxLinesPerRecord: 2 });
    expect(first.records.map((r) => [r.id, r.lineCount, r.lines])).toEqual([
      [1, 3, ['a 1', 'a 2']],
      [2, 1, ['b 1']],
    ]);
    expect(first.nextAfterId).toBe(2);
    const second = store.query({ limit: 2, afterId: 2 });
    expect(second.records.map((r) => r.id)).toEqual([3, 4]);
    expect(second.nextAfterId).toBeNull();

    expect(store.query({ limit: 10, reason: 'field type' }).records.map((r) => r.id)).toEqual([1, 4]);
    expect(store.query({ limit: 10, status: 413 }).records.map((r) => r.id)).toEqual([3]);
    expect(store.query({ limit: 10, reason: 'conflict', status: 422 }).records.map((r) => r.id)).toEqual([4]);
    expect(store.query({ limit: 10, ids: [2, 3, 99] }).records.map((r) => r.id)).toEqual([2, 3]);
    expect(store.ids({ reason: 'conflict' }, 1)).toEqual([1]);
    await store.close();
  });

  it('drops the matching records durably and counts them', async () => {
    const store = openDeadLetterStore({ dataDir: dir, metrics });
    await store.put(['a 1', 'a 2'], 'conflict', 400);
    await store.put(['b 1'], 'parse', 400);
    expect(await store.drop({ reason: 'conflict' })).toEqual({ records: 1, lines: 2 });
    expect(store.totals()).toMatchObject({ records: 1, lines: 1, bytes: bytesOf(['b 1'], 'parse') });
    expect(await value(metrics.deadLetterDropped)).toBe(2);
    expect(await store.drop({ ids: [42] })).toEqual({ records: 0, lines: 0 });
    await store.close();
    const again = openDeadLetterStore({ dataDir: dir, metrics });
    expect(again.list(10).map((e) => e.line)).toEqual(['b 1']);
    await again.close();
  });

  it('settles a replay: the record goes, the lines rejected again stay with the new reason', async () => {
    let t = 1000;
    const store = openDeadLetterStore({ dataDir: dir, metrics, now: () => t });
    await store.put(['a 1', 'a 2', 'a 3'], 'old reason', 400);
    t = 5000;
    expect(
      await store.settleReplay([{ id: 1, rejected: [{ lines: ['a 2'], reason: 'new reason', status: 422 }] }]),
    ).toEqual([true]);
    expect(store.query({ limit: 10 }).records).toEqual([
      {
        id: 2,
        atMs: 5000,
        firstAtMs: 1000,
        status: 422,
        reason: 'new reason',
        lineCount: 1,
        bytes: bytesOf(['a 2'], 'new reason'),
        replays: 1,
        lines: ['a 2'],
      },
    ]);
    expect(store.totals()).toMatchObject({ records: 1, lines: 1, bytes: bytesOf(['a 2'], 'new reason') });
    // Already settled (or dropped meanwhile): nothing happens.
    expect(
      await store.settleReplay([
        { id: 1, rejected: [] },
        { id: 2, rejected: [] },
      ]),
    ).toEqual([false, true]);
    expect(store.totals()).toMatchObject({ records: 0, lines: 0, bytes: 0 });
    await store.close();
  });

  it('upgrades a store written before the byte cap (records without bytes, meta without totals)', async () => {
    const root = open({ path: join(dir, 'dead-letters', 'data.mdb') });
    const records = root.openDB({ name: 'records' });
    const meta = root.openDB({ name: 'meta' });
    await records.put(1, { atMs: 1000, status: 400, reason: 'conflict', lines: ['a 1', 'b 2'] });
    await records.put(2, { atMs: 2000, status: 422, reason: 'x', lines: ['c 3'] });
    await meta.put('meta', { nextId: 3, lines: 3 });
    await root.close();

    const store = openDeadLetterStore({ dataDir: dir, metrics });
    expect(store.totals()).toEqual({
      records: 2,
      lines: 3,
      bytes: bytesOf(['a 1', 'b 2'], 'conflict') + bytesOf(['c 3'], 'x'),
      maxBytes: 1024 ** 3,
    });
    expect(store.get(1)).toMatchObject({ firstAtMs: 1000, replays: 0, bytes: bytesOf(['a 1', 'b 2'], 'conflict') });
    await store.put(['d 4'], 'y', 400);
    expect(store.query({ limit: 10 }).records.map((r) => r.id)).toEqual([1, 2, 3]);
    await store.close();
  });

  it('ignores an empty put and rejects a nonsensical cap', async () => {
    const store = openDeadLetterStore({ dataDir: dir, metrics });
    await store.put([], 'nothing', 400);
    expect(store.count()).toBe(0);
    await store.close();
    expect(() => openDeadLetterStore({ dataDir: dir, metrics, maxBytes: 10 })).toThrow(RangeError);
  });
});

describe('dead-letter warnings of the forwarder', () => {
  const summary = (lines: number, reason = 'field type conflict', status = 400): PersistedSummary =>
    new Map([[`${status} ${reason}`, { status, reason, lines, sample: `m v=1 ${lines}` }]]);
  const refused = () => logLines.filter((l) => l.level === 40 && String(l.msg).includes('refused lines permanently'));

  it('warns for the first batch at once, then sums the batches of the next 10 s into one line', () => {
    let t = 0;
    const reporter = createDeadLetterReporter(createLogger('info', sink()), 10_000, () => t);
    reporter.report(summary(5));
    expect(refused()).toHaveLength(1);
    expect(refused()[0]).toMatchObject({ lines: 5, batches: 1, moreReasons: 0 });
    t = 1000;
    reporter.report(summary(7));
    t = 2000;
    reporter.report(summary(1, 'unable to parse'));
    reporter.report(summary(2, 'UNKNOWN_DESCRIPTORS: no descriptor set', 0));
    expect(refused()).toHaveLength(1);
    reporter.close(); // what is pending is said at close (or when the interval ends)
    expect(refused()).toHaveLength(2);
    expect(refused()[1]).toMatchObject({
      lines: 10,
      batches: 3,
      reasons: [
        { status: 400, reason: 'field type conflict', lines: 7 },
        { status: 0, reason: 'UNKNOWN_DESCRIPTORS: no descriptor set', lines: 2 },
        { status: 400, reason: 'unable to parse', lines: 1 },
      ],
    });
    t = 20_000;
    reporter.report(summary(3));
    expect(refused()).toHaveLength(3);
  });
});
