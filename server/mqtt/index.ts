/**
 * The hub's MQTT side, built by `buildHub` when MQTT_URL is set:
 *
 * - `client.ts`: the one broker connection (persistent session, backoff, bounded queues, readiness);
 * - `device-transport.ts`: devices over MQTT through the same session state machine as WebSocket;
 * - `dynsec.ts`: per-device broker credentials and ACLs (MQTT_DEVICE_ACCESS=dynsec);
 * - `topics.ts`: topic names.
 *
 * Later parts (readings bridge, Home Assistant discovery) use `HubMqtt.client.publish` /
 * `client.subscribe` and `HubMqtt.topics` from the hub context (`ctx.mqtt`).
 */
import type { MqttConfig } from '../config/index.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import type { DeviceRegistry } from '../registry/index.ts';
import type { SessionContext } from '../transport/device-session.ts';
import { createHubMqttClient, type HubMqttClient, type MqttStatus } from './client.ts';
import { createMqttDeviceTransport, type MqttOwnership } from './device-transport.ts';
import { type BrokerAccess, createDynsecAccess, NO_BROKER_ACCESS } from './dynsec.ts';
import { type Topics, topicsFor } from './topics.ts';

export type { HubMqttClient, MqttStatus } from './client.ts';
export type { MqttOwnership } from './device-transport.ts';
export type { Topics } from './topics.ts';

export interface HubMqtt {
  readonly client: HubMqttClient;
  readonly topics: Topics;
  readonly access: BrokerAccess;
  /** Connects in the background (never throws for a broker that is down or refuses the hub). */
  start(): void;
  /** Takes no new device sessions (first step of the hub's stop). */
  stopAccepting(): void;
  /** Disconnects; the broker keeps the hub's session (and queues frames) for MQTT_SESSION_EXPIRY_SEC. */
  stop(): Promise<void>;
  status(): MqttStatus & { deviceLinks: number; deviceAccess: BrokerAccess['kind'] };
  /** Gives a device its broker login (its token as password), when the hub manages broker access. */
  grantDevice(deviceId: string, token: string): Promise<void>;
  /**
   * Removes a device's broker login (the broker disconnects it) once the device is no longer active in
   * the registry. A rotated token (still active) keeps its login: whoever issued the new token replaces
   * the password (this process's admin API, or the `devices` CLI in another one), which makes the
   * broker drop the old login; deleting it here as well could undo a CLI's replacement that landed first.
   */
  revokeDevice(deviceId: string): Promise<void>;
  /** Several instances: only devices this instance owns are handled here (device-transport.ts). */
  setOwnership(ownership: MqttOwnership | null): void;
}

export interface HubMqttOptions {
  config: Readonly<MqttConfig>;
  session: SessionContext;
  registry: DeviceRegistry | null;
  metrics: Metrics;
  logger: Logger;
  /** Backoff bounds for reconnects, ms (tests). */
  minRetryMs?: number;
  maxRetryMs?: number;
}

export function createHubMqtt(opts: HubMqttOptions): HubMqtt {
  const { config, registry, metrics } = opts;
  const logger = opts.logger;
  const topics = topicsFor(config.topicPrefix);
  const client = createHubMqttClient({
    config,
    metrics,
    logger,
    ...(opts.minRetryMs !== undefined ? { minRetryMs: opts.minRetryMs } : {}),
    ...(opts.maxRetryMs !== undefined ? { maxRetryMs: opts.maxRetryMs } : {}),
  });
  const isActive = (id: string) => (registry ? registry.get(id)?.revoked === false : true);
  const transport = createMqttDeviceTransport({
    client,
    topics,
    config,
    session: opts.session,
    isActive,
    metrics,
    logger,
  });
  let access: BrokerAccess = NO_BROKER_ACCESS;
  if (config.deviceAccess === 'dynsec') {
    const dynsec = createDynsecAccess({ client, topics, hubUsername: config.username, metrics, logger });
    access = dynsec;
    let reconciled = false;
    client.onConnect(async () => {
      await dynsec.setup();
      if (reconciled || !registry) return;
      reconciled = true;
      const active = new Set(registry.list().flatMap((d) => (d.revoked ? [] : [d.id])));
      const missing = await dynsec.reconcile(active);
      if (missing.length > 0) {
        logger.warn(
          { devices: missing.length, first: missing.slice(0, 10) },
          'devices without a broker login cannot use MQTT (their tokens were issued without MQTT_DEVICE_ACCESS=dynsec or while the broker was unreachable): rotate them with `npm run hub -- devices rotate <id>` (with the MQTT settings) or the admin API',
        );
      }
    });
  } else {
    logger.info(
      { broker: client.status().broker },
      'MQTT_DEVICE_ACCESS=none: the broker must allow each device to publish only to its own up topic and read only its own down topic',
    );
  }

  return {
    client,
    topics,
    get access() {
      return access;
    },
    start() {
      transport.start();
      client.start();
    },
    stopAccepting() {
      transport.stopAccepting();
    },
    async stop() {
      transport.close();
      await client.stop();
    },
    status: () => ({ ...client.status(), deviceLinks: transport.size(), deviceAccess: access.kind }),
    grantDevice: (id, token) => access.grant(id, token),
    revokeDevice: async (id) => {
      if (registry?.get(id)?.revoked !== false) await access.revoke(id);
    },
    setOwnership: (ownership) => transport.setOwnership(ownership),
  };
}

/**
 * The registry as the admin API sees it when the hub manages broker access: a token issued by `add`
 * or `rotate` is also granted on the broker (before it is returned). A failed grant is logged and
 * counted (MQTT_BROKER_ACCESS) but does not fail the issue: the device can still use WebSocket.
 */
export function withBrokerGrants(registry: DeviceRegistry, mqtt: HubMqtt): DeviceRegistry {
  if (mqtt.access.kind === 'none') return registry;
  const grant = async (id: string, token: string) => {
    await mqtt.grantDevice(id, token).catch(() => undefined);
  };
  return Object.assign(Object.create(registry) as DeviceRegistry, {
    async add(deviceId: string) {
      const issued = await registry.add(deviceId);
      await grant(issued.device.id, issued.token);
      return issued;
    },
    async rotate(deviceId: string) {
      const issued = await registry.rotate(deviceId);
      await grant(issued.device.id, issued.token);
      return issued;
    },
  });
}
