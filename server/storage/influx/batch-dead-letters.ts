/**
 * A forwarder batch's dead letters, made durable in one go before the cursor passes the batch
 * (docs/storage.md §4). Delivery dead-letters into `store`, whose `put` only collects: bisection goes
 * on without waiting for disk, and consecutive rejections with the same status and reason (the usual
 * case: one field-type conflict, line after line) become one record, so the store holds each reason
 * once per batch rather than once per line. `persist()` puts the collected records and waits for the
 * store's disk flush; only then may the cursor move. A failed put or flush rejects `persist()` and
 * forgets what was collected: the caller retries the whole batch, which dead-letters its lines again
 * (at least once, never lost). Bounded by the batch: at most its lines are collected.
 */
import type { Logger } from '../../log/index.ts';
import { type Throttle, throttle } from '../throttle.ts';
import type { DeadLetterStore } from '../types.ts';

/** What one `persist()` wrote: per (status, reason), the lines, and one line as a sample. */
export type PersistedSummary = Map<string, { status: number; reason: string; lines: number; sample: string }>;

export interface BatchDeadLetters {
  /** What delivery dead-letters into. */
  readonly store: DeadLetterStore;
  /** Lines collected since the last `persist()`. */
  pendingLines(): number;
  /** Puts what was collected and resolves once it is flushed to disk, with what was written. */
  persist(): Promise<PersistedSummary>;
  /** Resolves when no `persist()` is running (so the store may close). */
  idle(): Promise<void>;
}

export function createBatchDeadLetters(target: DeadLetterStore): BatchDeadLetters {
  let groups: { lines: string[]; reason: string; status: number }[] = [];
  let lines = 0;
  let running: Promise<void> = Promise.resolve();

  async function write(toWrite: typeof groups): Promise<PersistedSummary> {
    await Promise.all(toWrite.map((g) => target.put(g.lines, g.reason, g.status)));
    await target.flushed();
    const summary: PersistedSummary = new Map();
    for (const g of toWrite) {
      const key = `${g.status} ${g.reason}`;
      const s = summary.get(key) ?? { status: g.status, reason: g.reason, lines: 0, sample: g.lines[0] ?? '' };
      s.lines += g.lines.length;
      summary.set(key, s);
    }
    return summary;
  }

  return {
    store: {
      async put(newLines, reason, status) {
        const last = groups.at(-1);
        if (last && last.reason === reason && last.status === status) last.lines.push(...newLines);
        else groups.push({ lines: [...newLines], reason, status });
        lines += newLines.length;
      },
      flushed: () => target.flushed(),
      count: () => target.count() + lines,
      list: (limit) => target.list(limit),
    },
    pendingLines: () => lines,
    persist() {
      const toWrite = groups;
      groups = [];
      lines = 0;
      const p = write(toWrite);
      running = p.then(
        () => undefined,
        () => undefined,
      );
      return p;
    },
    idle: () => running,
  };
}

/**
 * Says at warn what was dead-lettered, without flooding the log when InfluxDB refuses line after
 * line: the first batch at once, then at most one line per `intervalMs` summing the batches in
 * between (lines, records, and up to three reasons with a sample line each).
 */
export function createDeadLetterReporter(
  logger: Logger,
  intervalMs = 10_000,
  now: () => number = Date.now,
): { report(summary: PersistedSummary): void; close: Throttle['close'] } {
  let pending: PersistedSummary = new Map();
  let batches = 0;

  function flush(): void {
    if (pending.size === 0) return;
    const groups = [...pending.values()].sort((a, b) => b.lines - a.lines);
    logger.warn(
      {
        lines: groups.reduce((n, g) => n + g.lines, 0),
        batches,
        reasons: groups.slice(0, 3).map((g) => ({
          status: g.status,
          reason: g.reason.slice(0, 300),
          lines: g.lines,
          sample: g.sample.slice(0, 200),
        })),
        moreReasons: Math.max(0, groups.length - 3),
      },
      'InfluxDB refused lines permanently (status 0: stored frames that cannot become lines): kept in the ' +
        'dead-letter store; fix the cause, then npm run hub -- dead-letters list / replay',
    );
    pending = new Map();
    batches = 0;
  }

  const limiter = throttle(flush, intervalMs, now);

  return {
    report(summary) {
      for (const [key, g] of summary) {
        const p = pending.get(key);
        if (p) p.lines += g.lines;
        else pending.set(key, { ...g });
      }
      batches++;
      limiter.poke();
    },
    close: () => limiter.close(),
  };
}
