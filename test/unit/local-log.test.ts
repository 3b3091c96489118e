/**
 * The durable local log on a real lmdb environment in a temp dir: group commit and callbacks, state
 * written with the frames, restart persistence, LogReader, eviction policies and embedded history.
 */
import { fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { open as openLmdb } from 'lmdb';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { descriptorHash, encodeFrame, type Telemetry, ValueType } from '../../server/codec/index.ts';
import type { Metrics } from '../../server/metrics/index.ts';
import {
  COMMIT_TARGET_FRAMES_PER_DEVICE,
  COMMIT_WINDOW_MAX_LIMIT_MS,
  COMMIT_WINDOW_MAX_MS,
  COMMIT_WINDOW_MS,
  INDEX_BATCH_PER_DEVICE,
  INDEX_MAX_DELAY_MS,
  type LocalLog,
  type LocalLogOptions,
  openLocalLog,
} from '../../server/storage/local-log.ts';
import { encodeRecord } from '../../server/storage/local-log-record.ts';
import { CRASH_DEVICES, CRASH_FRAMES_PER_DEVICE, CRASH_T0 } from './local-log-crash-child.ts';
import { testLogOptions } from './local-log-fixture.ts';

const CHANNELS = [
  { index: 0, key: 'temperature', unit: '°C', valueType: ValueType.I16, scaleExp: -1, periodMs: 1000 },
  { index: 1, key: 'door', unit: '', valueType: ValueType.BOOL, scaleExp: 0, periodMs: 0 },
];
const HASH = descriptorHash(CHANNELS);
const T0 = 1_700_000_000_000;

const dirs: string[] = [];
const logs: LocalLog[] = [];
afterEach(async () => {
  for (const l of logs.splice(0)) await l.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'local-log-test-'));
  dirs.push(d);
  return d;
}

function open(dataDir: string, over: Partial<LocalLogOptions> = {}): { log: LocalLog; metrics: Metrics } {
  const options = testLogOptions(dataDir, over);
  const metrics = options.metrics;
  const log = openLocalLog(options);
  logs.push(log);
  return { log, metrics };
}

function frame(seq: number, baseTime: number, n = 2): { bytes: Uint8Array; t: Telemetry } {
  const deltas = Array.from({ length: n }, (_, i) => i * 1000);
  const t: Telemetry = {
    type: 'telemetry',
    unsynced: false,
    bootId: 9,
    seq,
    descriptorHash: HASH,
    baseTime,
    blocks: [
      { channel: 0, valueType: ValueType.I16, deltasMs: deltas, values: deltas.map((_, i) => 200 + i) },
      { channel: 1, valueType: ValueType.BOOL, deltasMs: deltas, values: deltas.map((_, i) => i % 2 === 0) },
    ],
  };
  return { bytes: encodeFrame(t), t };
}

function append(log: LocalLog, deviceId: string, seq: number, baseTime: number, receivedAtMs = T0, n = 2) {
  const { bytes } = frame(seq, baseTime, n);
  return new Promise<number>((resolve, reject) => {
    log.append(
      {
        deviceId,
        bootId: 9,
        seq,
        receivedAtMs,
        timeOffsetMs: 0,
        frame: bytes,
        minTimeMs: baseTime,
        maxTimeMs: baseTime + (n - 1) * 1000,
      },
      (err, offset) => (err ? reject(err) : resolve(offset)),
    );
  });
}

async function counter(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await metrics.registry.getSingleMetric(name)?.get()) as
    | { values: { value: number; labels: Record<string, string> }[] }
    | undefined;
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}

describe('local log', () => {
  it('commits a group in one transaction, resolves appends in order with growing offsets', async () => {
    const { log, metrics } = open(tmp());
    const order: number[] = [];
    const ps = [1, 2, 3, 4, 5].map((s) => append(log, 'dev-a', s, T0 + s * 10_000).then((o) => order.push(o)));
    await Promise.all(ps);
    expect(order).toEqual([1, 2, 3, 4, 5]);
    expect(log.headOffset()).toBe(5);
    expect(await counter(metrics, 'hub_local_log_commits_total')).toBe(1);
    const entries = log.readAfter(2, 10);
    expect(entries.map((e) => [e.offset, e.seq, e.deviceId])).toEqual([
      [3, 3, 'dev-a'],
      [4, 4, 'dev-a'],
      [5, 5, 'dev-a'],
    ]);
    expect(new Uint8Array(entries[0]?.frame ?? [])).toEqual(frame(3, T0 + 30_000).bytes);
  });

  it('frames read from the log are the caller’s own: later reads do not change them', async () => {
    // lmdb hands the value encoding its shared read buffer; the log must copy out of it.
    const { log } = open(tmp());
    await Promise.all([1, 2, 3].map((s) => append(log, 'dev-a', s, T0 + s * 10_000, T0, 1 + s)));
    const first = log.readAfter(0, 1)[0];
    const all = log.readAfter(0, 3);
    log.readAfter(2, 1);
    log.lastReadings('dev-a');
    expect(new Uint8Array(first?.frame ?? [])).toEqual(frame(1, T0 + 10_000, 2).bytes);
    expect(all.map((e) => Buffer.from(e.frame).equals(frame(e.seq, T0 + e.seq * 10_000, 1 + e.seq).bytes))).toEqual([
      true,
      true,
      true,
    ]);
  });

  it('light load: frames appended in separate event-loop turns within the commit window share one commit', async () => {
    // A long window makes the grouping independent of the machine's speed; the default is sized by time.
    const { log, metrics } = open(tmp(), { commitWindowMs: 60_000, commitWindowBytes: 1024 * 1024 });
    const turn = () => new Promise((r) => setImmediate(r));
    const ps: Promise<number>[] = [];
    for (let s = 1; s <= 3; s++) {
      ps.push(append(log, 'dev-a', s, T0 + s * 10_000));
      await turn();
      await turn();
    }
    expect(await counter(metrics, 'hub_local_log_commits_total')).toBe(0); // still gathering
    // The window closes the group; a size of a few records does too: here the bytes close it.
    const closing = open(tmp(), { commitWindowMs: 60_000, commitWindowBytes: 1 });
    await append(closing.log, 'dev-b', 1, T0); // would wait 60 s for the window
    expect(await counter(closing.metrics, 'hub_local_log_commits_total')).toBe(1);
    await log.close(); // commits what is queued: one transaction for the three frames
    logs.splice(logs.indexOf(log), 1);
    expect(await Promise.all(ps)).toEqual([1, 2, 3]);
    expect(await counter(metrics, 'hub_local_log_commits_total')).toBe(1);
  });

  it('a small fleet trickling: frames from several devices 5 ms apart share one commit and its fsync', async () => {
    // The window's clock and timer are fake; lmdb's own scheduling (setImmediate) and threads are real.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    try {
      const { log, metrics } = open(tmp());
      const turn = () => new Promise((r) => setImmediate(r));
      const appended: Promise<number>[] = [];
      for (const device of ['dev-a', 'dev-b', 'dev-c']) {
        appended.push(append(log, device, 1, T0 + 10_000));
        vi.advanceTimersByTime(5);
        await turn(); // a window that has passed commits here
        await turn();
      }
      vi.advanceTimersByTime(COMMIT_WINDOW_MAX_MS);
      await Promise.all(appended);
      expect(await counter(metrics, 'hub_local_log_commits_total')).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });

  /**
   * Fake clock and timers for the window; lmdb's own scheduling (setImmediate) and threads are real.
   * `at(ms)` moves the clock to `ms` after the start and lets a commit that became due start;
   * `commits` lists each started commit's frame count (the storage fault hook runs as it starts).
   */
  async function withWindowClock(
    over: Partial<LocalLogOptions>,
    fn: (log: LocalLog, commits: number[], at: (ms: number) => Promise<void>) => Promise<void>,
  ): Promise<void> {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    try {
      const commits: number[] = [];
      const { log } = open(tmp(), { ...over, faults: { beforeCommit: ({ frames }) => void commits.push(frames) } });
      const start = performance.now();
      const turn = () => new Promise((r) => setImmediate(r));
      await fn(log, commits, async (ms) => {
        vi.advanceTimersByTime(start + ms - performance.now());
        await turn();
        await turn();
      });
    } finally {
      vi.useRealTimers();
    }
  }

  it('holds a group for the whole window bound while frames trickle (LOG_COMMIT_WINDOW_MAX_MS)', async () => {
    await withWindowClock({ commitWindowMaxMs: 1000 }, async (log, commits, at) => {
      const appended: Promise<number>[] = [];
      // Three slow devices, a frame each every 300 ms: none reaches its target within the window.
      for (let i = 0; i < 3; i++) {
        for (const device of ['dev-a', 'dev-b', 'dev-c']) appended.push(append(log, device, i + 1, T0 + i * 1000));
        await at(300 * (i + 1));
      }
      await at(999);
      expect(commits).toEqual([]);
      await at(1000);
      expect(commits).toEqual([9]); // one transaction, one fsync for the nine frames
      expect(await Promise.all(appended)).toHaveLength(9);
    });
  });

  it('commits early once one device has its target frames in the group: a fast device never waits out a long window', async () => {
    await withWindowClock({ commitWindowMaxMs: 1000 }, async (log, commits, at) => {
      const first = [append(log, 'dev-slow', 1, T0)];
      for (let seq = 1; seq <= COMMIT_TARGET_FRAMES_PER_DEVICE; seq++) {
        await at(seq);
        first.push(append(log, 'dev-fast', seq, T0 + seq * 1000));
      }
      // Not yet COMMIT_WINDOW_MS old: the group still gathers (a few ms of frames per commit).
      await at(COMMIT_WINDOW_MS - 1);
      expect(commits).toEqual([]);
      await at(COMMIT_WINDOW_MS);
      expect(commits).toEqual([1 + COMMIT_TARGET_FRAMES_PER_DEVICE]);
      await Promise.all(first);
      // The next group starts over: a lone slow frame waits for the whole bound again.
      const next = append(log, 'dev-slow', 2, T0 + 5000);
      await at(COMMIT_WINDOW_MS + 999);
      expect(commits).toHaveLength(1);
      await at(COMMIT_WINDOW_MS + 1000);
      expect(commits).toEqual([1 + COMMIT_TARGET_FRAMES_PER_DEVICE, 1]);
      await next;
    });
  });

  it('by default a lone frame waits COMMIT_WINDOW_MAX_MS for its commit; the bound stays far below an ACK timeout', async () => {
    expect(COMMIT_WINDOW_MS).toBeLessThanOrEqual(COMMIT_WINDOW_MAX_MS);
    expect(COMMIT_WINDOW_MAX_LIMIT_MS).toBeLessThanOrEqual(5000); // the firmware's ACK timeout is 30 s
    await withWindowClock({}, async (log, commits, at) => {
      const one = append(log, 'dev-a', 1, T0);
      await at(COMMIT_WINDOW_MAX_MS - 1);
      expect(commits).toEqual([]);
      await at(COMMIT_WINDOW_MAX_MS);
      expect(commits).toEqual([1]);
      await one;
    });
  });

  it('persists device state, boots and descriptors with the frames across a reopen', async () => {
    const dir = tmp();
    const first = open(dir).log;
    first.putDescriptors('dev-a', HASH, CHANNELS);
    first.putBoot('dev-a', 9, { highestSeq: 2, timeOffsetMs: 1234, firstSeenMs: T0 });
    first.putDevice('dev-a', { firstSeenMs: T0, lastAck: { bootId: 9, seq: 2 }, maxSpanMs: 1000 });
    await append(first, 'dev-a', 1, T0);
    await append(first, 'dev-a', 2, T0 + 5000);
    await first.commitForwarded(1);
    await first.close();
    logs.splice(logs.indexOf(first), 1);

    const { log } = open(dir);
    expect(log.headOffset()).toBe(2);
    expect(log.forwardedOffset()).toBe(1);
    const loaded = log.loadDevice('dev-a');
    expect(loaded.record).toEqual({ firstSeenMs: T0, lastAck: { bootId: 9, seq: 2 }, maxSpanMs: 1000 });
    expect(loaded.boots.get(9)).toEqual({ highestSeq: 2, timeOffsetMs: 1234, firstSeenMs: T0 });
    expect(log.lookupDescriptors('dev-a', HASH)).toEqual(CHANNELS);
    expect(log.lookupDescriptors('dev-b', HASH)).toBeUndefined();
    // Offsets continue after a reopen, never reused.
    expect(await append(log, 'dev-a', 3, T0 + 10_000)).toBe(3);
  });

  it('calls onAppend listeners after commits and barrier callbacks after earlier appends', async () => {
    const { log } = open(tmp());
    let appends = 0;
    const off = log.onAppend(() => appends++);
    const events: string[] = [];
    const { bytes } = frame(1, T0);
    const a = new Promise<void>((resolve) =>
      log.append(
        {
          deviceId: 'dev-a',
          bootId: 9,
          seq: 1,
          receivedAtMs: T0,
          timeOffsetMs: 0,
          frame: bytes,
          minTimeMs: T0,
          maxTimeMs: T0,
        },
        () => {
          events.push('append');
          resolve();
        },
      ),
    );
    const b = new Promise<void>((resolve) =>
      log.barrier(() => {
        events.push('barrier');
        resolve();
      }),
    );
    await Promise.all([a, b]);
    expect(events).toEqual(['append', 'barrier']);
    expect(appends).toBe(1);
    off();
    await append(log, 'dev-a', 2, T0);
    expect(appends).toBe(1);
  });

  it('answers history from the (device, time) index: range, channel filter, limit, other devices apart', async () => {
    const { log } = open(tmp());
    log.putDescriptors('dev-a', HASH, CHANNELS);
    log.putDescriptors('dev-b', HASH, CHANNELS);
    log.putDevice('dev-a', { firstSeenMs: T0, lastAck: null, maxSpanMs: 1000 });
    log.putDevice('dev-b', { firstSeenMs: T0, lastAck: null, maxSpanMs: 1000 });
    for (let s = 1; s <= 10; s++) await append(log, 'dev-a', s, T0 + s * 10_000);
    await append(log, 'dev-b', 1, T0 + 10_000);

    const all = log.queryHistory({ deviceId: 'dev-a', fromMs: T0, toMs: T0 + 200_000, limit: 1000 });
    expect(all.readings).toHaveLength(40);
    expect(all.truncated).toBe(false);
    expect(all.readings.every((r) => r.deviceId === 'dev-a')).toBe(true);

    // A range starting inside a frame (its second sample) still finds that frame.
    const mid = log.queryHistory({
      deviceId: 'dev-a',
      channel: 'temperature',
      fromMs: T0 + 31_000,
      toMs: T0 + 50_000,
      limit: 1000,
    });
    expect(mid.readings.map((r) => [r.timeMs - T0, r.value])).toEqual([
      [31_000, 20.1],
      [40_000, 20],
      [41_000, 20.1],
      [50_000, 20],
    ]);

    const limited = log.queryHistory({ deviceId: 'dev-a', channel: 'door', fromMs: T0, toMs: T0 + 200_000, limit: 3 });
    expect(limited.truncated).toBe(true);
    expect(limited.readings.map((r) => [r.timeMs - T0, r.value])).toEqual([
      [10_000, true],
      [11_000, false],
      [20_000, true],
    ]);
    expect(log.queryHistory({ deviceId: 'nobody', fromMs: 0, toMs: T0 * 2, limit: 10 }).readings).toEqual([]);
  });

  it('writes the time index behind the frames, a batch per device; history and the newest frame see every stored frame meanwhile', async () => {
    let clock = T0;
    const { log, metrics } = open(tmp(), { now: () => clock });
    log.putDescriptors('dev-a', HASH, CHANNELS);
    log.putDescriptors('dev-b', HASH, CHANNELS);
    log.putDevice('dev-a', { firstSeenMs: T0, lastAck: null, maxSpanMs: 1000 });
    log.putDevice('dev-b', { firstSeenMs: T0, lastAck: null, maxSpanMs: 1000 });
    const backlog = () => counter(metrics, 'hub_local_log_index_backlog_entries');
    const n = INDEX_BATCH_PER_DEVICE + 3;
    // dev-a's frames go in out of time order (the index orders them by first sample time).
    const times = Array.from({ length: n }, (_, i) => T0 + (i % 2 === 0 ? i : n + i) * 10_000);
    for (let s = 1; s <= n; s++) await append(log, 'dev-a', s, times[s - 1] as number);
    await append(log, 'dev-b', 1, T0);
    // dev-a's first batch went out with a later commit; its last entries and dev-b's one still wait.
    const waiting = await backlog();
    expect(waiting).toBeGreaterThan(0);
    expect(waiting).toBeLessThan(n + 1);

    const expectComplete = () => {
      const all = log.queryHistory({
        deviceId: 'dev-a',
        channel: 'temperature',
        fromMs: T0,
        toMs: T0 + 3 * n * 10_000,
        limit: 10_000,
      });
      expect(all.readings.map((r) => r.timeMs)).toEqual([...times].sort((a, b) => a - b).flatMap((t) => [t, t + 1000]));
      const newest = log.lastReadings('dev-a');
      expect(newest?.readings[0]?.timeMs).toBe(Math.max(...times));
      expect(log.queryHistory({ deviceId: 'dev-b', fromMs: T0, toMs: T0 + 1000, limit: 10 }).readings).toHaveLength(4);
    };
    expectComplete();

    // Once the oldest waited INDEX_MAX_DELAY_MS, the next commit writes them: nothing is behind.
    clock += INDEX_MAX_DELAY_MS;
    await append(log, 'dev-b', 2, T0 + 1_000_000);
    clock += INDEX_MAX_DELAY_MS;
    await new Promise<void>((resolve) => log.barrier(() => resolve()));
    await append(log, 'dev-b', 3, T0 + 2_000_000);
    expect(await backlog()).toBeLessThanOrEqual(1); // at most dev-b's newest, just committed
    expectComplete();
  });

  it('after a crash, frames whose index entries were still behind are found again (re-read at open)', async () => {
    const dir = tmp();
    const child = fork(join(dirname(fileURLToPath(import.meta.url)), 'local-log-crash-child.ts'), [dir], {
      execArgv: ['--import', 'tsx'],
      stdio: 'inherit',
    });
    const stored = await new Promise<number>((resolve, reject) => {
      child.once('message', (m: { stored: number }) => resolve(m.stored));
      child.once('exit', (code) => reject(new Error(`child exited (${code}) before storing`)));
    });
    expect(stored).toBe(CRASH_DEVICES.length * CRASH_FRAMES_PER_DEVICE);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;

    const { log, metrics } = open(dir);
    expect(await counter(metrics, 'hub_local_log_index_backlog_entries')).toBe(stored);
    for (const id of CRASH_DEVICES) {
      const h = log.queryHistory({ deviceId: id, fromMs: CRASH_T0, toMs: CRASH_T0 + 60_000, limit: 100 });
      expect(h.readings.map((r) => r.value)).toEqual(
        Array.from({ length: CRASH_FRAMES_PER_DEVICE }, (_, i) => (i + 1) / 10),
      );
    }
  }, 60_000); // a child process under tsx: slow to start on a loaded machine

  it('a failed commit puts the index entries it carried back: found meanwhile, written by the next commit, found after a reopen', async () => {
    const dir = tmp();
    let clock = T0;
    let failNext = false;
    const { log, metrics } = open(dir, {
      now: () => clock,
      faults: {
        beforeCommit: () => {
          if (!failNext) return;
          failNext = false;
          throw new Error('EIO: injected disk error');
        },
      },
    });
    const backlog = () => counter(metrics, 'hub_local_log_index_backlog_entries');
    const ids = ['dev-a', 'dev-b', 'dev-c'];
    for (const id of ids) {
      log.putDescriptors(id, HASH, CHANNELS);
      log.putDevice(id, { firstSeenMs: T0, lastAck: null, maxSpanMs: 1000 });
    }
    for (let s = 1; s <= 2; s++) for (const id of ids) await append(log, id, s, T0 + s * 10_000);
    expect(await backlog()).toBe(6);
    const complete = (l: LocalLog) =>
      ids.map((id) => l.queryHistory({ deviceId: id, fromMs: T0, toMs: T0 + 100_000, limit: 100 }).readings.length);

    clock += INDEX_MAX_DELAY_MS; // due: the next commit carries all six entries
    failNext = true;
    await expect(append(log, 'dev-a', 3, T0 + 30_000)).rejects.toThrow();
    expect(await backlog()).toBe(6);
    expect(complete(log)).toEqual([8, 8, 8]);

    await append(log, 'dev-a', 3, T0 + 30_000); // the replay; this commit writes the six
    expect(await backlog()).toBe(1);
    expect(complete(log)).toEqual([12, 8, 8]);
    await log.close();
    logs.splice(logs.indexOf(log), 1);
    const reopened = open(dir);
    expect(complete(reopened.log)).toEqual([12, 8, 8]);
    expect(await counter(reopened.metrics, 'hub_local_log_index_backlog_entries')).toBe(1); // only the last frame is re-read
  });

  it('evicting frames whose index entries still wait drops those entries; history and a reopen keep to what is left', async () => {
    const dir = tmp();
    const { log, metrics } = open(dir, { maxBytes: 40_000 });
    const ids = Array.from({ length: 20 }, (_, i) => `dev-${i}`);
    for (const id of ids) log.putDevice(id, { firstSeenMs: T0, lastAck: null, maxSpanMs: 1000 });
    for (const id of ids) log.putDescriptors(id, HASH, CHANNELS);
    let s = 0;
    // Fewer than a batch per device at first, so the oldest frames' entries are still waiting when evicted.
    for (let round = 1; round <= 12; round++)
      for (const id of ids) {
        await append(log, id, round, T0 + round * 10_000, Date.now(), 20);
        s++;
      }
    const evicted = () => counter(metrics, 'hub_local_log_evicted_frames_total', { reason: 'size' });
    await waitFor(async () => (await evicted()) > 0 && (await evicted()) + log.readAfter(0, 10_000).length === s);
    const left = log.readAfter(0, 10_000);
    const oldest = left[0]?.offset as number;
    expect(oldest).toBeGreaterThan(1);
    // No entry of an evicted frame is left waiting: at most the frames still stored.
    expect(await counter(metrics, 'hub_local_log_index_backlog_entries')).toBeLessThanOrEqual(left.length);
    const perDevice = (l: LocalLog) =>
      ids.map((id) => l.queryHistory({ deviceId: id, fromMs: T0, toMs: T0 + 200_000, limit: 10_000 }).readings.length);
    const storedPerDevice = ids.map((id) => left.filter((e) => e.deviceId === id).length * 40);
    expect(perDevice(log)).toEqual(storedPerDevice);
    await log.close();
    logs.splice(logs.indexOf(log), 1);
    expect(perDevice(open(dir, { maxBytes: 40_000 }).log)).toEqual(storedPerDevice);
  });

  it('a store written before the index was written behind (no indexFrom) is read as fully indexed', async () => {
    const dir = tmp();
    // The layout of docs/architecture.md §5 as the earlier version wrote it: an index entry per frame.
    mkdirSync(join(dir, 'local-log'));
    const env = openLmdb({ path: join(dir, 'local-log'), maxDbs: 8 });
    const frames = env.openDB('frames', { encoding: 'binary' });
    const index = env.openDB('time-index', { encoding: 'binary' });
    const maxTime = Buffer.alloc(8);
    await env.transaction(() => {
      for (let s = 1; s <= 3; s++) {
        const t = T0 + s * 10_000;
        const bytes = frame(s, t).bytes;
        frames.putSync(
          s,
          encodeRecord({
            deviceId: 'dev-a',
            bootId: 9,
            seq: s,
            receivedAtMs: T0,
            timeOffsetMs: 0,
            frame: bytes,
            minTimeMs: t,
            maxTimeMs: t + 1000,
          }),
        );
        maxTime.writeDoubleLE(t + 1000, 0);
        index.putSync(['dev-a', t, s], maxTime);
      }
      env.openDB('meta', {}).putSync('head', 3);
      env.openDB('devices', {}).putSync('dev-a', { firstSeenMs: T0, lastAck: null, maxSpanMs: 1000 });
      env.openDB('descriptors', {}).putSync(['dev-a', HASH], CHANNELS);
    });
    await env.close();
    const { log, metrics } = open(dir);
    expect(await counter(metrics, 'hub_local_log_index_backlog_entries')).toBe(0); // nothing re-read
    const h = log.queryHistory({
      deviceId: 'dev-a',
      channel: 'temperature',
      fromMs: T0,
      toMs: T0 + 100_000,
      limit: 100,
    });
    expect(h.readings.map((r) => r.timeMs - T0)).toEqual([10_000, 11_000, 20_000, 21_000, 30_000, 31_000]);
  });

  it('maps its store once, however much it grows (RSS counts each map of the same pages)', async () => {
    const dir = tmp();
    const { log } = open(dir);
    // ~6 MB: far past lmdb's initial 128 KiB map, which it would otherwise map again at each doubling.
    const pending: Promise<number>[] = [];
    for (let s = 1; s <= 20_000; s++) pending.push(append(log, `dev-${s % 100}`, s, T0 + s * 1000, T0, 8));
    await Promise.all(pending);
    const file = join(dir, 'local-log', 'data.mdb');
    const maps = readFileSync('/proc/self/maps', 'utf8')
      .split('\n')
      .filter((l) => l.endsWith(file));
    expect(maps).toHaveLength(1);
  });

  it('embedded mode: evicts the oldest frames by retention, counted', async () => {
    let now = T0;
    const { log, metrics } = open(tmp(), { retentionHours: 1, now: () => now, maintenanceIntervalMs: 20 });
    for (let s = 1; s <= 5; s++) await append(log, 'dev-a', s, T0, T0 + s * 60_000);
    now = T0 + 3_600_000 + 3 * 60_000 + 1; // frames received at ≤ T0+3 min are now older than 1 h
    await waitFor(
      async () => (await counter(metrics, 'hub_local_log_evicted_frames_total', { reason: 'retention' })) === 3,
    );
    expect(log.readAfter(0, 10).map((e) => e.seq)).toEqual([4, 5]);
    expect(log.stats().frames).toBe(2);
  });

  it('embedded mode: evicts the oldest frames when over the size cap, counted as size', async () => {
    const { log, metrics } = open(tmp(), { maxBytes: 40_000 });
    for (let s = 1; s <= 200; s++) await append(log, 'dev-a', s, T0 + s * 1000, Date.now(), 20);
    const evictedBy = () => counter(metrics, 'hub_local_log_evicted_frames_total', { reason: 'size' });
    // Every frame is either still in the log or counted as evicted, once the eviction commits settle.
    await waitFor(async () => (await evictedBy()) > 0 && (await evictedBy()) + log.readAfter(0, 1000).length === 200);
    expect(log.stats().bytes).toBeLessThanOrEqual(40_000);
    const left = log.readAfter(0, 1000);
    expect(left[left.length - 1]?.seq).toBe(200); // newest kept
    expect(log.isFull()).toBe(false); // embedded mode never refuses
  });

  it('forwarding + backpressure: unforwarded frames are never evicted; the log reports full until forwarded', async () => {
    const { log, metrics } = open(tmp(), { maxBytes: 40_000, forwarding: true, fullPolicy: 'backpressure' });
    let s = 0;
    while (!log.isFull()) await append(log, 'dev-a', ++s, T0 + s * 1000, Date.now(), 20);
    const head = log.headOffset();
    expect(await counter(metrics, 'hub_local_log_evicted_frames_total', { reason: 'drop-oldest' })).toBe(0);
    expect(log.readAfter(0, 1000)).toHaveLength(head);
    expect(log.stats().unforwardedFrames).toBe(head);
    await log.commitForwarded(head);
    await waitFor(async () => (await counter(metrics, 'hub_local_log_evicted_frames_total', { reason: 'size' })) > 0);
    expect(log.isFull()).toBe(false);
  });

  it('forwarding + drop-oldest: the oldest unforwarded frames go, counted as drop-oldest', async () => {
    const { log, metrics } = open(tmp(), { maxBytes: 40_000, forwarding: true, fullPolicy: 'drop-oldest' });
    for (let s = 1; s <= 200; s++) await append(log, 'dev-a', s, T0 + s * 1000, Date.now(), 20);
    const droppedBy = () => counter(metrics, 'hub_local_log_evicted_frames_total', { reason: 'drop-oldest' });
    await waitFor(async () => (await droppedBy()) > 0 && (await droppedBy()) + log.readAfter(0, 1000).length === 200);
    expect(log.isFull()).toBe(false);
    expect(log.stats().bytes).toBeLessThanOrEqual(40_000);
    const dropped = await droppedBy();
    // The forwarder simply continues with what is left: readAfter(0) starts past the dropped frames.
    expect(log.readAfter(0, 1)[0]?.offset).toBe(dropped + 1);
    expect(log.stats().unforwardedFrames).toBe(200 - dropped);
  });
});

async function waitFor(cond: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not met');
    await new Promise((r) => setTimeout(r, 10));
  }
}
