/**
 * Dead letters are durable (committed AND flushed to disk) before the forwarder's cursor moves past
 * the lines they hold: otherwise a power cut after the cursor's flush but before the dead letters'
 * flush loses ACKed readings for good (the cursor says "done", the store never got them).
 *
 * Fault injection at the storage boundary: the real lmdb environment of the dead-letter store, whose
 * disk flush (`flushed`, what lmdb resolves once a commit is synced) the test holds back or fails.
 * Commits still happen for real; only the flush is controlled.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { InfluxConfig } from '../../server/config/index.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics, type Metrics } from '../../server/metrics/index.ts';
import { type OpenDeadLetterStore, openDeadLetterStore } from '../../server/storage/dead-letter.ts';
import { createInfluxForwarder, type InfluxForwarder } from '../../server/storage/influx/forwarder.ts';
import { FakeInflux, influxConfig, MemoryLog, telemetryFrame, until } from './forwarder-fakes.ts';

/** What the test does to lmdb's disk flush: hold it until `release`, or fail it with `error`. */
const flush = vi.hoisted(() => ({
  hold: null as Promise<void> | null,
  error: null as Error | null,
  /** Flush waits started (each `await root.flushed`). */
  waits: 0,
  /** When set, write transactions fail (as lmdb's commit does on ENOSPC). */
  commitError: null as Error | null,
  commitFailures: 0,
}));

vi.mock('lmdb', async (importOriginal) => {
  const real = await importOriginal<typeof import('lmdb')>();
  return {
    ...real,
    open: (...args: Parameters<typeof real.open>) => {
      const root = real.open(...args);
      // `flushed` lives on the environment's store prototype (shared by its child databases).
      const proto = Object.getPrototypeOf(root) as { flushed: PromiseLike<unknown>; transaction: unknown };
      const realFlushed = proto.flushed;
      Object.defineProperty(proto, 'flushed', {
        configurable: true,
        get: () => ({
          // biome-ignore lint/suspicious/noThenProperty: lmdb's `flushed` is a thenable.
          then(resolve: (v: unknown) => unknown, reject: (e: unknown) => unknown) {
            flush.waits++;
            const held = (async () => {
              if (flush.hold) await flush.hold;
              if (flush.error) throw flush.error;
              return realFlushed;
            })();
            return held.then(resolve, reject);
          },
        }),
      });
      const realTransaction = proto.transaction as (this: unknown, fn: () => unknown) => Promise<unknown>;
      Object.defineProperty(proto, 'transaction', {
        configurable: true,
        value(this: unknown, fn: () => unknown) {
          if (flush.commitError) {
            flush.commitFailures++;
            return Promise.reject(flush.commitError);
          }
          return realTransaction.call(this, fn);
        },
      });
      return root;
    },
  };
});

const T0 = Date.UTC(2024, 0, 3, 12);
/** InfluxDB rejects every `value=` line of channel `temp` (as a field-type conflict would). */
const CONFLICT =
  '{"error":"partial write: field type conflict: input field \\"value\\" on measurement \\"telemetry\\" is type float, already exists as type string dropped=1"}';

let influx: FakeInflux;
let dir: string;
let log: MemoryLog;
let metrics: Metrics;
let deadLetters: OpenDeadLetterStore;
let forwarder: InfluxForwarder | null = null;

beforeEach(async () => {
  flush.hold = null;
  flush.error = null;
  flush.waits = 0;
  flush.commitError = null;
  flush.commitFailures = 0;
  influx = new FakeInflux();
  influx.reply = (req) =>
    req.lines.some((l) => l.includes('channel=temp')) ? { status: 400, body: CONFLICT } : { status: 204 };
  dir = mkdtempSync(join(tmpdir(), 'dead-letter-durability-'));
  log = new MemoryLog(['dev-1']);
  metrics = createMetrics();
  deadLetters = openDeadLetterStore({ dataDir: dir, metrics });
});

afterEach(async () => {
  flush.hold = null;
  flush.error = null;
  flush.commitError = null;
  await forwarder?.stop();
  forwarder = null;
  await deadLetters.close();
  await influx.close();
  rmSync(dir, { recursive: true, force: true });
});

async function start(overrides: Partial<InfluxConfig> = {}): Promise<void> {
  forwarder = createInfluxForwarder({
    config: influxConfig(await influx.listen(), { maxRetryDelayMs: 200, ...overrides }),
    log,
    deadLetters,
    metrics,
    logger: createLogger('silent'),
    sleep: async () => {},
  });
  forwarder.start();
}

describe('dead letters are durable before the forwarder cursor passes them', () => {
  it('holds the cursor while the dead-letter flush is pending, and moves it once the flush lands', async () => {
    let release!: () => void;
    flush.hold = new Promise<void>((r) => {
      release = r;
    });
    log.appendFrame('dev-1', telemetryFrame({ seq: 1, baseTime: T0 }));
    await start();
    // The rejected lines are committed (visible) and the good ones confirmed by InfluxDB...
    await until(() => deadLetters.count() === 2 && (flush.waits > 0 || log.commits.length > 0));
    expect(influx.stored.size).toBeGreaterThan(0);
    // ...but not flushed yet: the cursor must not pass them (a power cut now would lose them).
    expect(log.commits).toEqual([]);
    expect(log.forwardedOffset()).toBe(0);

    release();
    await until(() => log.forwardedOffset() === 1);
    expect(deadLetters.list(10).every((d) => d.line.includes('channel=temp'))).toBe(true);
  });

  it('with two writes in flight, a later batch confirmed first does not move the cursor past dead letters not yet flushed', async () => {
    let release!: () => void;
    flush.hold = new Promise<void>((r) => {
      release = r;
    });
    // Batch 1 (frame 1): a conflicting temp line and a humidity line. Batch 2 (frame 2): humidity only.
    log.appendFrame('dev-1', telemetryFrame({ seq: 1, baseTime: T0, samples: 1, channels: [0, 1] }));
    log.appendFrame('dev-1', telemetryFrame({ seq: 2, baseTime: T0 + 10, samples: 1, channels: [1] }));
    await start({ batchLines: 2, maxInFlightWrites: 2 });
    // Batch 2 is confirmed; batch 1's rejected line is committed to the store but its flush is held.
    await until(() => influx.stored.size === 2 && deadLetters.count() === 1 && flush.waits > 0);
    expect(log.commits).toEqual([]);
    expect(log.forwardedOffset()).toBe(0);

    release();
    await until(() => log.forwardedOffset() === 2);
    // Only after the flush, in order, ending at batch 2 (one coalesced commit, or 1 then 2: timing).
    expect(log.commits.at(-1)).toBe(2);
    expect([...log.commits].sort((a, b) => a - b)).toEqual(log.commits);
    expect(deadLetters.list(10).map((d) => d.line.split(',')[1])).toEqual(['channel=temp']);
  });

  it('never moves the cursor past dead letters whose flush failed; retries and moves on once it works', async () => {
    flush.error = Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    log.appendFrame('dev-1', telemetryFrame({ seq: 1, baseTime: T0 }));
    await start();
    await until(() => flush.waits >= 3 || log.commits.length > 0);
    expect(log.commits).toEqual([]);

    flush.error = null;
    await until(() => log.forwardedOffset() === 1);
    // Retried batches dead-letter the same lines again (at least once): never fewer than the rejected ones.
    const lines = new Set(deadLetters.list(100).map((d) => d.line));
    expect(lines.size).toBe(2);
  });

  // The forwarder does not wait for each put's commit while it bisects: a failed commit must still
  // hold the cursor (it surfaces when the batch waits for its dead letters to be flushed).
  it('never moves the cursor past dead letters whose commit failed; retries and moves on once it works', async () => {
    flush.commitError = Object.assign(new Error('MDB_MAP_FULL'), { code: 'MDB_MAP_FULL' });
    log.appendFrame('dev-1', telemetryFrame({ seq: 1, baseTime: T0 }));
    await start();
    await until(() => flush.commitFailures >= 3 || log.commits.length > 0);
    expect(log.commits).toEqual([]);
    expect(deadLetters.count()).toBe(0);

    flush.commitError = null;
    await until(() => log.forwardedOffset() === 1);
    expect(new Set(deadLetters.list(100).map((d) => d.line)).size).toBe(2);
  });

  it('keeps a frame that cannot become lines through a failed commit: it is dead-lettered once the store works', async () => {
    flush.commitError = Object.assign(new Error('MDB_MAP_FULL'), { code: 'MDB_MAP_FULL' });
    log.appendFrame('dev-1', telemetryFrame({ seq: 1, baseTime: T0, hash: 0x1234 })); // no such descriptor set
    log.appendFrame('dev-1', telemetryFrame({ seq: 2, baseTime: T0, channels: [1] })); // accepted
    await start();
    await until(() => flush.commitFailures >= 2 || log.commits.length > 0);
    expect(log.commits).toEqual([]);

    flush.commitError = null;
    await until(() => log.forwardedOffset() === 2);
    const kept = deadLetters.list(10);
    expect(kept.length).toBeGreaterThanOrEqual(1);
    expect(kept.every((d) => d.status === 0 && d.line.startsWith('# frame device=dev-1 boot=7 seq=0'))).toBe(true);
  });

  it("stores a batch's run of same-reason rejections as one record: the reason once, not once per line", async () => {
    // Every other line conflicts, so bisection isolates each bad line.
    for (let seq = 1; seq <= 10; seq++) {
      log.appendFrame('dev-1', telemetryFrame({ seq, baseTime: T0 + seq * 10, samples: 1, channels: [0, 1] }));
    }
    await start();
    await until(() => log.forwardedOffset() === 10);
    const records = deadLetters.query({ limit: 10 }).records;
    expect(records.map((r) => r.lineCount)).toEqual([10]);
    expect(records[0]?.lines.every((l) => l.includes('channel=temp'))).toBe(true);
    expect(influx.stored.size).toBe(10); // the humidity lines
  });
});
