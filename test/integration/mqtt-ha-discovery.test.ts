/**
 * Home Assistant discovery against a real Mosquitto: the retained configs a Home Assistant would read
 * (validated with the schemas written from HA's documentation), the topics they name exist on the
 * broker (state and status from the bridge) or are subscribed by the hub (commands reach the hub's
 * command path), a channel that goes away loses its entity, and a revoked device loses every entity
 * and its retained state and status.
 */
import { Ajv } from 'ajv';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChannelDescriptor, ValueType } from '../../server/codec/index.ts';
import { HubEventBus } from '../../server/events.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics } from '../../server/metrics/index.ts';
import { createReadingsBridge } from '../../server/mqtt/bridge.ts';
import { createHaDiscovery, type HaDiscovery } from '../../server/mqtt/ha-discovery.ts';
import { type MosquittoServer, startMosquitto } from '../harness/index.ts';
import { channel as ch, DISCOVERY_TOPIC, HA_SCHEMAS } from '../unit/ha-discovery-schema.ts';
import { rawPublisher, readRetained, until } from './mqtt-retained.ts';

const T0 = 1_764_000_000_000;

describe('Home Assistant MQTT discovery (real Mosquitto)', () => {
  let broker: MosquittoServer;
  let pub: Awaited<ReturnType<typeof rawPublisher>>;
  let ha: HaDiscovery;
  const bus = new HubEventBus();
  const metrics = createMetrics();
  const channels = new Map<string, ChannelDescriptor[]>();
  const revoked = new Set<string>();
  const commands: { deviceId: string; name: string; args: Record<string, unknown> }[] = [];
  const ajv = new Ajv({ allErrors: true, strict: true });
  const validators = Object.fromEntries(Object.entries(HA_SCHEMAS).map(([k, s]) => [k, ajv.compile(s)]));
  const settled = () => until('the broker to acknowledge everything', () => pub.acked() >= pub.sent());

  beforeAll(async () => {
    broker = await startMosquitto();
    pub = await rawPublisher(broker.url);
    const logger = createLogger('silent');
    const bridge = createReadingsBridge({
      publisher: pub,
      bus,
      topicPrefix: 'esp32hub',
      intervalMs: 20,
      room: () => 1000,
      metrics,
      logger,
    });
    bridge.start();
    ha = createHaDiscovery({
      publisher: pub,
      bus,
      naming: { topicPrefix: 'esp32hub', haPrefix: 'homeassistant', bridge: bridge.topics },
      channelsOf: (id) => channels.get(id),
      isRemoved: (id) => revoked.has(id),
      sendCommand: (deviceId, name, args) => {
        commands.push({ deviceId, name, args });
        return deviceId === 'dev-1' ? 'sent' : 'offline';
      },
      onRemoved: (id) => bridge.clearDevice(id),
      room: () => 1000,
      intervalMs: 20,
      metrics,
      logger,
    });
    ha.start();
    // The subscriptions (HA status, command topics) are in place once the broker answered them.
    await pub.subscribed();
  });
  afterAll(async () => {
    ha?.stop();
    await pub?.close();
    await broker?.stop();
  });

  const online = (deviceId: string, firmwareVersion = '1.0.0') =>
    bus.emit('device:online', {
      deviceId,
      firmwareVersion,
      bootId: 1,
      timeSynced: true,
      bufferedFrames: 0,
      droppedFrames: 0,
      atMs: T0,
    });

  it('publishes retained configs HA accepts, naming topics that exist on the broker', async () => {
    channels.set('dev-1', [ch(0, 'temperature', '°C', ValueType.I16), ch(1, 'led', '', ValueType.BOOL)]);
    online('dev-1', '1.4.2');
    bus.emit('readings', 'dev-1', [
      { deviceId: 'dev-1', channel: 'temperature', unit: '°C', timeMs: T0, value: 21.5 },
      { deviceId: 'dev-1', channel: 'led', unit: '', timeMs: T0, value: false },
    ]);
    const held = await until('4 retained configs and the state and status', async () => {
      await settled();
      const configs = await readRetained(broker.url, 'homeassistant/#');
      const device = await readRetained(broker.url, 'esp32hub/v1/dev-1/+');
      return configs.size === 4 && device.size === 2 ? { configs, device } : null;
    });
    const ids = new Set<string>();
    for (const [topic, text] of held.configs) {
      expect(topic).toMatch(DISCOVERY_TOPIC);
      const payload = JSON.parse(text);
      const validate = validators[topic.split('/')[1] as keyof typeof HA_SCHEMAS];
      expect(validate?.(payload), `${topic}: ${ajv.errorsText(validate?.errors)}`).toBe(true);
      ids.add(payload.unique_id);
      // Availability and state topics hold retained messages: HA shows values right after discovery.
      for (const a of payload.availability) expect(held.device.get(a.topic)).toBe('online');
      if (payload.state_topic) expect(held.device.has(payload.state_topic)).toBe(true);
      expect(payload.device.sw_version).toBe('1.4.2');
    }
    expect(ids.size).toBe(4);
    const state = JSON.parse(held.device.get('esp32hub/v1/dev-1/state') ?? '{}');
    expect(state.channels.temperature.value).toBe(21.5);
  });

  it('turns presses on the command topics into the hub’s commands', async () => {
    const c = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    try {
      const configs = await readRetained(broker.url, 'homeassistant/+/esp32hub_dev-1/+/config');
      const button = JSON.parse(configs.get('homeassistant/button/esp32hub_dev-1/identify/config') ?? '{}');
      const number = JSON.parse(configs.get('homeassistant/number/esp32hub_dev-1/sample_interval_ms/config') ?? '{}');
      // What HA publishes: payload_press on the button's topic, the number's value as text on its topic.
      await c.publishAsync(button.command_topic, button.payload_press, { qos: 1 });
      await c.publishAsync(number.command_topic, '2500', { qos: 1 });
      await c.publishAsync(number.command_topic, '12.5', { qos: 1 });
      await c.publishAsync('esp32hub/v1/dev-9/cmd/identify', 'PRESS', { qos: 1 });
      await until('the commands to reach the hub', () => commands.length >= 3);
      expect(commands).toEqual([
        { deviceId: 'dev-1', name: 'identify', args: { duration_ms: 3000 } },
        { deviceId: 'dev-1', name: 'set_sample_interval', args: { interval_ms: 2500 } },
        { deviceId: 'dev-9', name: 'identify', args: { duration_ms: 3000 } },
      ]);
      const counts = await metrics.registry.getSingleMetric('hub_mqtt_ha_commands_total')?.get();
      const of = (command: string, outcome: string) =>
        counts?.values.find((v) => v.labels.command === command && v.labels.outcome === outcome)?.value;
      expect(of('sample_interval_ms', 'invalid')).toBe(1);
      expect(of('identify', 'offline')).toBe(1);
    } finally {
      await c.endAsync();
    }
  });

  it('removes the entity of a channel the device no longer has, and resends nothing unchanged', async () => {
    const before = pub.sent();
    online('dev-1', '1.4.2'); // a reconnect with nothing changed
    ha.flush();
    expect(pub.sent()).toBe(before);
    channels.set('dev-1', [ch(0, 'temperature', '°C', ValueType.I16)]);
    bus.emit('device:descriptors', 'dev-1');
    ha.flush();
    await settled();
    const configs = await readRetained(broker.url, 'homeassistant/#');
    expect([...configs.keys()].sort()).toEqual([
      'homeassistant/button/esp32hub_dev-1/identify/config',
      'homeassistant/number/esp32hub_dev-1/sample_interval_ms/config',
      'homeassistant/sensor/esp32hub_dev-1/temperature/config',
    ]);
  });

  it('clears every entity and the retained state and status of a revoked device, not of a rotated one', async () => {
    channels.set('dev-2', [ch(0, 'temperature', '°C', ValueType.I16)]);
    online('dev-2');
    await until('dev-2 configs', async () => {
      await settled();
      return (await readRetained(broker.url, 'homeassistant/+/esp32hub_dev-2/+/config')).size === 3;
    });
    bus.emit('device:revoked', 'dev-2'); // a rotation: still registered, entities stay
    await settled();
    expect((await readRetained(broker.url, 'homeassistant/+/esp32hub_dev-2/+/config')).size).toBe(3);

    revoked.add('dev-2');
    bus.emit('device:revoked', 'dev-2');
    await settled();
    expect([...(await readRetained(broker.url, 'homeassistant/+/esp32hub_dev-2/+/config')).keys()]).toEqual([]);
    expect([...(await readRetained(broker.url, 'esp32hub/v1/dev-2/+')).keys()]).toEqual([]);
    // dev-1 keeps its entities.
    expect((await readRetained(broker.url, 'homeassistant/+/esp32hub_dev-1/+/config')).size).toBe(3);
  });

  it('sends every config again when Home Assistant announces itself (it may have lost them)', async () => {
    await settled();
    const before = pub.sent();
    const c = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    try {
      await c.publishAsync('homeassistant/status', 'online', { qos: 1 });
    } finally {
      await c.endAsync();
    }
    // dev-1's three entities (dev-2 was revoked): sent again although unchanged.
    await until('the configs sent again', () => pub.sent() - before === 3);
    await settled();
    expect((await readRetained(broker.url, 'homeassistant/+/esp32hub_dev-1/+/config')).size).toBe(3);
  });

  it('sends every config again after the client (re)connects (a broker without persistence lost them)', async () => {
    await settled();
    const before = pub.sent();
    await pub.reconnected();
    await until('the configs sent again', () => pub.sent() - before === 3);
  });
});
