/**
 * Home Assistant discovery with several instances (docs/scaling.md, "Features with several
 * instances"): an instance that no longer holds a device must not put its older configs back when it
 * republishes, and a command for a device another instance holds is that instance's to send (no
 * warning here). Real discovery, event bus, metrics and logger; the publisher records what would go
 * to the broker.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ValueType } from '../../server/codec/index.ts';
import { HubEventBus } from '../../server/events.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics } from '../../server/metrics/index.ts';
import { bridgeTopicsFor } from '../../server/mqtt/bridge.ts';
import { createHaDiscovery, type HaDiscoveryOptions } from '../../server/mqtt/ha-discovery.ts';
import { channel } from './ha-discovery-schema.ts';

function rig(held: Set<string>, sendCommand: HaDiscoveryOptions['sendCommand'] = () => 'sent') {
  const bus = new HubEventBus();
  const metrics = createMetrics();
  const published: { topic: string; payload: string }[] = [];
  const subscriptions = new Map<string, (topic: string, payload: Buffer) => void>();
  const connectHooks: (() => unknown)[] = [];
  const logLines: { level: number; code?: string; msg: string }[] = [];
  const logger = createLogger(
    'info',
    new Writable({
      write(chunk, _enc, done) {
        logLines.push(JSON.parse(String(chunk)));
        done();
      },
    }),
  );
  const ha = createHaDiscovery({
    publisher: {
      publish: (topic, payload) => published.push({ topic, payload: String(payload) }),
      isConnected: () => true,
      subscribe: (filter, handler) => subscriptions.set(filter, handler),
      onConnect: (hook) => connectHooks.push(() => hook(false)),
    },
    bus,
    naming: { topicPrefix: 'esp32hub', haPrefix: 'homeassistant', bridge: bridgeTopicsFor('esp32hub') },
    channelsOf: () => [channel(0, 'temperature', '°C', ValueType.F32)],
    isRemoved: () => false,
    sendCommand,
    room: () => 1000,
    intervalMs: 3_600_000, // flushed by the test
    metrics,
    logger,
    republishes: (id) => held.has(id),
  });
  ha.start();
  const online = (deviceId: string, firmwareVersion: string) =>
    bus.emit('device:online', {
      deviceId,
      firmwareVersion,
      bootId: 1,
      timeSynced: true,
      bufferedFrames: 0,
      droppedFrames: 0,
      atMs: 1,
    });
  const configsOf = (id: string) => published.filter((p) => p.topic.includes(`/${id}`) || p.payload.includes(id));
  return { ha, metrics, published, subscriptions, connectHooks, logLines, online, configsOf };
}

describe('Home Assistant discovery with several instances', () => {
  it('after a reconnect, republishes only the devices this instance holds (no older firmware put back)', () => {
    const held = new Set(['esp-here', 'esp-moved']);
    const r = rig(held);
    r.online('esp-here', '1.0.0');
    r.online('esp-moved', '1.0.0');
    r.ha.flush();
    expect(r.configsOf('esp-moved').length).toBeGreaterThan(0);
    // esp-moved is now held by another instance, which published it with firmware 2.0.0.
    held.delete('esp-moved');
    r.published.length = 0;
    for (const hook of r.connectHooks) hook();
    r.ha.flush();
    expect(r.configsOf('esp-moved')).toEqual([]);
    expect(r.configsOf('esp-here').length).toBeGreaterThan(0);
    // It comes back to this instance: published again, with what it says now.
    held.add('esp-moved');
    r.online('esp-moved', '2.0.0');
    r.ha.flush();
    const again = r.configsOf('esp-moved');
    expect(again.length).toBeGreaterThan(0);
    expect(again.every((p) => !p.payload.includes('1.0.0'))).toBe(true);
    r.ha.stop();
  });

  it('a command for a device held by another instance is counted as elsewhere, without a warning', () => {
    const r = rig(new Set(), () => 'elsewhere');
    const handler = r.subscriptions.get('esp32hub/v1/+/cmd/+');
    if (!handler) throw new Error('no command subscription');
    handler('esp32hub/v1/esp-far/cmd/identify', Buffer.from('PRESS'));
    expect(r.logLines.filter((l) => l.level >= 40)).toEqual([]);
    return r.metrics.registry.metrics().then((text) => {
      expect(text).toContain('hub_mqtt_ha_commands_total{command="identify",outcome="elsewhere"} 1');
      r.ha.stop();
    });
  });
});
