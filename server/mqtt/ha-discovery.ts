/**
 * Home Assistant MQTT discovery (MQTT_HA_DISCOVERY=on; needs the readings bridge, whose state and
 * status topics the entities read). Follows HA's single-component discovery: one retained config per
 * entity on `<ha prefix>/<component>/<node_id>/<object_id>/config` (docs/mqtt.md):
 *
 * - each channel: a `sensor` (numbers; `device_class` and `unit_of_measurement` from the channel's
 *   unit where HA knows it, `state_class: measurement`) or a `binary_sensor` (bool channels), reading
 *   the bridge's retained state JSON with a `value_template`;
 * - the `identify` command as a `button` (device_class identify) and the sample interval as a
 *   `number` (ms, 100..3,600,000), on command topics `<prefix>/v1/<deviceId>/cmd/identify` and
 *   `.../cmd/sample_interval_ms` that the hub subscribes to and turns into its commands;
 * - a shared `device` block (identifiers, name, model, firmware version) and availability from the
 *   bridge's retained `status` topic.
 *
 * Configs are published when a device comes online (its firmware version) and when its descriptors
 * change (entities of channels it no longer has are removed), again after every broker connect and
 * when Home Assistant announces itself on `<ha prefix>/status`. A revoked or removed device loses
 * every entity: empty retained configs (HA deletes the entity; the broker drops the retained config).
 */
import { createHash } from 'node:crypto';
import type { ChannelDescriptor } from '../codec/index.ts';
import { ValueType } from '../codec/index.ts';
import type { HubEventBus, HubEvents } from '../events.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import type { BridgeTopics, MqttPublisher } from './bridge.ts';
import { bridgeMetrics } from './bridge-metrics.ts';

/** Commands Home Assistant may send, by the last level of their topic. */
export const HA_COMMANDS = ['identify', 'sample_interval_ms'] as const;
export type HaCommand = (typeof HA_COMMANDS)[number];

/** The sample interval range the hub's set_sample_interval accepts (server/pipeline/commands.ts). */
export const SAMPLE_INTERVAL_MIN_MS = 100;
export const SAMPLE_INTERVAL_MAX_MS = 3_600_000;
/** How long an `identify` from Home Assistant blinks. */
export const IDENTIFY_DURATION_MS = 3000;

export interface HaPublisher extends MqttPublisher {
  subscribe(filter: string, handler: (topic: string, payload: Buffer) => void): void;
  onConnect(hook: (sessionPresent: boolean) => Promise<void> | void): void;
}

export interface HaDevice {
  deviceId: string;
  firmwareVersion: string;
  channels: readonly ChannelDescriptor[];
}

export interface HaNaming {
  /** MQTT_TOPIC_PREFIX. */
  topicPrefix: string;
  /** MQTT_HA_PREFIX (HA's discovery prefix, `homeassistant` by default). */
  haPrefix: string;
  bridge: BridgeTopics;
}

export type HaComponent = 'sensor' | 'binary_sensor' | 'button' | 'number';

export interface HaEntityConfig {
  component: HaComponent;
  /** The retained config's topic. */
  topic: string;
  payload: Record<string, unknown>;
}

/** Model reported in the device block: the protocol's HELLO names no board model. */
export const HA_MODEL = 'ESP32 telemetry node';

/** HA's node_id and object_id alphabet is [a-zA-Z0-9_-]; a device id may also hold `.`. */
export function haNodeId(topicPrefix: string, deviceId: string): string {
  const base = `${topicPrefix}_${deviceId}`;
  const safe = base.replace(/[^A-Za-z0-9_-]/g, '_');
  if (safe === base) return safe;
  // Two ids that differ only in a replaced character still get distinct node ids.
  return `${safe}_${createHash('sha256').update(base).digest('hex').slice(0, 8)}`;
}

export function haCommandTopic(topicPrefix: string, deviceId: string, command: HaCommand): string {
  return `${topicPrefix}/v1/${deviceId}/cmd/${command}`;
}

/** `device_class` (and `state_class`) for a unit HA knows, by HA's sensor device-class unit lists. */
export function sensorClassOf(
  unit: string,
  key: string,
): { device_class?: string; state_class: 'measurement' | 'total_increasing' } {
  const measurement = 'measurement' as const;
  const byUnit: Record<string, string> = {
    '°C': 'temperature',
    '°F': 'temperature',
    K: 'temperature',
    Pa: 'pressure',
    hPa: 'pressure',
    kPa: 'pressure',
    bar: 'pressure',
    cbar: 'pressure',
    mbar: 'pressure',
    mmHg: 'pressure',
    inHg: 'pressure',
    psi: 'pressure',
    V: 'voltage',
    mV: 'voltage',
    A: 'current',
    mA: 'current',
    W: 'power',
    kW: 'power',
    lx: 'illuminance',
    dBm: 'signal_strength',
    dB: 'signal_strength',
    Hz: 'frequency',
    kHz: 'frequency',
    MHz: 'frequency',
    GHz: 'frequency',
    ms: 'duration',
    s: 'duration',
    min: 'duration',
    h: 'duration',
    d: 'duration',
    B: 'data_size',
    kB: 'data_size',
    KiB: 'data_size',
    MB: 'data_size',
    MiB: 'data_size',
    mm: 'distance',
    cm: 'distance',
    m: 'distance',
    km: 'distance',
    g: 'weight',
    kg: 'weight',
    'm/s': 'speed',
    'km/h': 'speed',
  };
  if (unit === 'Wh' || unit === 'kWh') return { device_class: 'energy', state_class: 'total_increasing' };
  if (unit === '%') {
    if (/hum/.test(key)) return { device_class: 'humidity', state_class: measurement };
    if (/bat/.test(key)) return { device_class: 'battery', state_class: measurement };
    return { state_class: measurement };
  }
  if (unit === 'ppm' && /co2/.test(key)) return { device_class: 'carbon_dioxide', state_class: measurement };
  const cls = byUnit[unit];
  return cls ? { device_class: cls, state_class: measurement } : { state_class: measurement };
}

/** Every retained config of one device (sensors/binary sensors per channel, the button, the number). */
export function haConfigsFor(naming: HaNaming, device: HaDevice): HaEntityConfig[] {
  const { topicPrefix, haPrefix, bridge } = naming;
  const id = device.deviceId;
  const node = haNodeId(topicPrefix, id);
  const uid = `${topicPrefix}.${id}`;
  const common = {
    device: {
      identifiers: [uid],
      name: id,
      manufacturer: 'esp32hub',
      model: HA_MODEL,
      sw_version: device.firmwareVersion,
    },
    origin: { name: 'esp32hub' },
    availability: [{ topic: bridge.status(id), payload_available: 'online', payload_not_available: 'offline' }],
    qos: 1,
  };
  const topic = (component: HaComponent, objectId: string) => `${haPrefix}/${component}/${node}/${objectId}/config`;
  const out: HaEntityConfig[] = [];
  for (const ch of device.channels) {
    // Subscripts, not attributes: a channel named e.g. `items` or `values` would be a dict method in Jinja.
    const value = `value_json['channels']['${ch.key}']['value']`;
    if (ch.valueType === ValueType.BOOL) {
      out.push({
        component: 'binary_sensor',
        topic: topic('binary_sensor', ch.key),
        payload: {
          ...common,
          name: ch.key,
          unique_id: `${uid}.${ch.key}`,
          state_topic: bridge.state(id),
          value_template: `{{ 'ON' if ${value} else 'OFF' }}`,
          payload_on: 'ON',
          payload_off: 'OFF',
        },
      });
      continue;
    }
    out.push({
      component: 'sensor',
      topic: topic('sensor', ch.key),
      payload: {
        ...common,
        name: ch.key,
        unique_id: `${uid}.${ch.key}`,
        state_topic: bridge.state(id),
        value_template: `{{ ${value} }}`,
        ...(ch.unit !== '' ? { unit_of_measurement: ch.unit } : {}),
        ...sensorClassOf(ch.unit, ch.key),
      },
    });
  }
  out.push({
    component: 'button',
    topic: topic('button', 'identify'),
    payload: {
      ...common,
      name: 'Identify',
      unique_id: `${uid}:identify`,
      command_topic: haCommandTopic(topicPrefix, id, 'identify'),
      payload_press: 'PRESS',
      device_class: 'identify',
      entity_category: 'diagnostic',
    },
  });
  out.push({
    component: 'number',
    topic: topic('number', 'sample_interval_ms'),
    payload: {
      ...common,
      name: 'Sample interval',
      unique_id: `${uid}:sample_interval_ms`,
      command_topic: haCommandTopic(topicPrefix, id, 'sample_interval_ms'),
      min: SAMPLE_INTERVAL_MIN_MS,
      max: SAMPLE_INTERVAL_MAX_MS,
      step: 100,
      mode: 'box',
      unit_of_measurement: 'ms',
      device_class: 'duration',
      entity_category: 'config',
      optimistic: true,
    },
  });
  return out;
}

export interface HaDiscoveryOptions {
  publisher: HaPublisher;
  bus: HubEventBus;
  naming: HaNaming;
  /** A device's current channels (descriptors), if the hub knows them. */
  channelsOf: (deviceId: string) => readonly ChannelDescriptor[] | undefined;
  /** True when the device is revoked or no longer registered (its entities go). */
  isRemoved: (deviceId: string) => boolean;
  /**
   * Sends a hub command to the device's live session; `offline` when it has none, `invalid` when the
   * hub refuses the arguments; `elsewhere` (several instances) when another instance holds the
   * session: that instance got the same message on the command topic and sends it.
   */
  sendCommand: (
    deviceId: string,
    name: string,
    args: Record<string, unknown>,
  ) => 'sent' | 'offline' | 'invalid' | 'elsewhere';
  /**
   * Several instances: whether this instance republishes a device's configs after a broker reconnect
   * or Home Assistant's announcement (default: every device it published). Only the instance holding
   * the device should: another one's firmware version and channels may be older than the holder's.
   */
  republishes?: (deviceId: string) => boolean;
  /** Called after a device's entities were removed (the bridge clears its state and status). */
  onRemoved?: (deviceId: string) => void;
  /** Messages the client may take now without crowding out device frames. */
  room: () => number;
  /** Pending configs go out at most this often (MQTT_BRIDGE_INTERVAL_MS). */
  intervalMs: number;
  metrics: Metrics;
  logger: Logger;
}

export interface HaDiscovery {
  start(): void;
  stop(): void;
  /** Publishes what is pending, as room allows (the timer calls it). */
  flush(): void;
  /** Queues a device's configs for the next flush (only those that changed go out). */
  publishDevice(deviceId: string): void;
  /** Removes every entity of a device now (empty retained configs). */
  removeDevice(deviceId: string): void;
  /** Config topics currently published for a device. */
  published(deviceId: string): readonly string[];
}

/**
 * Discovery is bounded like the bridge: devices whose configs must go out wait in a set (one entry
 * per device), flushed per interval as the client has room; a config identical to the one last
 * published (a digest per topic) is not sent again, so a fleet reconnecting after a hub restart
 * costs one pass, and a device's reconnect nothing.
 */
export function createHaDiscovery(opts: HaDiscoveryOptions): HaDiscovery {
  const { publisher, bus, naming, logger } = opts;
  const m = bridgeMetrics(opts.metrics);
  const firmware = new Map<string, string>();
  /** Config topic → digest of its published payload, per device. */
  const published = new Map<string, Map<string, string>>();
  const pending = new Set<string>();
  let timer: NodeJS.Timeout | null = null;
  let started = false;

  const digest = (s: string) => createHash('sha1').update(s).digest('base64');

  function configsOf(deviceId: string): HaEntityConfig[] {
    const channels = opts.channelsOf(deviceId) ?? [];
    return haConfigsFor(naming, { deviceId, firmwareVersion: firmware.get(deviceId) ?? '', channels });
  }

  /** Publishes one device's changed configs if `room` allows; returns messages sent, or -1 for no room. */
  function publishNow(deviceId: string, room: number): number {
    const before = published.get(deviceId) ?? new Map<string, string>();
    const now = new Map<string, string>();
    const out: [topic: string, payload: string][] = [];
    for (const c of configsOf(deviceId)) {
      const payload = JSON.stringify(c.payload);
      const d = digest(payload);
      now.set(c.topic, d);
      if (before.get(c.topic) !== d) out.push([c.topic, payload]);
    }
    for (const t of before.keys()) if (!now.has(t)) out.push([t, '']);
    if (out.length > room) return -1;
    for (const [t, payload] of out) {
      publisher.publish(t, payload, { qos: 1, retain: true });
      m.messages.inc({ kind: payload === '' ? 'discovery_clear' : 'discovery' });
    }
    published.set(deviceId, now);
    return out.length;
  }

  function flush(): void {
    if (pending.size === 0) return;
    let room = publisher.isConnected() ? opts.room() : 0;
    for (const id of pending) {
      if (opts.isRemoved(id)) {
        pending.delete(id);
        continue;
      }
      const sent = publishNow(id, room);
      if (sent < 0) {
        m.flushes.inc({ outcome: 'deferred' });
        return;
      }
      room -= sent;
      pending.delete(id);
    }
  }

  function publishDevice(deviceId: string): void {
    if (!opts.isRemoved(deviceId)) pending.add(deviceId);
  }

  function removeDevice(deviceId: string): void {
    const node = haNodeId(naming.topicPrefix, deviceId);
    const topics = new Set(published.get(deviceId)?.keys() ?? []);
    // After a restart the hub may not have published this device yet: clear what it would publish,
    // and each channel's other component too, should its value type have changed.
    for (const c of configsOf(deviceId)) topics.add(c.topic);
    for (const ch of opts.channelsOf(deviceId) ?? []) {
      topics.add(`${naming.haPrefix}/sensor/${node}/${ch.key}/config`);
      topics.add(`${naming.haPrefix}/binary_sensor/${node}/${ch.key}/config`);
    }
    for (const t of topics) {
      publisher.publish(t, '', { qos: 1, retain: true });
      m.messages.inc({ kind: 'discovery_clear' });
    }
    published.delete(deviceId);
    pending.delete(deviceId);
    firmware.delete(deviceId);
    logger.info({ deviceId, entities: topics.size }, 'Home Assistant entities removed (device revoked or removed)');
    opts.onRemoved?.(deviceId);
  }

  const onOnline = (info: HubEvents['device:online'][0]) => {
    firmware.set(info.deviceId, info.firmwareVersion);
    publishDevice(info.deviceId);
  };
  const onDescriptors = (deviceId: string) => {
    if (published.has(deviceId) || firmware.has(deviceId)) publishDevice(deviceId);
  };
  const onRevoked = (deviceId: string) => {
    // Also emitted on rotate: only a revoked or removed device loses its entities.
    if (opts.isRemoved(deviceId)) removeDevice(deviceId);
  };
  /** The broker (without persistence) or HA may have lost the configs: send them all again. */
  const republishAll = () => {
    for (const [id, topics] of published) {
      if (opts.republishes && !opts.republishes(id)) {
        // Held elsewhere, or by nobody: what this instance knows of it may be stale. Forgotten here;
        // it is published again when it comes online on this instance.
        published.delete(id);
        continue;
      }
      topics.clear();
      pending.add(id);
    }
  };

  function onCommand(topic: string, payload: Buffer): void {
    const parts = topic.split('/');
    const command = parts[parts.length - 1] as HaCommand;
    const deviceId = parts[parts.length - 3] as string;
    if (!HA_COMMANDS.includes(command) || parts[parts.length - 2] !== 'cmd') return;
    let outcome: 'sent' | 'offline' | 'invalid' | 'elsewhere';
    if (command === 'identify') {
      outcome = opts.sendCommand(deviceId, 'identify', { duration_ms: IDENTIFY_DURATION_MS });
    } else {
      const ms = Number(payload.toString('utf8').trim());
      outcome =
        Number.isInteger(ms) && ms >= SAMPLE_INTERVAL_MIN_MS && ms <= SAMPLE_INTERVAL_MAX_MS
          ? opts.sendCommand(deviceId, 'set_sample_interval', { interval_ms: ms })
          : 'invalid';
    }
    m.haCommands.inc({ command, outcome });
    if (outcome !== 'sent' && outcome !== 'elsewhere') {
      logger.warn(
        { deviceId, command, outcome, code: outcome === 'offline' ? 'DEVICE_OFFLINE' : 'BAD_REQUEST' },
        outcome === 'offline'
          ? 'Home Assistant command not sent: the device is not connected'
          : 'Home Assistant command refused: bad payload',
      );
    }
  }

  return {
    start() {
      if (started) return;
      started = true;
      bus.on('device:online', onOnline);
      bus.on('device:descriptors', onDescriptors);
      bus.on('device:revoked', onRevoked);
      publisher.onConnect(republishAll);
      // HA announces itself after it restarts; configs are retained, but its docs ask for a resend.
      publisher.subscribe(`${naming.haPrefix}/status`, (_t, p) => {
        if (p.toString('utf8') === 'online') republishAll();
      });
      publisher.subscribe(`${naming.topicPrefix}/v1/+/cmd/+`, onCommand);
      timer = setInterval(flush, opts.intervalMs);
      timer.unref();
      logger.info({ prefix: naming.haPrefix }, 'Home Assistant MQTT discovery on');
    },
    stop() {
      bus.off('device:online', onOnline);
      bus.off('device:descriptors', onDescriptors);
      bus.off('device:revoked', onRevoked);
      if (timer) clearInterval(timer);
      timer = null;
    },
    flush,
    publishDevice,
    removeDevice,
    published: (id) => [...(published.get(id)?.keys() ?? [])],
  };
}
