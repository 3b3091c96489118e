// The built-in alerts with several instances (server/alerts/, docs/scaling.md "Live view and commands
// across instances"): the offline rule sees cluster presence (a device that moved is not offline; one
// instance raises a device no instance holds), and alerts raised by another instance are shown here
// (GET /api/alerts, the live page) under this instance's seq, resolved when that instance leaves.
import { describe, expect, it } from 'vitest';
import { createAlerts } from '../../server/alerts/index.ts';
import type { AlertEvent } from '../../server/alerts/types.ts';
import { HubEventBus } from '../../server/events.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics } from '../../server/metrics/index.ts';

function service(known: string[] = []) {
  const clock = { now: 1_000_000 };
  const bus = new HubEventBus();
  const shown: AlertEvent[] = [];
  bus.on('alert', (e) => shown.push(e));
  const local = new Set<string>();
  const alerts = createAlerts({
    config: { offline: { name: 'offline', afterSec: 10, severity: 'warning' }, rules: [], webhook: null },
    bus,
    metrics: createMetrics(),
    logger: createLogger('silent'),
    now: () => clock.now,
    mqtt: null,
    isOnline: (id) => local.has(id),
    knownDevices: () => known,
    isRevoked: () => false,
  });
  const later = (ms: number) => {
    clock.now += ms;
    alerts.engine.sweep();
  };
  return { clock, bus, shown, alerts, later };
}

describe('alerts with several instances', () => {
  it('a device that left this instance and is online on another raises no offline alert here', () => {
    const { bus, shown, alerts, later, clock } = service();
    alerts.start();
    bus.emit('device:offline', { deviceId: 'esp-mover', reason: 'closed', atMs: clock.now });
    bus.emit('device:offline', { deviceId: 'esp-gone', reason: 'closed', atMs: clock.now });
    bus.emit('remote:online', {
      deviceId: 'esp-mover',
      firmwareVersion: 'fw',
      bootId: 2,
      timeSynced: true,
      atMs: clock.now + 100,
      instanceId: 'hub-b',
    });
    later(11_000);
    expect(shown.map((e) => [e.device, e.state])).toEqual([['esp-gone', 'firing']]);
    // A firing offline alert resolves when the device shows up on another instance.
    bus.emit('remote:online', {
      deviceId: 'esp-gone',
      firmwareVersion: 'fw',
      bootId: 3,
      timeSynced: true,
      atMs: clock.now,
      instanceId: 'hub-b',
    });
    expect(shown.map((e) => [e.device, e.state, e.reason])).toEqual([
      ['esp-gone', 'firing', 'closed'],
      ['esp-gone', 'resolved', 'online'],
    ]);
    void alerts.stop();
  });

  it('the last check before firing asks the cluster: online elsewhere (a presence event missed) is not offline', () => {
    const { bus, shown, alerts, later, clock } = service();
    alerts.setClusterPresence(
      (id) => id === 'esp-moved',
      () => true,
    );
    alerts.start();
    bus.emit('device:offline', { deviceId: 'esp-moved', reason: 'heartbeat', atMs: clock.now });
    later(11_000);
    expect(shown).toEqual([]);
    void alerts.stop();
  });

  it('a device no instance holds is raised by the one instance that watches it, not by every one', () => {
    const { shown, alerts, later, bus, clock } = service(['esp-x', 'esp-y']);
    alerts.setClusterPresence(
      () => false,
      (id) => id === 'esp-x',
    );
    alerts.start(); // both never seen since the start
    bus.emit('remote:offline', { deviceId: 'esp-z', reason: 'instance_lost', atMs: clock.now, instanceId: 'hub-c' });
    bus.emit('remote:offline', { deviceId: 'esp-w', reason: 'heartbeat', atMs: clock.now, instanceId: 'hub-c' });
    later(11_000);
    // esp-y: another instance watches it; esp-z: instance lost, watched elsewhere too (not esp-x's
    // owner here); esp-w: ended on hub-c, hub-c's to raise.
    expect(shown.map((e) => [e.device, e.reason])).toEqual([['esp-x', 'never_seen']]);
    void alerts.stop();
  });

  it('a device whose instance was lost is raised here when this instance watches it', () => {
    const { shown, alerts, later, bus, clock } = service();
    alerts.setClusterPresence(
      () => false,
      () => true,
    );
    alerts.start();
    bus.emit('remote:offline', { deviceId: 'esp-z', reason: 'instance_lost', atMs: clock.now, instanceId: 'hub-c' });
    later(11_000);
    expect(shown.map((e) => [e.device, e.reason, e.summary])).toEqual([
      ['esp-z', 'instance_lost', 'offline for more than 10 s (the hub instance holding it left the cluster)'],
    ]);
    void alerts.stop();
  });

  it("another instance's alerts are listed and shown here under this instance's seq, and resolve when it leaves", () => {
    const { shown, alerts, bus, later, clock } = service();
    alerts.start();
    bus.emit('device:offline', { deviceId: 'esp-local', reason: 'closed', atMs: clock.now });
    later(11_000); // seq 1 here
    const remote: AlertEvent = {
      id: 'offline/esp-b/1',
      rule: 'offline',
      kind: 'offline',
      device: 'esp-b',
      state: 'firing',
      severity: 'warning',
      summary: 'offline for more than 300 s (heartbeat lost)',
      firingSinceMs: 1,
      atMs: 1,
      seq: 1, // hub-b's own counter
      reason: 'heartbeat',
    };
    bus.emit('remote:alert', remote, 'hub-b');
    const snap = alerts.snapshot();
    expect(snap.alerts.map((e) => [e.device, e.seq, e.instance])).toEqual([
      ['esp-local', 1, undefined],
      ['esp-b', 2, 'hub-b'],
    ]);
    expect(snap.seq).toBe(2);
    expect(shown.at(-1)).toMatchObject({ device: 'esp-b', state: 'firing', seq: 2, instance: 'hub-b' });
    bus.emit('remote:lost', 'hub-b', clock.now);
    expect(shown.at(-1)).toMatchObject({ device: 'esp-b', state: 'resolved', seq: 3, reason: 'instance_lost' });
    expect(alerts.snapshot().alerts.map((e) => e.device)).toEqual(['esp-local']);
    void alerts.stop();
  });
});
