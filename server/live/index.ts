/**
 * Live fan-out and the built-in dashboard. The hub plugs it in as an extension:
 *
 * ```ts
 * const live = liveExtension(config);
 * const hub = buildHub(config, {
 *   extensions: [live],                          // registers /v1/live, serves / and its REST routes
 *   authorizeCommands: live.authorizeCommands,   // dashboard operators may send commands (CSRF-checked)
 *   readAccess: live.readAccess,                 // dashboard sessions may read history
 * });
 * ```
 *
 * or, without the extension seam, `createLive(deps)` and three calls: `handleUpgrade` for
 * `LIVE_PATH`, `registerRoutes(router)` on the hub's router, `start()`/`stop()` with the hub.
 *
 * It consumes the `HubEventBus` (frames as soon as the hub accepted them — `readings:accepted`,
 * before the durable commit, decoded only for what clients cover —, presence, descriptors, command
 * updates),
 * keeps the fleet's live state, serves `/v1/live` (docs/live-api.md), the page at `/` and its REST
 * routes, and decides who may use them (server/http/dashboard-auth.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { HubConfig } from '../config/index.ts';
import type { ErrorCode } from '../errors.ts';
import type { HubEventBus, HubEvents } from '../events.ts';
import { guardFrom } from '../http/auth.ts';
import { registerChannelLabelRoutes } from '../http/channel-labels.ts';
import { createDashboardApi } from '../http/dashboard-api.ts';
import {
  type AccessResult,
  createDashboardAuth,
  type DashboardAuth,
  PAGE_HEADERS,
  sendError,
} from '../http/dashboard-auth.ts';
import { registerDashboardRoutes } from '../http/dashboard-routes.ts';
import { redirect, sendText } from '../http/respond.ts';
import type { Router } from '../http/router.ts';
import type { HubContext, HubExtension } from '../hub.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import { openChannelLabels } from '../storage/channel-labels.ts';
import { type AssetTable, buildAssets, sendAsset } from '../web/assets.ts';
import { createLiveEndpoint } from './endpoint.ts';
import { LiveFanout } from './fanout.ts';

export { readingsFrame } from './fanout.ts';

import { type ChannelMeta, LiveState } from './state.ts';

type ChannelReadings = Parameters<LiveState['restore']>[2];

/** The live endpoint's path. */
export const LIVE_PATH = '/v1/live';

export interface LiveDeps {
  config: Readonly<HubConfig>;
  events: HubEventBus;
  metrics: Metrics;
  logger: Logger;
  /**
   * The channels (key, unit, nominal period) of a device's current descriptor set, from the hub's
   * descriptor store. Called on `device:descriptors` and when a device first comes online; without
   * it channels are learnt from readings and the stale threshold from observed data gaps only.
   */
  channelsOf?: (deviceId: string) => readonly ChannelMeta[] | undefined;
  /** Device ids the hub knows (registered tokens): listed as offline before they first connect. */
  knownDevices?: () => Iterable<string>;
  /**
   * The store's devices and the newest readings of each (the local log): restored at start, so the
   * fleet shows last values and last-seen times after a hub restart before boards reconnect.
   */
  stored?: {
    deviceIds(): Iterable<string>;
    lastReadings(deviceId: string): { receivedAtMs: number; readings: ChannelReadings } | null;
  };
  /** Whether the commands API accepts dashboard sessions (see `authorize`). Default true. */
  commandsEnabled?: boolean;
  /**
   * Longest time between two fan-out ticks under load (ms). A tick runs on the next event-loop turn
   * when an update arrives and the previous tick started at least the current gap ago; the gap adapts
   * to the ticks' cost between `minTickMs` and this. Default 10 (see bench/fanout.bench.ts).
   */
  tickMs?: number;
  /** Shortest gap between two tick starts (ms). Default 1; equal to `tickMs` for a fixed cadence. */
  minTickMs?: number;
  /** Live ping period (ms). Default 30 000. */
  heartbeatMs?: number;
  /** A dashboard auth built earlier (the extension builds it before the hub starts). */
  auth?: DashboardAuth;
}

export interface Live {
  readonly state: LiveState;
  readonly fanout: LiveFanout;
  readonly auth: DashboardAuth;
  /** For the hub's `upgrade` handler when the path is `LIVE_PATH`. Always consumes the socket. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /**
   * Registers `/`, `/app.js`, `/app.css`, `/favicon.svg`, `/login`, `/logout`, `/api/session`,
   * `GET /api/devices` and `GET /api/devices/:id` on the hub's router.
   */
  registerRoutes(router: Router): void;
  /**
   * For other routes the page calls (history, commands): who the caller is. `write: true` adds the
   * CSRF checks for state-changing requests (Origin required for cookie sessions). Commands need
   * `principal.role === 'operator'`.
   */
  authorize(req: IncomingMessage, opts?: { write?: boolean }): AccessResult;
  /** Bundles the page and subscribes to the event bus. */
  start(): Promise<void>;
  /** Unsubscribes and closes every live client with 1001. */
  stop(): Promise<void>;
}

export function createLive(deps: LiveDeps): Live {
  const { config, events, metrics } = deps;
  const logger = deps.logger.child({ component: 'live' });
  const state = new LiveState();
  const tickMs = deps.tickMs ?? 10;
  let watching = false;
  const fanout = new LiveFanout({
    state,
    metrics,
    logger,
    tickMs,
    minTickMs: Math.min(tickMs, deps.minTickMs ?? 1),
    highWaterBytes: config.live.highWaterBytes,
    drainTimeoutMs: config.live.drainTimeoutMs,
    maxSubscriptions: config.live.maxSubscriptions,
    // Several instances: the relay publishes other instances' live events here only while someone watches.
    onClients: (count) => {
      const now = count > 0;
      if (now === watching) return;
      watching = now;
      events.emit('live:watching', now);
    },
  });
  const auth = deps.auth ?? createDashboardAuth({ config });
  auth.attach(metrics, logger);
  const endpoint = createLiveEndpoint({
    fanout,
    auth,
    metrics,
    logger,
    maxClients: config.live.maxClients,
    ...(deps.heartbeatMs !== undefined ? { heartbeatMs: deps.heartbeatMs } : {}),
  });
  const api = createDashboardApi({
    state,
    auth,
    commandsEnabled: deps.commandsEnabled ?? true,
    grafanaUrl: config.live.grafanaUrl,
  });
  let assets: AssetTable | null = null;

  const learnChannels = (deviceId: string): void => {
    const channels = deps.channelsOf?.(deviceId);
    if (channels) fanout.channels(deviceId, channels);
  };

  const listeners: { [K in keyof HubEvents]?: (...args: HubEvents[K]) => void } = {
    // Accepted, not yet committed: the page is a view of what devices report (events.ts). A reference
    // to the frame; decoded at the tick, and only for what live clients cover (fanout.ts).
    'readings:accepted': (deviceId, accepted) => fanout.accepted(deviceId, accepted),
    'device:online': (info) => {
      fanout.online(info);
      learnChannels(info.deviceId);
    },
    'device:offline': (info) => fanout.offline(info),
    'device:descriptors': (deviceId) => learnChannels(deviceId),
    'command:update': (u) => {
      const { deviceId, ...rest } = u;
      fanout.command({ type: 'command', device: deviceId, ...rest });
    },
    // Built-in alerts (server/alerts/): every client with a subscription gets each transition.
    alert: (event) => fanout.alert({ type: 'alert', ...event }),
    // Several instances (server/cluster/relay.ts): devices whose session is on another instance.
    'remote:accepted': (deviceId, accepted) => fanout.accepted(deviceId, accepted),
    'remote:online': (info) => fanout.online(info),
    'remote:offline': (info) => fanout.offline(info),
    'remote:unknown': (info) => fanout.unknown(info),
    'remote:descriptors': (deviceId, channels) => fanout.channels(deviceId, channels),
    'remote:command': (u) => {
      const { deviceId, ...rest } = u;
      fanout.command({ type: 'command', device: deviceId, ...rest });
    },
  };

  const page = (req: IncomingMessage, res: ServerResponse): void => {
    const access = auth.check(req);
    if (!access.ok) {
      if (access.code === 'UNAUTHORIZED' && auth.mode === 'password') {
        redirect(res, '/login', { 'cache-control': 'no-store' });
      } else sendPlain(res, access.code === 'UNAUTHORIZED' ? 401 : 403, access.message);
      return;
    }
    const asset = assets?.get('/');
    if (!asset) {
      sendError(res, 'SHUTTING_DOWN', 'the dashboard is not started');
      return;
    }
    sendAsset(req, res, asset);
  };

  return {
    state,
    fanout,
    auth,
    handleUpgrade: endpoint.handleUpgrade,
    authorize(req, opts) {
      return opts?.write ? auth.checkWrite(req) : auth.check(req);
    },
    registerRoutes(router) {
      registerDashboardRoutes(router, {
        auth,
        api,
        page,
        asset: (req, res, path) => {
          // Public: the code and styles hold no data, and the login page needs the CSS.
          const asset = assets?.get(path);
          if (asset) sendAsset(req, res, asset);
          else sendError(res, 'SHUTTING_DOWN', 'the dashboard is not started');
        },
      });
    },
    async start() {
      assets = await buildAssets();
      for (const id of deps.knownDevices?.() ?? []) {
        state.device(id);
        learnChannels(id);
      }
      for (const id of deps.stored?.deviceIds() ?? []) {
        const last = deps.stored?.lastReadings(id);
        if (!last) continue;
        learnChannels(id);
        state.restore(id, last.receivedAtMs, last.readings);
      }
      for (const [name, fn] of Object.entries(listeners)) events.on(name as keyof HubEvents, fn as never);
      fanout.start();
      endpoint.start();
    },
    async stop() {
      for (const [name, fn] of Object.entries(listeners)) events.off(name as keyof HubEvents, fn as never);
      const closed = endpoint.stop();
      fanout.stop();
      await closed;
    },
  };
}

function sendPlain(res: ServerResponse, status: number, text: string): void {
  sendText(res, status, 'text/plain; charset=utf-8', text, { ...PAGE_HEADERS, 'cache-control': 'no-store' });
}

export type { ChannelMeta, DeviceView, Sample } from './state.ts';

/** The answer shape of `createCommandRoutes`' `authorize` option. */
export type CommandAuthorization = { ok: true } | { ok: false; code: ErrorCode; message: string };

export interface LiveExtensionOptions {
  tickMs?: number;
  minTickMs?: number;
  heartbeatMs?: number;
  commandsEnabled?: boolean;
  /** See `LiveDeps.channelsOf`; default: the hub context's `channelsOf` (the descriptor store). */
  channelsOf?: (ctx: HubContext, deviceId: string) => readonly ChannelMeta[] | undefined;
}

export interface LiveExtension extends HubExtension {
  /**
   * For `createCommandRoutes({ authorize })`: reading a command needs dashboard access; sending one
   * (any method but GET/HEAD) needs the operator role (admin token, or open mode without an admin
   * token) and passes the CSRF checks of `checkWrite`. `Authorization: Bearer <admin token>` keeps
   * working. Usable before the hub starts.
   */
  authorizeCommands(req: IncomingMessage): CommandAuthorization;
  /** For `buildHub({ readAccess })` (history): dashboard access, as for the page. Usable before start. */
  readAccess(req: IncomingMessage): CommandAuthorization;
  /** The running unit, after `start`. */
  readonly live: Live | null;
}

/** The live fan-out and dashboard as a hub extension (see the top of this file). */
export function liveExtension(config: Readonly<HubConfig>, options: LiveExtensionOptions = {}): LiveExtension {
  const auth = createDashboardAuth({ config });
  let live: Live | null = null;
  let detachPresence = () => {};
  return {
    name: 'live',
    get live() {
      return live;
    },
    authorizeCommands(req) {
      const write = req.method !== 'GET' && req.method !== 'HEAD';
      const access = write ? auth.checkWrite(req) : auth.check(req);
      if (!access.ok) return access;
      if (write && access.principal.role !== 'operator') {
        return { ok: false, code: 'UNAUTHORIZED', message: 'read-only dashboard session: log in with the admin token' };
      }
      return { ok: true };
    },
    readAccess(req) {
      const access = auth.check(req);
      return access.ok ? { ok: true } : access;
    },
    async start(ctx) {
      const channelsOf =
        options.channelsOf ??
        ((c: HubContext, id: string) =>
          c.channelsOf(id)?.map((d) => ({ key: d.key, unit: d.unit, periodMs: d.periodMs })));
      const created = createLive({
        config: ctx.config,
        events: ctx.bus,
        metrics: ctx.metrics,
        logger: ctx.logger,
        auth,
        knownDevices: () => (ctx.registry?.list() ?? []).filter((d) => !d.revoked).map((d) => d.id),
        stored: ctx.log,
        channelsOf: (id: string) => channelsOf(ctx, id),
        ...(options.tickMs !== undefined ? { tickMs: options.tickMs } : {}),
        ...(options.minTickMs !== undefined ? { minTickMs: options.minTickMs } : {}),
        ...(options.heartbeatMs !== undefined ? { heartbeatMs: options.heartbeatMs } : {}),
        ...(options.commandsEnabled !== undefined ? { commandsEnabled: options.commandsEnabled } : {}),
      });
      await created.start();
      ctx.registerUpgrade(LIVE_PATH, created.handleUpgrade);
      created.registerRoutes(ctx.router);
      // Operator-editable channel names, kept in the data dir.
      registerChannelLabelRoutes(ctx.router, {
        labels: openChannelLabels({ dataDir: ctx.config.storage.dataDir, logger: ctx.logger }),
        read: guardFrom(this.readAccess),
        write: guardFrom(this.authorizeCommands),
      });
      // One presence for the page and for Grafana (device_status): the live view decides staleness.
      ctx.health.setPresenceProvider((id) => created.state.devices.get(id)?.state);
      detachPresence = () => ctx.health.setPresenceProvider(null);
      live = created;
    },
    async stop() {
      detachPresence();
      await live?.stop();
    },
  };
}
