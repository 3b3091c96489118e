/**
 * The dead-letter store: line-protocol lines InfluxDB rejected permanently (400/422 after bisection,
 * a single line still 413), plus stored frames that cannot become lines at all (status 0), each with
 * the reason (InfluxDB's response body) so someone can inspect, fix and replay them.
 *
 * A kept store, not a home-made file: an `lmdb` environment of its own in `<dataDir>/dead-letters/`
 * (separate from the local log, so neither's maintenance touches the other). One record per `put`
 * (one reason for all its lines), keyed by an increasing id. Bounded by `maxLines`: when a put goes
 * over, the oldest records go first, counted in `hub_dead_letter_evicted_lines_total`. `put` resolves
 * after the transaction is committed and flushed, so the forwarder advances its cursor past rejected
 * lines only once they are safe here.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Database, open, type RootDatabase } from 'lmdb';
import type { Metrics } from '../metrics/index.ts';
import type { DeadLetterStore } from './types.ts';

/** Default cap: at ~150 bytes a line, about 15 MB. */
export const DEFAULT_DEAD_LETTER_MAX_LINES = 100_000;

export interface DeadLetterOptions {
  /** The hub's data directory; the store lives in `<dataDir>/dead-letters/`. */
  dataDir: string;
  maxLines?: number;
  metrics: Metrics;
  now?: () => number;
}

interface StoredRecord {
  atMs: number;
  status: number;
  reason: string;
  lines: string[];
}

interface Meta {
  nextId: number;
  lines: number;
}

const META_KEY = 'meta';

export interface DeadLetterEntry {
  atMs: number;
  status: number;
  reason: string;
  line: string;
}

export interface OpenDeadLetterStore extends DeadLetterStore {
  /** Where the environment lives. */
  readonly path: string;
  close(): Promise<void>;
}

export function openDeadLetterStore(opts: DeadLetterOptions): OpenDeadLetterStore {
  const maxLines = opts.maxLines ?? DEFAULT_DEAD_LETTER_MAX_LINES;
  if (!Number.isInteger(maxLines) || maxLines < 1) throw new RangeError('maxLines must be a positive integer');
  const now = opts.now ?? Date.now;
  const path = join(opts.dataDir, 'dead-letters');
  mkdirSync(path, { recursive: true });
  const root: RootDatabase = open({ path: join(path, 'data.mdb') });
  const records: Database<StoredRecord, number> = root.openDB({ name: 'records' });
  const metaDb: Database<Meta, string> = root.openDB({ name: 'meta' });
  let meta: Meta = metaDb.get(META_KEY) ?? { nextId: 1, lines: 0 };

  return {
    path,

    async put(lines, reason, status) {
      if (lines.length === 0) return;
      // A single put larger than the cap keeps its newest lines; the rest count as evicted.
      const kept = lines.length > maxLines ? lines.slice(lines.length - maxLines) : lines;
      const record: StoredRecord = { atMs: now(), status, reason, lines: [...kept] };
      const evictedNow = lines.length - kept.length;
      const next = await records.transaction(() => {
        const m: Meta = metaDb.get(META_KEY) ?? { nextId: 1, lines: 0 };
        let count = m.lines + kept.length;
        let evicted = evictedNow;
        // Oldest first, whole records, until the new one fits.
        if (count > maxLines) {
          for (const { key, value } of records.getRange({ start: 0 })) {
            if (count <= maxLines) break;
            records.removeSync(key);
            count -= value.lines.length;
            evicted += value.lines.length;
          }
        }
        records.putSync(m.nextId, record);
        const updated = { nextId: m.nextId + 1, lines: count };
        metaDb.putSync(META_KEY, updated);
        return { meta: updated, evicted };
      });
      meta = next.meta;
      if (next.evicted > 0) opts.metrics.deadLetterEvicted.inc(next.evicted);
    },

    count() {
      return meta.lines;
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

    async close() {
      await root.close();
    },
  };
}
