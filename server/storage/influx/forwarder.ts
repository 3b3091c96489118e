/**
 * The InfluxDB forwarder: reads TELEMETRY frames from the durable local log after its cursor, turns
 * them into line protocol, writes batches of about `batchLines` lines, and advances the cursor
 * (`commitForwarded`) only after InfluxDB confirmed every line of the batch or the failure policy
 * (delivery.ts) dead-lettered it and those dead letters are on disk (batch-dead-letters.ts). The
 * local log is the only buffer that matters: a crash, a stop or an outage loses nothing, it only
 * replays from the cursor, and a replay overwrites identical points.
 *
 * Bounded: up to `maxInFlightWrites` (INFLUX_MAX_IN_FLIGHT_WRITES, default 2) batches are in flight
 * and one more is being built (each `batchLines` plus one frame's readings); the cursor passes only
 * batches confirmed in log order (`confirmedOffset`, which ACK_DURABILITY=influx waits on). Backlog
 * stays in the log, whose size policy bounds it; it shows as
 * `hub_forwarder_lag_seconds` (set here) and `hub_local_log_unforwarded_frames` (set by the log).
 */
import type { InfluxConfig } from '../../config/index.ts';
import { DEFAULT_MAX_IN_FLIGHT_WRITES } from '../../config/index.ts';
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
import { frameDeadLetterLine, LineBuffer, SeriesPrefixCache } from './line-protocol.ts';
import { createLineWriter, routeClientLogger } from './line-writer.ts';

/** Frames read from the log per `readAfter` call while filling a batch. */
const READ_CHUNK_FRAMES = 256;
/** Shortest spacing between two "dead-lettered" warnings (the ones in between are summed). */
const DEAD_LETTER_LOG_INTERVAL_MS = 10_000;
/** How often the lag and depth gauges are refreshed when nothing else happens. */
const GAUGE_REFRESH_MS = 1000;
/** (device, descriptor set) pairs whose series prefixes are kept (line-protocol.ts). */
const SERIES_CACHE_ENTRIES = 10_000;
/** A batch buffer's first size per line of `batchLines` (a line of 8-channel frames is about 70 bytes). */
const BYTES_PER_LINE_GUESS = 96;

/** Lines of the frames in (afterOffset, lastOffset], built from the log and not yet confirmed. */
interface Batch {
  afterOffset: number;
  lastOffset: number;
  /** The lines as one request body, built once, sent as it is (retries too). */
  body: LineBuffer;
  /** Frames that cannot become lines, dead-lettered before the batch is written. */
  unreadable: { line: string; reason: string }[];
  /** Confirmed (and its dead letters on disk): the cursor may pass it once every earlier batch is. */
  done: boolean;
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

/**
 * How far InfluxDB has confirmed the local log: every frame at or below `confirmedOffset()` is in
 * InfluxDB (or, for lines InfluxDB refused as bad, durably in the dead-letter store). Monotone; it
 * moves only over batches confirmed in order, at the same step as the cursor (before the cursor's
 * own disk write, which only spares a replay). What `ACK_DURABILITY=influx` waits on.
 */
export interface ConfirmedPosition {
  confirmedOffset(): number;
  /** Runs `listener(offset)` after each step of the confirmed offset; returns the unsubscriber. */
  onConfirmed(listener: (offset: number) => void): () => void;
}

export interface InfluxForwarder extends ConfirmedPosition {
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
  const deadLetterReporter = createDeadLetterReporter(logger, DEAD_LETTER_LOG_INTERVAL_MS, now);
  const batchLines = config.batchLines;
  const maxInFlight = Math.max(1, config.maxInFlightWrites ?? DEFAULT_MAX_IN_FLIGHT_WRITES);
  const seriesCache = new SeriesPrefixCache(SERIES_CACHE_ENTRIES);
  /**
   * Bodies of batches the cursor passed, reused by the next ones: the batches' bytes are allocated
   * once, not per request. At most `maxInFlight` + 1 (the batches that can exist at a time).
   */
  const spareBodies: LineBuffer[] = [];

  function newBatch(afterOffset: number): Batch {
    const body = spareBodies.pop() ?? new LineBuffer(batchLines * BYTES_PER_LINE_GUESS);
    body.reset();
    return { afterOffset, lastOffset: afterOffset, body, unreadable: [], done: false };
  }

  let running = false;
  let abort = new AbortController();
  let loopDone: Promise<void> = Promise.resolve();
  let wake: (() => void) | null = null;
  let unsubscribe: (() => void) | null = null;
  let gaugeTimer: NodeJS.Timeout | null = null;
  let pendingStats: string[] | null = null;
  /**
   * Batches written and not yet passed by the cursor, oldest first: in flight, or confirmed but
   * behind one that is not. At most `maxInFlight`, so a batch stuck in retries holds back at most
   * `maxInFlight - 1` confirmed ones (the window), never an unbounded queue.
   */
  let window: Batch[] = [];
  /** Dead letters of batches being made durable; stop() waits for them before the store closes. */
  const persisting = new Set<Promise<unknown>>();
  /** Highest confirmed offset whose cursor write has not started yet (only the latest matters). */
  let wantedOffset: number | null = null;
  /** The running cursor writer, at most one. */
  let committer: Promise<void> | null = null;
  const state = newDeliveryState();
  let writer: ReturnType<typeof createLineWriter> | null = null;
  /** Highest offset confirmed in this process. */
  let confirmed = -1;
  const confirmedListeners = new Set<(offset: number) => void>();

  function confirmedOffset(): number {
    // The cursor an earlier process committed counts too (before the first confirmation here).
    return Math.max(confirmed, log.forwardedOffset());
  }

  /**
   * The cursor may pass `offset`: tell the listeners (the ACK gate) in this step. Compared with the
   * last confirmation only, never with the cursor: the cursor write starts first and moves the log's
   * `forwardedOffset()` at once, which would hide the step from the listeners.
   */
  function confirm(offset: number): void {
    if (offset <= confirmed) return;
    confirmed = offset;
    for (const l of confirmedListeners) {
      try {
        l(offset);
      } catch (err) {
        metrics.callbackErrors.inc({ component: 'influx-forwarder' });
        logger.error({ err }, 'confirmation listener threw');
      }
    }
  }

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

  /** Resolves on the next append, stats submission, confirmed batch or stop, or after `ms`. */
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
    const { body } = batch;
    while (body.lines < batchLines) {
      const entries = log.readAfter(batch.lastOffset, READ_CHUNK_FRAMES);
      if (entries.length === 0) return;
      for (const entry of entries) {
        const result = body.appendFrame(entry, log.lookupDescriptors, seriesCache);
        if (!result.ok) {
          batch.unreadable.push({ line: frameDeadLetterLine(entry), reason: `${result.code}: ${result.reason}` });
        }
        batch.lastOffset = entry.offset;
        if (body.lines >= batchLines) return;
      }
    }
  }

  /**
   * Delivers the batch's lines, makes the batch's dead letters (unreadable frames, rejected lines)
   * durable, then marks it done. Each batch collects its own dead letters, so batches in flight at
   * the same time never persist (or lose) each other's.
   */
  async function send(batch: Batch, delivery: DeliveryDeps): Promise<void> {
    const collected = createBatchDeadLetters(deadLetters);
    const d: DeliveryDeps = { ...delivery, deadLetters: collected.store };
    // A frame that cannot become lines is kept (status 0: never sent), not dropped.
    for (const u of batch.unreadable) await d.deadLetters.put([u.line], u.reason, 0);
    await deliver(batch.body, d);
    // Stopped while the last request was in flight: the log may be closing. Not committing is safe,
    // the next start rewrites the batch (identical points overwrite).
    if (d.signal.aborted) throw new DeliveryStopped();
    if (collected.pendingLines() > 0) {
      // Dead letters on disk before the cursor passes them (a power cut must not leave them nowhere).
      // A failed put or flush throws: the step is retried whole (its lines are dead-lettered again).
      const persisted = collected.persist();
      persisting.add(persisted);
      try {
        deadLetterReporter.report(await persisted);
      } finally {
        persisting.delete(persisted);
      }
      if (d.signal.aborted) throw new DeliveryStopped();
    }
    if (batch.unreadable.length > 0) metrics.deadLettered.inc(batch.unreadable.length);
    batch.unreadable = [];
  }

  /**
   * Runs one batch to confirmation: a step that fails (the local log or the dead-letter store, never
   * InfluxDB: delivery retries that itself) is retried whole after a pause, in its own slot, while
   * the batches after it go on; the cursor waits for it (`advance`).
   */
  async function runBatch(batch: Batch, delivery: DeliveryDeps): Promise<void> {
    for (;;) {
      try {
        await send(batch, delivery);
        break;
      } catch (err) {
        if (err instanceof DeliveryStopped || delivery.signal.aborted) return;
        logger.error({ err }, 'forwarder step failed; retrying');
        await delivery.sleep(config.maxRetryDelayMs, delivery.signal);
        if (delivery.signal.aborted) return;
      }
    }
    batch.done = true;
    advance(delivery);
    notify();
  }

  /**
   * Moves the cursor over the confirmed batches at the front of the window, in order: a batch
   * confirmed before an earlier one waits for it, so the cursor never passes an unconfirmed line.
   */
  function advance(delivery: DeliveryDeps): void {
    let passed = 0;
    while (passed < window.length && (window[passed] as Batch).done) passed++;
    if (passed === 0) return;
    const last = window[passed - 1] as Batch;
    for (let i = 0; i < passed && spareBodies.length <= maxInFlight; i++) spareBodies.push((window[i] as Batch).body);
    window = window.slice(passed);
    confirm(last.lastOffset);
    if (last.lastOffset > log.forwardedOffset()) requestCommit(last.lastOffset, delivery);
    refreshGauges();
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
    const delivery: DeliveryDeps = {
      writer: writer!,
      deadLetters,
      metrics,
      logger,
      maxRetryDelayMs: config.maxRetryDelayMs,
      signal,
      sleep: deps.sleep ?? realSleep,
      random: deps.random ?? Math.random,
      now,
      state,
    };
    window = [];
    /** The next batch, built while earlier ones are in flight; it leaves when a slot is free. */
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
      const slotFree = window.length < maxInFlight;
      // A partial batch goes out when the last request left at least `flushIntervalMs` ago: right
      // away after a quiet spell (low latency), at most once per interval under a trickle of small
      // appends (few, larger requests). Full batches never wait for the interval, only for a slot.
      // Stats alone go only when nothing is in flight: they never take a slot from readings.
      const sinceLastSendMs = now() - lastSendAtMs;
      const full = batch.body.lines >= batchLines;
      const due = haveFrames && (full || sinceLastSendMs >= config.flushIntervalMs);
      const statsOnly = !haveFrames && pendingStats !== null && window.length === 0;
      if (!(slotFree && (due || statsOnly))) {
        // Nothing to send now: wait for a confirmed batch (a free slot), appends, or the rest of the
        // flush interval for a partial batch.
        const waitMs = slotFree && haveFrames ? config.flushIntervalMs - sinceLastSendMs : config.flushIntervalMs * 4;
        await waitForWork(Math.max(1, waitMs));
        continue;
      }

      if (pendingStats) for (const line of pendingStats) batch.body.appendLine(line);
      pendingStats = null;
      lastSendAtMs = now();
      window.push(batch);
      // Not awaited: the loop goes on to build the next batch. runBatch ends only confirmed or stopped.
      runBatch(batch, delivery).catch((err: unknown) => logger.error({ err }, 'forwarder batch failed'));
      // While InfluxDB works on this batch, build the next one (synchronous: decode + lines) so it
      // leaves as soon as a slot is free. At most `maxInFlight` + 1 batches exist at a time.
      batch = newBatch(batch.lastOffset);
    }
  }

  const forwarder: InfluxForwarder = {
    start() {
      if (running) return;
      running = true;
      routeClientLogger(deps.logger);
      abort = new AbortController();
      writer = createLineWriter(config, maxInFlight);
      unsubscribe = log.onAppend(notify);
      gaugeTimer = setInterval(refreshGauges, GAUGE_REFRESH_MS);
      gaugeTimer.unref();
      refreshGauges();
      const signal = abort.signal;
      loopDone = loop(signal).catch((err: unknown) => {
        logger.fatal({ err }, 'forwarder loop crashed');
      });
      logger.info(
        { url: config.url, bucket: config.bucket, batchLines, maxInFlightWrites: maxInFlight },
        'forwarding to InfluxDB',
      );
    },

    async stop() {
      if (!running) return;
      running = false;
      unsubscribe?.();
      unsubscribe = null;
      if (gaugeTimer) clearInterval(gaugeTimer);
      gaugeTimer = null;
      // In-flight requests are abandoned (up to INFLUX_TIMEOUT_MS each): their batches never commit
      // and are written again after the next start.
      abort.abort();
      notify();
      await loopDone;
      // The last confirmed batches' cursor write; the log must not close under it. Dead letters
      // still being written finish too: the store must not close under them either.
      await committer;
      while (persisting.size > 0) await Promise.allSettled([...persisting]);
      deadLetterReporter.close();
      writer?.close();
      writer = null;
      window = [];
    },

    status() {
      let lag = Number.NaN;
      try {
        lag = lagSeconds();
      } catch {
        // Unreadable log: reported by the loop; the lag is unknown.
      }
      const writing = window.some((b) => !b.done);
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

    confirmedOffset,

    onConfirmed(listener) {
      confirmedListeners.add(listener);
      return () => confirmedListeners.delete(listener);
    },

    submitStats(statLines) {
      if (pendingStats) metrics.statsDropped.inc();
      pendingStats = statLines;
      notify();
    },
  };
  return forwarder;
}
