/**
 * The forwarder's batching, cursor and failure policy, driven through the real influxdb-client
 * against a fake write endpoint (an HTTP server on loopback answering scripted statuses). Waits
 * between retries go through an injected `sleep` that records the requested delay and returns at
 * once, so most tests check which delay the policy chose without waiting for it. The Retry-After
 * tests sleep for real and also check that the rewrite came no sooner than the delay (a lower bound
 * only: a busy machine can only make the wait longer).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type InfluxConfig, loadConfig } from '../../server/config/index.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics, type Metrics } from '../../server/metrics/index.ts';
import { type OpenDeadLetterStore, openDeadLetterStore } from '../../server/storage/dead-letter.ts';
import { MIN_RETRY_DELAY_MS, realSleep, retryDelayMs, type Sleep } from '../../server/storage/influx/delivery.ts';
import { createInfluxForwarder, type InfluxForwarder } from '../../server/storage/influx/forwarder.ts';
import { appendEntryLines } from '../../server/storage/influx/line-protocol.ts';
import { parseRetryAfter } from '../../server/storage/influx/line-writer.ts';
import { createStatsWriter } from '../../server/storage/influx/stats.ts';
import { FakeInflux, influxConfig, MemoryLog, type Reply, telemetryFrame, until } from './forwarder-fakes.ts';

const T0 = Date.UTC(2024, 0, 3, 12);

let influx: FakeInflux;
let url: string;
let dir: string;
let log: MemoryLog;
let deadLetters: OpenDeadLetterStore;
let metrics: Metrics;
let logText: string;
let forwarder: InfluxForwarder | null;
let sleeps: number[];

beforeEach(async () => {
  influx = new FakeInflux();
  url = await influx.listen();
  dir = mkdtempSync(join(tmpdir(), 'forwarder-test-'));
  log = new MemoryLog(['dev-1', 'dev-2']);
  metrics = createMetrics();
  deadLetters = openDeadLetterStore({ dataDir: dir, metrics });
  logText = '';
  forwarder = null;
  sleeps = [];
});

afterEach(async () => {
  await forwarder?.stop();
  await deadLetters.close();
  await influx.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Records the requested delay and returns at once. */
const recordSleep: Sleep = async (ms) => {
  sleeps.push(ms);
};
/** Records the requested delay and really waits for it. */
const recordAndSleep: Sleep = (ms, signal) => {
  sleeps.push(ms);
  return realSleep(ms, signal);
};

function start(overrides: Partial<InfluxConfig> = {}, random = () => 0.5, sleep = recordSleep): InfluxForwarder {
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logText += chunk.toString();
      cb();
    },
  });
  forwarder = createInfluxForwarder({
    config: influxConfig(url, overrides),
    log,
    deadLetters,
    metrics,
    logger: createLogger('debug', sink),
    sleep,
    random,
  });
  forwarder.start();
  return forwarder;
}

/** The lines the log holds, built the same way the forwarder builds them. */
function expectedLines(): string[] {
  const out: string[] = [];
  for (const e of log.entries) appendEntryLines(e, log.lookupDescriptors, out);
  return out;
}

function fill(frames: number, samples = 2, device = 'dev-1', baseTime = T0): void {
  for (let seq = 1; seq <= frames; seq++) {
    log.appendFrame(device, telemetryFrame({ seq, baseTime: baseTime + seq * 1000, samples }), { seq });
  }
}

async function counter(c: { get(): Promise<{ values: { value: number; labels: Record<string, unknown> }[] }> }) {
  const { values } = await c.get();
  return Object.fromEntries(values.map((v) => [JSON.stringify(v.labels), v.value]));
}

describe('forwarding', () => {
  it('writes every reading once, in batches of about batchLines, and commits the cursor after each', async () => {
    fill(100, 5); // 100 frames × 4 channels × 5 samples = 2000 lines
    start({ batchLines: 300 });
    await until(() => log.forwarded === 100);
    const all = expectedLines();
    expect(all).toHaveLength(2000);
    expect(influx.storedCount).toBe(2000);
    expect([...influx.stored].sort()).toEqual([...all].sort());
    // Batches fill up to batchLines and stop at a frame boundary (one frame = 20 lines).
    for (const r of influx.requests.slice(0, -1)) expect(r.lines).toHaveLength(300);
    // The cursor moved only forward, once per confirmed batch.
    expect(log.commits).toHaveLength(influx.requests.length);
    expect(log.commits).toEqual([...log.commits].sort((a, b) => a - b));
    expect(await counter(metrics.forwardedLines)).toEqual({ '{}': 2000 });
  });

  it('never makes a request wait for a cursor write: one write at a time, confirmed offsets coalesce', async () => {
    fill(30); // 240 lines: 3 batches of 80
    const held: (() => void)[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const commit = log.commitForwarded.bind(log);
    log.commitForwarded = async (offset: number) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise<void>((r) => held.push(r));
      await commit(offset);
      inFlight--;
    };
    // One write in flight, so the batches are confirmed in a known order (offsets 10, 20, 30).
    start({ batchLines: 80, maxInFlightWrites: 1 });
    // All three batches are written while the first cursor write is still pending…
    await until(() => influx.storedCount === 240);
    // (stored by the fake server is not yet confirmed to the forwarder: wait until it has taken the
    // third answer, or its confirmation could come after the cursor writes below.)
    await until(() => forwarder!.status().state === 'idle');
    expect(held).toHaveLength(1);
    expect(log.commits).toEqual([]);
    // …and batches 2 and 3 are committed by one write, of the highest confirmed offset.
    held.shift()!();
    await until(() => held.length === 1);
    held.shift()!();
    await until(() => log.forwarded === 30);
    expect(log.commits).toEqual([10, 30]);
    expect(maxInFlight).toBe(1);
  });

  it('keeps two writes in flight; when the first fails and the second succeeds, the cursor waits for the first', async () => {
    fill(20); // 160 lines: batch 1 = frames 1–10, batch 2 = frames 11–20
    const firstBatchLine = expectedLines()[0]!;
    let secondAnswered!: () => void;
    const second = new Promise<void>((r) => {
      secondAnswered = r;
    });
    let firstAttempts = 0;
    influx.reply = async (req) => {
      if (!req.lines.includes(firstBatchLine)) {
        setImmediate(secondAnswered); // after this answer is sent
        return { status: 204 };
      }
      if (firstAttempts++ > 0) return { status: 204 };
      // The first write is still in flight when the second one arrives, and fails after it succeeded.
      await second;
      return { status: 503, body: '{"code":"unavailable","message":"engine overloaded"}' };
    };
    let retry!: () => void;
    const retryWait: Sleep = (ms, signal) => {
      sleeps.push(ms);
      return new Promise<void>((resolve) => {
        retry = resolve;
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
    };
    start({ batchLines: 80, maxInFlightWrites: 2 }, undefined, retryWait);
    // The second batch is confirmed and the first is waiting to be retried...
    await until(() => sleeps.length === 1);
    await until(() => forwarder!.status().lastSuccessAtMs !== null);
    expect(await counter(metrics.forwardedLines)).toEqual({ '{}': 80 });
    expect(influx.requests).toHaveLength(2);
    // ...so the cursor has not moved: passing batch 2 would pass batch 1's unconfirmed lines.
    expect(log.commits).toEqual([]);
    expect(log.forwarded).toBe(0);
    expect(forwarder!.status()).toMatchObject({ state: 'retrying', forwardedOffset: 0 });

    retry();
    await until(() => log.forwarded === 20);
    // One cursor write, over both batches, once the first was confirmed.
    expect(log.commits).toEqual([20]);
    expect(influx.stored.size).toBe(160);
  });

  it('talks to the v2 write API with ms precision and a Token header, and never logs the token', async () => {
    fill(1);
    start();
    await until(() => log.forwarded === 1);
    const req = influx.requests[0]!;
    expect(req.path).toBe('/api/v2/write');
    expect(Object.fromEntries(req.query)).toEqual({ org: 'hub-org', bucket: 'telemetry', precision: 'ms' });
    expect(req.headers.authorization).toBe('Token test-token-0123456789abcdef0123456789abcdef');
    influx.reply = () => ({ status: 401, body: '{"code":"unauthorized","message":"unauthorized access"}' });
    fill(1);
    await until(() => sleeps.length >= 2);
    expect(logText).toContain('unauthorized access');
    expect(logText).not.toContain('0123456789abcdef0123456789abcdef');
  });

  it('does not advance the cursor until InfluxDB has answered', async () => {
    let release!: () => void;
    const answered = new Promise<void>((r) => {
      release = r;
    });
    influx.reply = async () => {
      await answered;
      return { status: 204 };
    };
    fill(3);
    start();
    await until(() => influx.requests.length === 1);
    expect(log.forwarded).toBe(0);
    expect(forwarder!.status()).toMatchObject({ state: 'writing', forwardedOffset: 0, headOffset: 3 });
    release();
    await until(() => log.forwarded === 3);
    expect(forwarder!.status()).toMatchObject({ state: 'idle', forwardedOffset: 3, lagSeconds: 0 });
  });

  it('sends a partial batch at once after a quiet spell, then holds partial batches for flushIntervalMs', async () => {
    start({ batchLines: 40, flushIntervalMs: 3_600_000 });
    await until(() => forwarder!.status().state === 'idle');
    const append = (seq: number) =>
      log.appendFrame('dev-1', telemetryFrame({ seq, baseTime: T0 + seq * 1000 }), { seq }); // 8 lines
    append(1);
    await until(() => log.forwarded === 1); // no wait: nothing was sent in the last hour
    expect(influx.requests.map((r) => r.lines.length)).toEqual([8]);
    append(2); // a partial batch now waits (the last request left less than flushIntervalMs ago)…
    for (let seq = 3; seq <= 6; seq++) append(seq); // …until it is full
    await until(() => log.forwarded === 6);
    expect(influx.requests.map((r) => r.lines.length)).toEqual([8, 40]);
  });

  it('dead-letters a frame that cannot become lines (status 0) and moves on', async () => {
    log.appendFrame('dev-1', telemetryFrame({ seq: 1, baseTime: T0, hash: 1234 }), { seq: 1 });
    fill(1);
    start();
    await until(() => log.forwarded === 2);
    expect(deadLetters.count()).toBe(1);
    const [dl] = deadLetters.list(10);
    expect(dl).toMatchObject({ status: 0 });
    expect(dl!.reason).toMatch(/^UNKNOWN_DESCRIPTORS: /);
    expect(dl!.line).toMatch(/^# frame device=dev-1 boot=7 seq=1 hex=4553/);
    expect(influx.storedCount).toBe(8);
  });
});

describe('rejected lines (400 / 422)', () => {
  /** Rejects a request that contains any line of device dev-2, like a field-type conflict would. */
  function rejectDev2(status: number, partial: boolean) {
    return (req: { lines: string[] }): Reply => {
      const bad = req.lines.filter((l) => l.includes('device=dev-2'));
      if (bad.length === 0) return { status: 204 };
      // InfluxDB 1.x "partial write": the good lines of the request are stored anyway.
      if (partial) for (const l of req.lines) if (!l.includes('device=dev-2')) influx.stored.add(l);
      return {
        status,
        body: JSON.stringify({
          error: `partial write: field type conflict: input field "value" on measurement "telemetry" is type float, already exists as type string dropped=${bad.length}`,
        }),
      };
    };
  }

  it.each([
    [400, true],
    [422, true],
    [400, false],
  ])(
    'HTTP %i (partial: %s): bisects, dead-letters exactly the bad lines with the reason, stores the rest',
    async (status, partial) => {
      fill(40, 2, 'dev-1');
      log.appendFrame('dev-2', telemetryFrame({ seq: 1, baseTime: T0 + 500, samples: 1, channels: [0] }), { seq: 1 });
      fill(40, 2, 'dev-1', T0 + 100_000);
      influx.reply = rejectDev2(status, partial);
      start({ batchLines: 10_000 });
      await until(() => log.forwarded === 81);
      const all = expectedLines();
      const bad = all.filter((l) => l.includes('device=dev-2'));
      expect(bad).toHaveLength(1);
      expect(deadLetters.count()).toBe(1);
      const [dl] = deadLetters.list(10);
      expect(dl).toMatchObject({ status, line: bad[0] });
      expect(dl!.reason).toContain('field type conflict');
      expect([...influx.stored].sort()).toEqual(all.filter((l) => !bad.includes(l)).sort());
      expect(await counter(metrics.deadLettered)).toEqual({ '{}': 1 });
      // Bisection of 641 lines to one bad line: about 2 × log2(641) requests, not 641.
      expect(influx.requests.length).toBeLessThan(30);
      expect(sleeps).toEqual([]); // no waiting: a rejection is not a transient failure
      // The forwarder keeps going.
      fill(1, 1, 'dev-1', T0 + 900_000);
      await until(() => log.forwarded === 82);
    },
  );

  it('dead-letters a whole request at once when InfluxDB says it dropped every line', async () => {
    log.appendFrame('dev-2', telemetryFrame({ seq: 1, baseTime: T0, samples: 10, channels: [0] }), { seq: 1 });
    influx.reply = rejectDev2(400, true);
    start();
    await until(() => log.forwarded === 1);
    expect(influx.requests).toHaveLength(1);
    expect(deadLetters.count()).toBe(10);
  });

  it('dead-letters several scattered bad lines, each exactly once', async () => {
    for (let seq = 1; seq <= 30; seq++) {
      const device = seq % 7 === 0 ? 'dev-2' : 'dev-1';
      log.appendFrame(device, telemetryFrame({ seq, baseTime: T0 + seq * 1000, samples: 3 }), { seq });
    }
    influx.reply = rejectDev2(400, false);
    start();
    await until(() => log.forwarded === 30);
    const bad = expectedLines().filter((l) => l.includes('device=dev-2'));
    expect(bad).toHaveLength(4 * 12);
    expect(
      deadLetters
        .list(1000)
        .map((d) => d.line)
        .sort(),
    ).toEqual([...bad].sort());
    expect(influx.stored.size).toBe(expectedLines().length - bad.length);
  });
});

describe('413 Request Entity Too Large', () => {
  it('splits until each request fits, dead-letters nothing', async () => {
    fill(50, 5); // 1000 lines
    influx.reply = (req) =>
      req.lines.length > 130 ? { status: 413, body: '{"error":"Request Entity Too Large"}' } : { status: 204 };
    start({ batchLines: 1000 });
    await until(() => log.forwarded === 50);
    expect(influx.stored.size).toBe(1000);
    expect(deadLetters.count()).toBe(0);
    expect(await counter(metrics.writeFailures)).toMatchObject({ '{"status":"413"}': expect.any(Number) });
  });

  it('dead-letters a single line that is still too large', async () => {
    fill(1, 1);
    influx.reply = () => ({ status: 413, body: 'too large' });
    start();
    await until(() => log.forwarded === 1);
    expect(deadLetters.list(10).map((d) => d.status)).toEqual([413, 413, 413, 413]);
  });
});

describe('transient failures: nothing lost, nothing duplicated', () => {
  function failFirst(n: number, reply: Reply) {
    let count = 0;
    return (): Reply => (count++ < n ? reply : { status: 204 });
  }

  /** Scripts `reply` and notes when each write request arrived (performance.now()). */
  function timed(reply: () => Reply): number[] {
    const arrivals: number[] = [];
    influx.reply = () => {
      arrivals.push(performance.now());
      return reply();
    };
    return arrivals;
  }
  /** Gaps between consecutive arrivals, ms. */
  const gaps = (arrivals: number[]) => arrivals.slice(1).map((t, i) => t - (arrivals[i] as number));
  /** setTimeout may fire up to 1 ms early against performance.now() (libuv keeps whole ms). */
  const TIMER_SLACK_MS = 1;

  it('429 with Retry-After: waits that many seconds, then rewrites the same batch', async () => {
    fill(2);
    const arrivals = timed(
      failFirst(2, { status: 429, body: '{"code":"too many requests"}', headers: { 'retry-after': '1' } }),
    );
    start({}, undefined, recordAndSleep);
    await until(() => log.forwarded === 2);
    expect(sleeps).toEqual([1000, 1000]);
    // The waits happened: each rewrite came at least Retry-After after the 429 before it.
    expect(arrivals).toHaveLength(3);
    for (const gap of gaps(arrivals)) expect(gap).toBeGreaterThanOrEqual(1000 - TIMER_SLACK_MS);
    expect(influx.requests.map((r) => r.lines)).toEqual([
      influx.requests[2]!.lines,
      influx.requests[2]!.lines,
      influx.requests[2]!.lines,
    ]);
    expect(influx.storedCount).toBe(16);
    expect(await counter(metrics.writeFailures)).toEqual({ '{"status":"429"}': 2 });
  });

  it('503 with Retry-After: honoured, but never longer than maxRetryDelayMs', async () => {
    fill(1);
    const arrivals = timed(failFirst(2, { status: 503, headers: { 'retry-after': '3600' } }));
    start({ maxRetryDelayMs: 300 }, undefined, recordAndSleep);
    await until(() => log.forwarded === 1);
    // The cap is what the policy asked for; the wait for it really happened.
    expect(sleeps).toEqual([300, 300]);
    for (const gap of gaps(arrivals)) expect(gap).toBeGreaterThanOrEqual(300 - TIMER_SLACK_MS);
  });

  it('5xx and network errors: exponential backoff with jitter, capped, reset after a success', async () => {
    fill(1);
    let n = 0;
    influx.reply = () => {
      n++;
      if (n <= 3) return { status: 500, body: 'engine on fire' };
      if (n <= 8) return 'destroy';
      return { status: 204 };
    };
    start({ maxRetryDelayMs: 1000 }, () => 0.999_999);
    await until(() => log.forwarded === 1);
    // ceilings 200, 400, 800, then capped at 1000; "equal jitter" picks in [ceiling/2, ceiling].
    expect(sleeps).toEqual([200, 400, 800, 1000, 1000, 1000, 1000, 1000]);
    expect(influx.storedCount).toBe(8);
    expect(await counter(metrics.writeFailures)).toEqual({ '{"status":"500"}': 3, '{"status":"network"}': 5 });
    expect(deadLetters.count()).toBe(0);
  });

  it('401/404 are retried (misconfiguration), never dead-lettered', async () => {
    fill(1);
    influx.reply = failFirst(3, {
      status: 404,
      body: '{"code":"not found","message":"bucket \\"telemetry\\" not found"}',
    });
    start();
    await until(() => log.forwarded === 1);
    expect(sleeps).toHaveLength(3);
    expect(deadLetters.count()).toBe(0);
  });

  it('stop() during a retry wait returns without committing; a restart rewrites from the cursor', async () => {
    fill(2);
    influx.reply = () => ({ status: 503 });
    let wake!: () => void;
    forwarder = createInfluxForwarder({
      config: influxConfig(url),
      log,
      deadLetters,
      metrics,
      logger: createLogger('silent'),
      sleep: (_ms, signal) =>
        new Promise<void>((resolve) => {
          wake = resolve;
          signal.addEventListener('abort', () => resolve(), { once: true });
        }),
    });
    forwarder.start();
    await until(() => forwarder!.status().state === 'retrying');
    expect(forwarder.status().lastError).toMatchObject({ status: 503 });
    await forwarder.stop();
    expect(wake).toBeTypeOf('function');
    expect(log.forwarded).toBe(0);
    expect(forwarder.status().state).toBe('stopped');

    influx.reply = () => ({ status: 204 });
    start();
    await until(() => log.forwarded === 2);
    expect(influx.storedCount).toBe(16);
  });
});

describe('stop()', () => {
  it('abandons an in-flight request: resolves without waiting for it and never commits afterwards', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    influx.reply = async () => {
      await held;
      return { status: 204 };
    };
    fill(2);
    start({ timeoutMs: 60_000 });
    await until(() => influx.requests.length === 1);
    await forwarder!.stop();
    expect(forwarder!.status().state).toBe('stopped');
    release();
    await until(() => influx.storedCount === 16);
    await new Promise((r) => setTimeout(r, 50));
    expect(log.commits).toEqual([]);
  });

  it('abandons a bisection when stopped: no dead letters written after stop()', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    influx.reply = async () => {
      await held;
      return { status: 400, body: '{"error":"unable to parse"}' };
    };
    fill(1, 1);
    start();
    await until(() => influx.requests.length === 1);
    await forwarder!.stop();
    release();
    await new Promise((r) => setTimeout(r, 50));
    expect(influx.requests).toHaveLength(1);
    expect(deadLetters.count()).toBe(0);
    expect(log.commits).toEqual([]);
  });
});

describe('local log trouble', () => {
  it('a failed cursor write is reported and retried; requests go on meanwhile', async () => {
    const commit = log.commitForwarded.bind(log);
    let failures = 1;
    log.commitForwarded = async (offset: number) => {
      if (failures-- > 0) throw new Error('disk full');
      await commit(offset);
    };
    fill(1);
    start();
    await until(() => influx.requests.length === 1);
    fill(1);
    await until(() => log.forwarded === 2);
    expect(logText.match(/forwarder cursor commit failed/g)).toHaveLength(1);
    expect(sleeps).toEqual([30_000]);
    expect(log.commits).toEqual([1, 2]);
    expect(influx.storedCount).toBe(16); // nothing written twice: the batch itself was confirmed
  });

  it('a log read that throws is retried, not fatal', async () => {
    const readAfter = log.readAfter.bind(log);
    let failures = 2;
    log.readAfter = (after: number, max: number) => {
      if (failures-- > 0) throw new Error('record version 9 is not 1');
      return readAfter(after, max);
    };
    fill(3);
    start();
    await until(() => log.forwarded === 3);
    expect(logText.match(/reading the local log failed/g)?.length).toBeGreaterThanOrEqual(1);
    expect(influx.storedCount).toBe(24);
  });
});

describe('retry policy', () => {
  const fail = (status: number | 'network', retryAfterMs: number | null = null) =>
    ({ ok: false, status, reason: '', retryAfterMs }) as const;

  it('Retry-After applies to 429 and 503 only, within [MIN_RETRY_DELAY_MS, maxRetryDelayMs]', () => {
    expect(retryDelayMs(fail(429, 7000), 1, 30_000, () => 0)).toBe(7000);
    expect(retryDelayMs(fail(503, 0), 1, 30_000, () => 0)).toBe(MIN_RETRY_DELAY_MS);
    expect(retryDelayMs(fail(503, 120_000), 1, 30_000, () => 0)).toBe(30_000);
    expect(retryDelayMs(fail(500, 7000), 1, 30_000, () => 0)).toBe(MIN_RETRY_DELAY_MS);
  });

  it('backoff doubles per attempt with jitter in [ceiling/2, ceiling], capped at maxRetryDelayMs', () => {
    for (let attempt = 1; attempt <= 40; attempt++) {
      const ceiling = Math.min(30_000, MIN_RETRY_DELAY_MS * 2 ** (attempt - 1));
      const lo = retryDelayMs(fail('network'), attempt, 30_000, () => 0);
      const hi = retryDelayMs(fail('network'), attempt, 30_000, () => 0.999_999);
      expect(lo).toBe(Math.max(MIN_RETRY_DELAY_MS, ceiling / 2));
      expect(hi).toBe(ceiling);
    }
  });

  it('parses Retry-After as delay-seconds or an HTTP-date', () => {
    expect(parseRetryAfter('5')).toBe(5000);
    expect(parseRetryAfter(' 0 ')).toBe(0);
    expect(parseRetryAfter('Wed, 21 Oct 2015 07:28:10 GMT', Date.parse('Wed, 21 Oct 2015 07:28:00 GMT'))).toBe(10_000);
    expect(parseRetryAfter('soon')).toBeNull();
    expect(parseRetryAfter(undefined)).toBeNull();
  });
});

describe('hub stats through the same write path', () => {
  it('writes submitted stats lines with the next request and counts replaced ones', async () => {
    start();
    await until(() => forwarder!.status().state === 'idle');
    forwarder!.submitStats(['hub_stats,hub=h1 live_clients=1 1000']);
    await until(() => influx.stored.has('hub_stats,hub=h1 live_clients=1 1000'));

    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    influx.reply = async () => {
      await held;
      return { status: 204 };
    };
    fill(1);
    await until(() => influx.requests.length === 2);
    forwarder!.submitStats(['hub_stats,hub=h1 live_clients=2 2000']);
    forwarder!.submitStats(['hub_stats,hub=h1 live_clients=3 3000']);
    release();
    await until(() => influx.stored.has('hub_stats,hub=h1 live_clients=3 3000'));
    expect(influx.stored.has('hub_stats,hub=h1 live_clients=2 2000')).toBe(false);
    expect(await counter(metrics.statsDropped)).toEqual({ '{}': 1 });
  });

  it('builds one hub_stats point from the metrics registry: rates since the last point, gauges, totals', async () => {
    let t = 1_700_000_000_000;
    const stats = createStatsWriter({
      metrics,
      hubId: 'hub a',
      intervalMs: 1000,
      submit: () => {},
      logger: createLogger('silent'),
      now: () => t,
    });
    metrics.framesIn.inc({ type: 'hello' }, 3);
    await stats.collect(); // baseline
    metrics.framesIn.inc({ type: 'telemetry' }, 10);
    metrics.framesIn.inc({ type: 'hello' }, 2);
    metrics.readingsStored.inc(300);
    // 100 acks: 98 under 1 ms, 2 in the (2, 5] ms bucket → rank 99 is halfway into it: 2 + 3 × 0.5 = 3.5 ms.
    for (let i = 0; i < 98; i++) metrics.ackLatency.observe(0.0008);
    metrics.ackLatency.observe(0.003);
    metrics.ackLatency.observe(0.004);
    metrics.logDepthFrames.set(42);
    metrics.logBytes.set(4096);
    metrics.forwarderLagSeconds.set(1.5);
    metrics.forwardedLines.inc(1000);
    metrics.writeFailures.inc({ status: '503' }, 2);
    metrics.writeFailures.inc({ status: 'network' });
    metrics.deadLettered.inc(4);
    // What the dead-letter store holds now (the alert rule reads it: lines waiting for an operator).
    metrics.deadLetterLines.set(9);
    metrics.liveClients.set(2);
    metrics.deviceSessions.set(7);
    t += 2000;
    expect(await stats.collect()).toEqual([
      'hub_stats,hub=hub\\ a frames_per_s=6,readings_per_s=150,ack_p99_ms=3.5,local_log_unforwarded_frames=42,' +
        'local_log_bytes=4096,forwarder_lag_s=1.5,forwarded_lines=1000,write_failures=3,dead_lettered=4,' +
        'dead_letter_lines=9,live_clients=2,device_sessions=7 1700000002000',
    ]);
  });

  it('with a fleet, adds presence counts to hub_stats and one device_status point per device', async () => {
    const row = { gaps: 0, errors: 0, droppedFrames: 0, bufferedFrames: 0, firmwareVersion: '1.0' };
    const stats = createStatsWriter({
      metrics,
      hubId: 'h',
      intervalMs: 1000,
      submit: () => {},
      logger: createLogger('silent'),
      now: () => 5000,
      fleet: () => [
        { ...row, deviceId: 'a', state: 'online', gaps: 3 },
        { ...row, deviceId: 'b b', state: 'stale', errors: 2, firmwareVersion: 'v"2"' },
        { ...row, deviceId: 'c', state: 'offline', droppedFrames: 7, bufferedFrames: 9 },
        { ...row, deviceId: 'd', state: 'online' },
      ],
    });
    const [hubStats, ...devices] = await stats.collect();
    expect(hubStats).toContain('devices_online=2,devices_stale=1,devices_offline=1 5000');
    expect(devices).toEqual([
      'device_status,device=a,hub=h state_code=2,gaps_total=3,errors_total=0,dropped_frames=0,buffered_frames=0,firmware="1.0" 5000',
      'device_status,device=b\\ b,hub=h state_code=1,gaps_total=0,errors_total=2,dropped_frames=0,buffered_frames=0,firmware="v\\"2\\"" 5000',
      'device_status,device=c,hub=h state_code=0,gaps_total=0,errors_total=0,dropped_frames=7,buffered_frames=9,firmware="1.0" 5000',
      'device_status,device=d,hub=h state_code=2,gaps_total=0,errors_total=0,dropped_frames=0,buffered_frames=0,firmware="1.0" 5000',
    ]);
  });
});

describe('configuration', () => {
  const influxEnv = { INFLUX_URL: 'http://127.0.0.1:8086', INFLUX_TOKEN: 't', INFLUX_ORG: 'o', INFLUX_BUCKET: 'b' };

  it('defaults to two writes in flight and 20000-line requests; INFLUX_MAX_IN_FLIGHT_WRITES sets 1–16', () => {
    expect(loadConfig(influxEnv).influx).toMatchObject({ maxInFlightWrites: 2, batchLines: 20_000 });
    expect(loadConfig({ ...influxEnv, INFLUX_MAX_IN_FLIGHT_WRITES: '1' }).influx?.maxInFlightWrites).toBe(1);
    expect(loadConfig({ ...influxEnv, INFLUX_MAX_IN_FLIGHT_WRITES: '16' }).influx?.maxInFlightWrites).toBe(16);
    expect(() => loadConfig({ ...influxEnv, INFLUX_MAX_IN_FLIGHT_WRITES: '0' })).toThrow(/INFLUX_MAX_IN_FLIGHT_WRITES/);
    expect(() => loadConfig({ ...influxEnv, INFLUX_MAX_IN_FLIGHT_WRITES: '17' })).toThrow(
      /INFLUX_MAX_IN_FLIGHT_WRITES/,
    );
  });

  it('keeps at most INFLUX_MAX_IN_FLIGHT_WRITES requests in flight', async () => {
    fill(40); // 320 lines: 8 batches of 40
    let inFlight = 0;
    let most = 0;
    influx.reply = async () => {
      inFlight++;
      most = Math.max(most, inFlight);
      // Answer once three are in flight (or after a while, so a forwarder that sends fewer finishes).
      const deadline = Date.now() + 500;
      while (inFlight < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, 5));
      inFlight--;
      return { status: 204 };
    };
    start({ batchLines: 40, maxInFlightWrites: 3 });
    await until(() => log.forwarded === 40);
    expect(most).toBe(3);
    expect(influx.stored.size).toBe(320);
  });
});
