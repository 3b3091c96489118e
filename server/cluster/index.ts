/**
 * Several hub instances serving one fleet (docs/scaling.md): the composition.
 * `buildHub` calls {@link startCluster} only when `config.cluster` is set (CLUSTER_DATABASE_URL); with
 * one instance none of this runs.
 *
 * ```
 *  hub.start()
 *    ├─ local log, ingest
 *    ├─ startCluster()                       (before the registry: in cluster mode it IS the store's)
 *    │    ├─ store       ./store/            PostgreSQL: registry, session claims, shared device state
 *    │    └─ sessions    ./sessions.ts       one session per device cluster-wide, shared state at HELLO,
 *    │                                       write-behind (DeviceSession calls it through ctx.cluster)
 *    ├─ registry = cluster.store.registry, MQTT, routes, HubContext
 *    ├─ cluster.attach(ctx)                  parts that talk over the broker, once the hub's MQTT exists:
 *    │    ├─ membership  ./membership.ts     members (retained + last will), MQTT device ownership
 *    │    └─ relay       ./relay.ts          live events, presence and commands across instances
 *    └─ extensions, forwarder, listen
 *
 *  hub.stop(): device sessions end (ACKs first) → extensions → alerts → cluster.stop() → MQTT → … → log
 *    cluster.stop(): relay → membership (while MQTT is still up) → sessions (write-behind flushed,
 *                    claims released) → store closed (the registry with it)
 * ```
 *
 * A part that talks over the broker adds itself in `attach` (started there, stopped first in `stop`,
 * in reverse order) and, when it has something to show, in `status()` (`/readyz` `checks.cluster`).
 * Degraded states never make the hub unready: PostgreSQL or a member lost affects every instance at
 * once, and taking all of them out of the load balancer would help no device.
 */
import type { ClusterConfig, HubConfig } from '../config/index.ts';
import type { HubEventBus } from '../events.ts';
import type { HubContext } from '../hub.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import type { ClusterIngest } from '../pipeline/ingest.ts';
import { type ClusterLive, startClusterLive } from './live.ts';
import { type Membership, startMembership } from './membership.ts';
import { type ClusterSessions, type ClusterSessionsStatus, createClusterSessions } from './sessions.ts';
import { openClusterStore } from './store/index.ts';
import type { ClusterStore, OpenClusterStore } from './store/types.ts';

export type { ClusterSessions } from './sessions.ts';
export type { ClusterStore } from './store/types.ts';

export interface StartClusterOptions {
  config: Readonly<HubConfig>;
  /** `config.cluster`, checked non-null by the caller. */
  cluster: ClusterConfig;
  logger: Logger;
  metrics: Metrics;
  bus: HubEventBus;
  now?: () => number;
  ingest: ClusterIngest;
  /** Opens the store (default: PostgreSQL, ./store/). Unit tests pass an in-process fake. */
  openStore?: OpenClusterStore;
  /** HELLO's first bound on the database (default 3 s, sessions.ts; the whole wait follows DEVICE_HELLO_TIMEOUT_MS). */
  joinTimeoutMs?: number;
  /** Write-behind period (default 250 ms, sessions.ts). */
  writeBehindIntervalMs?: number;
  /** ACK_DURABILITY=influx: the ACK gate, whose releases are what the shared last ACK follows. */
  ackGate?: { onReleased(listener: (deviceId: string, bootId: number, seq: number) => void): () => void } | null;
}

/** What `/readyz` shows as `checks.cluster`. */
export interface ClusterStatus {
  instanceId: string;
  database: 'connected' | 'unreachable';
  lastError: string | null;
  sessions: ClusterSessionsStatus;
  /** Live members (membership.ts), once it is attached. */
  members?: unknown;
  /** Relay state (relay.ts), once it is attached. */
  relay?: unknown;
}

export interface Cluster {
  readonly instanceId: string;
  readonly store: ClusterStore;
  readonly sessions: ClusterSessions;
  /** Members over the broker (membership.ts), once attached with MQTT. */
  readonly membership: Membership | null;
  /** Live events, presence and commands across instances (live.ts: relay, remote commands), once attached. */
  readonly live: ClusterLive | null;
  /** Whether relayed presence shows a device online on another instance (the offline alert rule). */
  onlineElsewhere(deviceId: string): boolean;
  /**
   * Whether this instance watches a device no instance holds (its offline alert when it never
   * connected, or its instance was lost): the HRW owner among the members, so one instance raises it.
   */
  watchesUnheld(deviceId: string): boolean;
  /** Starts the parts that talk over the broker (membership, relay) once the hub's context exists. */
  attach(ctx: HubContext): Promise<void>;
  status(): ClusterStatus;
  /** Stops the broker parts, flushes the write-behind, releases claims, closes the store. */
  stop(): Promise<void>;
}

/** A part started by `attach` and stopped (in reverse order) by `stop`. */
interface AttachedPart {
  name: string;
  stop(): void | Promise<void>;
  status?(): Partial<ClusterStatus>;
}

/**
 * Opens the shared store (retries for up to 30 s, then fails the start with CLUSTER_DB_UNAVAILABLE),
 * drops the claims a previous run of this instance left, and starts the session side.
 */
export async function startCluster(opts: StartClusterOptions): Promise<Cluster> {
  const { logger, metrics } = opts;
  const log = logger.child({ component: 'cluster', instanceId: opts.cluster.instanceId });
  const open = opts.openStore ?? openClusterStore;
  const store = await open({
    databaseUrl: opts.cluster.databaseUrl,
    instanceId: opts.cluster.instanceId,
    dataDir: opts.config.storage.dataDir,
    logger,
    metrics,
    ...(opts.now ? { now: opts.now } : {}),
  });
  let sessions: ClusterSessions;
  try {
    // Before any session: what an earlier run of this instance held is gone with its connections.
    await store.releaseInstanceClaims();
    sessions = createClusterSessions({
      store,
      ingest: opts.ingest,
      bus: opts.bus,
      metrics,
      logger: log,
      ...(opts.now ? { now: opts.now } : {}),
      helloTimeoutMs: opts.config.devices.helloTimeoutMs,
      ...(opts.joinTimeoutMs !== undefined ? { joinTimeoutMs: opts.joinTimeoutMs } : {}),
      ...(opts.writeBehindIntervalMs !== undefined ? { writeBehindIntervalMs: opts.writeBehindIntervalMs } : {}),
      ...(opts.ackGate ? { acknowledged: opts.ackGate.onReleased.bind(opts.ackGate) } : {}),
    });
  } catch (err) {
    await store.close().catch(() => undefined);
    throw err;
  }
  const parts: AttachedPart[] = [];
  let stopped = false;
  let membership: Membership | null = null;
  let live: ClusterLive | null = null;

  return {
    instanceId: opts.cluster.instanceId,
    store,
    sessions,

    get membership() {
      return membership;
    },

    get live() {
      return live;
    },

    onlineElsewhere(deviceId) {
      return live?.relay.onlineElsewhere(deviceId) === true;
    },

    watchesUnheld(deviceId) {
      return membership === null || membership.ownerOf(deviceId) === opts.cluster.instanceId;
    },

    async attach(ctx) {
      const mqtt = ctx.mqtt;
      const mqttConfig = ctx.config.mqtt;
      if (!mqtt || !mqttConfig) return; // cluster mode requires MQTT_URL (config)
      // Membership: before the MQTT connect (it sets the will); MQTT devices are handled by their owner only.
      const m = startMembership({
        mqtt,
        instanceId: opts.cluster.instanceId,
        topicPrefix: mqttConfig.topicPrefix,
        publicUrl: ctx.config.server.publicUrl,
        logger: log,
        metrics,
      });
      membership = m;
      mqtt.setOwnership(m.ownership);
      parts.push({ name: 'membership', stop: () => m.stop(), status: () => ({ members: m.status() }) });
      // Live events, presence and commands across instances, on the members `m` sees.
      const l = startClusterLive(ctx, { instanceId: opts.cluster.instanceId, members: m, store });
      live = l;
      parts.push({ name: 'relay', stop: () => l.stop(), status: () => ({ relay: l.relay.status() }) });
    },

    status() {
      const db = store.status();
      const s: ClusterStatus = {
        instanceId: opts.cluster.instanceId,
        database: db.database,
        lastError: db.lastError,
        sessions: sessions.status(),
      };
      for (const p of parts) Object.assign(s, p.status?.());
      return s;
    },

    async stop() {
      if (stopped) return;
      stopped = true;
      for (const p of parts.splice(0).reverse()) {
        try {
          await p.stop();
        } catch (err) {
          log.error({ err, part: p.name }, 'cluster part failed to stop');
        }
      }
      await sessions.stop();
      await store.close().catch((err) => log.error({ err }, 'cluster store failed to close'));
    },
  };
}
