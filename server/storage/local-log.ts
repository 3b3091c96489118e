/**
 * The durable local log: every accepted TELEMETRY frame, in arrival order, in an `lmdb` environment.
 *
 * - **Group commit.** Appends (and the device-state writes that go with them) queue into the current
 *   group; the group is written in ONE lmdb transaction once it is `commitWindowMs` old or holds
 *   `commitWindowBytes` (whichever first) and the previous group is durable, and every append's
 *   callback runs only after that transaction is committed AND flushed to disk. The session sends ACK
 *   from that callback, so an ACK is never ahead of durable data [PROTO-3.5].
 * - **State with data.** Device state (last ack, per-boot highest seq and time offset, descriptors) is
 *   written in the same transaction as the frames it describes: after a crash, state and frames agree.
 * - **Bounded.** `maxBytes` (logical bytes: records plus index and key overhead) and `retentionHours`
 *   with an explicit policy, every eviction counted in `logEvicted{reason}`:
 *   - embedded mode (no forwarder): the oldest frames go by age (`retention`) or size (`size`);
 *   - forwarding mode: frames InfluxDB confirmed go by age or size; unforwarded frames are never evicted
 *     under `backpressure` (appends are refused, STORAGE_FULL [PROTO-5.5]); under `drop-oldest` the
 *     oldest unforwarded frames go (`drop-oldest`).
 * - **Reader.** Implements `LogReader` for the InfluxDB forwarder and `queryHistory` for the embedded
 *   store (a (device, time) index, so a query never scans the whole log).
 *
 * Layout (named databases in one environment, `<dataDir>/local-log/`): see docs/architecture.md.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Database, type DatabaseOptions, type Key, open, type RootDatabase } from 'lmdb';
import type { ChannelDescriptor } from '../codec/index.ts';
import { decodeFrame } from '../codec/index.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import { telemetryToReadings } from '../pipeline/readings.ts';
import {
  COMMIT_TARGET_FRAMES_PER_DEVICE,
  COMMIT_WINDOW_BYTES,
  COMMIT_WINDOW_MAX_MS,
  COMMIT_WINDOW_MS,
} from './commit-window.ts';
import type { BootState, DeviceRecord } from './device-state.ts';
import { createDiskSpaceGuard, DEFAULT_MIN_FREE_BYTES } from './disk-space.ts';
import { compareEntries, IndexBacklog, type IndexEntry } from './index-backlog.ts';
import {
  decodeRecord,
  decodeRecordHeader,
  encodeRecordInto,
  pooledBinary,
  type RecordInput,
  recordLength,
} from './local-log-record.ts';
import type { HistoryQuery, LogReader, Reading, StoredEntry } from './types.ts';

export {
  COMMIT_TARGET_FRAMES_PER_DEVICE,
  COMMIT_WINDOW_BYTES,
  COMMIT_WINDOW_MAX_LIMIT_MS,
  COMMIT_WINDOW_MAX_MS,
  COMMIT_WINDOW_MS,
} from './commit-window.ts';

export type FullPolicy = 'backpressure' | 'drop-oldest';

export interface LocalLogOptions {
  /** The environment lives in `<dataDir>/local-log/`. */
  dataDir: string;
  /** Cap on logical bytes (records + index + per-entry overhead). */
  maxBytes: number;
  retentionHours: number;
  fullPolicy: FullPolicy;
  /** True when an InfluxDB forwarder drains the log: unforwarded frames are protected. */
  forwarding: boolean;
  metrics: Metrics;
  logger: Logger;
  /** Clock (Unix ms); injectable for tests. */
  now?: () => number;
  /** Period of the retention sweep; size is also enforced after every commit. Default 10 s. */
  maintenanceIntervalMs?: number;
  /** Wait for the OS to flush each commit before resolving appends (default true: an ACK means on disk). */
  ackAfterFlush?: boolean;
  /**
   * A fixed commit window (tests): a group is committed once its first write is this old (ms) or it
   * holds `commitWindowBytes`, whichever comes first (never while the previous group is in flight); 0
   * commits on the next event-loop turn. Unset: the window of {@link COMMIT_WINDOW_MS}.
   */
  commitWindowMs?: number;
  /**
   * The longest a group waits for its commit (ms) when `commitWindowMs` is not set (see
   * {@link COMMIT_WINDOW_MS}): `LOG_COMMIT_WINDOW_MAX_MS`. Default {@link COMMIT_WINDOW_MAX_MS}.
   */
  commitWindowMaxMs?: number;
  /** See `commitWindowMs`: logical bytes of frames that close a group early. Default {@link COMMIT_WINDOW_BYTES}. */
  commitWindowBytes?: number;
  /**
   * Free space to keep on the data directory's filesystem (bytes): below it appends are refused with
   * STORAGE_FULL until space returns (see disk-space.ts). Default {@link DEFAULT_MIN_FREE_BYTES}.
   */
  minFreeBytes?: number;
  /** Free-space probe (default `statfs` of `dataDir`); injectable for tests. */
  freeBytes?: (dir: string) => number;
  /** Fault injection at the storage boundary, for tests and chaos runs only. */
  faults?: StorageFaults;
}

/**
 * Hooks that let tests fail or hold commits exactly where a disk would. Never set in production.
 */
export interface StorageFaults {
  /**
   * Runs before each group's write transaction. Throw (or reject) to fail the commit as a disk error
   * would; return a promise to hold the commit until it settles (a crash test kills the hub meanwhile).
   */
  beforeCommit?(info: { frames: number }): void | Promise<void>;
  /**
   * Runs after a group's transaction committed, before the wait for the disk flush (`ackAfterFlush`).
   * Return a promise to hold the flush: no append callback (so no ACK) may run meanwhile, which is how
   * a test catches an ACK sent before the flush (kill -9 keeps the page cache, so a crash cannot).
   */
  beforeFlush?(info: { frames: number }): void | Promise<void>;
}

/** Called once the append is durable (err null) or failed. */
export type AppendCallback = (err: Error | null, offset: number) => void;

export type { HistoryQuery };

export interface HistoryResult {
  /** Sorted by time, then channel. */
  readings: Reading[];
  /** True when more readings matched than `limit`. */
  truncated: boolean;
}

export interface LoadedDevice {
  record: DeviceRecord | null;
  boots: Map<number, BootState>;
}

export interface LocalLogStats {
  frames: number;
  bytes: number;
  headOffset: number;
  firstOffset: number;
  forwardedOffset: number;
  unforwardedFrames: number;
  full: boolean;
  /** Why appends are refused now: the size cap (backpressure policy) or the disk's free space. */
  fullReason: FullReason | null;
  /** Pages the store's databases occupy (lmdb's own accounting), in bytes. */
  storeBytes: number;
  /** Free bytes on the data directory's filesystem at the last check. */
  diskFreeBytes: number;
}

export type FullReason = 'cap' | 'disk';

export interface LocalLog extends LogReader {
  /** Reads a device's persisted state (synchronous; memory-mapped). */
  loadDevice(deviceId: string): LoadedDevice;
  /**
   * Queues a state write into the current group, BY REFERENCE: the object is copied when the group
   * closes (the next event-loop turn), so callers may keep mutating it frame by frame and the group
   * persists its value as of the group's last frame — one write per device per group.
   */
  putDevice(deviceId: string, record: DeviceRecord): void;
  /**
   * Like `putDevice`, for a boot's state. `loadDevice` raises the highest seq of the boot the device
   * record's `lastAck` names to that seq: a writer may leave that boot's state unwritten while only
   * its highest seq moves with the record's `lastAck`.
   */
  putBoot(deviceId: string, bootId: number, state: BootState): void;
  removeBoot(deviceId: string, bootId: number): void;
  putDescriptors(deviceId: string, hash: number, channels: ChannelDescriptor[]): void;
  /**
   * True when an append of about `bytes` must be refused now (backpressure policy, log full of
   * unforwarded frames) [PROTO-5.5]. Counted by the caller.
   */
  isFull(): boolean;
  /** Queues a frame; `done` runs after the group holding it is durable. */
  append(entry: RecordInput, done: AppendCallback): void;
  /**
   * Runs `done` after everything queued so far is durable (used to re-ACK duplicates), with the head
   * offset at the call (every frame queued so far is at or below it).
   */
  barrier(done: AppendCallback): void;
  /**
   * Runs after a failed commit, once the failed groups' callbacks ran. Everything queued behind the
   * failed group failed with it and nothing of either is on disk: in-memory state derived from those
   * appends (device state, dedupe positions) must be reloaded from the log.
   */
  onCommitFailed(listener: (err: Error) => void): () => void;
  /** Embedded history: readings of one device in a time range, via the (device, time) index. */
  queryHistory(q: HistoryQuery): HistoryResult;
  /** Every reading of one device in a time range (and channel), in one pass, nothing kept (downsampling). */
  scanHistory(q: Omit<HistoryQuery, 'limit'>, visit: (r: Reading) => void): void;
  /** The readings of a device's newest stored frame (by sample time) and when it arrived; null when none. */
  lastReadings(deviceId: string): { receivedAtMs: number; readings: Reading[] } | null;
  /** Ids of every device with state in the log. */
  deviceIds(): string[];
  stats(): LocalLogStats;
  /** Commits what is queued, stops maintenance and closes the environment. */
  close(): Promise<void>;
}

const META_HEAD = 'head';
const META_FORWARDED = 'forwarded';
const META_BYTES = 'bytes';
const META_FRAMES = 'frames';
/** The lowest offset whose `time-index` entry may be missing (written behind); absent: none. */
const META_INDEX_FROM = 'indexFrom';
/** Bytes counted per entry on top of the record: lmdb node headers, the offset key, the index entry. */
const ENTRY_OVERHEAD = 64;
const DESCRIPTOR_CACHE_MAX = 10_000;
/** Frames evicted per maintenance transaction; keeps each write transaction short. */
const EVICT_BATCH = 5000;
/** Eviction starts above this fraction of maxBytes and goes down to LOW_WATER. */
const HIGH_WATER = 0.95;
const LOW_WATER = 0.9;
/** Free space is checked every second, and also after this many bytes were committed. */
const SPACE_CHECK_BYTES = 4 * 1024 * 1024;
const EVICTION_LOG_INTERVAL_MS = 60_000;
const CLOSE_AFTER_FAILURE_MS = 2000;

type KvWrite =
  | { db: 'devices' | 'boots' | 'descriptors'; key: Key; value: unknown }
  | { db: 'devices' | 'boots' | 'descriptors'; key: Key; remove: true };

interface Group {
  entries: RecordInput[];
  offsets: number[];
  /** Append callbacks and barriers, in call order; `doneOffsets[i]` is the head at a barrier's call. */
  dones: AppendCallback[];
  doneOffsets: number[];
  /** Logical bytes the group's appends added to `bytes` (taken back if the group fails). */
  addedBytes: number;
  /** Keyed writes that are rare (descriptors, boot removals). */
  kv: Map<string, KvWrite>;
  /**
   * State objects the caller keeps mutating (device records, boot states), by reference: written as
   * they are when the group closes, so a group costs one state write per device, not one per frame.
   */
  refs: Map<object, { db: KvWrite['db']; key: Key }>;
  /** Frames per device in the group (see COMMIT_TARGET_FRAMES_PER_DEVICE). */
  perDevice: Map<string, number>;
  /** Some device has COMMIT_TARGET_FRAMES_PER_DEVICE frames in the group. */
  deviceAtTarget: boolean;
}

function newGroup(): Group {
  return {
    entries: [],
    offsets: [],
    dones: [],
    doneOffsets: [],
    addedBytes: 0,
    kv: new Map(),
    refs: new Map(),
    perDevice: new Map(),
    deviceAtTarget: false,
  };
}

const APPEND = { append: true } as const;

/**
 * The `time-index` is written behind the frames (see index-backlog.ts): a device's entries go out with
 * a group once `INDEX_BATCH_PER_DEVICE` wait (about half a leaf page of keys), or once the oldest has
 * waited `INDEX_MAX_DELAY_MS` (a restart re-reads at most about that much of the log). A group takes at
 * most `INDEX_ENTRIES_PER_COMMIT` of them, or twice its own frames if more: a steady share per commit,
 * no long pause of the event loop, and faster than frames arrive.
 */
export const INDEX_BATCH_PER_DEVICE = 32;
export const INDEX_MAX_DELAY_MS = 5_000;
const INDEX_ENTRIES_PER_COMMIT = 4096;
/** Groups whose transaction is committing or flushing at once (see `schedule`). */
const MAX_COMMITS_IN_FLIGHT = 1;

/** lmdb's map size for a log capped at `maxBytes`: room for the cap's pages several times over. */
function mapSizeFor(maxBytes: number): number {
  const MIN = 2 ** 30;
  const MAX = 2 ** 40;
  return Math.min(MAX, Math.max(MIN, 2 ** Math.ceil(Math.log2(maxBytes * 4))));
}

/** Copies a device record or boot state (flat, plus the record's `lastAck` pair). */
function copyState(obj: object): object {
  const c = { ...obj } as { lastAck?: { bootId: number; seq: number } | null };
  if (c.lastAck) c.lastAck = { bootId: c.lastAck.bootId, seq: c.lastAck.seq };
  return c;
}

/** Largest record: a 4096-byte frame plus the header with a 64-byte device id. */
const MAX_RECORD_BYTES = 4096 + 42 + 64;

/**
 * The binary databases' options: values as given, read back as pooled copies (`pooledBinary`). lmdb
 * documents `encoder` for databases; its typings list it for the root only.
 */
const RECORD_DB = { encoder: pooledBinary } as DatabaseOptions;

export function openLocalLog(opts: LocalLogOptions): LocalLog {
  const { metrics, logger } = opts;
  const now = opts.now ?? Date.now;
  const ackAfterFlush = opts.ackAfterFlush ?? true;
  const path = join(opts.dataDir, 'local-log');
  mkdirSync(path, { recursive: true });

  // eventTurnBatching off: with it, lmdb keeps an internal promise per event turn that nobody can
  // observe, and a failed commit (ENOSPC) rejects it unhandled, which ends the process. The log batches
  // its own writes (one transaction per group), so the option bought nothing here.
  //
  // mapSize: lmdb otherwise starts with a 128 KiB map and maps the file again, from offset 0, each time
  // it outgrows it, keeping the old maps: the same pages then count several times in the process's RSS
  // (270 MiB for a 150 MiB file). One map sized for the cap (virtual address space only; the file still
  // grows as written) keeps RSS honest; lmdb grows it should the store ever exceed it.
  const root: RootDatabase = open({
    path,
    maxDbs: 8,
    noMemInit: true,
    eventTurnBatching: false,
    mapSize: mapSizeFor(opts.maxBytes),
  });
  const meta: Database = root.openDB('meta', {});
  const frames: Database<Buffer, number> = root.openDB('frames', RECORD_DB);
  // (device, first sample time, offset) → last sample time as a raw f64: the history index.
  const byTime: Database<Buffer, [string, number, number]> = root.openDB('time-index', RECORD_DB);
  const devices: Database<DeviceRecord, string> = root.openDB('devices', {});
  const boots: Database<BootState, [string, number]> = root.openDB('boots', {});
  const descriptors: Database<ChannelDescriptor[], [string, number]> = root.openDB('descriptors', {});
  const dbs: Record<KvWrite['db'], Database<unknown, Key>> = {
    devices: devices as Database<unknown, Key>,
    boots: boots as Database<unknown, Key>,
    descriptors: descriptors as Database<unknown, Key>,
  };

  let head: number = meta.get(META_HEAD) ?? 0;
  let forwarded: number = meta.get(META_FORWARDED) ?? 0;
  let bytes: number = meta.get(META_BYTES) ?? 0;
  let frameCount: number = meta.get(META_FRAMES) ?? 0;
  let appendedSinceCheck = 0;
  let firstOffset = head + 1;
  for (const key of frames.getKeys({ limit: 1 })) firstOffset = key;
  const backlog = new IndexBacklog({ batchPerDevice: INDEX_BATCH_PER_DEVICE, maxDelayMs: INDEX_MAX_DELAY_MS });
  // Frames whose index entries were still waiting when the process stopped (absent key: a log written
  // before the index was written behind, fully indexed).
  for (const { key, value } of frames.getRange({ start: meta.get(META_INDEX_FROM) ?? head + 1 })) {
    const h = decodeRecordHeader(value);
    backlog.add(h.deviceId, h.minTimeMs, h.maxTimeMs, key, now());
  }

  const descriptorCache = new Map<string, ChannelDescriptor[]>();
  /** Descriptor sets queued or committing: visible to lookups now, cached only once durable. */
  const pendingDescriptors = new Map<string, ChannelDescriptor[]>();
  const appendListeners = new Set<() => void>();
  const failListeners = new Set<(err: Error) => void>();
  const faults = opts.faults;
  const dataDir = opts.dataDir;
  const space = createDiskSpaceGuard({
    dir: dataDir,
    minFreeBytes: opts.minFreeBytes ?? DEFAULT_MIN_FREE_BYTES,
    ...(opts.freeBytes ? { freeBytes: opts.freeBytes } : {}),
    metrics,
    logger,
    now,
  });
  /** Pages the databases occupy over the logical bytes counted for them (≥ 1); refreshed by `measure`. */
  let pageFactor = 1;
  let storeBytes = 0;
  let fullReason: FullReason | null = null;
  let group = newGroup();
  let scheduled: NodeJS.Immediate | null = null;
  /** The window timer of the current group (see `schedule`). */
  let windowTimer: NodeJS.Timeout | null = null;
  /** When the current group got its first write (performance.now() ms); -1 while empty. */
  let groupOpenedAt = -1;
  /** The window's bound (ms): fixed when the caller sets `commitWindowMs` (no early commit then). */
  const fixedWindow = opts.commitWindowMs !== undefined;
  const windowMaxMs = opts.commitWindowMs ?? opts.commitWindowMaxMs ?? COMMIT_WINDOW_MAX_MS;
  const windowBytes = opts.commitWindowBytes ?? COMMIT_WINDOW_BYTES;
  /** Settles when the most recent append group is durable; barriers chain on it. */
  let lastGroup: Promise<unknown> = Promise.resolve();
  /** Every write still in flight (groups, evictions, forwarder cursor); close() waits for them. */
  const inFlight = new Set<Promise<unknown>>();
  const track = (p: Promise<unknown>) => {
    const settled = p.then(
      () => undefined,
      () => undefined,
    );
    inFlight.add(settled);
    void settled.then(() => inFlight.delete(settled));
  };
  let maintenanceRunning = false;
  let closed = false;

  const updateGauges = () => {
    metrics.logBytes.set(bytes);
    metrics.logDepthFrames.set(opts.forwarding ? unforwardedFrames() : 0);
    metrics.logIndexBacklog.set(backlog.size);
  };

  /** The cap in logical bytes: `maxBytes` scaled down by how much more room lmdb's pages take. */
  const cap = () => opts.maxBytes / pageFactor;

  /** Real size of the store from lmdb's page counts (what grows the file), and the page factor. */
  function measure(): void {
    if (closed) return;
    let pages = 0;
    let pageSize = 4096;
    for (const db of [frames, byTime, devices, boots, descriptors, meta] as Database<unknown, Key>[]) {
      const st = db.getStats() as {
        pageSize: number;
        treeBranchPageCount: number;
        treeLeafPageCount: number;
        overflowPages: number;
      };
      pageSize = st.pageSize;
      pages += st.treeBranchPageCount + st.treeLeafPageCount + st.overflowPages;
    }
    storeBytes = pages * pageSize;
    pageFactor = bytes > 1024 * 1024 ? Math.max(1, storeBytes / bytes) : 1;
    metrics.logStoreBytes.set(storeBytes);
  }

  /** Re-evaluates why appends are refused; logs and counts every transition (STORAGE_FULL on/off). */
  function refreshFull(): void {
    const capFull = opts.fullPolicy === 'backpressure' && opts.forwarding && bytes >= cap();
    const next: FullReason | null = space.short() ? 'disk' : capFull ? 'cap' : null;
    if (next === fullReason) return;
    const prev = fullReason;
    fullReason = next;
    metrics.logFull.set({ reason: 'disk' }, next === 'disk' ? 1 : 0);
    metrics.logFull.set({ reason: 'cap' }, next === 'cap' ? 1 : 0);
    if (next !== null) {
      metrics.logFullEpisodes.inc({ reason: next });
      logger.warn(
        next === 'disk'
          ? { code: 'STORAGE_FULL', reason: next, freeBytes: space.freeBytes(), minFreeBytes: space.minFreeBytes }
          : { code: 'STORAGE_FULL', reason: next, bytes, maxBytes: opts.maxBytes, unforwarded: unforwardedFrames() },
        next === 'disk'
          ? `STORAGE_FULL: less than the reserved free space on ${dataDir}; frames are refused (devices keep them) until space returns`
          : 'STORAGE_FULL: the local log is full of frames InfluxDB has not confirmed; frames are refused (devices keep them) until it drains',
      );
    } else {
      logger.info({ reason: prev }, 'storage available again: frames are accepted');
    }
  }

  function onSpaceChecked(): void {
    measure();
    refreshFull();
  }
  space.onCheck(onSpaceChecked);
  const unforwardedFrames = () => Math.max(0, head - Math.max(forwarded, firstOffset - 1));
  updateGauges();
  metrics.logFull.set({ reason: 'disk' }, 0);
  metrics.logFull.set({ reason: 'cap' }, 0);

  /**
   * Classic group commit: while a group's transaction is being committed and flushed, new frames
   * gather in the next group, which goes out as soon as the previous one is durable (at most
   * `MAX_COMMITS_IN_FLIGHT` groups in flight). A group goes out at the end of its window (see
   * {@link COMMIT_WINDOW_MS}) or once it holds `windowBytes` of frames; a busy
   * log makes its groups as large as the disk's flush time requires, instead of one fsync per turn.
   */
  let commitsInFlight = 0;
  let lastCommitFailed = false;
  /** When the window timer fires (performance.now() ms): re-armed earlier once a device reaches its target. */
  let windowDueAt = 0;
  const schedule = () => {
    if (groupOpenedAt < 0) groupOpenedAt = performance.now();
    if (scheduled !== null || closed || commitsInFlight >= MAX_COMMITS_IN_FLIGHT) return;
    const windowMs = group.deviceAtTarget ? Math.min(COMMIT_WINDOW_MS, windowMaxMs) : windowMaxMs;
    const dueAt = groupOpenedAt + windowMs;
    const wait = dueAt - performance.now();
    if (wait <= 0 || group.addedBytes >= windowBytes) {
      if (windowTimer !== null) clearTimeout(windowTimer);
      windowTimer = null;
      scheduled = setImmediate(commitGroup);
    } else if (windowTimer === null || dueAt < windowDueAt) {
      if (windowTimer !== null) clearTimeout(windowTimer);
      windowDueAt = dueAt;
      windowTimer = setTimeout(onWindow, wait);
    }
  };
  const onWindow = () => {
    windowTimer = null;
    schedule();
  };
  /** Drops whatever is scheduled for the current group (it failed, or the log closes). */
  const unschedule = () => {
    if (scheduled !== null) clearImmediate(scheduled);
    if (windowTimer !== null) clearTimeout(windowTimer);
    scheduled = null;
    windowTimer = null;
  };
  /** Maintenance waits for the group in flight (and groups wait for it): one writer sequence, so the
   * counters each transaction persists are exact (see `commitGroup`). */
  let maintenanceWanted = false;
  const groupDone = () => {
    commitsInFlight--;
    if (maintenanceWanted) {
      maintenanceWanted = false;
      runMaintenance();
    }
    if (group.dones.length > 0 || group.kv.size > 0 || group.refs.size > 0) schedule();
  };

  const scratch = Buffer.allocUnsafe(MAX_RECORD_BYTES);
  const f64 = Buffer.allocUnsafe(8);

  /** Runs a group's callbacks in order; one that throws is counted and logged, the rest still run. */
  function settle(g: Group, err: Error | null): void {
    const { dones, doneOffsets } = g;
    for (let i = 0; i < dones.length; i++) {
      try {
        (dones[i] as AppendCallback)(err, doneOffsets[i] as number);
      } catch (cbErr) {
        metrics.callbackErrors.inc({ component: 'local-log' });
        logger.error({ err: cbErr }, 'append callback threw');
      }
    }
  }

  /**
   * A group's commit failed. Nothing of it is on disk, and the group queued behind it (appends whose
   * device state may build on the failed frames) fails with it: no later ACK may cover a frame that
   * failed [PROTO-3.5]. Counters go back to what is on disk; pending descriptor sets are forgotten;
   * listeners reload what they derived from the failed appends.
   */
  function failGroups(failed: Group, err: Error): void {
    const behind = group;
    group = newGroup();
    groupOpenedAt = -1;
    unschedule();
    for (const g of [failed, behind]) {
      bytes -= g.addedBytes;
      frameCount -= g.entries.length;
    }
    const firstFailed = failed.offsets[0] ?? behind.offsets[0];
    if (firstFailed !== undefined) head = firstFailed - 1;
    pendingDescriptors.clear();
    metrics.logCommitFailures.inc();
    const lost = failed.entries.length + behind.entries.length;
    logger.error(
      { err, failedFrames: lost },
      'local log commit failed: its frames and those queued behind them are not stored (not acknowledged; devices replay them)',
    );
    const behindErr = new Error('an earlier local log commit failed', { cause: err });
    settle(failed, err);
    settle(behind, behindErr);
    for (const l of failListeners) isolate('commit-failed listener', () => l(err));
    updateGauges();
    space.check();
  }

  /** Runs one callback or listener: a throw is counted and logged, never strands the ones after it. */
  function isolate(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      metrics.callbackErrors.inc({ component: 'local-log' });
      logger.error({ err }, `${what} threw`);
    }
  }

  function commitGroup(): void {
    unschedule();
    const g = group;
    group = newGroup();
    groupOpenedAt = -1;
    const index = backlog.take(now(), Math.max(INDEX_ENTRIES_PER_COMMIT, 2 * g.entries.length));
    if (g.entries.length === 0 && g.kv.size === 0 && g.refs.size === 0 && index === null) {
      // Nothing to write (barriers only): settle after whatever is already in flight.
      track(
        lastGroup.then(
          () => settle(g, null),
          (err: Error) => settle(g, err),
        ),
      );
      return;
    }
    // Snapshot now: this transaction persists the state exactly as of this group's last frame, even
    // though the callback below runs later, when frames of the next group may already be queued.
    const writes: KvWrite[] = [...g.kv.values()];
    for (const [obj, { db, key }] of g.refs) writes.push({ db, key, value: copyState(obj) });
    const headSnap = head;
    const bytesSnap = bytes;
    const framesSnap = frameCount;
    // Entries not in the index once this commits: those still waiting, and this group's own.
    const indexFromSnap = backlog.lowestOffset() ?? g.offsets[0] ?? headSnap + 1;
    const write = () => {
      const { entries, offsets } = g;
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i] as RecordInput;
        const offset = offsets[i] as number;
        // lmdb copies the value inside putSync, so one scratch buffer serves every record.
        const len = encodeRecordInto(scratch, e);
        // Offsets only grow: MDB_APPEND skips the tree search.
        frames.putSync(offset, scratch.subarray(0, len), APPEND);
      }
      if (index !== null) {
        for (const [deviceId, triplets] of index) {
          for (let i = 0; i < triplets.length; i += 3) {
            f64.writeDoubleLE(triplets[i + 1] as number, 0);
            byTime.putSync([deviceId, triplets[i] as number, triplets[i + 2] as number], f64);
          }
        }
      }
      meta.putSync(META_INDEX_FROM, indexFromSnap);
      for (const w of writes) {
        if ('remove' in w) dbs[w.db].removeSync(w.key);
        else dbs[w.db].putSync(w.key, w.value);
      }
      meta.putSync(META_HEAD, headSnap);
      meta.putSync(META_BYTES, bytesSnap);
      meta.putSync(META_FRAMES, framesSnap);
    };
    const hold = faults?.beforeCommit;
    const tx = hold
      ? Promise.resolve()
          .then(() => hold({ frames: g.entries.length }))
          .then(() => root.transaction(write))
      : root.transaction(write);
    const holdFlush = faults?.beforeFlush;
    const durable = tx.then(() => {
      if (!ackAfterFlush) return true;
      if (holdFlush) return Promise.resolve(holdFlush({ frames: g.entries.length })).then(() => root.flushed);
      return root.flushed;
    });
    lastGroup = durable;
    commitsInFlight++;
    const descriptorKeys = [...g.kv.keys()].filter((k) => k.startsWith('descriptors\u0000'));
    const done = durable.then(
      () => {
        lastCommitFailed = false;
        metrics.logCommits.inc();
        const nowMs = now();
        backlog.settleTaken(true, nowMs);
        for (let i = 0; i < g.entries.length; i++) {
          const e = g.entries[i] as RecordInput;
          backlog.add(e.deviceId, e.minTimeMs, e.maxTimeMs, g.offsets[i] as number, nowMs);
        }
        for (const k of descriptorKeys) {
          const channels = pendingDescriptors.get(k);
          if (channels) {
            pendingDescriptors.delete(k);
            cacheDescriptors(k.slice('descriptors\u0000'.length), channels);
          }
        }
        groupDone();
        settle(g, null);
        if (g.entries.length > 0) for (const l of appendListeners) isolate('append listener', l);
        updateGauges();
        appendedSinceCheck += g.addedBytes;
        if (appendedSinceCheck >= SPACE_CHECK_BYTES) {
          appendedSinceCheck = 0;
          space.check();
        } else refreshFull();
        if (bytes > cap() * HIGH_WATER) runMaintenance();
      },
      (err: Error) => {
        commitsInFlight--;
        lastCommitFailed = true;
        backlog.settleTaken(false, now());
        observeCommitError(err);
        failGroups(g, err);
        maintenanceWanted = false;
        if (bytes > cap() * HIGH_WATER) runMaintenance();
      },
    );
    track(done);
  }

  /**
   * lmdb rejects a failed commit's promises with an error whose `commitError` is another promise that
   * rejects with the cause (e.g. ENOSPC) a moment later; unobserved, it would end the process.
   */
  function observeCommitError(err: unknown): void {
    const inner = (err as { commitError?: unknown } | null)?.commitError;
    if (inner instanceof Promise) {
      inner.catch((cause: unknown) => {
        logger.error({ err: cause }, 'local log commit error (cause)');
        space.check();
      });
    }
  }

  function entryCost(recordBytes: number, deviceId: string): number {
    return recordBytes + deviceId.length + ENTRY_OVERHEAD;
  }

  function evictable(offset: number): boolean {
    return !opts.forwarding || offset <= forwarded;
  }

  /** Deletes old frames by retention and size, per the policy; runs until nothing more applies. */
  function runMaintenance(): void {
    if (maintenanceRunning || closed) return;
    if (commitsInFlight > 0) {
      maintenanceWanted = true;
      return;
    }
    maintenanceRunning = true;
    const cutoff = now() - opts.retentionHours * 3_600_000;
    const victims: { offset: number; deviceId: string; minTimeMs: number; cost: number; reason: string }[] = [];
    let projected = bytes;
    const target = cap() * LOW_WATER;
    const overHigh = bytes > cap() * HIGH_WATER;
    for (const { key, value } of frames.getRange({ start: firstOffset })) {
      if (victims.length >= EVICT_BATCH) break;
      const h = decodeRecordHeader(value);
      const cost = entryCost(value.length, h.deviceId);
      let reason: string | null = null;
      if (evictable(key)) {
        if (h.receivedAtMs < cutoff) reason = 'retention';
        else if (overHigh && projected > target) reason = 'size';
      } else if (overHigh && projected > target && opts.fullPolicy === 'drop-oldest') {
        reason = 'drop-oldest';
      }
      if (reason === null) break;
      victims.push({ offset: key, deviceId: h.deviceId, minTimeMs: h.minTimeMs, cost, reason });
      projected -= cost;
    }
    if (victims.length === 0) {
      maintenanceRunning = false;
      updateGauges();
      return;
    }
    for (const v of victims) {
      bytes -= v.cost;
      frameCount--;
    }
    const last = victims[victims.length - 1] as (typeof victims)[number];
    const firstBefore = firstOffset;
    firstOffset = last.offset + 1;
    // A frame dropped while unforwarded moves the forwarder past it: it can never be forwarded.
    // Appends queued now belong to the next group, whose snapshot will include them; this one's
    // counts exclude them (they are not on disk yet).
    const bytesSnap = bytes - group.addedBytes;
    const framesSnap = frameCount - group.entries.length;
    commitsInFlight++;
    const tx = root.transaction(() => {
      for (const v of victims) {
        frames.removeSync(v.offset);
        byTime.removeSync([v.deviceId, v.minTimeMs, v.offset]);
      }
      meta.putSync(META_BYTES, bytesSnap);
      meta.putSync(META_FRAMES, framesSnap);
    });
    const done = tx.then(
      () => {
        const byReason = new Map<string, number>();
        for (const v of victims) byReason.set(v.reason, (byReason.get(v.reason) ?? 0) + 1);
        for (const [reason, n] of byReason) metrics.logEvicted.inc({ reason }, n);
        backlog.dropThrough(last.offset);
        for (const [reason, n] of byReason) evictionsUnlogged.set(reason, (evictionsUnlogged.get(reason) ?? 0) + n);
        logEvictions(false);
        maintenanceRunning = false;
        groupDone();
        updateGauges();
        refreshFull();
        // More to do (a batch limit was hit, or the cap is still exceeded): continue on the next turn.
        if (victims.length >= EVICT_BATCH || bytes > cap() * HIGH_WATER) setImmediate(runMaintenance);
      },
      (err: Error) => {
        observeCommitError(err);
        // Nothing was removed: the frames and their bytes are still there.
        for (const v of victims) {
          bytes += v.cost;
          frameCount++;
        }
        firstOffset = firstBefore;
        maintenanceRunning = false;
        groupDone();
        logger.error({ err }, 'local log eviction failed');
      },
    );
    track(done);
  }

  /** Evictions since the last log line, by reason: one summary line per reason and minute at most. */
  const evictionsUnlogged = new Map<string, number>();
  let evictionsLoggedAtMs = 0;
  function logEvictions(force: boolean): void {
    if (evictionsUnlogged.size === 0) return;
    const t = now();
    if (!force && t - evictionsLoggedAtMs < EVICTION_LOG_INTERVAL_MS) return;
    evictionsLoggedAtMs = t;
    for (const [reason, frames] of evictionsUnlogged) {
      if (reason === 'drop-oldest') {
        logger.warn(
          { reason, frames },
          'local log full: evicted frames InfluxDB had not confirmed (LOG_FULL_POLICY=drop-oldest); they will never be forwarded',
        );
      } else {
        logger.info(
          { reason, frames },
          `local log evicted its oldest frames (${reason === 'size' ? 'size cap' : 'retention'})`,
        );
      }
    }
    evictionsUnlogged.clear();
  }

  const maintenanceTimer = setInterval(() => {
    runMaintenance();
    logEvictions(false);
  }, opts.maintenanceIntervalMs ?? 10_000);
  maintenanceTimer.unref();
  // With no frames arriving, entries still behind go out with a group of their own once due.
  const indexTimer = setInterval(() => {
    if (backlog.size > 0 && !closed) schedule();
  }, INDEX_MAX_DELAY_MS);
  indexTimer.unref();

  /** A stored frame's readings, or null when it cannot be decoded (never fails a query). */
  const frameReadings = (deviceId: string, frame: Uint8Array, timeOffsetMs: number): Reading[] | null => {
    try {
      const m = decodeFrame(frame);
      if (m.type !== 'telemetry') return null;
      const channels = log.lookupDescriptors(deviceId, m.descriptorHash);
      if (!channels) return null;
      return telemetryToReadings(deviceId, m, channels, timeOffsetMs).readings;
    } catch {
      return null; // cannot happen for stored frames (decoded before append)
    }
  };

  /**
   * One pass over a device's frames overlapping [fromMs, toMs] via the (device, time) index, in
   * frame minTime order: `visit` gets each reading in the range (and channel); `next(minTimeMs)`
   * returning false stops before the frame.
   */
  const scanHistory = (
    q: Omit<HistoryQuery, 'limit'>,
    next: (minTimeMs: number) => boolean,
    visit: (r: Reading) => void,
  ): void => {
    const record = devices.get(q.deviceId);
    if (!record || q.toMs < q.fromMs) return;
    for (const { minTimeMs, maxTimeMs, offset } of indexRange(q.deviceId, q.fromMs - record.maxSpanMs, q.toMs, false)) {
      if (maxTimeMs < q.fromMs) continue;
      if (!next(minTimeMs)) break;
      const raw = frames.get(offset);
      if (!raw) continue; // evicted between index and frame read
      const rec = decodeRecord(raw);
      const readings = frameReadings(q.deviceId, rec.frame, rec.timeOffsetMs);
      if (!readings) continue;
      for (const r of readings) {
        if (r.timeMs < q.fromMs || r.timeMs > q.toMs) continue;
        if (q.channel !== undefined && r.channel !== q.channel) continue;
        visit(r);
      }
    }
  };

  /**
   * A device's index entries with first sample time in [fromMinMs, toMinMs], in key order (reversed
   * with `reverse`): the on-disk `time-index` merged with the entries still written behind.
   */
  function* indexRange(deviceId: string, fromMinMs: number, toMinMs: number, reverse: boolean): Generator<IndexEntry> {
    const behind = backlog.entriesFor(deviceId, fromMinMs, toMinMs);
    if (reverse) behind.reverse();
    const range = byTime.getRange(
      reverse
        ? { start: [deviceId, toMinMs, Number.MAX_SAFE_INTEGER], end: [deviceId, fromMinMs], reverse: true }
        : { start: [deviceId, fromMinMs], end: [deviceId, toMinMs, Number.MAX_SAFE_INTEGER] },
    );
    const before = reverse
      ? (a: IndexEntry, b: IndexEntry) => compareEntries(a, b) > 0
      : (a: IndexEntry, b: IndexEntry) => compareEntries(a, b) < 0;
    let i = 0;
    for (const { key, value } of range) {
      const e: IndexEntry = { minTimeMs: key[1], maxTimeMs: value.readDoubleLE(0), offset: key[2] };
      while (i < behind.length && before(behind[i] as IndexEntry, e)) yield behind[i++] as IndexEntry;
      // In both: a batch whose transaction committed a moment ago.
      if (i < behind.length && compareEntries(behind[i] as IndexEntry, e) === 0) i++;
      yield e;
    }
    while (i < behind.length) yield behind[i++] as IndexEntry;
  }

  const log: LocalLog = {
    loadDevice(deviceId) {
      const record = devices.get(deviceId) ?? null;
      const map = new Map<number, BootState>();
      for (const { key, value } of boots.getRange({ start: [deviceId], end: [deviceId, Number.MAX_SAFE_INTEGER] })) {
        map.set(key[1], value);
      }
      // The boot the last ACK names got frames up to it: its highest seq is written with the record
      // every group, the boot state only when more changes (see the ingest).
      const ack = record?.lastAck;
      const current = ack ? map.get(ack.bootId) : undefined;
      if (ack && current && current.highestSeq < ack.seq) map.set(ack.bootId, { ...current, highestSeq: ack.seq });
      return { record, boots: map };
    },
    putDevice(deviceId, record) {
      if (!group.refs.has(record)) group.refs.set(record, { db: 'devices', key: deviceId });
      schedule();
    },
    putBoot(deviceId, bootId, state) {
      if (!group.refs.has(state)) group.refs.set(state, { db: 'boots', key: [deviceId, bootId] });
      schedule();
    },
    removeBoot(deviceId, bootId) {
      const key: [string, number] = [deviceId, bootId];
      group.kv.set(`boots\u0000${deviceId}\u0000${bootId}`, { db: 'boots', key, remove: true });
      schedule();
    },
    putDescriptors(deviceId, hash, channels) {
      const key: [string, number] = [deviceId, hash];
      const k = `descriptors\u0000${deviceId}\u0000${hash}`;
      // Visible to lookups at once (the next frame may use it); cached only once committed.
      pendingDescriptors.set(k, channels);
      group.kv.set(k, { db: 'descriptors', key, value: channels });
      schedule();
    },
    isFull() {
      if (fullReason === null && opts.fullPolicy === 'backpressure' && opts.forwarding && bytes >= cap()) refreshFull();
      return fullReason !== null;
    },
    onCommitFailed(listener) {
      failListeners.add(listener);
      return () => failListeners.delete(listener);
    },
    append(entry, done) {
      const offset = ++head;
      const cost = entryCost(recordLength(entry), entry.deviceId);
      bytes += cost;
      group.addedBytes += cost;
      frameCount++;
      group.entries.push(entry);
      group.offsets.push(offset);
      group.dones.push(done);
      group.doneOffsets.push(offset);
      if (!fixedWindow && !group.deviceAtTarget) {
        const n = (group.perDevice.get(entry.deviceId) ?? 0) + 1;
        group.perDevice.set(entry.deviceId, n);
        group.deviceAtTarget = n >= COMMIT_TARGET_FRAMES_PER_DEVICE;
      }
      schedule();
    },
    barrier(done) {
      group.dones.push(done);
      group.doneOffsets.push(head);
      schedule();
    },
    queryHistory(q) {
      if (q.limit <= 0) return { readings: [], truncated: false };
      const out: Reading[] = [];
      let maxCollected = Number.NEGATIVE_INFINITY;
      let truncated = false;
      scanHistory(
        q,
        // Frames come in minTime order: once `limit` readings are held and this frame starts after all
        // of them, no later frame can contribute an earlier reading.
        (minTimeMs) => {
          if (out.length >= q.limit && minTimeMs > maxCollected) {
            truncated = true;
            return false;
          }
          return true;
        },
        (r) => {
          out.push(r);
          if (r.timeMs > maxCollected) maxCollected = r.timeMs;
        },
      );
      out.sort((a, b) => a.timeMs - b.timeMs || (a.channel < b.channel ? -1 : a.channel > b.channel ? 1 : 0));
      if (out.length > q.limit) {
        truncated = true;
        out.length = q.limit;
      }
      return { readings: out, truncated };
    },
    scanHistory(q, visit) {
      scanHistory(q, () => true, visit);
    },
    lastReadings(deviceId) {
      for (const { offset } of indexRange(deviceId, Number.NEGATIVE_INFINITY, Number.MAX_SAFE_INTEGER, true)) {
        const raw = frames.get(offset);
        if (!raw) continue;
        const rec = decodeRecord(raw);
        const readings = frameReadings(deviceId, rec.frame, rec.timeOffsetMs);
        if (readings) return { receivedAtMs: rec.receivedAtMs, readings };
      }
      return null;
    },
    deviceIds() {
      return [...devices.getKeys()] as string[];
    },
    stats() {
      return {
        frames: frameCount,
        bytes,
        headOffset: head,
        firstOffset,
        forwardedOffset: forwarded,
        unforwardedFrames: unforwardedFrames(),
        full: fullReason !== null,
        fullReason,
        storeBytes,
        diskFreeBytes: space.freeBytes(),
      };
    },

    // ── LogReader ──
    readAfter(afterOffset, max) {
      const out: StoredEntry[] = [];
      if (max <= 0) return out;
      for (const { key, value } of frames.getRange({ start: afterOffset + 1, limit: max })) {
        const rec = decodeRecord(value);
        out.push({
          offset: key,
          deviceId: rec.deviceId,
          bootId: rec.bootId,
          seq: rec.seq,
          receivedAtMs: rec.receivedAtMs,
          timeOffsetMs: rec.timeOffsetMs,
          frame: rec.frame,
        });
      }
      return out;
    },
    forwardedOffset() {
      return forwarded;
    },
    async commitForwarded(offset) {
      if (offset <= forwarded) return;
      forwarded = Math.min(offset, head);
      const snap = forwarded;
      const p = meta.put(META_FORWARDED, snap).then(() => (ackAfterFlush ? root.flushed : true));
      track(p);
      await p;
      updateGauges();
      // Frames just became evictable: a full log may now make room.
      refreshFull();
      if (bytes > cap() * HIGH_WATER) runMaintenance();
    },
    headOffset() {
      return head;
    },
    onAppend(listener) {
      appendListeners.add(listener);
      return () => appendListeners.delete(listener);
    },
    lookupDescriptors(deviceId, hash) {
      const k = `${deviceId}\u0000${hash}`;
      const hit = descriptorCache.get(k) ?? pendingDescriptors.get(`descriptors\u0000${k}`);
      if (hit) return hit;
      const stored = descriptors.get([deviceId, hash]);
      if (stored) cacheDescriptors(k, stored);
      return stored;
    },

    async close() {
      if (closed) return;
      closed = true; // no new scheduling; what is queued is committed below
      clearInterval(maintenanceTimer);
      clearInterval(indexTimer);
      space.stop();
      logEvictions(true);
      unschedule();
      for (;;) {
        while (inFlight.size > 0) await Promise.all([...inFlight]);
        // Index entries still behind stay so: the next start re-reads their frames (a few seconds' worth).
        if (group.dones.length === 0 && group.kv.size === 0 && group.refs.size === 0) break;
        commitGroup();
      }
      if (!lastCommitFailed) {
        await root.flushed;
        await root.close();
        return;
      }
      // After a failed commit (and until another one succeeds) lmdb's `flushed` and `close()` never
      // settle. Everything committed before is on disk (each ACK waited for its flush); do not hang.
      let timer: NodeJS.Timeout | undefined;
      const closedInTime = await Promise.race([
        root.close().then(() => true),
        new Promise<false>((resolve) => {
          timer = setTimeout(() => resolve(false), CLOSE_AFTER_FAILURE_MS);
        }),
      ]);
      clearTimeout(timer);
      if (!closedInTime) logger.warn('local log closed without lmdb confirming it (its last commit had failed)');
    },
  };

  function cacheDescriptors(k: string, channels: ChannelDescriptor[]): void {
    if (descriptorCache.size >= DESCRIPTOR_CACHE_MAX) {
      const oldest = descriptorCache.keys().next().value;
      if (oldest !== undefined) descriptorCache.delete(oldest);
    }
    descriptorCache.set(k, channels);
  }

  return log;
}
