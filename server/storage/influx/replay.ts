/**
 * Replays dead letters once their cause is fixed (docs/storage.md §4, "Replay"): the matching records,
 * oldest first, go to InfluxDB again in requests of about `batchLines` lines under the forwarder's
 * failure policy (`deliver`: bisect 400/422, split 413). Lines InfluxDB now accepts leave the store;
 * lines it rejects again stay, as new records with the new reason (and `replays` + 1).
 *
 * Records of stored frames that could not become lines (status 0) are never sent: they are not line
 * protocol. Unlike the forwarder, a replay never waits on a transient failure (network, 5xx, 401/403/404, 429):
 * it stops at once and reports why, leaving the records it had not settled untouched, so an operator
 * command or an admin request never hangs. Each record is settled (removed, rejected lines re-kept)
 * after InfluxDB answered for all of its lines (the records of one request in one transaction): a
 * crash in between only replays it again, and identical points overwrite.
 */
import type { InfluxConfig } from '../../config/index.ts';
import type { Logger } from '../../log/index.ts';
import type { Metrics } from '../../metrics/index.ts';
import type { DeadLetterFilter, DeadLetterRecord, OpenDeadLetterStore, Rejected } from '../dead-letter.ts';
import type { DeadLetterStore } from '../types.ts';
import { type DeliveryDeps, deliver, newDeliveryState, type Sleep } from './delivery.ts';
import { createLineWriter, routeClientLogger } from './line-writer.ts';

/** Records one replay settles at most unless told otherwise. */
export const DEFAULT_REPLAY_LIMIT = 100_000;

export interface ReplayRequest {
  filter: DeadLetterFilter;
  /** Most records to replay. Default {@link DEFAULT_REPLAY_LIMIT}. */
  limit?: number;
  /** Write to this bucket (database) instead of the configured one, e.g. a fresh one. */
  bucket?: string;
}

export interface ReplayResult {
  /** Records settled (removed, their rejected lines kept again). */
  records: number;
  /** Lines InfluxDB accepted: gone from the store. */
  storedLines: number;
  /** Lines InfluxDB rejected again: kept with the new reason. */
  rejectedLines: number;
  /**
   * Matching records not sent: stored frames that could not become lines (status 0, `# frame …`).
   * They are not line protocol (InfluxDB would take the comment and store nothing); they stay.
   */
  skippedRecords: number;
  /** False when a transient failure stopped the replay; the records not settled are untouched. */
  complete: boolean;
  /** Why the replay stopped early (InfluxDB's status and message). */
  stoppedBy: { status: number | 'network'; reason: string } | null;
}

export interface DeadLetterReplayer {
  /** Replays the matching records; concurrent calls run one after another. */
  replay(req: ReplayRequest): Promise<ReplayResult>;
}

export interface ReplayerDeps {
  /** Where to write (its `bucket` may differ from the forwarder's, e.g. a fresh database). */
  config: InfluxConfig;
  store: OpenDeadLetterStore;
  metrics: Metrics;
  logger: Logger;
  now?: () => number;
}

/** Thrown by the replay's `sleep`: a transient failure ends the replay instead of waiting. */
class Unavailable extends Error {}

export function createDeadLetterReplayer(deps: ReplayerDeps): DeadLetterReplayer {
  const { store, metrics } = deps;
  const logger = deps.logger.child({ component: 'dead-letter-replay' });
  const now = deps.now ?? Date.now;
  let queue: Promise<unknown> = Promise.resolve();

  async function run(req: ReplayRequest): Promise<ReplayResult> {
    const config = req.bucket === undefined ? deps.config : { ...deps.config, bucket: req.bucket };
    const result: ReplayResult = {
      records: 0,
      storedLines: 0,
      rejectedLines: 0,
      skippedRecords: 0,
      complete: true,
      stoppedBy: null,
    };
    // Ids first: re-rejected lines become new records (higher ids) that this pass must not meet again.
    const ids = store.ids(req.filter, req.limit ?? DEFAULT_REPLAY_LIMIT);
    if (ids.length === 0) return result;
    // The client's own failure logs go to debug (process-wide; the hub's forwarder does the same).
    routeClientLogger(deps.logger);
    const capacity = config.batchLines * 2 + 10_000;
    const writer = createLineWriter(config);
    const rejectedNow = new Map<string, { reason: string; status: number }>();
    const collector: DeadLetterStore = {
      async put(lines, reason, status) {
        for (const l of lines) rejectedNow.set(l, { reason, status });
      },
      flushed: async () => {},
      count: () => rejectedNow.size,
      list: () => [],
    };
    const state = newDeliveryState();
    const stop: Sleep = async () => {
      throw new Unavailable();
    };
    const delivery: DeliveryDeps = {
      writer,
      deadLetters: collector,
      metrics,
      logger,
      maxRetryDelayMs: config.maxRetryDelayMs,
      signal: new AbortController().signal,
      sleep: stop,
      random: Math.random,
      now,
      state,
      deadLetteredCounter: { inc: () => {} },
    };
    /** Sends the records' lines (requests of at most `capacity` lines), then settles each record. */
    async function settle(batch: DeadLetterRecord[]): Promise<void> {
      if (batch.length === 0) return;
      rejectedNow.clear();
      const lines = batch.flatMap((r) => r.lines);
      for (let i = 0; i < lines.length; i += capacity) await deliver(lines.slice(i, i + capacity), delivery);
      const items = batch.map((record) => ({ id: record.id, rejected: rejectedOf(record, rejectedNow) }));
      // One transaction and one flush for the whole batch.
      const settled = await store.settleReplay(items);
      for (const [i, record] of batch.entries()) {
        // False: gone meanwhile (dropped, evicted, or replayed by another process): nothing to settle.
        if (!settled[i]) continue;
        const again = (items[i]?.rejected ?? []).reduce((n, g) => n + g.lines.length, 0);
        result.records++;
        result.rejectedLines += again;
        result.storedLines += record.lineCount - again;
      }
    }

    try {
      let batch: DeadLetterRecord[] = [];
      let lines = 0;
      for (const [i, id] of ids.entries()) {
        const record = store.get(id);
        if (record?.status === 0) result.skippedRecords++;
        else if (record) {
          batch.push(record);
          lines += record.lineCount;
        }
        if (lines >= config.batchLines || i === ids.length - 1) {
          await settle(batch);
          batch = [];
          lines = 0;
        }
      }
    } catch (err) {
      if (!(err instanceof Unavailable)) throw err;
      result.complete = false;
      result.stoppedBy = state.lastError && { status: state.lastError.status, reason: state.lastError.reason };
    } finally {
      writer.close();
    }
    metrics.deadLetterReplayed.inc({ outcome: 'stored' }, result.storedLines);
    metrics.deadLetterReplayed.inc({ outcome: 'rejected' }, result.rejectedLines);
    const summary = { ...result, bucket: config.bucket, filter: req.filter };
    if (result.complete) logger.info(summary, 'replayed dead letters');
    else logger.warn(summary, 'dead-letter replay stopped: InfluxDB did not accept the write; nothing else changed');
    return result;
  }

  return {
    replay(req) {
      const next = queue.then(() => run(req));
      queue = next.catch(() => undefined);
      return next;
    },
  };
}

/** The record's lines InfluxDB rejected in this pass, grouped by (status, reason). */
function rejectedOf(
  record: DeadLetterRecord,
  rejectedNow: Map<string, { reason: string; status: number }>,
): Rejected[] {
  const groups = new Map<string, Rejected>();
  for (const line of record.lines) {
    const r = rejectedNow.get(line);
    if (!r) continue;
    const key = `${r.status}\n${r.reason}`;
    const g = groups.get(key) ?? { lines: [], reason: r.reason, status: r.status };
    g.lines.push(line);
    groups.set(key, g);
  }
  return [...groups.values()];
}
