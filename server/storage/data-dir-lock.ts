/**
 * One hub per data directory: `<dataDir>/hub.lock`, held for the hub's lifetime.
 *
 * Two hubs on one data directory corrupt each other (both number log records from their own counters),
 * so the second one must refuse to start. Node has no `flock`, so the lock is a file that names its
 * holder, created atomically (written to a temp file, then `link()`ed into place: it appears complete
 * or not at all; `O_EXCL` where the filesystem cannot link) and judged on every conflict:
 *
 * - **Same kernel and pid namespace** (the usual case: same machine, same container): the holder is
 *   alive when `/proc/<pid>` exists AND its start time (`/proc/<pid>/stat` field 22) is the one the
 *   lock recorded, so a pid reused after `kill -9` is not mistaken for the holder. Exact, no waiting.
 * - **Anything else** (another container with its own pid namespace, another machine on a shared
 *   volume, a system without `/proc`): the holder touches the lock file every `heartbeatMs`; a lock
 *   whose mtime is older than `staleMs` is stale. A new hub that meets a fresh foreign lock watches it
 *   for up to `staleMs`: if the heartbeat moves the holder is alive (refused), if not it is taken over.
 *   This is why a hub in a container restarted after `kill -9` may wait up to `staleMs` (30 s) first.
 *
 * Breaking a stale lock runs under a short-lived second lock (`hub.lock.break`, O_EXCL) and re-reads
 * the lock under it, so two new hubs that both found the same stale lock cannot both take it.
 *
 * Only the hub takes this lock; the `hub devices` CLI shares the directory (the registry has its own
 * per-write lock, `devices.json.lock`).
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  readlinkSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { readFile, utimes } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { HubError } from '../errors.ts';
import type { Logger } from '../log/index.ts';

export const LOCK_FILE = 'hub.lock';

/** Who holds (or held) the lock, as written in the lock file. */
export interface LockHolder {
  pid: number;
  host: string;
  /** When the holder took the lock (Unix ms). */
  sinceMs: number;
  /** The port it listens on, once known. */
  port: number | null;
  /** `/proc/<pid>/stat` start time (clock ticks since boot), to tell a reused pid apart. */
  procStart: string | null;
  /** `/proc/sys/kernel/random/boot_id` of the holder's kernel. */
  bootId: string | null;
  /** `/proc/self/ns/pid` of the holder: pids are only comparable inside one namespace. */
  pidNs: string | null;
  /** Random id of this acquisition: a release only removes its own lock. */
  nonce: string;
}

export interface DataDirLockOptions {
  dataDir: string;
  logger?: Logger;
  /** How often the holder touches the lock file (default 5 s). */
  heartbeatMs?: number;
  /** A lock not touched for this long is stale when its holder cannot be checked directly (default 30 s). */
  staleMs?: number;
  now?: () => number;
  /** Host name written into the lock (default `os.hostname()`); tests stand in for another machine. */
  host?: string;
}

export interface DataDirLock {
  readonly path: string;
  readonly holder: Readonly<LockHolder>;
  /** Records the listening port in the lock file, for the message a second hub prints. */
  setPort(port: number): void;
  /** Stops the heartbeat and removes the lock file if it is still ours. Idempotent. */
  release(): void;
}

/** Thrown when another live hub holds the data directory; the message is the one line to print. */
export class DataDirLockedError extends HubError {
  readonly holder: Readonly<LockHolder>;
  constructor(dataDir: string, holder: LockHolder, note = '') {
    super(
      'DATA_DIR_LOCKED',
      `data directory ${dataDir} is in use by another hub: ${describeHolder(holder)}${note}; ` +
        'stop that hub or set another HUB_DATA_DIR',
    );
    this.holder = holder;
  }
}

/** `pid 123 on host x, since <ISO>, port 8080`. */
export function describeHolder(h: LockHolder): string {
  const port = h.port === null ? 'port not yet known' : `port ${h.port}`;
  return `pid ${h.pid} on host ${h.host}, since ${new Date(h.sinceMs).toISOString()}, ${port}`;
}

const DEFAULT_HEARTBEAT_MS = 5_000;
const DEFAULT_STALE_MS = 30_000;
/** A break lock older than this was left by a process that died while breaking; it is removed. */
const BREAK_STALE_MS = 10_000;

/**
 * Takes the data directory's lock or throws {@link DataDirLockedError} naming the live holder. Creates
 * the directory if needed. May wait up to `staleMs` when the holder can only be judged by its heartbeat.
 */
export async function acquireDataDirLock(opts: DataDirLockOptions): Promise<DataDirLock> {
  const dataDir = resolve(opts.dataDir);
  const heartbeatMs = opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
  const staleMs = opts.staleMs ?? DEFAULT_STALE_MS;
  const now = opts.now ?? Date.now;
  const logger = opts.logger;
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, LOCK_FILE);
  const self = selfIdentity();
  const holder: LockHolder = {
    pid: process.pid,
    host: opts.host ?? hostname(),
    sinceMs: now(),
    port: null,
    procStart: self.procStart,
    bootId: self.bootId,
    pidNs: self.pidNs,
    nonce: randomBytes(8).toString('hex'),
  };

  for (let attempt = 0; ; attempt++) {
    if (tryCreate(path, holder)) break;
    const seen = readLock(path);
    if (seen === null) continue; // released between our create and read
    let verdict = judge(seen.holder, seen.mtimeMs, holder, now(), staleMs);
    if (verdict === 'watch') {
      logger?.warn(
        { lock: path, holder: seen.holder },
        `data directory lock held by ${seen.holder ? describeHolder(seen.holder) : 'an unreadable lock file'} ` +
          `that this process cannot check directly; watching its heartbeat for up to ${Math.round(staleMs / 1000)} s`,
      );
      verdict = await watchHeartbeat(path, seen.raw, seen.mtimeMs, now, staleMs, heartbeatMs);
    }
    if (verdict === 'alive') {
      if (seen.holder) throw new DataDirLockedError(dataDir, seen.holder);
      throw new HubError(
        'DATA_DIR_LOCKED',
        `data directory ${dataDir} is locked by an unreadable ${LOCK_FILE} touched ${Math.round((now() - seen.mtimeMs) / 1000)} s ago; ` +
          'stop the other hub, or delete the file if none runs',
      );
    }
    if (verdict === 'gone') continue;
    if (attempt >= 5) throw new HubError('DATA_DIR_LOCKED', `could not take over the stale lock ${path}`);
    if (breakStale(path, seen.raw, now)) {
      logger?.warn(
        { lock: path, previous: seen.holder },
        `took over the data directory lock of a hub that is gone (${seen.holder ? describeHolder(seen.holder) : 'unreadable lock file'})`,
      );
    } else await sleep(20 + Math.random() * 30);
  }

  let released = false;
  let lost = false;
  const write = () => writeAtomically(path, holder);
  const timer = setInterval(() => {
    void heartbeat();
  }, heartbeatMs);
  timer.unref();
  async function heartbeat(): Promise<void> {
    if (released) return;
    try {
      const text = await readFile(path, 'utf8');
      if (parseHolder(text)?.nonce !== holder.nonce) throw Object.assign(new Error('replaced'), { code: 'REPLACED' });
      const t = new Date(now());
      await utimes(path, t, t);
    } catch (err) {
      if (released || lost) return;
      lost = true;
      logger?.error(
        { err, lock: path },
        'the data directory lock file was removed or replaced while this hub runs: another hub may be using this data directory',
      );
    }
  }

  return {
    path,
    holder,
    setPort(port) {
      holder.port = port;
      if (!released) write();
    },
    release() {
      if (released) return;
      released = true;
      clearInterval(timer);
      const seen = readLock(path);
      if (seen?.holder?.nonce === holder.nonce) unlinkQuiet(path);
    },
  };
}

type Verdict = 'alive' | 'stale' | 'watch' | 'gone';

/** Decides about a lock found on disk; `watch` = only its heartbeat can tell. */
function judge(h: LockHolder | null, mtimeMs: number, me: LockHolder, nowMs: number, staleMs: number): Verdict {
  const age = nowMs - mtimeMs;
  if (h === null) return age > staleMs ? 'stale' : 'watch';
  const sameKernel = h.bootId !== null && h.bootId === me.bootId;
  const sameNs = h.pidNs !== null && h.pidNs === me.pidNs;
  if (sameKernel && sameNs) {
    const start = procStartOf(h.pid);
    if (start === null) return 'stale';
    if (h.procStart !== null && start !== h.procStart) return 'stale'; // the pid was reused
    return 'alive';
  }
  // No /proc on either side (e.g. macOS), same host: signal 0 says whether the pid exists.
  if (h.host === me.host && h.bootId === null && me.bootId === null && !pidExists(h.pid)) return 'stale';
  return age > staleMs ? 'stale' : 'watch';
}

/** Waits until the lock's heartbeat moves (alive), it goes stale, or it disappears. */
async function watchHeartbeat(
  path: string,
  raw: string,
  mtimeMs: number,
  now: () => number,
  staleMs: number,
  heartbeatMs: number,
): Promise<Verdict> {
  const pollMs = Math.max(20, Math.min(500, heartbeatMs / 4));
  for (;;) {
    await sleep(pollMs);
    let st: { mtimeMs: number };
    try {
      st = statSync(path);
    } catch {
      return 'gone';
    }
    const text = readText(path);
    if (text === null) return 'gone';
    if (st.mtimeMs !== mtimeMs || text !== raw) return text === raw ? 'alive' : 'gone';
    if (now() - st.mtimeMs > staleMs) return 'stale';
  }
}

/** Creates the lock file complete or not at all; false when it exists. */
function tryCreate(path: string, holder: LockHolder): boolean {
  const tmp = `${path}.${holder.nonce}.tmp`;
  writeFileSync(tmp, serialize(holder), { mode: 0o644 });
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw err;
    // Filesystems without hard links: O_EXCL create, then write (a reader may briefly see it empty).
    return createExclusive(path, serialize(holder));
  } finally {
    unlinkQuiet(tmp);
  }
}

function createExclusive(path: string, content: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
  return true;
}

/** Replaces our own lock file's content (the port) atomically. */
function writeAtomically(path: string, holder: LockHolder): void {
  const tmp = `${path}.${holder.nonce}.tmp`;
  writeFileSync(tmp, serialize(holder), { mode: 0o644 });
  renameSync(tmp, path);
}

/**
 * Removes the stale lock whose content was `raw`, under the break lock so that two hubs breaking the
 * same stale lock cannot remove each other's fresh one. False when another process is breaking it.
 */
function breakStale(path: string, raw: string, now: () => number): boolean {
  const breakPath = `${path}.break`;
  if (!createExclusive(breakPath, String(process.pid))) {
    try {
      if (now() - statSync(breakPath).mtimeMs > BREAK_STALE_MS) unlinkQuiet(breakPath);
    } catch {
      // gone meanwhile
    }
    return false;
  }
  try {
    if (readText(path) === raw) unlinkQuiet(path);
    return true;
  } finally {
    unlinkQuiet(breakPath);
  }
}

function readLock(path: string): { raw: string; holder: LockHolder | null; mtimeMs: number } | null {
  try {
    const mtimeMs = statSync(path).mtimeMs;
    const raw = readFileSync(path, 'utf8');
    return { raw, holder: parseHolder(raw), mtimeMs };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

function serialize(h: LockHolder): string {
  return `${JSON.stringify({ format: 'esp32hub-lock', ...h })}\n`;
}

function parseHolder(text: string): LockHolder | null {
  try {
    const d = JSON.parse(text) as Record<string, unknown>;
    if (typeof d.pid !== 'number' || typeof d.host !== 'string' || typeof d.sinceMs !== 'number') return null;
    if (typeof d.nonce !== 'string') return null;
    const str = (v: unknown) => (typeof v === 'string' ? v : null);
    return {
      pid: d.pid,
      host: d.host,
      sinceMs: d.sinceMs,
      port: typeof d.port === 'number' ? d.port : null,
      procStart: str(d.procStart),
      bootId: str(d.bootId),
      pidNs: str(d.pidNs),
      nonce: d.nonce,
    };
  } catch {
    return null;
  }
}

function selfIdentity(): Pick<LockHolder, 'procStart' | 'bootId' | 'pidNs'> {
  return {
    procStart: procStartOf(process.pid),
    bootId: readText('/proc/sys/kernel/random/boot_id')?.trim() || null,
    pidNs: readLinkQuiet('/proc/self/ns/pid'),
  };
}

/**
 * Field 22 of `/proc/<pid>/stat` (start time in clock ticks after boot), or null when no live process
 * has that pid. A zombie (state Z or X: killed, not yet reaped by its parent, e.g. right after
 * `kill -9`) counts as gone: it holds no files and runs no code.
 */
export function procStartOf(pid: number): string | null {
  const text = readText(`/proc/${pid}/stat`);
  if (text === null) return null;
  // Field 2 (comm) is in parentheses and may hold spaces or ')'; fields resume after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  if (rest[0] === 'Z' || rest[0] === 'X') return null; // rest[0] is field 3, the state
  return rest[19] ?? null;
}

function readLinkQuiet(path: string): string | null {
  try {
    return readlinkSync(path);
  } catch {
    return null;
  }
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
