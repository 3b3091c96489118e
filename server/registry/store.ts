/**
 * The registry's durable file: `<dataDir>/devices.json`, one small JSON document holding token
 * hashes (never tokens). Several processes share it (the running hub and the `hub devices` CLI), so:
 * - every write goes to a temp file, is fsynced, renamed over the old file and the directory is
 *   fsynced: a reader (or a crash) sees the old document or the new one, never half of one;
 * - every read-modify-write runs under an exclusive lock file (`devices.json.lock`, O_EXCL), so two
 *   writers cannot lose each other's change;
 * - readers take no lock: rename is atomic.
 */

import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { open, rename, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { isDeviceId } from '../codec/index.ts';
import { HubError } from '../errors.ts';

/** One device as stored. Times are Unix ms. */
export interface DeviceRecord {
  id: string;
  /** Hex SHA-256 of the current token; null once revoked. */
  tokenSha256: string | null;
  createdAtMs: number;
  /** When the token was last replaced by `rotate`; null if never. */
  rotatedAtMs: number | null;
  /** When the device was revoked; null while active. */
  revokedAtMs: number | null;
}

/** What a read returns: the records plus a signature that changes whenever the file is replaced. */
export interface StoreSnapshot {
  records: Map<string, DeviceRecord>;
  /** inode, size, mtime and ctime (ns) of the file read, or 'absent'. */
  signature: string;
}

const FORMAT = 'esp32hub-devices';
const VERSION = 1;
const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Parses and validates the document; throws a plain Error naming the first problem. */
export function parseStore(text: string): Map<string, DeviceRecord> {
  const doc: unknown = JSON.parse(text);
  if (!isObject(doc) || doc.format !== FORMAT) throw new Error(`not a ${FORMAT} document`);
  if (doc.version !== VERSION) throw new Error(`unsupported version ${String(doc.version)} (expected ${VERSION})`);
  if (!Array.isArray(doc.devices)) throw new Error('"devices" is not an array');
  const records = new Map<string, DeviceRecord>();
  const hashes = new Set<string>();
  for (const [i, raw] of doc.devices.entries()) {
    const where = `devices[${i}]`;
    if (!isObject(raw)) throw new Error(`${where} is not an object`);
    const { id, tokenSha256, createdAtMs, rotatedAtMs, revokedAtMs } = raw;
    if (typeof id !== 'string' || !isDeviceId(id)) throw new Error(`${where}.id is not a valid device id`);
    if (records.has(id)) throw new Error(`${where}: duplicate id ${id}`);
    if (tokenSha256 !== null && (typeof tokenSha256 !== 'string' || !SHA256_HEX.test(tokenSha256))) {
      throw new Error(`${where}.tokenSha256 is not a hex SHA-256 or null`);
    }
    if (tokenSha256 !== null && hashes.has(tokenSha256))
      throw new Error(`${where}: token hash shared with another device`);
    if (!isTime(createdAtMs)) throw new Error(`${where}.createdAtMs is not a time`);
    if (rotatedAtMs !== null && !isTime(rotatedAtMs)) throw new Error(`${where}.rotatedAtMs is not a time or null`);
    if (revokedAtMs !== null && !isTime(revokedAtMs)) throw new Error(`${where}.revokedAtMs is not a time or null`);
    if ((tokenSha256 === null) !== (revokedAtMs !== null)) {
      throw new Error(`${where}: a revoked device has no token hash and an active one has one`);
    }
    if (tokenSha256 !== null) hashes.add(tokenSha256);
    records.set(id, { id, tokenSha256, createdAtMs, rotatedAtMs, revokedAtMs });
  }
  return records;
}

export function serializeStore(records: Map<string, DeviceRecord>): string {
  const devices = [...records.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return `${JSON.stringify({ format: FORMAT, version: VERSION, devices }, null, 2)}\n`;
}

/** Reads the file synchronously (startup). A missing file is an empty registry. */
export function readStoreSync(file: string): StoreSnapshot {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return { records: new Map(), signature: 'absent' };
    throw err;
  }
  try {
    const signature = signatureOf(fstatSync(fd, { bigint: true }));
    return { records: parseStore(readFileSync(fd, 'utf8')), signature };
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads the file. The signature comes from the same open file handle as the content, so a rename
 * racing the read cannot pair new content with an old signature.
 */
export async function readStore(file: string): Promise<StoreSnapshot> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return { records: new Map(), signature: 'absent' };
    throw err;
  }
  try {
    const signature = signatureOf(await handle.stat({ bigint: true }));
    return { records: parseStore(await handle.readFile('utf8')), signature };
  } finally {
    await handle.close();
  }
}

/** The current signature of the file without reading it (the change poller's cheap check). */
export async function storeSignature(file: string): Promise<string> {
  try {
    return signatureOf(await stat(file, { bigint: true }));
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return 'absent';
    throw err;
  }
}

/** Atomically replaces the file (temp file + fsync + rename + directory fsync); mode 0600. */
export function writeStore(file: string, records: Map<string, DeviceRecord>): Promise<void> {
  return writeTextAtomic(file, serializeStore(records));
}

/**
 * Atomically replaces `file` with `text` (temp file + fsync + rename + directory fsync), mode 0600: a
 * reader or a crash sees the old content or the new, never half. Also used by the enrollment store.
 */
export async function writeTextAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(text, 'utf8');
    await handle.sync();
  } catch (err) {
    await handle.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await handle.close();
  try {
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await syncDirectory(dirname(file));
}

/** Options for {@link acquireLock}. */
export interface LockOptions {
  /** Give up (INTERNAL) after waiting this long for another process's lock. */
  timeoutMs: number;
  /**
   * A lock file older than this is left over from a crashed process and is broken. Operations hold
   * the lock for milliseconds (one read, one small write, two fsyncs).
   */
  staleMs: number;
}

const DEFAULT_LOCK: LockOptions = { timeoutMs: 10_000, staleMs: 5_000 };

/**
 * Takes the exclusive lock next to `file`; resolves to a release function. Waits (polling with
 * jitter) while another process holds it.
 */
export async function acquireLock(
  file: string,
  options: LockOptions = DEFAULT_LOCK,
  onStale?: (ageMs: number) => void,
): Promise<() => Promise<void>> {
  const lockPath = `${file}.lock`;
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    try {
      const handle = await open(lockPath, 'wx', 0o600);
      try {
        await handle.writeFile(`${JSON.stringify({ host: hostname(), at: new Date().toISOString() })}\n`);
      } finally {
        await handle.close();
      }
      return async () => {
        await unlink(lockPath).catch((err: unknown) => {
          if (errnoCode(err) !== 'ENOENT') throw err;
        });
      };
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
    }
    try {
      const ageMs = Date.now() - (await stat(lockPath)).mtimeMs;
      if (ageMs > options.staleMs) {
        onStale?.(ageMs);
        await unlink(lockPath).catch(() => undefined);
        continue;
      }
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') continue; // released between our open and stat
      throw err;
    }
    if (Date.now() > deadline) {
      throw new HubError(
        'INTERNAL',
        `${file} is locked by another process (${lockPath}); retry, or delete the lock file if no hub CLI is running`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20));
  }
}

async function syncDirectory(dir: string): Promise<void> {
  // Makes the rename itself durable. Some platforms cannot open or fsync a directory; the rename
  // is still atomic there, only its durability across power loss is weaker.
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch (err) {
    const code = errnoCode(err);
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EBADF') throw err;
  } finally {
    await handle?.close();
  }
}

function signatureOf(st: { ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }): string {
  return `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isTime(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

export function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}
