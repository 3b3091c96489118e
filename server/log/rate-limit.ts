/**
 * Log lines for things that can happen thousands of times a second (refused handshakes, duplicate
 * frames, reconnect loops) without letting a flood flood the log.
 *
 * Per key (e.g. `UNAUTHORIZED` from one address, or one device's duplicates): the first occurrence is
 * logged at once with its fields; later ones are counted, and every `windowMs` one summary line per
 * key says how many more there were (`repeated`, plus any summed fields such as `missingFrames`). A key
 * quiet for a whole window is forgotten, so its next occurrence is logged at once again. Per category,
 * at most `maxKeys` keys are tracked one by one; occurrences of further keys are folded into one
 * line per window (`repeated`, `sources`). So a window holds at most 2 × maxKeys + 1 lines per
 * category, whatever the rate. `close()` writes the pending summaries (the counts always add up).
 */
import type { Logger } from './index.ts';

export type LimitedLevel = 'debug' | 'info' | 'warn' | 'error';

export interface LimitedEvent {
  level: LimitedLevel;
  msg: string;
  fields: Record<string, unknown>;
  /** Numbers added up over the occurrences a summary covers (e.g. `{ missingFrames: 3 }`). */
  sums?: Record<string, number>;
}

export interface LogLimiterOptions {
  logger: Logger;
  /** Summary period (default 10 s). */
  windowMs?: number;
  /** Keys per category logged one by one in a window (default 20). */
  maxKeys?: number;
  /** Start the summary timer (default true); tests call `flush()` themselves. */
  timer?: boolean;
}

export interface LogLimiter {
  /** One occurrence of `key` in `category`: logged now, or counted for the next summary. */
  hit(category: string, key: string, event: LimitedEvent): void;
  /** Writes the summaries of the window that ends now. */
  flush(): void;
  /** Flushes and stops the timer; later hits are ignored. */
  close(): void;
}

interface Entry {
  level: LimitedLevel;
  msg: string;
  fields: Record<string, unknown>;
  /** Occurrences since the last line about this key. */
  count: number;
  sums: Record<string, number>;
}

interface Category {
  keys: Map<string, Entry>;
  overflow: Entry & { sources: Set<string> };
}

const RANK: Record<LimitedLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
/** Distinct overflow keys remembered for the `sources` figure; beyond it the figure is a floor. */
const MAX_SOURCES = 10_000;

export function createLogLimiter(opts: LogLimiterOptions): LogLimiter {
  const { logger } = opts;
  const windowMs = opts.windowMs ?? 10_000;
  const maxKeys = opts.maxKeys ?? 20;
  const windowSec = Math.round(windowMs / 1000);
  const categories = new Map<string, Category>();
  let closed = false;

  const write = (level: LimitedLevel, fields: Record<string, unknown>, msg: string) => {
    try {
      logger[level](fields, msg);
    } catch {
      // A failing log destination must not break whoever reported the event.
    }
  };
  const addSums = (into: Record<string, number>, sums: Record<string, number> | undefined) => {
    if (!sums) return;
    for (const [k, v] of Object.entries(sums)) into[k] = (into[k] ?? 0) + v;
  };
  const fold = (e: Entry, event: LimitedEvent) => {
    e.count++;
    e.fields = event.fields;
    if (RANK[event.level] > RANK[e.level]) e.level = event.level;
    addSums(e.sums, event.sums);
  };

  const limiter: LogLimiter = {
    hit(category, key, event) {
      if (closed) return;
      let cat = categories.get(category);
      if (!cat) {
        cat = {
          keys: new Map(),
          overflow: { level: event.level, msg: event.msg, fields: {}, count: 0, sums: {}, sources: new Set() },
        };
        categories.set(category, cat);
      }
      const entry = cat.keys.get(key);
      if (entry) {
        fold(entry, event);
        return;
      }
      if (cat.keys.size >= maxKeys) {
        const o = cat.overflow;
        if (o.count === 0) {
          o.level = event.level;
          o.msg = event.msg;
        }
        fold(o, event);
        if (o.sources.size < MAX_SOURCES) o.sources.add(key);
        return;
      }
      cat.keys.set(key, { level: event.level, msg: event.msg, fields: event.fields, count: 0, sums: {} });
      write(event.level, event.fields, event.msg);
    },

    flush() {
      for (const [category, cat] of categories) {
        for (const [key, e] of cat.keys) {
          if (e.count === 0) {
            cat.keys.delete(key);
            continue;
          }
          write(
            e.level,
            { ...e.fields, ...e.sums, repeated: e.count, windowSec },
            `${e.msg} (${e.count} more in the last ${windowSec} s)`,
          );
          e.count = 0;
          e.sums = {};
        }
        const o = cat.overflow;
        if (o.count > 0) {
          const sources = o.sources.size >= MAX_SOURCES ? `${MAX_SOURCES}+` : o.sources.size;
          write(
            o.level,
            { category, ...o.sums, repeated: o.count, sources, windowSec },
            `${o.msg} (${o.count} more from ${sources} other sources in the last ${windowSec} s)`,
          );
          o.count = 0;
          o.sums = {};
          o.sources.clear();
        }
        if (cat.keys.size === 0) categories.delete(category);
      }
    },

    close() {
      if (closed) return;
      limiter.flush();
      closed = true;
      if (timer) clearInterval(timer);
      categories.clear();
    },
  };

  const timer = opts.timer === false ? null : setInterval(() => limiter.flush(), windowMs);
  timer?.unref();
  return limiter;
}
