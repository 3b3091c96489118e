/**
 * `buildHub(config, deps)` composes the ingest core: gateway (transport) → sessions → codec → pipeline →
 * local log, plus health/metrics and commands over HTTP. No side effects until `start()`; every
 * collaborator is injectable so tests can build several hubs in one process.
 *
 * Other parts plug in through `deps`:
 * - `registry` (device tokens; default: `openDeviceRegistry` in the data dir) or `authenticate` (tests);
 * - `createForwarder` (InfluxDB forwarder; called only when `config.influx` is set);
 * - `extensions` (live fan-out, MQTT bus, ...): started with a `HubContext`, may register upgrade
 *   paths (`ctx.registerUpgrade('/v1/live', handler)`) and HTTP routes on the one router (`ctx.router`,
 *   docs/http-api.md).
 */
import { hostname } from 'node:os';
import { type Alerts, createAlerts } from './alerts/index.ts';
import { registerAlertRoutes } from './alerts/routes.ts';
import { type Cluster, startCluster } from './cluster/index.ts';
import type { ChannelDescriptor } from './codec/index.ts';
import type { HubConfig } from './config/index.ts';
import { ENROLL_PATH, type Enrollment, startEnrollment } from './enroll/index.ts';
import { HubError } from './errors.ts';
import { HubEventBus } from './events.ts';
import { registerAdminRoutes } from './http/admin.ts';
import { type AccessCheck, anyOf, guardFrom, requireAdmin } from './http/auth.ts';
import { registerCommandRoutes } from './http/commands.ts';
import { type DeadLetterAdmin, registerDeadLetterRoutes } from './http/dead-letters.ts';
import { deadLetterCheck, type Readiness, registerHealthRoutes } from './http/health.ts';
import { type HistorySource, registerHistoryRoutes } from './http/history.ts';
import { registerOpenApiRoutes } from './http/openapi.ts';
import { createRouter, type Router } from './http/router.ts';
import { logDeviceActivity } from './log/device-activity.ts';
import { createLogger, type Logger } from './log/index.ts';
import { createMetrics, type Metrics } from './metrics/index.ts';
import { createMqttBridgeExtension } from './mqtt/bridge-extension.ts';
import { createHubMqtt, type HubMqtt, withBrokerGrants } from './mqtt/index.ts';
import { type Ota, otaHolderIn, startOta } from './ota/index.ts';
import { type CommandTracker, createCommandTracker } from './pipeline/commands.ts';
import { DeviceHealth, type DeviceHealthRow } from './pipeline/device-health.ts';
import { createIngest, type Ingest } from './pipeline/ingest.ts';
import { type DeviceRegistry, deviceUrlFrom, openDeviceRegistry } from './registry/index.ts';
import { acquireDataDirLock, type DataDirLock } from './storage/data-dir-lock.ts';
import { openDeadLetterStore } from './storage/dead-letter.ts';
import { influxDownsample } from './storage/influx/downsample.ts';
import { createInfluxForwarder, createInfluxHistory, createStatsWriter } from './storage/influx/index.ts';
import { createDeadLetterReplayer } from './storage/influx/replay.ts';
import {
  type HistoryQuery,
  type HistoryResult,
  type LocalLog,
  openLocalLog,
  type StorageFaults,
} from './storage/local-log.ts';
import type { LogReader } from './storage/types.ts';
import { type ConfirmationSource, InfluxAckGate } from './transport/ack-gate.ts';
import {
  createSessionTable,
  DeviceSession,
  flushSessionCounts,
  newSessionCounts,
  type SessionTable,
} from './transport/device-session.ts';
import { type Authenticate, createGateway, type Gateway, type UpgradeHandler } from './transport/gateway.ts';

/** What a forwarder must offer the hub (the InfluxDB forwarder satisfies it). */
export interface ForwarderLike {
  start(): void;
  stop(): Promise<void>;
  status?(): unknown;
  /** Dead-letter store and replay: adds the admin routes and the `deadLetters` check of `/readyz`. */
  deadLetters?: DeadLetterAdmin;
  /** How far InfluxDB confirmed the log: required by ACK_DURABILITY=influx (transport/ack-gate.ts). */
  confirmation?: ConfirmationSource;
}

export interface ForwarderContext {
  config: NonNullable<HubConfig['influx']>;
  log: LogReader;
  dataDir: string;
  metrics: Metrics;
  logger: Logger;
  /** Per-device health for the `device_status` points written with the hub stats. */
  fleet: () => DeviceHealthRow[];
  /** `hub_stats`' `hub` tag: HUB_INSTANCE_ID with several instances (default the host name). */
  hubId?: string;
}

/** Everything a plugged-in part may use once the hub has started. */
export interface HubContext {
  config: Readonly<HubConfig>;
  logger: Logger;
  metrics: Metrics;
  bus: HubEventBus;
  now: () => number;
  log: LocalLog;
  registry: DeviceRegistry | null;
  sessions: SessionTable;
  commands: CommandTracker;
  ingest: Ingest;
  /** Per-device link health; the live view supplies presence to it (`setPresenceProvider`). */
  health: DeviceHealth;
  /** Routes WebSocket upgrades for an exact path (not `/v1/device`). */
  registerUpgrade(path: string, handler: UpgradeHandler): void;
  /** Embedded-store history (the local log), for the history route in embedded mode. */
  queryHistory(q: HistoryQuery): HistoryResult;
  /** A device's current descriptor set (what its last DESCRIPTORS or known HELLO announced). */
  channelsOf(deviceId: string): ChannelDescriptor[] | undefined;
  /** The MQTT side (client, topics, broker access) when MQTT_URL is set, else null. */
  mqtt: HubMqtt | null;
  /** Several instances (CLUSTER_DATABASE_URL): who holds which device elsewhere; null with one instance. */
  cluster: Cluster | null;
  /** The hub's one HTTP router: register routes with schemas here (docs/http-api.md). */
  router: Router;
}

export interface HubExtension {
  name: string;
  start(ctx: HubContext): void | Promise<void>;
  stop?(): void | Promise<void>;
}

export interface HubDeps {
  logger?: Logger;
  metrics?: Metrics;
  bus?: HubEventBus;
  now?: () => number;
  /** Device registry; default opens the one in `config.storage.dataDir` at start. */
  registry?: DeviceRegistry;
  /** Replaces `registry.authenticate` (tests without a registry). */
  authenticate?: Authenticate;
  /**
   * Builds the InfluxDB forwarder; used only when `config.influx` is set. Default: the real forwarder
   * (`server/storage/influx`) with its dead-letter store and `hub_stats` writer ({@link influxForwarder}).
   */
  createForwarder?: (ctx: ForwarderContext) => ForwarderLike;
  extensions?: HubExtension[];
  /**
   * Who may use the commands API; default: the admin token only. E.g. the live extension's
   * `authorizeCommands` (dashboard operators, CSRF checks).
   */
  authorizeCommands?: AccessCheck;
  /** Who may read history besides the admin token (e.g. a dashboard session check). */
  readAccess?: AccessCheck;
  /** Time from sending a COMMAND to its RESULT before it counts as timed out. Default 30 s. */
  commandTimeoutMs?: number;
  /** Wait for the disk flush before ACK (default true). Only benchmarks comparing modes turn it off. */
  ackAfterFlush?: boolean;
  /** Retention sweep period of the local log (default 10 s). */
  maintenanceIntervalMs?: number;
  /** Fault injection at the storage boundary (tests and chaos runs only; see local-log.ts). */
  storageFaults?: StorageFaults;
  /** Free-space probe for the data directory (tests; default statfs). */
  freeBytes?: (dir: string) => number;
  /** MQTT reconnect backoff bounds, ms (tests; default 1000 doubling to 30,000). */
  mqttRetryMs?: { min: number; max: number };
  /** Alert webhook retry backoff bounds, ms (tests; default 1000 doubling to 60,000). */
  alertWebhookRetryMs?: { min: number; max: number };
  /** Several instances: the cluster's timings (tests; defaults in server/cluster/sessions.ts). */
  cluster?: { joinTimeoutMs?: number; writeBehindIntervalMs?: number };
}

export interface Hub {
  readonly config: Readonly<HubConfig>;
  readonly metrics: Metrics;
  readonly bus: HubEventBus;
  readonly logger: Logger;
  /** Takes the data dir lock, opens the local log and the registry, starts extensions and the forwarder, listens. */
  start(): Promise<{ port: number }>;
  /**
   * Graceful stop: refuse new connections, close device sessions with 1001 after their in-flight
   * commits (ACKs go out first), stop extensions and the forwarder, close the log and the registry.
   */
  stop(): Promise<void>;
  /** The context handed to extensions; throws before `start()`. */
  context(): HubContext;
  /** Registers an upgrade route; allowed before or after start. */
  registerUpgrade(path: string, handler: UpgradeHandler): void;
}

export function buildHub(config: Readonly<HubConfig>, deps: HubDeps = {}): Hub {
  const logger = deps.logger ?? createLogger(config.log.level);
  const metrics = deps.metrics ?? createMetrics();
  const bus = deps.bus ?? new HubEventBus();
  const now = deps.now ?? Date.now;
  const sessions = createSessionTable();
  const pendingUpgrades = new Map<string, UpgradeHandler>();
  // The MQTT readings bridge and Home Assistant discovery (MQTT_BRIDGE=on) run as an extension.
  const extensions = [...(deps.extensions ?? []), ...(config.mqttBridge ? [createMqttBridgeExtension()] : [])];

  let ctx: HubContext | null = null;
  let gateway: Gateway | null = null;
  let mqtt: HubMqtt | null = null;
  let log: LocalLog | null = null;
  let dirLock: DataDirLock | null = null;
  let activity: { close(): void } | null = null;
  let registry: DeviceRegistry | null = null;
  let ownsRegistry = false;
  let forwarder: ForwarderLike | null = null;
  let ackGate: InfluxAckGate | null = null;
  let cluster: Cluster | null = null;
  let commands: CommandTracker | null = null;
  let unsubscribeRevoked: (() => void) | null = null;
  let alerts: Alerts | null = null;
  let enrollment: Enrollment | null = null;
  let ota: Ota | null = null;
  let flushCounts: () => void = () => undefined;
  let countsTimer: NodeJS.Timeout | null = null;
  let state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';
  const started: HubExtension[] = [];

  bus.onListenerError = (err, event) => {
    metrics.callbackErrors.inc({ component: 'bus' });
    logger.error({ err, event }, 'event listener threw (the other listeners still ran)');
  };
  const deviceHealth = new DeviceHealth(bus);
  const onRevoked = (deviceId: string) => {
    sessions.get(deviceId)?.end('REVOKED', 'the device token was revoked or rotated');
    // Over MQTT the broker login goes too: the broker disconnects the device at once.
    mqtt?.revokeDevice(deviceId).catch(() => undefined);
  };

  const readiness = (): Readiness => {
    const logStats = log?.stats();
    const checks: Record<string, unknown> = {
      localLog: logStats ? { open: true, ...logStats } : { open: false },
      listening: gateway?.listening() ?? false,
      deviceSessions: sessions.size(),
      mode: config.influx ? 'forwarding' : 'embedded',
    };
    if (forwarder) checks.forwarder = forwarder.status?.() ?? 'running';
    // MQTT configured but not connected (unreachable, refused): not ready; WebSocket devices still work.
    if (mqtt) checks.mqtt = mqtt.status();
    // Informative only: a degraded cluster database affects every instance alike (docs/scaling.md).
    if (cluster) checks.cluster = cluster.status();
    const mqttOk = mqtt === null || mqtt.client.isConnected();
    const dl = state === 'running' ? forwarder?.deadLetters : undefined;
    if (dl) checks.deadLetters = deadLetterCheck(dl.store.totals(), dl.store.recent());
    // STORAGE_FULL makes the hub unready: a load balancer should send devices to an instance that can store.
    const storing = logStats !== undefined && !logStats.full;
    return { ready: state === 'running' && storing && mqttOk && (gateway?.listening() ?? false), checks };
  };

  const hub: Hub = {
    config,
    metrics,
    bus,
    logger,

    async start() {
      if (state !== 'new') throw new Error(`hub cannot start from state ${state}`);
      state = 'starting';
      try {
        // One hub per data directory: refuse before touching the log (DATA_DIR_LOCKED names the holder).
        dirLock = await acquireDataDirLock({
          dataDir: config.storage.dataDir,
          logger: logger.child({ component: 'data-dir' }),
        });
        log = openLocalLog({
          dataDir: config.storage.dataDir,
          maxBytes: config.storage.maxBytes,
          retentionHours: config.storage.retentionHours,
          fullPolicy: config.storage.fullPolicy,
          forwarding: config.influx !== null,
          metrics,
          logger: logger.child({ component: 'local-log' }),
          now,
          ...(deps.ackAfterFlush !== undefined ? { ackAfterFlush: deps.ackAfterFlush } : {}),
          ...(deps.maintenanceIntervalMs !== undefined ? { maintenanceIntervalMs: deps.maintenanceIntervalMs } : {}),
          minFreeBytes: config.storage.minFreeBytes,
          commitWindowMaxMs: config.storage.commitWindowMaxMs,
          ...(deps.freeBytes ? { freeBytes: deps.freeBytes } : {}),
          ...(deps.storageFaults ? { faults: deps.storageFaults } : {}),
        });
        const ingest = createIngest({
          log,
          metrics,
          bus,
          devices: config.devices,
          logger: logger.child({ component: 'ingest' }),
          now,
        });
        // ACK_DURABILITY=influx: ACKs wait for InfluxDB too; attached to the forwarder below.
        ackGate =
          config.ackDurability === 'influx' && config.influx ? new InfluxAckGate({ metrics, logger, now }) : null;
        // Several instances (server/cluster/index.ts): the shared store before the registry, which is its.
        if (config.cluster) {
          cluster = await startCluster({
            config,
            cluster: config.cluster,
            logger,
            metrics,
            bus,
            now,
            ingest,
            ackGate,
            ...deps.cluster,
          });
        }
        registry = deps.registry ?? cluster?.store.registry ?? null;
        if (!registry && !deps.authenticate) {
          registry = openDeviceRegistry({ dataDir: config.storage.dataDir, logger });
          ownsRegistry = true;
        }
        if (registry) unsubscribeRevoked = registry.onRevoked((id) => bus.emit('device:revoked', id));
        bus.on('device:revoked', onRevoked);
        // Connects, disconnects, gaps, duplicates, rejections at info, rate-limited per device.
        activity = logDeviceActivity({ bus, logger: logger.child({ component: 'devices' }) });
        const reg = registry;
        const authenticate: Authenticate = deps.authenticate ?? ((token) => (reg ? reg.authenticate(token) : null));

        commands = createCommandTracker({
          metrics,
          bus,
          now,
          ...(deps.commandTimeoutMs !== undefined ? { timeoutMs: deps.commandTimeoutMs } : {}),
        });
        const counts = newSessionCounts();
        const sessionCtx = {
          counts,
          ingest,
          sessions,
          commands,
          config,
          metrics,
          bus,
          logger,
          now,
          ackGate,
          cluster: cluster?.sessions ?? null,
        };
        // Hot-path counts reach prom-client in bulk: every second and right before each scrape.
        flushCounts = () => {
          flushSessionCounts(counts, metrics);
          ingest.flushCounts();
        };
        countsTimer = setInterval(flushCounts, 1000);
        countsTimer.unref();
        // Every HTTP route is on this router: health, REST API (commands, admin device routes, history),
        // the API reference, and what extensions register (the page and its API).
        const router = createRouter({ logger: logger.child({ component: 'http' }) });
        registerHealthRoutes(router, { metrics, readiness, beforeScrape: () => flushCounts() });
        registerOpenApiRoutes(router, { title: 'ESP32 telemetry hub', version: '1.0.0' });
        const admin = requireAdmin(config.auth.adminToken);
        registerCommandRoutes(router, {
          commands,
          session: (id) => sessions.get(id),
          guard: deps.authorizeCommands ? guardFrom(deps.authorizeCommands) : admin,
          // Several instances: a device held elsewhere gets the command through its instance.
          remote: () => cluster?.live?.commands ?? null,
        });
        if (config.mqtt) {
          mqtt = createHubMqtt({
            config: config.mqtt,
            session: sessionCtx,
            registry,
            metrics,
            logger: logger.child({ component: 'mqtt' }),
            ...(deps.mqttRetryMs ? { minRetryMs: deps.mqttRetryMs.min, maxRetryMs: deps.mqttRetryMs.max } : {}),
          });
        }
        // With broker access managed by the hub, tokens issued through the API are granted on the broker too.
        const adminRegistry = registry && mqtt ? withBrokerGrants(registry, mqtt) : registry;
        if (adminRegistry) {
          registerAdminRoutes(router, {
            registry: adminRegistry,
            adminToken: config.auth.adminToken,
            deviceUrl: deviceUrlFrom(config.server.publicUrl),
            logger,
          });
        }
        const openLog = log;
        // Downsampling (the page's charts): InfluxQL GROUP BY time() on InfluxDB, one scan of the local log.
        const influxHistory = config.influx ? createInfluxHistory(config.influx) : null;
        const historySource: HistorySource = influxHistory
          ? { query: (q) => influxHistory.query(q), downsample: (q) => influxDownsample(influxHistory, q) }
          : { query: (q) => openLog.queryHistory(q).readings, scan: (q, visit) => openLog.scanHistory(q, visit) };
        registerHistoryRoutes(router, {
          source: historySource,
          guard: deps.readAccess ? anyOf(guardFrom(deps.readAccess), admin) : admin,
          ...(registry ? { deviceExists: (id: string) => registry?.get(id) !== undefined } : {}),
          now,
        });
        // Built-in alerts (docs/alerts.md): offline and threshold rules → live page, webhook, MQTT.
        alerts = createAlerts({
          config: config.alerts,
          bus,
          metrics,
          logger,
          now,
          mqtt:
            mqtt && config.mqtt
              ? {
                  client: mqtt.client,
                  topicPrefix: config.mqtt.topicPrefix,
                  dynsec: config.mqtt.deviceAccess === 'dynsec',
                }
              : null,
          isOnline: (id) => sessions.get(id)?.isReady() === true,
          knownDevices: () => registry?.list().flatMap((d) => (d.revoked ? [] : [d.id])) ?? [],
          // Without a registry (tests with `authenticate`) nobody is revoked.
          isRevoked: (id) => (registry ? registry.get(id)?.revoked !== false : false),
          ...(deps.alertWebhookRetryMs ? { webhookRetryMs: deps.alertWebhookRetryMs } : {}),
        });
        // Several instances: a device online on another instance is not offline (it moved); one
        // instance (its HRW owner) watches a device none holds.
        const clusterNow = cluster;
        if (clusterNow) {
          alerts.setClusterPresence(
            (id) => clusterNow.onlineElsewhere(id),
            (id) => clusterNow.watchesUnheld(id),
          );
        }
        registerAlertRoutes(router, {
          alerts,
          guard: deps.readAccess ? anyOf(guardFrom(deps.readAccess), admin) : admin,
        });
        gateway = createGateway({
          config,
          metrics,
          logger: logger.child({ component: 'gateway' }),
          now,
          authenticate,
          onDeviceSocket: (link, deviceId) => new DeviceSession(link, deviceId, sessionCtx),
          onRequest: router.listener,
        });
        for (const [path, handler] of pendingUpgrades) gateway.registerUpgrade(path, handler);
        // Self-enrollment of boards [PROTO-8]: the API always, /v1/enroll unless ENROLL_MODE=off.
        if (adminRegistry) {
          enrollment = await startEnrollment({
            config,
            registry: adminRegistry,
            router,
            metrics,
            logger,
            now,
            guard: deps.authorizeCommands ? guardFrom(deps.authorizeCommands) : admin,
            readGuard: deps.readAccess ? anyOf(guardFrom(deps.readAccess), admin) : admin,
          });
          if (config.enroll.mode !== 'off') gateway.registerUpgrade(ENROLL_PATH, enrollment.handleUpgrade);
        }
        // OTA updates (docs/ota.md): signed images, the `ota` command, throttled downloads.
        ota = startOta({
          config,
          router,
          metrics,
          logger,
          now,
          sessions,
          commands,
          guard: deps.authorizeCommands ? guardFrom(deps.authorizeCommands) : admin,
          readGuard: deps.readAccess ? anyOf(guardFrom(deps.readAccess), admin) : admin,
          bus,
          knownDevices: () => registry?.list().flatMap((d) => (d.revoked ? [] : [d.id])) ?? [],
          ...(cluster ? { holderElsewhere: otaHolderIn(cluster) } : {}),
        });
        const openedLog = log;
        const gw = gateway;
        ctx = {
          config,
          logger,
          metrics,
          bus,
          now,
          log: openedLog,
          registry: adminRegistry,
          sessions,
          commands,
          ingest,
          health: deviceHealth,
          registerUpgrade: (path, handler) => gw.registerUpgrade(path, handler),
          queryHistory: (q) => openedLog.queryHistory(q),
          channelsOf: (id) => ingest.currentChannels(id),
          mqtt,
          cluster,
          router,
        };
        // Cluster parts that talk over the broker (membership, relay) before the extensions that show them.
        await cluster?.attach(ctx);
        for (const ext of extensions) {
          await ext.start(ctx);
          started.push(ext);
        }
        alerts.start();
        if (config.influx) {
          const create = deps.createForwarder ?? influxForwarder;
          forwarder = create({
            config: config.influx,
            log: openedLog,
            dataDir: config.storage.dataDir,
            metrics,
            logger,
            // Registered devices that never connected since start count as offline.
            fleet: () => deviceHealth.rows(registry?.list().flatMap((d) => (d.revoked ? [] : [d.id])) ?? []),
            ...(config.cluster ? { hubId: config.cluster.instanceId } : {}),
          });
          forwarder.start();
          if (ackGate) {
            if (!forwarder.confirmation) {
              throw new HubError(
                'CONFIG_INVALID',
                'ACK_DURABILITY=influx needs a forwarder that reports confirmations',
              );
            }
            // Before any device connects: frames up to this head were stored by an earlier process.
            ackGate.attach(forwarder.confirmation, openedLog.headOffset());
          }
          if (forwarder.deadLetters) {
            registerDeadLetterRoutes(router, {
              admin: forwarder.deadLetters,
              adminToken: config.auth.adminToken,
              logger,
            });
          }
        }
        const { port } = await gateway.listen();
        ota.setListeningPort(port);
        // In the background: an unreachable broker makes /readyz not ready, never a failed start.
        mqtt?.start();
        dirLock.setPort(port);
        state = 'running';
        return { port };
      } catch (err) {
        state = 'running';
        await hub.stop().catch(() => undefined);
        throw err;
      }
    },

    async stop() {
      if (state === 'stopping' || state === 'stopped') return;
      const wasStarted = state !== 'new';
      state = 'stopping';
      if (!wasStarted) {
        state = 'stopped';
        return;
      }
      gateway?.stopAccepting();
      await enrollment?.stop();
      enrollment = null;
      await ota?.stop();
      ota = null;
      mqtt?.stopAccepting();
      // Close device sessions with 1001 once their in-flight frames are committed (ACKs first).
      const closing = [...sessions.values()].map(
        (s) =>
          new Promise<void>((resolve) => {
            s.onceClosed(resolve);
            s.end('SHUTTING_DOWN', 'the hub is shutting down');
          }),
      );
      await Promise.race([Promise.all(closing), delay(3000)]);
      for (const ext of started.reverse()) {
        try {
          await ext.stop?.();
        } catch (err) {
          logger.error({ err, extension: ext.name }, 'extension failed to stop');
        }
      }
      started.length = 0;
      // Before MQTT: the last transitions may still be published; the webhook gets up to 2 s.
      await alerts?.stop().catch((err) => logger.error({ err }, 'alerts failed to stop'));
      // Cluster: broker parts while MQTT is up, then the write-behind flushed, claims released, store closed.
      await cluster?.stop().catch((err) => logger.error({ err }, 'cluster failed to stop'));
      // After the extensions, so they may still publish; the broker keeps the hub's session.
      await mqtt?.stop().catch((err) => logger.error({ err }, 'MQTT failed to stop'));
      if (forwarder) await forwarder.stop().catch((err) => logger.error({ err }, 'forwarder failed to stop'));
      ackGate?.detach();
      await gateway?.close();
      commands?.close();
      if (countsTimer) clearInterval(countsTimer);
      flushCounts();
      bus.off('device:revoked', onRevoked);
      unsubscribeRevoked?.();
      deviceHealth.close();
      activity?.close();
      activity = null;
      await log?.close();
      if (ownsRegistry) await registry?.close();
      dirLock?.release();
      dirLock = null;
      state = 'stopped';
    },

    context() {
      if (!ctx) throw new Error('the hub has not started');
      return ctx;
    },

    registerUpgrade(path, handler) {
      if (gateway) gateway.registerUpgrade(path, handler);
      else pendingUpgrades.set(path, handler);
    },
  };
  return hub;
}

/** The real InfluxDB forwarder, its dead-letter store (`<dataDir>/dead-letters`) and `hub_stats` points. */
export function influxForwarder(ctx: ForwarderContext): ForwarderLike {
  const deadLetters = openDeadLetterStore({
    dataDir: ctx.dataDir,
    metrics: ctx.metrics,
    logger: ctx.logger,
    ...(ctx.config.deadLetterMaxBytes !== undefined ? { maxBytes: ctx.config.deadLetterMaxBytes } : {}),
  });
  const fwd = createInfluxForwarder({
    config: ctx.config,
    log: ctx.log,
    deadLetters,
    metrics: ctx.metrics,
    logger: ctx.logger,
  });
  const stats =
    ctx.config.statsIntervalMs > 0
      ? createStatsWriter({
          metrics: ctx.metrics,
          hubId: ctx.hubId ?? hostname(),
          intervalMs: ctx.config.statsIntervalMs,
          submit: (lines) => fwd.submitStats(lines),
          logger: ctx.logger,
          fleet: ctx.fleet,
        })
      : null;
  const replayer = createDeadLetterReplayer({
    config: ctx.config,
    store: deadLetters,
    metrics: ctx.metrics,
    logger: ctx.logger,
  });
  return {
    start() {
      fwd.start();
      stats?.start();
    },
    deadLetters: { store: deadLetters, replay: (req) => replayer.replay(req) },
    async stop() {
      stats?.stop();
      await fwd.stop();
      await deadLetters.close();
    },
    status: () => fwd.status(),
    confirmation: fwd,
  };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
