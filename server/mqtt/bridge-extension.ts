/**
 * Plugs the readings bridge and Home Assistant discovery into the hub (as a {@link HubExtension})
 * when MQTT_URL is set and MQTT_BRIDGE=on. Both publish through the hub's one MQTT client
 * (`ctx.mqtt.client`); they are given `room()`: at most half of the client's offline queue, so that
 * the other half (and the in-flight window) stays for frames to devices (WELCOME, ACK, COMMAND).
 */
import type { Cluster, ClusterStore } from '../cluster/index.ts';
import type { HubContext, HubExtension } from '../hub.ts';
import { parseCommandRequest } from '../pipeline/commands.ts';
import { createReadingsBridge, type ReadingsBridge } from './bridge.ts';
import { CONTROL_TOPIC, HUB_ROLE } from './dynsec.ts';
import { createHaDiscovery, type HaDiscovery } from './ha-discovery.ts';

/**
 * With MQTT_DEVICE_ACCESS=dynsec the hub's broker role allows only the device transport's topics;
 * the bridge and discovery need more: publish state, status and HA configs, subscribe to the HA
 * command topics and HA's status. Added to the role on every connect, before the subscriptions
 * (`addRoleACL` of an ACL the role already has is refused by the plugin and changes nothing; the
 * plugin applies role ACL changes at once, without disconnecting anyone).
 */
export function bridgeRoleAcls(topicPrefix: string, haPrefix: string | null): Record<string, unknown>[] {
  const acls: [acltype: string, topic: string][] = [
    ['publishClientSend', `${topicPrefix}/v1/+/state`],
    ['publishClientSend', `${topicPrefix}/v1/+/status`],
  ];
  if (haPrefix !== null) {
    acls.push(
      ['publishClientSend', `${haPrefix}/#`],
      ['subscribePattern', `${haPrefix}/status`],
      ['subscribePattern', `${topicPrefix}/v1/+/cmd/+`],
      ['publishClientReceive', `${topicPrefix}/v1/+/cmd/+`],
    );
  }
  return acls.map(([acltype, topic]) => ({ command: 'addRoleACL', rolename: HUB_ROLE, acltype, topic, allow: true }));
}

/**
 * Several instances: whether another instance holds a device's session, from the session claims in
 * PostgreSQL (authoritative: the newest claim wins); while the database is unreachable, from the
 * relayed presence.
 */
export function heldElsewhereIn(
  cluster: Pick<Cluster, 'instanceId' | 'onlineElsewhere'> & { store: Pick<ClusterStore, 'sessionHolder'> },
): (deviceId: string) => Promise<boolean> {
  return async (deviceId) => {
    try {
      const claim = await cluster.store.sessionHolder(deviceId);
      return claim !== null && claim.instanceId !== cluster.instanceId;
    } catch {
      return cluster.onlineElsewhere(deviceId);
    }
  };
}

export function createMqttBridgeExtension(): HubExtension & {
  parts(): { bridge: ReadingsBridge | null; ha: HaDiscovery | null };
} {
  let bridge: ReadingsBridge | null = null;
  let ha: HaDiscovery | null = null;
  return {
    name: 'mqtt-bridge',
    start(ctx: HubContext) {
      const cfg = ctx.config.mqttBridge;
      const mqttConfig = ctx.config.mqtt;
      const mqtt = ctx.mqtt;
      if (!cfg || !mqttConfig || !mqtt) return;
      const client = mqtt.client;
      const half = Math.floor(mqttConfig.offlineQueueMax / 2);
      const room = () => {
        const s = client.status();
        return s.queued > 0 ? Math.max(0, half - s.queued) : Math.max(0, mqttConfig.maxInflight - s.inflight) + half;
      };
      const logger = ctx.logger.child({ component: 'mqtt-bridge' });
      const b = createReadingsBridge({
        publisher: client,
        bus: ctx.bus,
        topicPrefix: mqttConfig.topicPrefix,
        intervalMs: cfg.intervalMs,
        room,
        metrics: ctx.metrics,
        logger,
        offlineAtStart: () =>
          (ctx.registry?.list() ?? []).filter((d) => !d.revoked && !ctx.sessions.get(d.id)?.isReady()).map((d) => d.id),
        ...(ctx.cluster ? { heldElsewhere: heldElsewhereIn(ctx.cluster) } : {}),
      });
      bridge = b;
      if (mqttConfig.deviceAccess === 'dynsec') {
        const commands = bridgeRoleAcls(mqttConfig.topicPrefix, cfg.haDiscovery?.prefix ?? null);
        client.onConnect(() => client.publish(CONTROL_TOPIC, JSON.stringify({ commands }), { qos: 1 }));
      }
      b.start();
      if (!cfg.haDiscovery) return;
      ha = createHaDiscovery({
        publisher: client,
        bus: ctx.bus,
        naming: { topicPrefix: mqttConfig.topicPrefix, haPrefix: cfg.haDiscovery.prefix, bridge: b.topics },
        channelsOf: (id) => ctx.channelsOf(id),
        isRemoved: (id) => (ctx.registry ? ctx.registry.get(id)?.revoked !== false : false),
        sendCommand: (id, name, args) => {
          const session = ctx.sessions.get(id);
          if (!session?.isReady()) return ctx.cluster?.onlineElsewhere(id) ? 'elsewhere' : 'offline';
          let request: ReturnType<typeof parseCommandRequest>;
          try {
            request = parseCommandRequest({ name, args });
          } catch {
            return 'invalid';
          }
          const commandId = ctx.commands.nextId();
          session.sendCommand(commandId, request.name, request.args);
          ctx.commands.record(id, commandId, request.name, request.args);
          return 'sent';
        },
        onRemoved: (id) => b.clearDevice(id),
        ...(ctx.cluster ? { republishes: (id: string) => ctx.sessions.get(id)?.isReady() === true } : {}),
        room,
        intervalMs: cfg.intervalMs,
        metrics: ctx.metrics,
        logger: ctx.logger.child({ component: 'mqtt-ha' }),
      });
      ha.start();
    },
    stop() {
      ha?.stop();
      ha?.flush();
      bridge?.stop();
    },
    parts: () => ({ bridge, ha }),
  };
}
