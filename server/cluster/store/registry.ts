/**
 * The device registry of several instances, in PostgreSQL (table `esp32hub_devices`), with the same
 * interface and behaviour as the file registry (server/registry/registry.ts):
 *
 * - `authenticate` answers from memory (token hash → id map), synchronously, as before; it keeps
 *   answering from that cache while the database is unreachable.
 * - Every change is one transaction that also sends `pg_notify('esp32hub_registry', id)`; every instance
 *   (this one included) reloads that row when the notification arrives and tells `onRevoked` listeners
 *   about each token that stopped being valid, so a revoke on one instance closes the session on
 *   another well within a second.
 * - After the listening connection came back (notifications may have been missed), the whole table is
 *   reloaded ({@link PgRegistry.reload}).
 * - On the first start with an empty table, `<dataDir>/devices.json` (the file registry) is imported.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { isDeviceId } from '../../codec/index.ts';
import { HubError } from '../../errors.ts';
import type { Logger } from '../../log/index.ts';
import {
  badId,
  type DeviceRegistry,
  deviceExists,
  REGISTRY_FILE_NAME,
  type RevokedListener,
  registryFull,
  sortedInfos,
  tellRevoked,
  toInfo,
} from '../../registry/registry.ts';
import { type DeviceRecord, readStoreSync } from '../../registry/store.ts';
import { generateToken, hashToken, isTokenShaped } from '../../registry/token.ts';
import { type Db, type Queryable, redactedUrl } from './db.ts';
import { REGISTRY_ADD_LOCK, REGISTRY_CHANNEL } from './schema.ts';

export interface PgRegistry extends DeviceRegistry {
  /** A registry notification arrived (payload: a device id, or `*`): reload those rows. */
  notified(payload: string): void;
  /** Reloads the whole table (after a reconnect); listeners hear of every token that went away. */
  reload(): Promise<void>;
}

export interface PgRegistryOptions {
  db: Db;
  url: string;
  dataDir: string;
  logger: Logger;
  maxDevices: number;
  now: () => number;
}

interface DeviceRow {
  id: string;
  token_sha256: string | null;
  created_at_ms: number;
  rotated_at_ms: number | null;
  revoked_at_ms: number | null;
}

const COLUMNS = 'id, token_sha256, created_at_ms, rotated_at_ms, revoked_at_ms';
/** How long to wait before reloading rows whose reload failed while the listener stayed connected. */
const RETRY_MS = 1_000;

/** Opens the registry: imports devices.json into an empty table, then loads every row. */
export async function openPgRegistry(options: PgRegistryOptions): Promise<PgRegistry> {
  const { db, maxDevices, now } = options;
  const logger = options.logger.child({ component: 'registry', store: 'cluster' });
  await importFileIfEmpty(options, logger);

  let records = new Map<string, DeviceRecord>();
  const byHash = new Map<string, string>();
  const listeners = new Set<RevokedListener>();
  let closed = false;
  // One operation at a time in this process (mutations and reloads), so a reload that read the table
  // before our own change committed can never be applied after it.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(op: () => Promise<T>): Promise<T> => {
    const result = queue.then(op, op);
    queue = result.catch(() => undefined);
    return result;
  };

  const emit = (invalidated: readonly string[]): void => tellRevoked(listeners, invalidated, logger);

  /** Puts one row (or its absence) in memory; true when the token it held stopped being valid. */
  const put = (id: string, record: DeviceRecord | undefined): boolean => {
    const old = records.get(id);
    if (old?.tokenSha256 && byHash.get(old.tokenSha256) === id) byHash.delete(old.tokenSha256);
    if (record) {
      records.set(id, record);
      if (record.tokenSha256) byHash.set(record.tokenSha256, id);
    } else {
      records.delete(id);
    }
    return old?.tokenSha256 != null && old.tokenSha256 !== record?.tokenSha256;
  };

  const applyRows = (ids: readonly string[], rows: readonly DeviceRow[]): void => {
    const found = new Map(rows.map((row) => [row.id, fromRow(row)]));
    emit(ids.filter((id) => put(id, found.get(id))));
  };

  const reloadNow = async (): Promise<void> => {
    const { rows } = await db.run('registry_load', (q) =>
      q.query<DeviceRow>(`SELECT ${COLUMNS} FROM esp32hub_devices`),
    );
    const fresh = new Map(rows.map((row) => [row.id, fromRow(row)]));
    const invalidated: string[] = [];
    for (const [id, old] of records) {
      if (old.tokenSha256 !== null && fresh.get(id)?.tokenSha256 !== old.tokenSha256) invalidated.push(id);
    }
    records = fresh;
    byHash.clear();
    for (const record of fresh.values()) if (record.tokenSha256) byHash.set(record.tokenSha256, record.id);
    emit(invalidated);
  };

  // Notified ids wait here; one reload query serves all that arrived meanwhile.
  const pendingIds = new Set<string>();
  let pendingAll = false;
  let scheduled = false;
  const schedule = (): void => {
    if (scheduled || closed) return;
    scheduled = true;
    void serial(async () => {
      scheduled = false;
      if (pendingAll) {
        pendingAll = false;
        pendingIds.clear();
        await reloadNow().catch((err: unknown) =>
          retryLater(err, () => {
            pendingAll = true;
          }),
        );
        return;
      }
      const ids = [...pendingIds];
      pendingIds.clear();
      if (ids.length === 0) return;
      try {
        const { rows } = await db.run('registry_refresh', (q) =>
          q.query<DeviceRow>(`SELECT ${COLUMNS} FROM esp32hub_devices WHERE id = ANY($1::text[])`, [ids]),
        );
        applyRows(ids, rows);
      } catch (err) {
        retryLater(err, () => {
          for (const id of ids) pendingIds.add(id);
        });
      }
    });
  };
  const retryLater = (err: unknown, keep: () => void): void => {
    keep();
    // During an outage the reload after the reconnect covers these rows (and the outage is logged once).
    if (!db.connected) return;
    logger.warn({ error: db.safeMessage(err) }, 'reloading changed devices failed; retrying');
    setTimeout(schedule, RETRY_MS).unref();
  };

  /** A change in one transaction that notifies every instance; the returned row is applied here at once. */
  const change = (op: string, deviceId: string, fn: (q: Queryable) => Promise<DeviceRow>): Promise<DeviceRow> => {
    if (closed) return Promise.reject(new HubError('SHUTTING_DOWN', 'the device registry is closed'));
    return serial(async () => {
      const row = await db.tx(op, async (client) => {
        const result = await fn(client);
        await client.query('SELECT pg_notify($1, $2)', [REGISTRY_CHANNEL, deviceId]);
        return result;
      });
      applyRows([deviceId], [row]);
      return row;
    });
  };

  const requireId = (deviceId: unknown): string => {
    if (typeof deviceId !== 'string' || !isDeviceId(deviceId)) throw badId(deviceId);
    return deviceId;
  };
  const notFound = (deviceId: string) => new HubError('NOT_FOUND', `no device ${deviceId} is registered`);

  await reloadNow();

  return {
    file: redactedUrl(options.url),

    authenticate(token) {
      if (typeof token !== 'string' || !isTokenShaped(token)) return null;
      return byHash.get(hashToken(token)) ?? null;
    },

    async add(deviceId) {
      const id = requireId(deviceId);
      const token = generateToken();
      const row = await change('registry_add', id, async (q) => {
        await q.query('SELECT pg_advisory_xact_lock($1)', [REGISTRY_ADD_LOCK]);
        const existing = await q.query<{ revoked_at_ms: number | null }>(
          'SELECT revoked_at_ms FROM esp32hub_devices WHERE id = $1',
          [id],
        );
        if (existing.rows[0]) throw deviceExists(id, existing.rows[0].revoked_at_ms !== null);
        const count = await q.query<{ n: number }>('SELECT count(*)::int AS n FROM esp32hub_devices');
        if ((count.rows[0]?.n ?? 0) >= maxDevices) throw registryFull(maxDevices);
        const inserted = await q.query<DeviceRow>(
          `INSERT INTO esp32hub_devices (${COLUMNS}) VALUES ($1, $2, $3, NULL, NULL) RETURNING ${COLUMNS}`,
          [id, hashToken(token), now()],
        );
        return inserted.rows[0] as DeviceRow;
      });
      logger.info({ deviceId: id }, 'device added');
      return { token, device: toInfo(fromRow(row)) };
    },

    list() {
      return sortedInfos(records.values());
    },

    get(deviceId) {
      const record = records.get(deviceId);
      return record ? toInfo(record) : undefined;
    },

    async revoke(deviceId) {
      const id = requireId(deviceId);
      let changed = false;
      const row = await change('registry_revoke', id, async (q) => {
        const { rows } = await q.query<DeviceRow>(`SELECT ${COLUMNS} FROM esp32hub_devices WHERE id = $1 FOR UPDATE`, [
          id,
        ]);
        const found = rows[0];
        if (!found) throw notFound(id);
        if (found.revoked_at_ms !== null) return found;
        changed = true;
        const updated = await q.query<DeviceRow>(
          `UPDATE esp32hub_devices SET token_sha256 = NULL, revoked_at_ms = $2 WHERE id = $1 RETURNING ${COLUMNS}`,
          [id, now()],
        );
        return updated.rows[0] as DeviceRow;
      });
      if (changed) logger.info({ deviceId: id }, 'device revoked');
      return toInfo(fromRow(row));
    },

    async rotate(deviceId) {
      const id = requireId(deviceId);
      const token = generateToken();
      const row = await change('registry_rotate', id, async (q) => {
        const { rows } = await q.query<DeviceRow>(
          `UPDATE esp32hub_devices SET token_sha256 = $2, rotated_at_ms = $3, revoked_at_ms = NULL
           WHERE id = $1 RETURNING ${COLUMNS}`,
          [id, hashToken(token), now()],
        );
        if (!rows[0]) throw notFound(id);
        return rows[0];
      });
      logger.info({ deviceId: id }, 'device token rotated');
      return { token, device: toInfo(fromRow(row)) };
    },

    onRevoked(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },

    refresh() {
      return serial(reloadNow);
    },

    reload() {
      pendingIds.clear();
      pendingAll = false;
      return serial(reloadNow);
    },

    notified(payload) {
      if (payload === '*') pendingAll = true;
      else if (isDeviceId(payload)) pendingIds.add(payload);
      else return;
      schedule();
    },

    async close() {
      if (closed) return;
      closed = true;
      await queue;
    },
  };
}

function fromRow(row: DeviceRow): DeviceRecord {
  return {
    id: row.id,
    tokenSha256: row.token_sha256,
    createdAtMs: row.created_at_ms,
    rotatedAtMs: row.rotated_at_ms,
    revokedAtMs: row.revoked_at_ms,
  };
}

/** First start of a cluster: an empty table takes the devices of `<dataDir>/devices.json`, if any. */
async function importFileIfEmpty(options: PgRegistryOptions, logger: Logger): Promise<void> {
  const file = join(options.dataDir, REGISTRY_FILE_NAME);
  if (!existsSync(file)) return;
  let records: DeviceRecord[];
  try {
    records = [...readStoreSync(file).records.values()];
  } catch (err) {
    throw new HubError('INTERNAL', `the device registry ${file} is unreadable: ${(err as Error).message}`);
  }
  if (records.length === 0) return;
  const imported = await options.db.tx('registry_import', async (q) => {
    await q.query('SELECT pg_advisory_xact_lock($1)', [REGISTRY_ADD_LOCK]);
    const { rows } = await q.query<{ any: boolean }>('SELECT EXISTS (SELECT 1 FROM esp32hub_devices) AS any');
    if (rows[0]?.any) return 0;
    await q.query(
      `INSERT INTO esp32hub_devices (${COLUMNS})
       SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])`,
      [
        records.map((r) => r.id),
        records.map((r) => r.tokenSha256),
        records.map((r) => r.createdAtMs),
        records.map((r) => r.rotatedAtMs),
        records.map((r) => r.revokedAtMs),
      ],
    );
    await q.query('SELECT pg_notify($1, $2)', [REGISTRY_CHANNEL, '*']);
    return records.length;
  });
  if (imported > 0) {
    logger.info(
      { file, devices: imported },
      'imported the device registry file into the empty cluster database (first start of the cluster)',
    );
  }
}
