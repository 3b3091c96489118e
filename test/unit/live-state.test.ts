// The live state: presence decisions, latest values, sparkline trails and caps.
import { describe, expect, it } from 'vitest';
import { parseClientMessage } from '../../server/live/messages.ts';
import { LiveState } from '../../server/live/state.ts';
import type { Reading } from '../../server/storage/types.ts';

const r = (channel: string, timeMs: number, value: number | boolean): Reading => ({
  deviceId: 'd1',
  channel,
  unit: 'u',
  timeMs,
  value,
});
const hello = { deviceId: 'd1', firmwareVersion: '2.1', bootId: 42, timeSynced: true };

describe('presence', () => {
  it('goes online with the session, offline with its reason', () => {
    const s = new LiveState();
    expect(s.online(hello, 100)).toMatchObject({ state: 'online', reason: 'connected', sinceMs: 100, bootId: 42 });
    expect(s.offline('d1', 'heartbeat', 200)).toMatchObject({ state: 'offline', reason: 'heartbeat', sinceMs: 200 });
    expect(s.offline('d1', 'heartbeat', 300)).toBeNull(); // no change, no event
  });

  it('reports a reconnect (new boot) even while already online', () => {
    const s = new LiveState();
    s.online(hello, 100);
    expect(s.online({ ...hello, bootId: 43 }, 200)).toMatchObject({ state: 'online', bootId: 43 });
  });

  it('ignores the end of a replaced session in either order', () => {
    const s = new LiveState();
    s.online(hello, 100);
    expect(s.offline('d1', 'replaced', 110)).toBeNull();
    expect(s.devices.get('d1')?.state).toBe('online');
  });

  it('uses the shortest nominal period until data gaps are known, then the larger of the two', () => {
    const s = new LiveState({ minStaleMs: 0, startupStaleMs: 0 });
    s.online(hello, 0);
    const d = s.devices.get('d1');
    if (!d) throw new Error('device missing');
    expect(s.staleAfterMs(d)).toBeNull(); // irregular / unknown: never stale
    s.setChannels('d1', [
      { key: 'a', unit: '', periodMs: 250 },
      { key: 'b', unit: '', periodMs: 5000 },
      { key: 'c', unit: '', periodMs: 0 },
    ]);
    expect(s.staleAfterMs(d)).toBe(750);
    // The device batches 4 samples per frame: data arrives every second.
    for (let t = 1000; t <= 5000; t += 1000) s.applyReadings('d1', [r('a', t, 1)], t);
    expect(s.staleAfterMs(d)).toBe(3000);
    expect(s.sweep(7900)).toEqual([]);
    expect(s.sweep(8100)).toMatchObject([{ deviceId: 'd1', state: 'stale', reason: 'no_data' }]);
    expect(s.applyReadings('d1', [r('a', 9000, 1)], 9000)).toMatchObject({ state: 'online', reason: 'data_resumed' });
  });

  it('gives a fresh session a grace period until a few gaps are known', () => {
    const s = new LiveState();
    s.online(hello, 0);
    s.setChannels('d1', [{ key: 'a', unit: '', periodMs: 250 }]);
    const d = s.devices.get('d1');
    if (!d) throw new Error('device missing');
    expect(s.staleAfterMs(d)).toBe(5000); // not 750: frames may batch several samples
    for (const t of [1000, 2000, 3000, 4000]) s.applyReadings('d1', [r('a', t, 1)], t);
    expect(s.staleAfterMs(d)).toBe(3000);
  });

  it('one outage gap does not move the median', () => {
    const s = new LiveState({ minStaleMs: 0 });
    s.online(hello, 0);
    const d = s.devices.get('d1');
    if (!d) throw new Error('device missing');
    for (const t of [1000, 2000, 3000, 60_000, 61_000, 62_000]) s.applyReadings('d1', [r('a', t, 1)], t);
    expect(s.staleAfterMs(d)).toBe(3000);
  });

  it('never revives an offline device from readings committed after its session ended', () => {
    const s = new LiveState();
    s.online(hello, 0);
    s.offline('d1', 'closed', 10);
    expect(s.applyReadings('d1', [r('a', 5, 1)], 20)).toBeNull();
    expect(s.devices.get('d1')?.state).toBe('offline');
  });
});

describe('values and trails', () => {
  it('keeps the newest value by sample time, not arrival', () => {
    const s = new LiveState();
    s.applyReadings('d1', [r('a', 200, 2), r('a', 100, 1)], 0);
    expect(s.devices.get('d1')?.channels.get('a')?.last).toEqual([200, 2]);
  });

  it('builds a trail with one point per step (latest wins), bounded', () => {
    const s = new LiveState({ trailPoints: 3, trailStepMs: 1000 });
    s.applyReadings('d1', [r('a', 100, 1), r('a', 900, 2), r('a', 1100, 3), r('a', 2100, 4), r('a', 3100, 5)], 0);
    expect(s.devices.get('d1')?.channels.get('a')?.trail).toEqual([
      [1100, 3],
      [2100, 4],
      [3100, 5],
    ]);
  });

  it('caps devices and channels per device and counts what it dropped', () => {
    const s = new LiveState({ maxDevices: 1, maxChannelsPerDevice: 2 });
    s.applyReadings('d1', [r('a', 1, 1), r('b', 1, 1), r('c', 1, 1)], 0);
    s.applyReadings('d2', [r('a', 1, 1)], 0);
    expect(s.devices.size).toBe(1);
    expect([...(s.devices.get('d1')?.channels.keys() ?? [])]).toEqual(['a', 'b']);
    expect(s.overflow).toBe(2);
  });

  it('views a device as plain JSON, with an optional channel filter', () => {
    const s = new LiveState();
    s.online(hello, 5);
    s.applyReadings('d1', [r('a', 1, true), r('b', 1, 2.5)], 6);
    const v = s.view(s.devices.get('d1') as never, false, new Set(['a']));
    expect(v).toMatchObject({ id: 'd1', state: 'online', firmwareVersion: '2.1', lastSeenMs: 6 });
    expect(v.channels).toEqual([{ key: 'a', unit: 'u', periodMs: 0, last: [1, true] }]);
  });
});

describe('client messages', () => {
  it.each([
    [
      { type: 'subscribe', sub: 's1' },
      { device: null, channels: null, mode: 'latest' },
    ],
    [
      { type: 'subscribe', sub: 's1', device: 'esp-01' },
      { device: 'esp-01', channels: null, mode: 'all' },
    ],
    [
      { type: 'subscribe', sub: 's1', device: 'esp-01', channels: ['temp'], mode: 'latest' },
      { device: 'esp-01', channels: new Set(['temp']), mode: 'latest' },
    ],
  ])('subscribe %j', (input, expected) => {
    const p = parseClientMessage(JSON.stringify(input));
    expect(p).toEqual({ ok: true, message: { type: 'subscribe', subscription: { sub: 's1', ...expected } } });
  });

  it.each([
    ['[]', 'message is not a JSON object'],
    ['{"type":"subscribe"}', 'sub: 1-64 characters of A-Z a-z 0-9 . _ : -'],
    ['{"type":"subscribe","sub":"a","channels":["Temp"]}', 'channels: not a channel key'],
    ['{"type":"subscribe","sub":"a","channels":[]}', 'channels: an array of 1-64 channel keys'],
    ['{"type":"subscribe","sub":"a","mode":"some"}', 'mode: "latest" or "all"'],
    ['{"type":"nope","sub":"a"}', 'type: one of "subscribe", "unsubscribe", "ping"'],
  ])('refuses %s', (text, message) => {
    expect(parseClientMessage(text)).toMatchObject({ ok: false, message });
  });
});
