/**
 * The readings bridge against a real Mosquitto: what a Node-RED or Telegraf subscriber finds on the
 * broker (retained state JSON with each channel's last value, retained presence), coalescing per
 * device per flush with the superseded values counted, deferral while the client has no room (nothing
 * handed to it, values keep coalescing), and a removed device's retained topics cleared.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { HubEventBus } from '../../server/events.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics } from '../../server/metrics/index.ts';
import { createReadingsBridge, type ReadingsBridge } from '../../server/mqtt/bridge.ts';
import type { Reading } from '../../server/storage/types.ts';
import { type MosquittoServer, startMosquitto } from '../harness/index.ts';
import { rawPublisher, readRetained, until } from './mqtt-retained.ts';

const T0 = 1_764_000_000_000;
const reading = (deviceId: string, channel: string, timeMs: number, value: number | boolean, unit = '°C'): Reading => ({
  deviceId,
  channel,
  unit,
  timeMs,
  value,
});

async function counter(metrics: ReturnType<typeof createMetrics>, name: string, labels: Record<string, string>) {
  const m = (await metrics.registry.getSingleMetric(name)?.get()) as
    | { values: { labels: Record<string, string>; value: number }[] }
    | undefined;
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}

describe('MQTT readings bridge (real Mosquitto)', () => {
  let broker: MosquittoServer;
  let pub: Awaited<ReturnType<typeof rawPublisher>>;
  let bus: HubEventBus;
  let metrics: ReturnType<typeof createMetrics>;
  let bridge: ReadingsBridge;
  let room = 1000;
  let prefix = '';
  let n = 0;

  beforeAll(async () => {
    broker = await startMosquitto();
    pub = await rawPublisher(broker.url);
  });
  afterAll(async () => {
    await pub?.close();
    await broker?.stop();
  });
  beforeEach(() => {
    bus = new HubEventBus();
    metrics = createMetrics();
    room = 1000;
    prefix = `t${++n}`; // a fresh topic tree per test: retained messages of one never leak into another
    bridge = createReadingsBridge({
      publisher: pub,
      bus,
      topicPrefix: prefix,
      intervalMs: 3_600_000, // the tests flush by hand
      room: () => room,
      metrics,
      logger: createLogger('silent'),
    });
    bridge.start();
    return () => bridge.stop();
  });

  const online = (deviceId: string) =>
    bus.emit('device:online', {
      deviceId,
      firmwareVersion: '1.2.3',
      bootId: 1,
      timeSynced: true,
      bufferedFrames: 0,
      droppedFrames: 0,
      atMs: T0,
    });

  const flushed = async () => {
    const before = pub.sent();
    bridge.flush();
    await until('the broker to acknowledge the flush', () => pub.acked() >= pub.sent());
    return pub.sent() - before;
  };

  it('publishes each channel’s last stored value and the presence, retained, as JSON', async () => {
    online('dev-1');
    bus.emit('readings', 'dev-1', [
      reading('dev-1', 'temperature', T0, 20.5),
      reading('dev-1', 'temperature', T0 + 1000, 21.25),
      reading('dev-1', 'led', T0 + 500, true, ''),
    ]);
    // A second frame in the same interval: humidity new, temperature superseded again.
    bus.emit('readings', 'dev-1', [
      reading('dev-1', 'temperature', T0 + 2000, 22, '°C'),
      reading('dev-1', 'humidity', T0 + 2000, 40.5, '%'),
    ]);
    expect(await flushed()).toBe(2); // one state, one status

    const held = await readRetained(broker.url, `${prefix}/v1/dev-1/+`);
    expect(held.get(`${prefix}/v1/dev-1/status`)).toBe('online');
    const state = JSON.parse(held.get(`${prefix}/v1/dev-1/state`) ?? 'null');
    expect(state).toEqual({
      deviceId: 'dev-1',
      timeMs: T0 + 2000,
      channels: {
        temperature: { value: 22, unit: '°C', timeMs: T0 + 2000 },
        led: { value: true, unit: '', timeMs: T0 + 500 },
        humidity: { value: 40.5, unit: '%', timeMs: T0 + 2000 },
      },
    });
    // 5 readings, 3 channels: 2 temperature values never published, and counted.
    expect(await counter(metrics, 'hub_mqtt_bridge_readings_total', { outcome: 'coalesced' })).toBe(2);
    expect(await counter(metrics, 'hub_mqtt_bridge_readings_total', { outcome: 'published' })).toBe(3);

    // Later values keep the channels not in the new frame (the retained state is the device's last values).
    bus.emit('readings', 'dev-1', [reading('dev-1', 'humidity', T0 + 3000, 41)]);
    // A replayed older sample never replaces a newer last value.
    bus.emit('readings', 'dev-1', [reading('dev-1', 'temperature', T0 + 100, 5)]);
    expect(await flushed()).toBe(1);
    const again = JSON.parse(
      (await readRetained(broker.url, `${prefix}/v1/dev-1/state`)).get(`${prefix}/v1/dev-1/state`) ?? 'null',
    );
    expect(again.channels.humidity.value).toBe(41);
    expect(again.channels.temperature.value).toBe(22);
    expect(again.channels.led.value).toBe(true);
  });

  it('says offline at start for known devices without a session (a crashed hub left them online)', async () => {
    // What a hub that died without a clean stop leaves retained.
    const stale = `${prefix}/v1/left-online/status`;
    pub.publish(stale, 'online', { qos: 1, retain: true });
    await until(
      'the stale status to be retained',
      async () => (await readRetained(broker.url, stale)).get(stale) === 'online',
    );
    const restarted = createReadingsBridge({
      publisher: pub,
      bus: new HubEventBus(),
      topicPrefix: prefix,
      intervalMs: 3_600_000,
      room: () => room,
      metrics: createMetrics(),
      logger: createLogger('silent'),
      offlineAtStart: () => ['left-online'],
    });
    restarted.start();
    restarted.flush();
    await until('offline retained', async () => (await readRetained(broker.url, stale)).get(stale) === 'offline');
    restarted.stop();
  });

  it('publishes offline when the session ends, but not when a newer session replaced it', async () => {
    online('d2');
    await flushed();
    bus.emit('device:offline', { deviceId: 'd2', reason: 'replaced', atMs: T0 });
    expect(await flushed()).toBe(0);
    expect((await readRetained(broker.url, `${prefix}/v1/d2/status`)).get(`${prefix}/v1/d2/status`)).toBe('online');
    bus.emit('device:offline', { deviceId: 'd2', reason: 'heartbeat', atMs: T0 });
    expect(await flushed()).toBe(1);
    expect((await readRetained(broker.url, `${prefix}/v1/d2/status`)).get(`${prefix}/v1/d2/status`)).toBe('offline');
  });

  it('hands nothing to the client without room, keeps one entry per device, and catches up once there is room', async () => {
    room = 0;
    for (let i = 0; i < 500; i++) {
      for (const id of ['a', 'b', 'c']) bus.emit('readings', id, [reading(id, 'temperature', T0 + i, i)]);
      bridge.flush();
    }
    expect(pub.sent()).toBe(pub.acked()); // nothing new was handed over
    expect(bridge.pending()).toBe(3);
    expect(await counter(metrics, 'hub_mqtt_bridge_flushes_total', { outcome: 'deferred' })).toBe(500);
    expect(await counter(metrics, 'hub_mqtt_bridge_readings_total', { outcome: 'coalesced' })).toBe(3 * 499);

    // Room for one device's two messages at a time: devices go out oldest first over several flushes.
    room = 2;
    expect(await flushed()).toBe(1);
    expect(bridge.pending()).toBe(2);
    room = 1000;
    expect(await flushed()).toBe(2);
    expect(bridge.pending()).toBe(0);
    for (const id of ['a', 'b', 'c']) {
      const s = JSON.parse(
        (await readRetained(broker.url, `${prefix}/v1/${id}/state`)).get(`${prefix}/v1/${id}/state`) ?? 'null',
      );
      expect(s.channels.temperature.value).toBe(499);
    }
  });

  it('clears a removed device’s retained state and status', async () => {
    online('gone');
    bus.emit('readings', 'gone', [reading('gone', 'temperature', T0, 1)]);
    await flushed();
    expect((await readRetained(broker.url, `${prefix}/v1/gone/+`)).size).toBe(2);
    bridge.clearDevice('gone');
    await until('the broker to acknowledge the clear', () => pub.acked() >= pub.sent());
    expect([...(await readRetained(broker.url, `${prefix}/v1/gone/+`)).keys()]).toEqual([]);
  });
});
