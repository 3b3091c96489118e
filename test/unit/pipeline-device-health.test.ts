import { describe, expect, it } from 'vitest';
import { HubEventBus } from '../../server/events.ts';
import { DeviceHealth } from '../../server/pipeline/device-health.ts';

const hello = (deviceId: string, extra: { droppedFrames?: number; bufferedFrames?: number } = {}) => ({
  deviceId,
  firmwareVersion: '1.4.0',
  bootId: 7,
  timeSynced: true,
  bufferedFrames: extra.bufferedFrames ?? 0,
  droppedFrames: extra.droppedFrames ?? 0,
  atMs: 1,
});

describe('DeviceHealth', () => {
  it('counts gaps and rejected frames per device and keeps what HELLO said of the outbox', () => {
    const bus = new HubEventBus();
    const health = new DeviceHealth(bus);
    bus.emit('device:online', hello('a', { droppedFrames: 4, bufferedFrames: 12 }));
    bus.emit('device:gap', 'a', 3);
    bus.emit('device:gap', 'a', 2);
    bus.emit('device:rejected', 'b', 'BAD_CRC');
    bus.emit('device:rejected', 'b', 'TRUNCATED');
    expect(health.rows()).toEqual([
      {
        deviceId: 'a',
        state: 'online',
        gaps: 5,
        errors: 0,
        droppedFrames: 4,
        bufferedFrames: 12,
        firmwareVersion: '1.4.0',
      },
      { deviceId: 'b', state: 'offline', gaps: 0, errors: 2, droppedFrames: 0, bufferedFrames: 0, firmwareVersion: '' },
    ]);
  });

  it('follows sessions for presence, ignores a replaced session, and lists known devices never seen', () => {
    const bus = new HubEventBus();
    const health = new DeviceHealth(bus);
    bus.emit('device:online', hello('a'));
    bus.emit('device:online', hello('b'));
    bus.emit('device:offline', { deviceId: 'a', reason: 'replaced', atMs: 2 });
    bus.emit('device:offline', { deviceId: 'b', reason: 'heartbeat', atMs: 2 });
    const states = Object.fromEntries(health.rows(['c']).map((r) => [r.deviceId, r.state]));
    expect(states).toEqual({ a: 'online', b: 'offline', c: 'offline' });
  });

  it('takes presence from the live view when one provides it (staleness), and stops listening on close', () => {
    const bus = new HubEventBus();
    const health = new DeviceHealth(bus);
    bus.emit('device:online', hello('a'));
    health.setPresenceProvider((id) => (id === 'a' ? 'stale' : undefined));
    expect(health.rows()[0]?.state).toBe('stale');
    health.close();
    bus.emit('device:gap', 'a', 9);
    expect(health.rows()[0]?.gaps).toBe(0);
  });
});
