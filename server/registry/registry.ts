/**
 * The device registry: which device ids exist and which token (by hash) each one holds [PROTO-1.2].
 *
 * `authenticate` answers from memory (a hash → id map) so it can run synchronously in the WebSocket
 * `upgrade` handler. Changes are written to `<dataDir>/devices.json` (see store.ts) under a lock, so
 * the CLI and the running hub can both change it; the hub notices another process's change by
 * polling the file's signature every `watchIntervalMs` (250 ms) and tells `onRevoked` listeners
 * about every token that stopped being valid, so the gateway closes those sessions (1008 REVOKED)
 * well within 1 s.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { isDeviceId } from '../codec/index.ts';
import { HubError } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import {
  acquireLock,
  type DeviceRecord,
  readStore,
  readStoreSync,
  type StoreSnapshot,
  storeSignature,
  writeStore,
} from './store.ts';
import { generateToken, hashToken, isTokenShaped } from './token.ts';

/** A device as the registry shows it: never its token or token hash. Times are Unix ms. */
export interface DeviceInfo {
  id: string;
  createdAtMs: number;
  /** Last `rotate`; null when the first token is still the current one. */
  rotatedAtMs: number | null;
  /** When it was revoked; null while active. */
  revokedAtMs: number | null;
  revoked: boolean;
}

/** A freshly issued token and the device it belongs to. Show the token once; it is not kept. */
export interface IssuedToken {
  token: string;
  device: DeviceInfo;
}

/** Options for {@link openDeviceRegistry}. */
export interface DeviceRegistryOptions {
  /** The hub's data directory (`HUB_DATA_DIR`); created (mode 0700) when missing. */
  dataDir: string;
  logger: Logger;
  /**
   * How often to check the store file for changes made by other processes, in ms. Default 250;
   * 0 disables watching (the CLI, which lives for one operation).
   */
  watchIntervalMs?: number;
  /** Largest number of devices (active and revoked) the registry accepts. Default 100,000. */
  maxDevices?: number;
  /** Clock for created/rotated/revoked times (Unix ms). Default `Date.now`. */
  now?: () => number;
}

/** Called with the id of a device whose token stopped being valid (revoked, rotated or removed). */
export type RevokedListener = (deviceId: string) => void;

export interface DeviceRegistry {
  /** Path of the store file. */
  readonly file: string;
  /**
   * The device id a token belongs to, or null (unknown, revoked, rotated away, or not token-shaped).
   * Synchronous and allocation-light: runs in the `upgrade` handler. Looks the SHA-256 of the
   * presented token up in a map, so the time taken does not depend on how close a guess is.
   */
  authenticate(token: string | null | undefined): string | null;
  /** Registers a device and issues its first token. DEVICE_EXISTS if the id is taken (even if revoked). */
  add(deviceId: string): Promise<IssuedToken>;
  /** Every device, sorted by id. */
  list(): DeviceInfo[];
  /** One device, or undefined. */
  get(deviceId: string): DeviceInfo | undefined;
  /**
   * Revokes the device's token: its live session closes, the device can no longer connect. The
   * record stays (listed as revoked). Idempotent. NOT_FOUND for an unknown id.
   */
  revoke(deviceId: string): Promise<DeviceInfo>;
  /**
   * Issues a new token and invalidates the old one (its live session closes). On a revoked device
   * this re-enables it with the new token. NOT_FOUND for an unknown id.
   */
  rotate(deviceId: string): Promise<IssuedToken>;
  /**
   * Subscribes to token invalidations, from this process (admin API) or another (CLI). Listeners run
   * synchronously after the registry's own state has changed; returns an unsubscribe function.
   */
  onRevoked(listener: RevokedListener): () => void;
  /** Re-reads the store file now if another process changed it (the watcher calls this). */
  refresh(): Promise<void>;
  /** Stops watching and waits for pending writes. Later changes reject with SHUTTING_DOWN. */
  close(): Promise<void>;
}

/** The store file's name inside the data directory. */
export const REGISTRY_FILE_NAME = 'devices.json';
const DEFAULT_WATCH_INTERVAL_MS = 250;
const DEFAULT_MAX_DEVICES = 100_000;

/**
 * Opens (creating when missing) the registry in `dataDir`. Synchronous: reads the store once so the
 * hub can authenticate immediately. Throws INTERNAL when the store file exists but is unreadable.
 */
export function openDeviceRegistry(options: DeviceRegistryOptions): DeviceRegistry {
  const logger = options.logger.child({ component: 'registry' });
  const file = join(options.dataDir, REGISTRY_FILE_NAME);
  const now = options.now ?? Date.now;
  const maxDevices = options.maxDevices ?? DEFAULT_MAX_DEVICES;
  const watchIntervalMs = options.watchIntervalMs ?? DEFAULT_WATCH_INTERVAL_MS;

  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  let initial: StoreSnapshot;
  try {
    initial = readStoreSync(file);
  } catch (err) {
    throw new HubError('INTERNAL', `the device registry ${file} is unreadable: ${(err as Error).message}`, {
      cause: err,
    });
  }

  let records = initial.records;
  let byHash = indexByHash(records);
  let signature = initial.signature;
  /** Signature of a file we failed to parse, so the watcher logs it once rather than every tick. */
  let badSignature: string | null = null;
  const listeners = new Set<RevokedListener>();
  let closed = false;
  // One operation at a time in this process (mutations and refreshes), so a slow refresh can never
  // apply an older document over a newer one we just wrote.
  let queue: Promise<unknown> = Promise.resolve();

  function serial<T>(op: () => Promise<T>): Promise<T> {
    const result = queue.then(op, op);
    queue = result.catch(() => undefined);
    return result;
  }

  /** Swaps in a new state and tells listeners about every token that is no longer valid. */
  function apply(snapshot: StoreSnapshot): string[] {
    const invalidated: string[] = [];
    for (const [id, old] of records) {
      if (old.tokenSha256 === null) continue;
      if (snapshot.records.get(id)?.tokenSha256 !== old.tokenSha256) invalidated.push(id);
    }
    records = snapshot.records;
    byHash = indexByHash(records);
    signature = snapshot.signature;
    badSignature = null;
    tellRevoked(listeners, invalidated, logger);
    return invalidated;
  }

  /** Read-modify-write under the cross-process lock; `change` may throw to abort without writing. */
  function mutate<T>(change: (current: Map<string, DeviceRecord>) => T): Promise<T> {
    if (closed) return Promise.reject(new HubError('SHUTTING_DOWN', 'the device registry is closed'));
    return serial(async () => {
      const release = await acquireLock(file, undefined, (ageMs) =>
        logger.warn({ ageMs }, 'broke a stale device registry lock left by a crashed process'),
      );
      try {
        let fresh: StoreSnapshot;
        try {
          fresh = await readStore(file);
        } catch (err) {
          if (err instanceof SyntaxError || !(err as { code?: unknown }).code) {
            throw new HubError(
              'INTERNAL',
              `the device registry ${file} is unreadable (${(err as Error).message}); not overwriting it`,
              { cause: err },
            );
          }
          throw err;
        }
        const result = change(fresh.records);
        await writeStore(file, fresh.records);
        apply({ records: fresh.records, signature: await storeSignature(file) });
        return result;
      } finally {
        await release();
      }
    });
  }

  function requireKnown(current: Map<string, DeviceRecord>, deviceId: string): DeviceRecord {
    if (!isDeviceId(deviceId)) throw badId(deviceId);
    const record = current.get(deviceId);
    if (!record) throw new HubError('NOT_FOUND', `no device ${deviceId} is registered`);
    return record;
  }

  async function refreshNow(): Promise<void> {
    const current = await storeSignature(file);
    if (current === signature || current === badSignature) return;
    let snapshot: StoreSnapshot;
    try {
      snapshot = await readStore(file);
    } catch (err) {
      badSignature = current;
      logger.error(
        { err, file },
        'the device registry file changed on disk but cannot be read; keeping the previous state',
      );
      return;
    }
    const invalidated = apply(snapshot);
    logger.info(
      { devices: records.size, invalidated: invalidated.length },
      'device registry changed on disk (another process)',
    );
  }

  let ticking = false;
  const timer =
    watchIntervalMs > 0
      ? setInterval(() => {
          if (ticking || closed) return;
          ticking = true;
          serial(refreshNow)
            .catch((err: unknown) => logger.error({ err }, 'device registry watch failed'))
            .finally(() => {
              ticking = false;
            });
        }, watchIntervalMs)
      : null;
  // The watcher must not keep a process alive on its own; `close()` stops it.
  timer?.unref();

  return {
    file,

    authenticate(token) {
      if (typeof token !== 'string' || !isTokenShaped(token)) return null;
      return byHash.get(hashToken(token)) ?? null;
    },

    async add(deviceId) {
      if (typeof deviceId !== 'string' || !isDeviceId(deviceId)) throw badId(deviceId);
      const token = generateToken();
      const record = await mutate((current) => {
        const existing = current.get(deviceId);
        if (existing) throw deviceExists(deviceId, existing.revokedAtMs !== null);
        if (current.size >= maxDevices) throw registryFull(maxDevices);
        const created: DeviceRecord = {
          id: deviceId,
          tokenSha256: hashToken(token),
          createdAtMs: now(),
          rotatedAtMs: null,
          revokedAtMs: null,
        };
        current.set(deviceId, created);
        return created;
      });
      logger.info({ deviceId }, 'device added');
      return { token, device: toInfo(record) };
    },

    list() {
      return sortedInfos(records.values());
    },

    get(deviceId) {
      const record = records.get(deviceId);
      return record ? toInfo(record) : undefined;
    },

    async revoke(deviceId) {
      let changed = false;
      const record = await mutate((current) => {
        const found = requireKnown(current, deviceId);
        if (found.revokedAtMs !== null) return found;
        const revoked: DeviceRecord = { ...found, tokenSha256: null, revokedAtMs: now() };
        current.set(deviceId, revoked);
        changed = true;
        return revoked;
      });
      if (changed) logger.info({ deviceId }, 'device revoked');
      return toInfo(record);
    },

    async rotate(deviceId) {
      const token = generateToken();
      const record = await mutate((current) => {
        const found = requireKnown(current, deviceId);
        const rotated: DeviceRecord = {
          ...found,
          tokenSha256: hashToken(token),
          rotatedAtMs: now(),
          revokedAtMs: null,
        };
        current.set(deviceId, rotated);
        return rotated;
      });
      logger.info({ deviceId }, 'device token rotated');
      return { token, device: toInfo(record) };
    },

    onRevoked(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },

    refresh() {
      return serial(refreshNow);
    },

    async close() {
      if (closed) return;
      closed = true;
      if (timer) clearInterval(timer);
      await queue;
    },
  };
}

function indexByHash(records: Map<string, DeviceRecord>): Map<string, string> {
  const byHash = new Map<string, string>();
  for (const record of records.values()) {
    if (record.tokenSha256 !== null) byHash.set(record.tokenSha256, record.id);
  }
  return byHash;
}

/** Every device, sorted by id. */
export function sortedInfos(records: Iterable<DeviceRecord>): DeviceInfo[] {
  return [...records].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).map(toInfo);
}

/** Tells every listener about every invalidated token; a listener that throws is logged, not fatal. */
export function tellRevoked(listeners: Iterable<RevokedListener>, ids: readonly string[], logger: Logger): void {
  for (const id of ids) {
    for (const listener of listeners) {
      try {
        listener(id);
      } catch (err) {
        logger.error({ err, deviceId: id }, 'an onRevoked listener threw');
      }
    }
  }
}

/** DEVICE_EXISTS for `add` of a taken id (also used by the cluster registry). */
export function deviceExists(deviceId: string, revoked: boolean): HubError {
  return new HubError(
    'DEVICE_EXISTS',
    revoked
      ? `device ${deviceId} already exists (revoked); rotate it to issue a new token`
      : `device ${deviceId} already exists; rotate it to issue a new token`,
  );
}

export function registryFull(maxDevices: number): HubError {
  return new HubError('BAD_REQUEST', `the registry already holds its maximum of ${maxDevices} devices`);
}

export function toInfo(record: DeviceRecord): DeviceInfo {
  return {
    id: record.id,
    createdAtMs: record.createdAtMs,
    rotatedAtMs: record.rotatedAtMs,
    revokedAtMs: record.revokedAtMs,
    revoked: record.revokedAtMs !== null,
  };
}

export function badId(deviceId: unknown): HubError {
  const shown = typeof deviceId === 'string' ? JSON.stringify(deviceId.slice(0, 80)) : String(typeof deviceId);
  return new HubError(
    'BAD_REQUEST',
    `device id ${shown} is invalid: use 1-64 characters of A-Z a-z 0-9 . _ - [PROTO-2.8]`,
  );
}
