/**
 * The readings bridge with several instances (docs/scaling.md, "Features with several instances"):
 * the retained `status` must end as the instance holding the device says, whichever instance's
 * session ended last. Real bridge, event bus and metrics; the publisher records what would go to the
 * broker, and `heldElsewhere` answers as the session claims in PostgreSQL would.
 */
import { describe, expect, it } from 'vitest';
import { HubEventBus } from '../../server/events.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics } from '../../server/metrics/index.ts';
import { createReadingsBridge, type ReadingsBridgeOptions } from '../../server/mqtt/bridge.ts';
import { heldElsewhereIn } from '../../server/mqtt/bridge-extension.ts';

interface Published {
  topic: string;
  payload: string;
}

function rig(opts: { heldElsewhere?: Set<string>; offlineAtStart?: string[]; failChecks?: boolean } = {}) {
  const bus = new HubEventBus();
  const metrics = createMetrics();
  const published: Published[] = [];
  const asked: string[] = [];
  const elsewhere = opts.heldElsewhere ?? new Set<string>();
  const options: ReadingsBridgeOptions = {
    publisher: {
      publish: (topic, payload) => published.push({ topic, payload: String(payload) }),
      isConnected: () => true,
    },
    bus,
    topicPrefix: 'esp32hub',
    intervalMs: 3_600_000, // flushed by the test
    room: () => 1000,
    metrics,
    logger: createLogger('silent'),
    heldElsewhere: async (id) => {
      asked.push(id);
      if (opts.failChecks) throw new Error('database unreachable');
      return elsewhere.has(id);
    },
    ...(opts.offlineAtStart ? { offlineAtStart: () => opts.offlineAtStart ?? [] } : {}),
  };
  const bridge = createReadingsBridge(options);
  bridge.start();
  const statusOf = (id: string) =>
    published.filter((p) => p.topic === `esp32hub/v1/${id}/status`).map((p) => p.payload);
  const stateOf = (id: string) => published.filter((p) => p.topic === `esp32hub/v1/${id}/state`);
  /** Flushes until nothing is pending and no holder check is in flight. */
  const settle = async () => {
    for (let i = 0; i < 100; i++) {
      bridge.flush();
      await new Promise((r) => setImmediate(r));
      if (bridge.pending() === 0) return;
    }
  };
  const online = (deviceId: string) =>
    bus.emit('device:online', {
      deviceId,
      firmwareVersion: '1.0.0',
      bootId: 1,
      timeSynced: true,
      bufferedFrames: 0,
      droppedFrames: 0,
      atMs: 1,
    });
  const offline = (deviceId: string, reason: string) => bus.emit('device:offline', { deviceId, reason, atMs: 2 });
  const reading = (deviceId: string, value: number) =>
    bus.emit('readings', deviceId, [{ deviceId, channel: 'temp', value, unit: '°C', timeMs: 1000 + value }]);
  return { bus, bridge, metrics, elsewhere, asked, statusOf, stateOf, settle, online, offline, reading };
}

describe('readings bridge with several instances', () => {
  it('a device that moved to another instance keeps the online its holder published: no offline, no stale values from here', async () => {
    const r = rig();
    r.online('dev-1');
    r.reading('dev-1', 1);
    await r.settle();
    expect(r.statusOf('dev-1')).toEqual(['online']);
    // Ownership moved (MQTT) and the new instance already holds the session when this one publishes.
    r.reading('dev-1', 2);
    r.offline('dev-1', 'moved');
    r.elsewhere.add('dev-1');
    await r.settle();
    expect(r.asked).toEqual(['dev-1']);
    expect(r.statusOf('dev-1')).toEqual(['online']);
    expect(r.stateOf('dev-1')).toHaveLength(1); // value 2 is the holder's to publish (it has it, or newer)
    const text = await r.metrics.registry.metrics();
    expect(text).toContain('hub_mqtt_bridge_status_skipped_total{reason="held_elsewhere"} 1');
    r.bridge.stop();
  });

  it('a session that ended here for a device held nowhere publishes offline, after asking', async () => {
    const r = rig();
    r.online('dev-2');
    await r.settle();
    r.offline('dev-2', 'closed');
    await r.settle();
    expect(r.asked).toEqual(['dev-2']);
    expect(r.statusOf('dev-2')).toEqual(['online', 'offline']);
    r.bridge.stop();
  });

  it('a device back online here while its offline was being checked ends online', async () => {
    const r = rig();
    r.online('dev-3');
    await r.settle();
    r.offline('dev-3', 'closed');
    r.bridge.flush(); // the check starts
    r.online('dev-3'); // before it answers
    await r.settle();
    expect(r.statusOf('dev-3')).toEqual(['online', 'online']);
    r.bridge.stop();
  });

  it('at start, offline only for registered devices no other instance holds', async () => {
    const r = rig({ heldElsewhere: new Set(['on-b']), offlineAtStart: ['on-b', 'nowhere'] });
    await r.settle();
    expect(r.statusOf('on-b')).toEqual([]);
    expect(r.statusOf('nowhere')).toEqual(['offline']);
    r.bridge.stop();
  });

  it('a start with many registered devices asks about all of them at once, bounded, not a batch per interval', async () => {
    const ids = Array.from({ length: 200 }, (_, i) => `dev-${i}`);
    const r = rig({ offlineAtStart: ids });
    r.bridge.flush(); // one timer tick
    for (let i = 0; i < 1000 && r.asked.length < ids.length; i++) await new Promise((res) => setImmediate(res));
    expect(r.asked).toHaveLength(ids.length);
    await r.settle();
    expect(ids.every((id) => r.statusOf(id).join() === 'offline')).toBe(true);
    r.bridge.stop();
  });

  it('when the holder cannot be asked the offline is published (the single-instance behaviour)', async () => {
    const r = rig({ failChecks: true });
    r.online('dev-4');
    await r.settle();
    r.offline('dev-4', 'closed');
    await r.settle();
    expect(r.statusOf('dev-4')).toEqual(['online', 'offline']);
    r.bridge.stop();
  });
});

describe('heldElsewhereIn', () => {
  const claim = (instanceId: string) => ({ deviceId: 'd', instanceId, epoch: 7 });
  it('answers from the session claims, else from relayed presence', async () => {
    const cluster = (holder: string | null | Error, relayed: boolean) =>
      heldElsewhereIn({
        instanceId: 'a',
        onlineElsewhere: () => relayed,
        store: {
          sessionHolder: async () => {
            if (holder instanceof Error) throw holder;
            return holder === null ? null : claim(holder);
          },
        },
      });
    expect(await cluster('b', false)('d')).toBe(true);
    expect(await cluster('a', true)('d')).toBe(false); // this instance's own claim
    expect(await cluster(null, true)('d')).toBe(false); // the claims are authoritative
    expect(await cluster(new Error('down'), true)('d')).toBe(true);
    expect(await cluster(new Error('down'), false)('d')).toBe(false);
  });
});
