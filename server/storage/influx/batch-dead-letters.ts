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
import type { DeadLetterStore } from '../types.ts';

export interface BatchDeadLetters {
  /** What delivery dead-letters into. */
  readonly store: DeadLetterStore;
  /** Lines collected since the last `persist()`. */
  pendingLines(): number;
  /** Puts what was collected and resolves once it is flushed to disk. */
  persist(): Promise<void>;
  /** Resolves when no `persist()` is running (so the store may close). */
  idle(): Promise<void>;
}

export function createBatchDeadLetters(target: DeadLetterStore): BatchDeadLetters {
  let groups: { lines: string[]; reason: string; status: number }[] = [];
  let lines = 0;
  let running: Promise<void> = Promise.resolve();

  async function write(toWrite: typeof groups): Promise<void> {
    await Promise.all(toWrite.map((g) => target.put(g.lines, g.reason, g.status)));
    await target.flushed();
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
      running = p.catch(() => undefined);
      return p;
    },
    idle: () => running,
  };
}
