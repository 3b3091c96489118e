/**
 * The InfluxDB forwarder: reads TELEMETRY frames from the durable local log after its cursor, turns
 * them into line protocol, writes batches of about `batchLines` lines, and advances the cursor
 * (`commitForwarded`) only after InfluxDB confirmed every line of the batch or the failure policy
 * (delivery.ts) dead-lettered it and those dead letters are on disk (batch-dead-letters.ts). The
 * local log is the only buffer that matters: a crash, a stop or an outage loses nothing, it only
 * replays from the cursor, and a replay overwrites identical points.
 *
 * Bounded: at most one batch (`batchLines` plus one frame's readings) is held in memory, and one
 * request is in flight. Backlog stays in the log, whose size policy bounds it; it shows as
 * `hub_forwarder_lag_seconds` (set here) and `hub_local_log_unforwarded_frames` (set by the log).
 */
import type { InfluxConfig } from '../../config/index.ts';
import type { Logger } from '../../log/index.ts';
import type { Metrics } from '../../metrics/index.ts';
import type { DeadLetterStore, LogReader } from '../types.ts';
import { createBatchDeadLetters, createDeadLetterReporter } from './batch-dead-letters.ts';
import {
  type DeliveryDeps,
  type DeliveryState,
  DeliveryStopped,
  deliver,
  newDeliveryState,
  realSleep,
  type Sleep,
} from './delivery.ts';
import { appendEntryLines, frameDeadLetterLine } from './line-protocol.ts';
import { createLineWriter, routeClientLogger } from './line-writer.ts';

/** Frames read from the log per `readAfter` call while filling a batch. */
const READ_CHUNK_FRAMES = 256;
/** Shortest spacing between two "dead-lettered" warnings (the ones in between are summed). */
const DEAD_LETTER_LOG_INTERVAL_MS = 10_000;
/** How often the lag and depth gauges are refreshed when nothing else happens. */
const GAUGE_REFRESH_MS = 1000;

/** Lines of the frames in (afterOffset, lastOffset], built from the log and not yet confirmed. */
interface Batch {
  afterOffset: number;
  lastOffset: number;
  lines: string[];
  /** Frames that cannot become lines, dead-lettered before the batch is written. */
  unreadable: { line: string; reason: string }[];
}

function newBatch(afterOffset: number): Batch {
  return { afterOffset, lastOffset: afterOffset, lines: [], unreadable: [] };
}

export interface ForwarderDeps {
  config: InfluxConfig;
  log: LogReader;
  deadLetters: DeadLetterStore;
  metrics: Metrics;
  logger: Logger;
  /** Test hooks: how to wait between retries, jitter source, wall clock. */
  sleep?: Sleep;
  random?: () => number;
  now?: () => number;
}

export interface ForwarderStatus {
  state: 'stopped' | 'idle' | 'writing' | 'retrying';
  /** Highest log offset InfluxDB has confirmed. */
  forwardedOffset: number;
  headOffset: number;
  /** Age of the oldest unconfirmed frame, seconds (0 when caught up; NaN when the log cannot be read). */
  lagSeconds: number;
  lastSuccessAtMs: number | null;
  lastError: DeliveryState['lastError'];
  retryAtMs: number | null;
  deadLetteredLines: number;
}

export interface InfluxForwarder {
  start(): void;
  /**
   * Stops reading, ends a retry wait at once, abandons an in-flight request (its batch is rewritten
   * after the next start), and resolves when the loop has exited. Never commits after it resolved.
   */
  stop(): Promise<void>;
  status(): ForwarderStatus;
  /**
   * Queues extra lines (hub stats) for the next write. Holds one set at a time: a newer set replaces
   * an unsent one (counted in `hub_forwarder_stats_dropped_total`), so an outage cannot grow it.
   */
  submitStats(lines: string[]): void;
}

export function createInfluxForwarder(deps: ForwarderDeps): InfluxForwarder {
  const { config, log, deadLetters, metrics } = deps;
  const logger = deps.logger.child({ component: 'influx-forwarder' });
  const now = deps.now ?? Date.now;
  /** The running loop's dead letters, collected per batch and made durable before the cursor moves. */
  let batchDeadLetters = createBatchDeadLetters(deadLetters);
  const deadLetterReporter = createDeadLetterReporter(logger, DEAD_LETTER_LOG_INTERVAL_MS, now);
  const batchLines = config.batchLines;

  let running = false;
  let writing = false;
  let abort = new AbortController();
  let loopDone: Promise<void> = Promise.resolve();
  let wake: (() => void) | null = null;
  let unsubscribe: (() => void) | null = null;
  let gaugeTimer: NodeJS.Timeout | null = null;
  let pendingStats: string[] | null = null;
  /** Highest confirmed offset whose cursor write has not started yet (only the latest matters). */
  let wantedOffset: number | null = null;
  /** The running cursor writer, at most one. */
  let committer: Promise<void> | null = null;
  const state = newDeliveryState();
  let writer: ReturnType<typeof createLineWriter> | null = null;

  /** Age of the oldest frame InfluxDB has not confirmed, in seconds (0 when caught up). */
  function lagSeconds(): number {
    const forwarded = log.forwardedOffset();
    const oldest = log.headOffset() > forwarded ? log.readAfter(forwarded, 1)[0] : undefined;
    return oldest ? Math.max(0, now() - oldest.receivedAtMs) / 1000 : 0;
  }

  function refreshGauges(): void {
    // `hub_local_log_unforwarded_frames` is the local log's to set: it knows what it evicted.
    try {
      metrics.forwarderLagSeconds.set(lagSeconds());
    } catch {
      // The loop reports an unreadable log; a timer must not throw.
    }
  }

  function notify(): void {
    const w = wake;
    wake = null;
    w?.();
  }

  /** Resolves on the next append, stats submission or stop, or after `ms`. */
  function waitForWork(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        wake = null;
        resolve();
      }, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Reads frames after the batch's last offset until it holds `batchLines` lines or the log is drained. */
  function fill(batch: Batch): void {
    while (batch.lines.length < batchLines) {
      const entries = log.readAfter(batch.lastOffset, READ_CHUNK_FRAMES);
      if (entries.length === 0) return;
      for (const entry of entries) {
        const result = appendEntryLines(entry, log.lookupDescriptors, batch.lines);
        if (!result.ok) {
          batch.unreadable.push({ line: frameDeadLetterLine(entry), reason: `${result.code}: ${result.reason}` });
        }
        batch.lastOffset = entry.offset;
        if (batch.lines.length >= batchLines) return;
      }
    }
  }

  /**
   * Delivers the batch's lines, makes the batch's dead letters (unreadable frames, rejected lines)
   * durable, then moves the durable cursor.
   */
  async function send(batch: Batch, extra: string[] | null, delivery: DeliveryDeps): Promise<void> {
    // A frame that cannot become lines is kept (status 0: never sent), not dropped.
    for (const u of batch.unreadable) await delivery.deadLetters.put([u.line], u.reason, 0);
    await deliver(extra ? batch.lines.concat(extra) : batch.lines, delivery);
    // Stopped while the last request was in flight: the log may be closing. Not committing is safe,
    // the next start rewrites the batch (identical points overwrite).
    if (delivery.signal.aborted) throw new DeliveryStopped();
    if (batchDeadLetters.pendingLines() > 0) {
      // Dead letters on disk before the cursor passes them (a power cut must not leave them nowhere).
      // A failed put or flush throws: the step is retried whole (its lines are dead-lettered again).
      const summary = await batchDeadLetters.persist();
      if (delivery.signal.aborted) throw new DeliveryStopped();
      deadLetterReporter.report(summary);
    }
    if (batch.unreadable.length > 0) metrics.deadLettered.inc(batch.unreadable.length);
    batch.unreadable = [];
    if (batch.lastOffset > batch.afterOffset) requestCommit(batch.lastOffset, delivery);
  }

  /**
   * Moves the durable cursor to `offset` without making the next request wait for the write and
   * its disk flush: InfluxDB already holds the lines, so a crash before the write lands only replays
   * them (identical points overwrite). One write at a time; offsets confirmed meanwhile coalesce into
   * the next write (only the highest matters), so nothing queues up.
   */
  function requestCommit(offset: number, delivery: DeliveryDeps): void {
    wantedOffset = offset;
    if (committer === null) committer = commitLoop(delivery);
  }

  async function commitLoop(delivery: DeliveryDeps): Promise<void> {
    while (wantedOffset !== null) {
      const offset = wantedOffset;
      wantedOffset = null;
      try {
        await log.commitForwarded(offset);
      } catch (err) {
        logger.error({ err, offset }, 'forwarder cursor commit failed; retrying');
        wantedOffset ??= offset; // a newer confirmed offset covers this one
        if (delivery.signal.aborted) break;
        await delivery.sleep(config.maxRetryDelayMs, delivery.signal);
      }
    }
    committer = null;
  }

  async function loop(signal: AbortSignal): Promise<void> {
    batchDeadLetters = createBatchDeadLetters(deadLetters);
    const delivery: DeliveryDeps = {
      writer: writer!,
      deadLetters: batchDeadLetters.store,
      metrics,
      logger,
      maxRetryDelayMs: config.maxRetryDelayMs,
      signal,
      sleep: deps.sleep ?? realSleep,
      random: deps.random ?? Math.random,
      now,
      state,
    };
    const stopped = new Promise<'stopped'>((resolve) => {
      if (signal.aborted) resolve('stopped');
      signal.addEventListener('abort', () => resolve('stopped'), { once: true });
    });
    let batch = newBatch(log.forwardedOffset());
    let lastSendAtMs = Number.NEGATIVE_INFINITY;

    while (!signal.aborted) {
      try {
        fill(batch);
      } catch (err) {
        // The log could not be read (closing, or a record it cannot decode): keep what was read and
        // try again later rather than let the loop die.
        logger.error({ err }, 'reading the local log failed; retrying');
        await delivery.sleep(config.maxRetryDelayMs, signal);
        continue;
      }
      const haveFrames = batch.lastOffset > batch.afterOffset;
      // A partial batch goes out when the last request left at least `flushIntervalMs` ago: right
      // away after a quiet spell (low latency), at most once per interval under a trickle of small
      // appends (few, larger requests). Full batches never wait.
      const sinceLastSendMs = now() - lastSendAtMs;
      const due = haveFrames && sinceLastSendMs >= config.flushIntervalMs;
      if (!(batch.lines.length >= batchLines || due || (!haveFrames && pendingStats))) {
        // Nothing due: wait for appends (or the rest of the flush interval for a partial batch).
        const waitMs = haveFrames ? config.flushIntervalMs - sinceLastSendMs : config.flushIntervalMs * 4;
        await waitForWork(Math.max(1, waitMs));
        continue;
      }

      const extra = pendingStats;
      pendingStats = null;
      writing = true;
      lastSendAtMs = now();
      const sending = send(batch, extra, delivery);
      // While InfluxDB works on this batch, build the next one (synchronous: decode + lines), so the
      // next request leaves as soon as this one is confirmed. At most two batches exist at a time.
      const next = newBatch(batch.lastOffset);
      try {
        if (batch.lines.length >= batchLines) fill(next);
      } catch {
        // Read again (and reported) at the top of the loop.
      }
      try {
        // stop() does not wait for an in-flight request (up to INFLUX_TIMEOUT_MS): it abandons it.
        if ((await Promise.race([sending.then(() => 'sent' as const), stopped])) === 'stopped') {
          sending.catch(() => {});
          break;
        }
      } catch (err) {
        if (err instanceof DeliveryStopped) break;
        // Only the log or the dead-letter store can land here (delivery never throws otherwise):
        // keep the batch, wait, and try the whole step again.
        logger.error({ err }, 'forwarder step failed; retrying');
        if (extra && !pendingStats) pendingStats = extra;
        await delivery.sleep(config.maxRetryDelayMs, signal);
        continue;
      } finally {
        writing = false;
      }
      batch = next;
      refreshGauges();
    }
  }

  const forwarder: InfluxForwarder = {
    start() {
      if (running) return;
      running = true;
      routeClientLogger(deps.logger);
      abort = new AbortController();
      writer = createLineWriter(config, batchLines * 2 + 10_000);
      unsubscribe = log.onAppend(notify);
      gaugeTimer = setInterval(refreshGauges, GAUGE_REFRESH_MS);
      gaugeTimer.unref();
      refreshGauges();
      const signal = abort.signal;
      loopDone = loop(signal).catch((err: unknown) => {
        logger.fatal({ err }, 'forwarder loop crashed');
      });
      logger.info({ url: config.url, bucket: config.bucket, batchLines }, 'forwarding to InfluxDB');
    },

    async stop() {
      if (!running) return;
      running = false;
      unsubscribe?.();
      unsubscribe = null;
      if (gaugeTimer) clearInterval(gaugeTimer);
      gaugeTimer = null;
      abort.abort();
      notify();
      await loopDone;
      // The last confirmed batches' cursor write; the log must not close under it. Dead letters
      // still being written finish too: the store must not close under them either.
      await committer;
      await batchDeadLetters.idle();
      deadLetterReporter.close();
      writer?.close();
      writer = null;
    },

    status() {
      let lag = Number.NaN;
      try {
        lag = lagSeconds();
      } catch {
        // Unreadable log: reported by the loop; the lag is unknown.
      }
      return {
        state: !running ? 'stopped' : state.retryAtMs !== null ? 'retrying' : writing ? 'writing' : 'idle',
        forwardedOffset: log.forwardedOffset(),
        headOffset: log.headOffset(),
        lagSeconds: lag,
        lastSuccessAtMs: state.lastSuccessAtMs,
        lastError: state.lastError,
        retryAtMs: state.retryAtMs,
        deadLetteredLines: deadLetters.count(),
      };
    },

    submitStats(statLines) {
      if (pendingStats) metrics.statsDropped.inc();
      pendingStats = statLines;
      if (!writing) notify();
    },
  };
  return forwarder;
}
