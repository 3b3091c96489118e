// The live view's presence with several instances (server/live/state.ts): only the instance holding a
// device's session can end it; a device that moved is not made offline by the end of its old session;
// an instance that cannot hear the holder shows the device stale (cluster_unreachable) until data or a
// new announcement arrives.
import { describe, expect, it } from 'vitest';
import { LiveState } from '../../server/live/state.ts';

const info = { deviceId: 'esp-1', firmwareVersion: 'fw-2', bootId: 5, timeSynced: true };

describe('live presence across instances', () => {
  it('the end of a session on an instance the device left does not make it offline', () => {
    const s = new LiveState();
    s.online(info, 1000); // here
    expect(s.online(info, 2000, 'hub-b')).toMatchObject({ state: 'online', reason: 'connected' }); // moved to B
    expect(s.offline('esp-1', 'heartbeat', 3000)).toBeNull(); // its old session here ends later
    expect(s.offline('esp-1', 'closed', 3000, 'hub-c')).toBeNull(); // nor does another instance's
    expect(s.devices.get('esp-1')).toMatchObject({ state: 'online', instance: 'hub-b' });
    expect(s.offline('esp-1', 'instance_lost', 4000, 'hub-b')).toMatchObject({
      state: 'offline',
      reason: 'instance_lost',
    });
    // Back here: a local session again.
    s.online(info, 5000);
    expect(s.offline('esp-1', 'closed', 6000)).toMatchObject({ state: 'offline', reason: 'closed' });
  });

  it('unknown while the holder cannot be heard: stale, then online again with data', () => {
    const s = new LiveState();
    s.online(info, 1000, 'hub-b');
    expect(s.unknown('esp-1', 'hub-c', 2000)).toBeNull(); // not the holder
    expect(s.unknown('esp-1', 'hub-b', 2000)).toMatchObject({ state: 'stale', reason: 'cluster_unreachable' });
    const d = s.devices.get('esp-1');
    if (!d) throw new Error('no device');
    expect(s.noteData(d, 3000)).toMatchObject({ state: 'online', reason: 'data_resumed' });
  });
});
