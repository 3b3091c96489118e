/**
 * The dead-letter store: line-protocol lines InfluxDB rejected permanently (400/422 after bisection,
 * a single line still 413), plus stored frames that cannot become lines at all (status 0), each with
 * the reason (InfluxDB's response body) so an operator can inspect them, fix the cause and replay
 * them (`npm run hub -- dead-letters …`, the admin API). docs/storage.md §4.
 *
 * A kept store, not a home-made file: an `lmdb` environment of its own in `<dataDir>/dead-letters/`
 * (separate from the local log, so neither's maintenance touches the other). One record per `put`
 * (one reason for all its lines), keyed by an increasing id.
 *
 * Durability: `put` resolves once its transaction is committed (visible); `flushed()` resolves once
 * everything put so far is on disk. The forwarder awaits `flushed()` before it moves its cursor past
 * the lines it dead-lettered (one flush per batch rather than one per bisected line).
 *
 * Bounded by bytes (`maxBytes`, the lines' UTF-8 bytes plus the reason and a fixed overhead per
 * record): when a put goes over, the oldest records go first, counted in
 * `hub_dead_letter_evicted_lines_total` and logged at warn (at most one line per
 * `evictionLogIntervalMs`, summing what was evicted meanwhile). Evicted lines exist nowhere else.
 *
 * Several processes may open the store at once (the running hub and the CLI): lmdb serialises write
 * transactions across processes and gives readers committed snapshots, and every total is read from
 * the store's meta record inside the transaction that changes it, never from a cache.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Database, open, type RootDatabase } from 'lmdb';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import { throttle } from './throttle.ts';
import type { DeadLetterStore } from './types.ts';

/** Default cap: 1 GiB, about 7 M lines of ~150 bytes, ~4 h of a field-type conflict at 500 lines/s. */
export const DEFAULT_DEAD_LETTER_MAX_BYTES = 1024 ** 3;
/** Bytes counted per record besides its lines and reason (ids, times, status, encoding). */
export const RECORD_OVERHEAD_BYTES = 64;
/** The window of `recent()`, and of the `deadLetters` check on `/readyz`. */
export const RECENT_WINDOW_MS = 5 * 60_000;
const RECENT_BUCKET_MS = 10_000;
const GAUGE_REFRESH_MS = 5000;

export interface DeadLetterOptions {
  /** The hub's data directory; the store lives in `<dataDir>/dead-letters/`. */
  dataDir: string;
  /** Cap on the store's bytes (see the header). Default {@link DEFAULT_DEAD_LETTER_MAX_BYTES}. */
  maxBytes?: number;
  metrics: Metrics;
  /** Eviction warnings go here. */
  logger?: Logger;
  /** Shortest spacing between two eviction warnings. Default 10 s. */
  evictionLogIntervalMs?: number;
  now?: () => number;
}

/** One put as stored. */
interface StoredRecord {
  /** When the lines were (last) rejected, Unix ms. */
  atMs: number;
  /** When they were first dead-lettered (differs from `atMs` after a replay rejected them again). */
  firstAtMs: number;
  status: number;
  reason: string;
  lines: string[];
  /** Bytes counted against the cap. */
  bytes: number;
  /** How many replays were rejected again. */
  replays: number;
}

interface Meta {
  nextId: number;
  records: number;
  lines: number;
  bytes: number;
}

const META_KEY = 'meta';
const EMPTY_META: Meta = { nextId: 1, records: 0, lines: 0, bytes: 0 };

/** One dead-lettered line, as `list` shows it. */
export interface DeadLetterEntry {
  atMs: number;
  status: number;
  reason: string;
  line: string;
}

/** A record as queries return it. */
export interface DeadLetterRecord {
  id: number;
  atMs: number;
  firstAtMs: number;
  status: number;
  reason: string;
  /** Total lines of the record (`lines` may be cut, see {@link DeadLetterQuery.maxLinesPerRecord}). */
  lineCount: number;
  bytes: number;
  replays: number;
  lines: string[];
}

/** A record as the CLI (`--json`) and the admin API show it. Times are ISO-8601 UTC. */
export interface DeadLetterView {
  id: number;
  at: string;
  firstAt: string;
  status: number;
  reason: string;
  replays: number;
  lineCount: number;
  bytes: number;
  lines: string[];
}

export function viewOf(r: DeadLetterRecord): DeadLetterView {
  return {
    id: r.id,
    at: new Date(r.atMs).toISOString(),
    firstAt: new Date(r.firstAtMs).toISOString(),
    status: r.status,
    reason: r.reason,
    replays: r.replays,
    lineCount: r.lineCount,
    bytes: r.bytes,
    lines: r.lines,
  };
}

/** Which records an operation applies to; all given conditions must hold. */
export interface DeadLetterFilter {
  ids?: readonly number[];
  /** Case-insensitive substring of the reason. */
  reason?: string;
  /** Exact HTTP status (0 = a frame that could not become lines). */
  status?: number;
}

export interface DeadLetterQuery extends DeadLetterFilter {
  /** Records with an id above this (paging). Default 0. */
  afterId?: number;
  /** Most records to return. */
  limit: number;
  /** Lines returned per record (the rest counted in `lineCount`). Default: all. */
  maxLinesPerRecord?: number;
}

export interface DeadLetterPage {
  records: DeadLetterRecord[];
  /** `afterId` for the next page, or null when this was the last. */
  nextAfterId: number | null;
}

export interface DeadLetterTotals {
  records: number;
  lines: number;
  bytes: number;
  maxBytes: number;
}

/** Lines put and evicted in the last {@link RECENT_WINDOW_MS} (by this process). */
export interface DeadLetterRecent {
  windowMs: number;
  lines: number;
  evictedLines: number;
}

/** The lines of one replayed record InfluxDB rejected again, grouped by reason. */
export interface Rejected {
  lines: string[];
  reason: string;
  status: number;
}

export interface OpenDeadLetterStore extends DeadLetterStore {
  /** Where the environment lives. */
  readonly path: string;
  readonly maxBytes: number;
  totals(): DeadLetterTotals;
  recent(): DeadLetterRecent;
  query(q: DeadLetterQuery): DeadLetterPage;
  /** Ids of the records matching `filter`, oldest first, at most `limit`. */
  ids(filter: DeadLetterFilter, limit: number): number[];
  /** One record, or undefined when it is gone. */
  get(id: number): DeadLetterRecord | undefined;
  /** Removes the matching records; resolves with what was removed once durable. */
  drop(filter: DeadLetterFilter): Promise<{ records: number; lines: number }>;
  /**
   * After a replay: removes each record `id` and keeps the lines InfluxDB rejected again as new
   * records (new reason, `replays` + 1), all in one transaction, durable when it resolves. Resolves
   * with, per item, false when that record was already gone.
   */
  settleReplay(items: readonly { id: number; rejected: readonly Rejected[] }[]): Promise<boolean[]>;
  close(): Promise<void>;
}

function recordBytes(lines: readonly string[], reason: string): number {
  let bytes = RECORD_OVERHEAD_BYTES + Buffer.byteLength(reason);
  for (const l of lines) bytes += Buffer.byteLength(l) + 1;
  return bytes;
}

/** Newest lines of `lines` whose record fits in `maxBytes` (at least none). */
function newestThatFit(lines: readonly string[], reason: string, maxBytes: number): string[] {
  let bytes = RECORD_OVERHEAD_BYTES + Buffer.byteLength(reason);
  let i = lines.length;
  while (i > 0) {
    const next = bytes + Buffer.byteLength(lines[i - 1] as string) + 1;
    if (next > maxBytes) break;
    bytes = next;
    i--;
  }
  return lines.slice(i);
}

/**
 * Stores written before the byte cap kept `{ atMs, status, reason, lines }` records and a meta of
 * `{ nextId, lines }`: fill in the newer fields and count the bytes, once, in one transaction.
 */
function upgrade(root: RootDatabase, records: Database<StoredRecord, number>, metaDb: Database<Meta, string>): void {
  const old = metaDb.get(META_KEY) as Partial<Meta> | undefined;
  if (old === undefined || old.bytes !== undefined) return;
  root.transactionSync(() => {
    const m: Meta = { ...EMPTY_META, nextId: old.nextId ?? 1 };
    for (const { key, value } of records.getRange({ start: 0 })) {
      const r: StoredRecord = {
        atMs: value.atMs,
        firstAtMs: value.firstAtMs ?? value.atMs,
        status: value.status,
        reason: value.reason,
        lines: value.lines,
        bytes: recordBytes(value.lines, value.reason),
        replays: value.replays ?? 0,
      };
      records.putSync(key, r);
      m.records++;
      m.lines += r.lines.length;
      m.bytes += r.bytes;
      m.nextId = Math.max(m.nextId, key + 1);
    }
    metaDb.putSync(META_KEY, m);
  });
}

function matches(id: number, r: StoredRecord, f: DeadLetterFilter, ids: Set<number> | null): boolean {
  if (ids && !ids.has(id)) return false;
  if (f.status !== undefined && r.status !== f.status) return false;
  if (f.reason !== undefined && !r.reason.toLowerCase().includes(f.reason.toLowerCase())) return false;
  return true;
}

export function openDeadLetterStore(opts: DeadLetterOptions): OpenDeadLetterStore {
  const maxBytes = opts.maxBytes ?? DEFAULT_DEAD_LETTER_MAX_BYTES;
  if (!Number.isInteger(maxBytes) || maxBytes < 1024) throw new RangeError('maxBytes must be an integer ≥ 1024');
  const { metrics } = opts;
  const logger = opts.logger?.child({ component: 'dead-letters' });
  const now = opts.now ?? Date.now;
  const evictionLogIntervalMs = opts.evictionLogIntervalMs ?? 10_000;
  const path = join(opts.dataDir, 'dead-letters');
  mkdirSync(path, { recursive: true });
  // eventTurnBatching off: with it lmdb keeps an internal promise per event turn that nobody can
  // observe, and a failed commit (ENOSPC) rejects it unhandled, which ends the process (the local log
  // does the same). Puts are few and grouped by the forwarder already.
  const root: RootDatabase = open({ path: join(path, 'data.mdb'), eventTurnBatching: false });
  const records: Database<StoredRecord, number> = root.openDB({ name: 'records' });
  const metaDb: Database<Meta, string> = root.openDB({ name: 'meta' });
  const readMeta = (): Meta => ({ ...EMPTY_META, ...metaDb.get(META_KEY) });
  upgrade(root, records, metaDb);

  /**
   * One write transaction. lmdb rejects a failed commit with an error whose `commitError` is another
   * promise that rejects with the cause (e.g. ENOSPC) a moment later; unobserved, it would end the
   * process. The caller gets the first error (and retries); the cause is logged.
   */
  function write<T>(fn: () => T): Promise<T> {
    return records.transaction(fn).catch((err: unknown) => {
      const cause = (err as { commitError?: unknown } | null)?.commitError;
      if (cause instanceof Promise) {
        cause.catch((e: unknown) => logger?.error({ err: e }, 'dead-letter store commit failed (cause)'));
      }
      throw err;
    });
  }

  // Rate of new dead letters and evictions, in 10 s buckets over the last 5 minutes (this process).
  const buckets = new Map<number, { lines: number; evicted: number }>();
  function bump(field: 'lines' | 'evicted', n: number): void {
    const key = Math.floor(now() / RECENT_BUCKET_MS);
    const b = buckets.get(key) ?? { lines: 0, evicted: 0 };
    b[field] += n;
    buckets.set(key, b);
    const oldest = key - RECENT_WINDOW_MS / RECENT_BUCKET_MS;
    for (const k of buckets.keys()) if (k <= oldest) buckets.delete(k);
  }

  // Eviction warnings: the first at once, then at most one per interval summing the ones in between.
  let pending = { lines: 0, records: 0 };
  function warnEvicted(): void {
    if (pending.lines === 0) return;
    const totals = readMeta();
    let oldestKeptAtMs: number | null = null;
    for (const { value } of records.getRange({ start: 0, limit: 1 })) oldestKeptAtMs = value.atMs;
    logger?.warn(
      {
        evictedLines: pending.lines,
        evictedRecords: pending.records,
        keptLines: totals.lines,
        keptBytes: totals.bytes,
        maxBytes,
        oldestKeptAt: oldestKeptAtMs === null ? null : new Date(oldestKeptAtMs).toISOString(),
      },
      'dead-letter store full: evicted the oldest dead letters, they are lost; raise INFLUX_DEAD_LETTER_MAX_BYTES, ' +
        'or fix the cause and replay (npm run hub -- dead-letters list|replay|drop)',
    );
    pending = { lines: 0, records: 0 };
  }
  const warnings = throttle(warnEvicted, evictionLogIntervalMs, now);
  function evicted(lines: number, recordCount: number): void {
    metrics.deadLetterEvicted.inc(lines);
    bump('evicted', lines);
    pending.lines += lines;
    pending.records += recordCount;
    warnings.poke();
  }

  function refreshGauges(m: Meta = readMeta()): void {
    metrics.deadLetterLines.set(m.lines);
    metrics.deadLetterBytes.set(m.bytes);
  }
  refreshGauges();
  metrics.deadLetterMaxBytes.set(maxBytes);
  // Another process (the CLI) may change the store; keep the gauges near the truth between scrapes.
  const gaugeTimer = setInterval(() => {
    try {
      refreshGauges();
    } catch {
      // closing
    }
  }, GAUGE_REFRESH_MS);
  gaugeTimer.unref();

  /**
   * Inside a write transaction: removes the oldest records until `incoming` more bytes fit.
   * Returns the updated meta and what was evicted.
   */
  function makeRoom(m: Meta, incoming: number): { meta: Meta; lines: number; records: number } {
    const out = { meta: { ...m }, lines: 0, records: 0 };
    if (out.meta.bytes + incoming <= maxBytes) return out;
    for (const { key, value } of records.getRange({ start: 0 })) {
      if (out.meta.bytes + incoming <= maxBytes) break;
      records.removeSync(key);
      out.meta.bytes -= value.bytes;
      out.meta.lines -= value.lines.length;
      out.meta.records--;
      out.lines += value.lines.length;
      out.records++;
    }
    return out;
  }

  function toRecord(id: number, r: StoredRecord, maxLines = Number.POSITIVE_INFINITY): DeadLetterRecord {
    return {
      id,
      atMs: r.atMs,
      firstAtMs: r.firstAtMs,
      status: r.status,
      reason: r.reason,
      lineCount: r.lines.length,
      bytes: r.bytes,
      replays: r.replays,
      lines: r.lines.length > maxLines ? r.lines.slice(0, maxLines) : [...r.lines],
    };
  }

  const store: OpenDeadLetterStore = {
    path,
    maxBytes,

    async put(lines, reason, status) {
      if (lines.length === 0) return;
      // A single put larger than the cap keeps its newest lines; the rest count as evicted.
      const kept = newestThatFit(lines, reason, maxBytes);
      if (kept.length === 0) {
        bump('lines', lines.length);
        evicted(lines.length, 0);
        return;
      }
      const atMs = now();
      const record: StoredRecord = {
        atMs,
        firstAtMs: atMs,
        status,
        reason,
        lines: kept,
        bytes: recordBytes(kept, reason),
        replays: 0,
      };
      const done = await write(() => {
        const room = makeRoom(readMeta(), record.bytes);
        const m = room.meta;
        records.putSync(m.nextId, record);
        m.nextId++;
        m.records++;
        m.lines += kept.length;
        m.bytes += record.bytes;
        metaDb.putSync(META_KEY, m);
        return room;
      });
      bump('lines', lines.length);
      const tooBig = lines.length - kept.length;
      if (done.lines + tooBig > 0) evicted(done.lines + tooBig, done.records);
      refreshGauges(done.meta);
    },

    async flushed() {
      await root.flushed;
    },

    count() {
      return readMeta().lines;
    },

    totals() {
      const m = readMeta();
      return { records: m.records, lines: m.lines, bytes: m.bytes, maxBytes };
    },

    recent() {
      const since = Math.floor((now() - RECENT_WINDOW_MS) / RECENT_BUCKET_MS);
      const out: DeadLetterRecent = { windowMs: RECENT_WINDOW_MS, lines: 0, evictedLines: 0 };
      for (const [k, b] of buckets) {
        if (k <= since) continue;
        out.lines += b.lines;
        out.evictedLines += b.evicted;
      }
      return out;
    },

    /** The newest `limit` lines, newest first. */
    list(limit) {
      const out: DeadLetterEntry[] = [];
      if (limit <= 0) return out;
      for (const { value } of records.getRange({ reverse: true })) {
        for (let i = value.lines.length - 1; i >= 0 && out.length < limit; i--) {
          out.push({ atMs: value.atMs, status: value.status, reason: value.reason, line: value.lines[i] as string });
        }
        if (out.length >= limit) break;
      }
      return out;
    },

    query(q) {
      const ids = q.ids ? new Set(q.ids) : null;
      const out: DeadLetterRecord[] = [];
      let nextAfterId: number | null = null;
      for (const { key, value } of records.getRange({ start: (q.afterId ?? 0) + 1 })) {
        if (!matches(key, value, q, ids)) continue;
        if (out.length >= q.limit) {
          nextAfterId = out.at(-1)?.id ?? null;
          break;
        }
        out.push(toRecord(key, value, q.maxLinesPerRecord));
      }
      return { records: out, nextAfterId };
    },

    ids(filter, limit) {
      const ids = filter.ids ? new Set(filter.ids) : null;
      const out: number[] = [];
      if (filter.reason === undefined && filter.status === undefined) {
        // Keys only: no record is decoded.
        for (const key of records.getKeys({ start: 0 })) {
          if (out.length >= limit) break;
          if (!ids || ids.has(key)) out.push(key);
        }
        return out;
      }
      for (const { key, value } of records.getRange({ start: 0 })) {
        if (out.length >= limit) break;
        if (matches(key, value, filter, ids)) out.push(key);
      }
      return out;
    },

    get(id) {
      const r = records.get(id);
      return r ? toRecord(id, r) : undefined;
    },

    async drop(filter) {
      const ids = filter.ids ? new Set(filter.ids) : null;
      const done = await write(() => {
        const m = readMeta();
        let removed = 0;
        let lines = 0;
        for (const { key, value } of records.getRange({ start: 0 })) {
          if (!matches(key, value, filter, ids)) continue;
          records.removeSync(key);
          removed++;
          lines += value.lines.length;
          m.records--;
          m.lines -= value.lines.length;
          m.bytes -= value.bytes;
        }
        metaDb.putSync(META_KEY, m);
        return { records: removed, lines, meta: m };
      });
      await root.flushed;
      metrics.deadLetterDropped.inc(done.lines);
      refreshGauges(done.meta);
      return { records: done.records, lines: done.lines };
    },

    async settleReplay(items) {
      const atMs = now();
      const done = await write(() => {
        let m = readMeta();
        let evictedLines = 0;
        let evictedRecords = 0;
        const settled = items.map(({ id, rejected }) => {
          const old = records.get(id);
          if (!old) return false;
          records.removeSync(id);
          m.records--;
          m.lines -= old.lines.length;
          m.bytes -= old.bytes;
          for (const r of rejected) {
            if (r.lines.length === 0) continue;
            const record: StoredRecord = {
              atMs,
              firstAtMs: old.firstAtMs,
              status: r.status,
              reason: r.reason,
              lines: [...r.lines],
              bytes: recordBytes(r.lines, r.reason),
              replays: old.replays + 1,
            };
            // Rejected lines are a subset of the old record's, so this only evicts when the new reason
            // is much longer than the old one and the store is full.
            const room = makeRoom(m, record.bytes);
            m = room.meta;
            evictedLines += room.lines;
            evictedRecords += room.records;
            records.putSync(m.nextId, record);
            m.nextId++;
            m.records++;
            m.lines += record.lines.length;
            m.bytes += record.bytes;
          }
          return true;
        });
        metaDb.putSync(META_KEY, m);
        return { meta: m, evictedLines, evictedRecords, settled };
      });
      await root.flushed;
      if (done.evictedLines > 0) evicted(done.evictedLines, done.evictedRecords);
      refreshGauges(done.meta);
      return done.settled;
    },

    async close() {
      clearInterval(gaugeTimer);
      warnings.close();
      await root.close();
    },
  };
  return store;
}
