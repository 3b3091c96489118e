/**
 * The hub's built-in alerts (docs/alerts.md): the offline rule (`ALERT_OFFLINE_AFTER_SEC`) and the
 * threshold rules of `ALERT_RULES_FILE`, evaluated by {@link AlertEngine}; each transition goes to
 * the sinks: the event bus (`alert`, which the live page shows), the webhook (`ALERT_WEBHOOK_URL`),
 * MQTT (`<prefix>/v1/<deviceId>/alert` when MQTT_URL is set), metrics and the log. `buildHub` creates
 * it; `GET /api/alerts` (routes.ts) lists what is firing.
 *
 * Off the ingest path: threshold rules read `readings:stored` — the frame after its durable commit,
 * not decoded. Per frame of a device no rule targets, the cost is one map lookup; a targeted device's
 * frame is kept by reference and evaluated on a later event-loop turn, through `forEachSample` (no
 * reading objects), looking only at the channels its rules watch. With no threshold rule, nothing
 * listens at all.
 */
import type { AcceptedFrame, HubEventBus, HubEvents, SampleSink } from '../events.ts';
import type { Logger } from '../log/index.ts';
import { createLogLimiter } from '../log/rate-limit.ts';
import type { Metrics } from '../metrics/index.ts';
import { CONTROL_TOPIC, HUB_ROLE } from '../mqtt/dynsec.ts';
import type { HubMqtt } from '../mqtt/index.ts';
import { AlertEngine, type DeviceTargets } from './engine.ts';
import { type AlertMetrics, alertMetrics } from './metrics.ts';
import type { AlertEvent, AlertsConfig, ThresholdRule } from './types.ts';
import { createWebhookSink, type WebhookSink } from './webhook.ts';

export type { AlertEvent, AlertsConfig } from './types.ts';

/** Frames of targeted devices waiting for evaluation at most; reaching it evaluates them at once. */
export const MAX_PENDING_FRAMES = 10_000;

export interface AlertsOptions {
  config: AlertsConfig;
  bus: HubEventBus;
  metrics: Metrics;
  logger: Logger;
  now: () => number;
  /** The hub's MQTT side (alerts published when set) and its topic prefix. */
  mqtt: { client: HubMqtt['client']; topicPrefix: string; dynsec: boolean } | null;
  /** Whether a device has a ready session now (on this instance; see `setClusterPresence`). */
  isOnline: (deviceId: string) => boolean;
  /** Active registered devices (offline since the hub started until they connect). */
  knownDevices: () => Iterable<string>;
  /** Whether a device is revoked (rotated tokens are `device:revoked` on the bus too). */
  isRevoked: (deviceId: string) => boolean;
  /** Webhook backoff bounds, ms (tests). */
  webhookRetryMs?: { min: number; max: number };
}

/** What `GET /api/alerts` answers. */
export interface AlertsSnapshot {
  /** The `seq` of the latest transition: a live `alert` with a higher one is newer than this list. */
  seq: number;
  alerts: AlertEvent[];
  rules: { offline: AlertsConfig['offline']; thresholds: readonly ThresholdRule[] };
  sinks: { live: true; webhook: boolean; mqtt: boolean };
}

export interface Alerts {
  readonly engine: AlertEngine;
  start(): void;
  /** Detaches from the bus, evaluates what is pending, lets the webhook finish (up to `graceMs`). */
  stop(graceMs?: number): Promise<void>;
  snapshot(): AlertsSnapshot;
  /**
   * Several instances (server/cluster/relay.ts): whether a device is online on another instance (the
   * offline rule never fires for such a device: it moved, the instance holding it watches it now),
   * and whether this instance is the one that watches a device no instance saw leave (`never_seen`
   * since the start, or `instance_lost`): one instance raises those, not every one.
   */
  setClusterPresence(
    onlineElsewhere: ((deviceId: string) => boolean) | null,
    watchesUnheld?: (deviceId: string) => boolean,
  ): void;
}

/** `<prefix>/v1/<deviceId>/alert`. */
export function alertTopic(prefix: string, deviceId: string): string {
  return `${prefix}/v1/${deviceId}/alert`;
}

export function createAlerts(opts: AlertsOptions): Alerts {
  const { config, bus } = opts;
  const logger = opts.logger.child({ component: 'alerts' });
  const metrics: AlertMetrics = alertMetrics(opts.metrics);
  const limiter = createLogLimiter({ logger });
  const webhook: WebhookSink | null = config.webhook
    ? createWebhookSink({
        config: config.webhook,
        metrics,
        logger,
        ...(opts.webhookRetryMs ? { retryMs: opts.webhookRetryMs } : {}),
      })
    : null;
  const mqtt = opts.mqtt;

  const dispatch = (event: AlertEvent): void => {
    metrics.transitions.inc({ rule: event.rule, state: event.state });
    metrics.firing.inc({ rule: event.rule }, event.state === 'firing' ? 1 : -1);
    // One line per transition; a flapping device, or more than 20 at once, is summarised (rate-limit.ts).
    limiter.hit('alert', `${event.rule}:${event.device}:${event.state}`, {
      level: event.state === 'firing' && event.severity !== 'info' ? 'warn' : 'info',
      msg: `alert ${event.state}`,
      fields: { rule: event.rule, device: event.device, severity: event.severity, summary: event.summary },
    });
    bus.emit('alert', event);
    webhook?.enqueue(event);
    // QoS 1 through the hub's bounded queue (drop-oldest when full, counted by the MQTT client).
    mqtt?.client.publish(alertTopic(mqtt.topicPrefix, event.device), JSON.stringify(event), { qos: 1 });
  };

  let onlineElsewhere: ((deviceId: string) => boolean) | null = null;
  let watchesUnheld: ((deviceId: string) => boolean) | null = null;
  const engine = new AlertEngine({
    config,
    now: opts.now,
    emit: dispatch,
    isOnline: (id) => opts.isOnline(id) || onlineElsewhere?.(id) === true,
    watches: (id, reason) =>
      watchesUnheld === null || (reason !== 'never_seen' && reason !== 'instance_lost') || watchesUnheld(id),
  });
  // Every configured rule shows on /metrics from the start, at 0 while nothing fires.
  for (const rule of [...(config.offline ? [config.offline] : []), ...config.rules]) {
    metrics.firing.inc({ rule: rule.name }, 0);
  }

  // ── threshold rules: frames after their commit, evaluated on a later turn ──
  let pending: { deviceId: string; frame: AcceptedFrame; targets: DeviceTargets }[] = [];
  let immediate: NodeJS.Immediate | null = null;
  let current: { deviceId: string; targets: DeviceTargets } | null = null;
  const sink: SampleSink = {
    sample(channel, _unit, timeMs, value) {
      const c = current as { deviceId: string; targets: DeviceTargets };
      const rules = c.targets.get(channel);
      if (rules) for (const rule of rules) engine.sample(rule, c.deviceId, timeMs, value);
    },
  };
  const evaluate = (): void => {
    if (immediate) clearImmediate(immediate);
    immediate = null;
    const batch = pending;
    pending = [];
    for (const p of batch) {
      current = p;
      try {
        p.frame.forEachSample(sink);
      } catch (err) {
        logger.error({ err, device: p.deviceId }, 'alert evaluation failed for a frame');
      }
    }
    current = null;
  };

  const listeners: { [K in keyof HubEvents]?: (...args: HubEvents[K]) => void } = {
    'device:online': (info) => engine.deviceOnline(info.deviceId, info.atMs),
    'device:offline': (info) => {
      // A revoked device's session ends too (REVOKED), maybe after `device:revoked`: not an outage.
      if (!opts.isRevoked(info.deviceId)) engine.deviceOffline(info.deviceId, info.atMs, info.reason);
    },
    'device:revoked': (id) => {
      if (opts.isRevoked(id)) engine.deviceRemoved(id);
    },
    // Several instances (server/cluster/relay.ts). A device online elsewhere is not offline (it moved);
    // the end of a session elsewhere is that instance's to watch, except when the instance itself is
    // gone (`instance_lost`): then the survivors watch the device until it reconnects.
    'remote:online': (info) => engine.deviceOnline(info.deviceId, info.atMs),
    'remote:offline': (info) => {
      if (info.reason === 'instance_lost' && !opts.isOnline(info.deviceId) && !opts.isRevoked(info.deviceId)) {
        engine.deviceOffline(info.deviceId, info.atMs, info.reason);
      }
    },
    // Shown on this instance's page and in GET /api/alerts; the sinks ran on the instance that raised it.
    'remote:alert': (event, instance) => bus.emit('alert', engine.adopt(event, instance)),
    'remote:lost': (instance, atMs) => {
      for (const event of engine.dropInstance(instance, atMs)) bus.emit('alert', event);
    },
  };
  if (config.rules.length > 0) {
    listeners['readings:stored'] = (deviceId, frame) => {
      const targets = engine.targetsOf(deviceId);
      if (targets === null) return;
      pending.push({ deviceId, frame, targets });
      if (pending.length >= MAX_PENDING_FRAMES) evaluate();
      else immediate ??= setImmediate(evaluate);
    };
  }

  let sweepTimer: NodeJS.Timeout | null = null;
  let started = false;

  return {
    engine,
    start() {
      if (started) return;
      started = true;
      const now = opts.now();
      for (const id of opts.knownDevices()) if (!opts.isOnline(id)) engine.deviceOffline(id, now, 'never_seen');
      for (const [name, fn] of Object.entries(listeners)) bus.on(name as keyof HubEvents, fn as never);
      if (config.offline) {
        const every = Math.min(1000, Math.max(50, (config.offline.afterSec * 1000) / 4));
        sweepTimer = setInterval(() => engine.sweep(), every);
        sweepTimer.unref();
      }
      if (mqtt?.dynsec) {
        // The hub's broker role allows the device topics only: add the alert topics on every connect.
        const commands = [
          {
            command: 'addRoleACL',
            rolename: HUB_ROLE,
            acltype: 'publishClientSend',
            topic: alertTopic(mqtt.topicPrefix, '+'),
            allow: true,
          },
        ];
        mqtt.client.onConnect(() => mqtt.client.publish(CONTROL_TOPIC, JSON.stringify({ commands }), { qos: 1 }));
      }
      logger.info(
        {
          offlineAfterSec: config.offline?.afterSec ?? null,
          thresholdRules: config.rules.length,
          webhook: config.webhook ? new URL(config.webhook.url).origin : null,
          mqtt: mqtt !== null,
        },
        config.offline || config.rules.length > 0
          ? 'alerts on'
          : 'alerts off (ALERT_OFFLINE_AFTER_SEC=0, no ALERT_RULES_FILE)',
      );
    },
    async stop(graceMs = 2000) {
      if (!started) return;
      started = false;
      for (const [name, fn] of Object.entries(listeners)) bus.off(name as keyof HubEvents, fn as never);
      if (sweepTimer) clearInterval(sweepTimer);
      sweepTimer = null;
      evaluate();
      await webhook?.stop(graceMs);
      limiter.close();
    },
    setClusterPresence(fn, watches) {
      onlineElsewhere = fn;
      watchesUnheld = fn === null ? null : (watches ?? null);
    },
    snapshot() {
      return {
        seq: engine.seq,
        alerts: engine.firing(),
        rules: { offline: config.offline, thresholds: config.rules },
        sinks: { live: true, webhook: webhook !== null, mqtt: mqtt !== null },
      };
    },
  };
}
