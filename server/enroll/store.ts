/**
 * The durable enrollment state [PROTO-8.3]: `<dataDir>/enroll.json`, one small JSON document with the
 * enrollment requests (pending, approved, delivered) and the rejections. It holds the SHA-256 of each
 * board's enroll key, never the key, and never a token (tokens live in the registry, as hashes).
 *
 * Like the device registry (server/registry/store.ts, whose primitives it uses) it is shared by the
 * running hub and the `hub devices pending|approve|reject|forget` CLI: every change is a
 * read-modify-write under the lock file `enroll.json.lock`, written atomically; the hub polls the
 * file's signature (250 ms) and reconciles what another process changed — so an approval made by the
 * CLI reaches a connected board within a second.
 *
 * Bounds: at most `maxPending` pending entries (new requests beyond are refused by the caller); pending
 * and approved-but-undelivered entries expire `ttlSec` after their last request or approval (pruned at
 * every change and hidden from reads); rejections are kept up to {@link MAX_REJECTIONS} (oldest dropped).
 */
import { mkdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { isDeviceId } from '../codec/index.ts';
import { HubError } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import { acquireLock, errnoCode, storeSignature, writeTextAtomic } from '../registry/store.ts';

export type EnrollState = 'pending' | 'approved' | 'delivered';

/** One board's enrollment, keyed by hardware id. Times are Unix ms. */
export interface EnrollEntry {
  hardwareId: string;
  /** Hex SHA-256 of the board's 16-byte enroll key. */
  keySha256: string;
  state: EnrollState;
  model: string;
  firmwareVersion: string;
  /** Peer address of the last request. */
  remote: string | null;
  /** First request with this key. */
  requestedAtMs: number;
  /** Last request (or reconnect) with this key. */
  lastSeenAtMs: number;
  /** The device id granted (approved, delivered); null while pending. */
  deviceId: string | null;
  /** For a pending re-enrollment: the device id delivered to this hardware id before. */
  previousDeviceId: string | null;
  approvedAtMs: number | null;
  approvedBy: 'operator' | 'fleet-secret' | null;
  /** Last token hand-over; a re-hand-over rotates the token [PROTO-8.3.5]. */
  handedOverAtMs: number | null;
  handOvers: number;
  confirmedAtMs: number | null;
}

export interface Rejection {
  hardwareId: string;
  keySha256: string;
  rejectedAtMs: number;
}

export interface EnrollSnapshot {
  entries: Map<string, EnrollEntry>;
  rejections: Rejection[];
}

export const ENROLL_FILE_NAME = 'enroll.json';
export const MAX_REJECTIONS = 10_000;
const FORMAT = 'esp32hub-enroll';
const VERSION = 1;
const SHA256_HEX = /^[0-9a-f]{64}$/;

export interface EnrollStoreOptions {
  dataDir: string;
  logger: Logger;
  /** Pending and approved entries expire this long after their last request or approval. */
  ttlSec: number;
  /** Signature poll for changes by other processes, ms; 0 = off (the CLI). Default 250. */
  watchIntervalMs?: number;
  now?: () => number;
}

export interface EnrollStore {
  readonly file: string;
  /** The current state (expired entries left out). */
  snapshot(): EnrollSnapshot;
  /**
   * Read-modify-write under the cross-process lock: `change` gets the fresh state (expired entries
   * already pruned) and may throw to abort without writing. Resolves with its result.
   */
  mutate<T>(change: (s: EnrollSnapshot) => T): Promise<T>;
  /** Called after every state change, ours or another process's, with the old and new state. */
  onChange(listener: (before: EnrollSnapshot, after: EnrollSnapshot) => void): () => void;
  /** Re-reads the file now if another process changed it. */
  refresh(): Promise<void>;
  close(): Promise<void>;
}

export function openEnrollStore(options: EnrollStoreOptions): EnrollStore {
  const file = join(options.dataDir, ENROLL_FILE_NAME);
  const now = options.now ?? Date.now;
  const ttlMs = options.ttlSec * 1000;
  const logger = options.logger.child({ component: 'enroll-store' });
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });

  let state: EnrollSnapshot = { entries: new Map(), rejections: [] };
  let signature = '';
  let badSignature: string | null = null;
  let closed = false;
  const listeners = new Set<(before: EnrollSnapshot, after: EnrollSnapshot) => void>();
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(op: () => Promise<T>): Promise<T> => {
    const result = queue.then(op, op);
    queue = result.catch(() => undefined);
    return result;
  };

  const apply = (next: EnrollSnapshot, sig: string): void => {
    const before = state;
    state = next;
    signature = sig;
    badSignature = null;
    for (const l of listeners) {
      try {
        l(before, next);
      } catch (err) {
        logger.error({ err }, 'an enrollment change listener threw');
      }
    }
  };

  const expired = (e: EnrollEntry, t: number): boolean =>
    e.state !== 'delivered' && Math.max(e.lastSeenAtMs, e.approvedAtMs ?? 0, e.handedOverAtMs ?? 0) + ttlMs <= t;

  const visible = (s: EnrollSnapshot): EnrollSnapshot => {
    const t = now();
    let any = false;
    for (const e of s.entries.values()) if (expired(e, t)) any = true;
    if (!any) return s;
    return { entries: new Map([...s.entries].filter(([, e]) => !expired(e, t))), rejections: s.rejections };
  };

  async function refreshNow(): Promise<void> {
    const sig = await storeSignature(file);
    if (sig === signature || sig === badSignature) return;
    try {
      const read = await readEnrollFile(file);
      apply(read.snapshot, read.signature);
    } catch (err) {
      badSignature = sig;
      logger.error({ err, file }, 'the enrollment file changed on disk but cannot be read; keeping the previous state');
    }
  }

  const store: EnrollStore = {
    file,
    snapshot: () => visible(state),
    mutate(change) {
      if (closed) return Promise.reject(new HubError('SHUTTING_DOWN', 'the enrollment store is closed'));
      return serial(async () => {
        const release = await acquireLock(file, undefined, (ageMs) =>
          logger.warn({ ageMs }, 'broke a stale enrollment lock left by a crashed process'),
        );
        try {
          let fresh: EnrollSnapshot;
          try {
            fresh = (await readEnrollFile(file)).snapshot;
          } catch (err) {
            throw new HubError(
              'INTERNAL',
              `the enrollment file ${file} is unreadable (${(err as Error).message}); not overwriting it`,
              { cause: err },
            );
          }
          const t = now();
          const pruned = [...fresh.entries.values()].filter((e) => expired(e, t));
          for (const e of pruned) {
            fresh.entries.delete(e.hardwareId);
            logger.info(
              { hardwareId: e.hardwareId, state: e.state },
              'enrollment request expired (ENROLL_PENDING_TTL_SEC)',
            );
          }
          const result = change(fresh);
          if (fresh.rejections.length > MAX_REJECTIONS) {
            const dropped = fresh.rejections.splice(0, fresh.rejections.length - MAX_REJECTIONS);
            logger.warn({ dropped: dropped.length }, 'oldest enrollment rejections dropped (bound reached)');
          }
          await writeTextAtomic(file, serialize(fresh));
          apply(fresh, await storeSignature(file));
          return result;
        } finally {
          await release();
        }
      });
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    refresh: () => serial(refreshNow),
    async close() {
      closed = true;
      if (timer) clearInterval(timer);
      await queue;
    },
  };

  // Initial read (synchronous callers get an empty state until it lands; the hub awaits `refresh()`).
  const watchMs = options.watchIntervalMs ?? 250;
  let ticking = false;
  const timer =
    watchMs > 0
      ? setInterval(() => {
          if (ticking || closed) return;
          ticking = true;
          serial(refreshNow)
            .catch((err: unknown) => logger.error({ err }, 'enrollment watch failed'))
            .finally(() => {
              ticking = false;
            });
        }, watchMs)
      : null;
  timer?.unref();
  return store;
}

async function readEnrollFile(file: string): Promise<{ snapshot: EnrollSnapshot; signature: string }> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return { snapshot: { entries: new Map(), rejections: [] }, signature: 'absent' };
    throw err;
  }
  try {
    const st = await handle.stat({ bigint: true });
    const signature = `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    return { snapshot: parseEnroll(await handle.readFile('utf8')), signature };
  } finally {
    await handle.close();
  }
}

/** Parses and validates the document; throws naming the first problem. */
export function parseEnroll(text: string): EnrollSnapshot {
  const doc = JSON.parse(text) as Record<string, unknown>;
  if (typeof doc !== 'object' || doc === null || doc.format !== FORMAT) throw new Error(`not a ${FORMAT} document`);
  if (doc.version !== VERSION) throw new Error(`unsupported version ${String(doc.version)}`);
  if (!Array.isArray(doc.entries) || !Array.isArray(doc.rejections)) throw new Error('entries/rejections missing');
  const entries = new Map<string, EnrollEntry>();
  for (const [i, raw] of (doc.entries as EnrollEntry[]).entries()) {
    const e = raw as EnrollEntry;
    if (typeof e?.hardwareId !== 'string' || !isDeviceId(e.hardwareId)) throw new Error(`entries[${i}].hardwareId`);
    if (typeof e.keySha256 !== 'string' || !SHA256_HEX.test(e.keySha256)) throw new Error(`entries[${i}].keySha256`);
    if (e.state !== 'pending' && e.state !== 'approved' && e.state !== 'delivered') {
      throw new Error(`entries[${i}].state`);
    }
    if (e.state !== 'pending' && (typeof e.deviceId !== 'string' || !isDeviceId(e.deviceId))) {
      throw new Error(`entries[${i}].deviceId`);
    }
    if (entries.has(e.hardwareId)) throw new Error(`entries[${i}]: duplicate hardwareId`);
    entries.set(e.hardwareId, e);
  }
  const rejections: Rejection[] = [];
  for (const [i, r] of (doc.rejections as Rejection[]).entries()) {
    if (typeof r?.hardwareId !== 'string' || typeof r.keySha256 !== 'string' || !SHA256_HEX.test(r.keySha256)) {
      throw new Error(`rejections[${i}]`);
    }
    rejections.push(r);
  }
  return { entries, rejections };
}

function serialize(s: EnrollSnapshot): string {
  const entries = [...s.entries.values()].sort((a, b) => (a.hardwareId < b.hardwareId ? -1 : 1));
  return `${JSON.stringify({ format: FORMAT, version: VERSION, entries, rejections: s.rejections }, null, 2)}\n`;
}

/** Counts pending entries. */
export function pendingCount(s: EnrollSnapshot): number {
  let n = 0;
  for (const e of s.entries.values()) if (e.state === 'pending') n++;
  return n;
}

export function isRejected(s: EnrollSnapshot, hardwareId: string, keySha256: string): boolean {
  return s.rejections.some((r) => r.hardwareId === hardwareId && r.keySha256 === keySha256);
}
