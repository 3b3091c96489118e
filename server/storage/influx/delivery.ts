/**
 * The failure policy for one batch (docs/storage.md, "Failure policy"): `deliver` resolves only when
 * every line is either confirmed by InfluxDB or kept in the dead-letter store with the reason. It
 * never drops a line and never gives up on a transient failure; it stops only when `signal` aborts.
 *
 * | response                  | action                                                                 |
 * |---------------------------|------------------------------------------------------------------------|
 * | 2xx                       | done                                                                   |
 * | 400, 422                  | bisect; a single rejected line (or a batch InfluxDB says it dropped    |
 * |                           | entirely, `dropped=N` with N = lines) is dead-lettered with the body    |
 * | 413                       | split in halves; one line still too large → dead-lettered              |
 * | 429, 503 with Retry-After | wait that long (bounded by `maxRetryDelayMs`), same batch again        |
 * | anything else, network    | exponential backoff with jitter up to `maxRetryDelayMs`, same batch    |
 *
 * 401/403/404 are retried too: they mean the hub is misconfigured (token, org, bucket), not that the
 * lines are bad, and the local log keeps the data until someone fixes it.
 */
import type { Logger } from '../../log/index.ts';
import type { Metrics } from '../../metrics/index.ts';
import type { DeadLetterStore } from '../types.ts';
import { isEncoded, type Lines, type LineWriter, lineCount, type WriteOutcome } from './line-writer.ts';

/** First backoff step, and the smallest wait after any failed request (no hot loops on `Retry-After: 0`). */
export const MIN_RETRY_DELAY_MS = 200;
/** Dead-letter reasons are InfluxDB's response bodies; longer ones are cut. */
export const MAX_REASON_CHARS = 2000;

export type Sleep = (ms: number, signal: AbortSignal) => Promise<void>;

/** Thrown out of `deliver` when its signal aborts; nothing about the batch is confirmed. */
export class DeliveryStopped extends Error {
  constructor() {
    super('delivery stopped');
    this.name = 'DeliveryStopped';
  }
}

/** What the forwarder's `status()` shows about the last write attempts. */
export interface DeliveryState {
  consecutiveFailures: number;
  lastError: { status: number | 'network'; reason: string; atMs: number } | null;
  lastSuccessAtMs: number | null;
  /** When the next retry is due (Unix ms), or null when not waiting. */
  retryAtMs: number | null;
}

export interface DeliveryDeps {
  writer: LineWriter;
  deadLetters: DeadLetterStore;
  metrics: Metrics;
  logger: Logger;
  maxRetryDelayMs: number;
  signal: AbortSignal;
  sleep: Sleep;
  /** Uniform in [0, 1): jitter. */
  random: () => number;
  now: () => number;
  state: DeliveryState;
  /**
   * Counts dead-lettered lines; default `metrics.deadLettered`. A replay of dead letters counts the
   * lines rejected again elsewhere (they were counted when first dead-lettered).
   */
  deadLetteredCounter?: { inc(n: number): void };
}

export function newDeliveryState(): DeliveryState {
  return { consecutiveFailures: 0, lastError: null, lastSuccessAtMs: null, retryAtMs: null };
}

/**
 * Writes `lines` under the failure policy above. Encoded lines (the forwarder's batches, built once)
 * go out as they are on the first attempt and every retry; a batch InfluxDB rejects (400/422/413)
 * is decoded into single lines before it is bisected, so a rejection always isolates lines.
 */
export async function deliver(lines: Lines, d: DeliveryDeps): Promise<void> {
  const count = lineCount(lines);
  if (count === 0) return;
  let attempt = 0;
  for (;;) {
    if (d.signal.aborted) throw new DeliveryStopped();
    const out = await d.writer.write(lines);
    if (out.ok) {
      d.metrics.forwardedLines.inc(count);
      d.state.consecutiveFailures = 0;
      d.state.lastSuccessAtMs = d.now();
      return;
    }
    d.metrics.writeFailures.inc({ status: String(out.status) });
    d.state.consecutiveFailures++;
    d.state.lastError = { status: out.status, reason: truncate(out.reason, 300), atMs: d.now() };

    if (out.status === 400 || out.status === 422 || out.status === 413) {
      if (d.signal.aborted) throw new DeliveryStopped();
      const single = isEncoded(lines) ? lines.toLines() : lines;
      if (single.length === 1 || (out.status !== 413 && droppedAll(out.reason, single.length))) {
        await deadLetter(single, out, d);
        return;
      }
      // Bisect. On InfluxDB 1.x a 400 "partial write" has already stored the good lines; writing
      // them again is harmless because identical series + timestamp overwrite (docs/storage.md).
      const mid = single.length >>> 1;
      d.logger.debug({ status: out.status, lines: single.length }, 'influx rejected a batch: bisecting');
      await deliver(single.slice(0, mid), d);
      await deliver(single.slice(mid), d);
      return;
    }

    attempt++;
    const waitMs = retryDelayMs(out, attempt, d.maxRetryDelayMs, d.random);
    d.logger.warn(
      { status: out.status, reason: truncate(out.reason, 300), attempt, retryInMs: waitMs, lines: count },
      'influx write failed: will retry',
    );
    d.state.retryAtMs = d.now() + waitMs;
    try {
      await d.sleep(waitMs, d.signal);
    } finally {
      d.state.retryAtMs = null;
    }
  }
}

/**
 * The wait before retrying the same batch: Retry-After when a 429/503 carries one, else exponential
 * backoff with "equal jitter" (half fixed, half random) so many hubs do not retry in step. Always
 * within [MIN_RETRY_DELAY_MS, maxRetryDelayMs].
 */
export function retryDelayMs(
  out: WriteOutcome,
  attempt: number,
  maxRetryDelayMs: number,
  random: () => number,
): number {
  const max = Math.max(MIN_RETRY_DELAY_MS, maxRetryDelayMs);
  if (!out.ok && (out.status === 429 || out.status === 503) && out.retryAfterMs !== null) {
    return Math.min(max, Math.max(MIN_RETRY_DELAY_MS, out.retryAfterMs));
  }
  const ceiling = Math.min(max, MIN_RETRY_DELAY_MS * 2 ** Math.min(attempt - 1, 30));
  return Math.max(MIN_RETRY_DELAY_MS, Math.round(ceiling / 2 + (random() * ceiling) / 2));
}

/**
 * InfluxDB's partial-write errors end with `dropped=N` (1.x: `partial write: field type conflict: …
 * dropped=1`; 2.x carries the same text in its JSON message). When N is the whole batch there is
 * nothing good left to find, so bisecting would only cost 2N−1 requests.
 */
export function droppedAll(reason: string, lines: number): boolean {
  const m = /dropped=(\d+)/.exec(reason);
  return m !== null && Number(m[1]) === lines;
}

async function deadLetter(lines: readonly string[], out: WriteOutcome, d: DeliveryDeps): Promise<void> {
  if (out.ok) return;
  const status = typeof out.status === 'number' ? out.status : 0;
  await d.deadLetters.put([...lines], truncate(out.reason, MAX_REASON_CHARS), status);
  (d.deadLetteredCounter ?? d.metrics.deadLettered).inc(lines.length);
  // Debug only: the forwarder says at warn what it dead-lettered, summed and rate-limited per batch.
  d.logger.debug(
    { status, reason: truncate(out.reason, 300), lines: lines.length, first: truncate(lines[0] ?? '', 200) },
    'influx rejected lines permanently: dead-lettered',
  );
}

function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max)}…`;
}

/** A `setTimeout` sleep that ends early (resolving) when `signal` aborts. */
export const realSleep: Sleep = (ms, signal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
