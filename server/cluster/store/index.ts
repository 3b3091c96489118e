/**
 * The PostgreSQL cluster store: the state several hub instances share (registry, session claims,
 * per-device boots / ACK / descriptor sets), behind the contract of ./types.ts. See docs/scaling.md
 * "Shared state in PostgreSQL".
 *
 * Opening retries the connection with backoff for up to 30 s, then fails with CLUSTER_DB_UNAVAILABLE
 * naming `user@host:port/db` (never the password). Later outages are not fatal: `status()` says
 * `unreachable`, one error is logged per outage, `hub_cluster_db_up` drops to 0, calls reject with
 * CLUSTER_DB_UNAVAILABLE, the registry keeps answering from memory, and the listening connection
 * reconnects with backoff; once back, the registry is reloaded and `onResync` listeners run.
 */
import { HubError } from '../../errors.ts';
import { Db, isLoginRefused } from './db.ts';
import { Listener } from './listener.ts';
import { storeMetrics } from './metrics.ts';
import { openPgRegistry, type PgRegistry } from './registry.ts';
import { migrate, REGISTRY_CHANNEL, SESSIONS_CHANNEL } from './schema.ts';
import * as state from './state.ts';
import type { ClusterStore, ClusterStoreOptions, SessionClaim } from './types.ts';

export { describeDatabase, redactedUrl } from './db.ts';
export { SCHEMA_VERSION } from './schema.ts';
export type {
  ClusterStore,
  ClusterStoreOptions,
  JoinRequest,
  JoinResult,
  OpenClusterStore,
  SessionClaim,
  SharedBoot,
  SharedDeviceState,
} from './types.ts';

const DEFAULT_OPEN_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_DEVICES = 100_000;

export async function openClusterStore(opts: ClusterStoreOptions): Promise<ClusterStore> {
  const now = opts.now ?? Date.now;
  const logger = opts.logger.child({ component: 'cluster-store' });
  const metrics = storeMetrics(opts.metrics);
  const db = new Db({ url: opts.databaseUrl, instanceId: opts.instanceId, logger, metrics, now });

  const claimListeners = new Set<(claim: SessionClaim) => void>();
  const resyncListeners = new Set<() => void>();
  let registry: PgRegistry | undefined;
  // Registry notifications that arrive while the registry is still loading at open: replayed after.
  const early: string[] = [];
  let closed = false;

  const listener: Listener = new Listener({
    url: opts.databaseUrl,
    instanceId: opts.instanceId,
    channels: [REGISTRY_CHANNEL, SESSIONS_CHANNEL],
    db,
    logger,
    metrics,
    onNotification(channel, payload) {
      if (channel === REGISTRY_CHANNEL) {
        if (registry) registry.notified(payload);
        else early.push(payload);
        return;
      }
      const claim = state.parseClaim(payload);
      if (!claim) return;
      for (const l of claimListeners) {
        try {
          l(claim);
        } catch (err) {
          logger.error({ err, deviceId: claim.deviceId }, 'an onSessionClaimed listener threw');
        }
      }
    },
    async onReconnected() {
      await registry?.reload();
      for (const l of resyncListeners) {
        try {
          l();
        } catch (err) {
          logger.error({ err }, 'an onResync listener threw');
        }
      }
    },
  });

  db.isListening = () => listener.listening;

  // Start: connect (LISTEN first, so no change between the load and the first notification is
  // missed), migrate, load the registry; retried as a whole.
  // Real time, whatever clock the caller gives for the stored times.
  const deadline = Date.now() + (opts.openTimeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS);
  let delayMs = 100;
  for (let attempt = 1; ; attempt++) {
    try {
      await listener.connect();
      const applied = await migrate(db, now());
      if (applied.length > 0)
        logger.info({ database: db.where, versions: applied }, 'cluster database schema migrated');
      registry = await openPgRegistry({
        db,
        url: opts.databaseUrl,
        dataDir: opts.dataDir,
        logger: opts.logger,
        maxDevices: opts.maxDevices ?? DEFAULT_MAX_DEVICES,
        now,
      });
      db.markUp();
      break;
    } catch (err) {
      await listener.disconnect();
      if (err instanceof HubError && err.code !== 'CLUSTER_DB_UNAVAILABLE') {
        await db.close();
        throw err;
      }
      const refused = isLoginRefused(err);
      if (refused || Date.now() + delayMs > deadline) {
        await db.close();
        throw new HubError(
          'CLUSTER_DB_UNAVAILABLE',
          `the cluster database ${db.where} ${refused ? 'refused the login' : `cannot be reached (tried ${attempt} times)`}: ${db.safeMessage(err)}`,
        );
      }
      logger.warn(
        { database: db.where, attempt, error: db.safeMessage(err) },
        'cluster database not reachable yet; retrying',
      );
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      delayMs = Math.min(delayMs * 2, 2_000);
    }
  }
  const reg = registry;
  db.onDown = () => listener.recycle(new Error('a query found the cluster database unreachable'));
  for (const payload of early.splice(0)) reg.notified(payload);
  logger.info({ database: db.where, instanceId: opts.instanceId, devices: reg.list().length }, 'cluster store open');

  const open = (): void => {
    if (closed) throw new HubError('SHUTTING_DOWN', 'the cluster store is closed');
  };

  return {
    instanceId: opts.instanceId,
    registry: reg,
    async claimSession(deviceId) {
      open();
      return state.claimSession(db, deviceId, opts.instanceId, now());
    },
    async joinSessions(requests) {
      open();
      if (requests.length === 0) return [];
      return state.joinSessions(db, requests, opts.instanceId, now());
    },
    async releaseSession(claim) {
      open();
      await state.releaseSession(db, claim);
    },
    async releaseInstanceClaims() {
      open();
      const released = await state.releaseInstanceSessions(db, opts.instanceId);
      if (released > 0)
        logger.info({ claims: released }, 'released session claims an earlier run of this instance left');
      return released;
    },
    async sessionHolder(deviceId) {
      open();
      return state.sessionHolder(db, deviceId);
    },
    onSessionClaimed(l) {
      claimListeners.add(l);
      return () => {
        claimListeners.delete(l);
      };
    },
    onResync(l) {
      resyncListeners.add(l);
      return () => {
        resyncListeners.delete(l);
      };
    },
    async loadDeviceState(deviceId) {
      open();
      return state.loadDeviceState(db, deviceId);
    },
    async claimBootOffset(deviceId, bootId, offsetMs) {
      open();
      return state.claimBootOffset(db, deviceId, bootId, offsetMs, now());
    },
    async saveDeviceStates(states) {
      open();
      if (states.length === 0) return;
      metrics.savedDevices.inc(await state.saveDeviceStates(db, states, now()));
    },
    async putDescriptors(deviceId, hash, channels) {
      open();
      await state.putDescriptors(db, deviceId, hash, channels);
    },
    status: () => db.status(),
    async close() {
      if (closed) return;
      closed = true;
      await reg.close();
      await listener.close();
      await db.close();
      metrics.up.set(0);
    },
  };
}
