import { describe, expect, it } from 'vitest';
import type { DeviceView } from '../../server/live/state.ts';
import { FleetModel } from '../../server/web/fleet-model.ts';

function view(
  id: string,
  state: DeviceView['state'],
  temperature: number | null,
  lastSeenMs: number | null,
): DeviceView {
  return {
    id,
    state,
    reason: state === 'online' ? 'connected' : 'closed',
    sinceMs: 1,
    lastSeenMs,
    firmwareVersion: '1.0',
    bootId: 1,
    timeSynced: true,
    staleAfterMs: 3000,
    channels: [
      { key: 'temperature', unit: '°C', periodMs: 1000, last: temperature === null ? null : [1000, temperature] },
      { key: 'battery_v', unit: 'V', periodMs: 1000, last: [1000, 3.7] },
    ],
  };
}

function model(): FleetModel {
  const m = new FleetModel();
  m.apply(view('kitchen', 'online', 21, 5000), false);
  m.apply(view('attic', 'offline', 30, 1000), false);
  m.apply(view('cellar', 'stale', 12, 3000), false);
  m.apply(view('garage', 'online', null, null), false);
  return m;
}

const ids = (list: { id: string }[]) => list.map((d) => d.id);

describe('fleet model: search, filter, sort', () => {
  it('sorts by name, by last seen (newest first, never seen last), by a channel (largest first, none last)', () => {
    const m = model();
    expect(ids(m.select({ search: '', status: 'all', sort: 'name' }))).toEqual([
      'attic',
      'cellar',
      'garage',
      'kitchen',
    ]);
    expect(ids(m.select({ search: '', status: 'all', sort: 'lastSeen' }))).toEqual([
      'kitchen',
      'cellar',
      'attic',
      'garage',
    ]);
    expect(ids(m.select({ search: '', status: 'all', sort: 'channel:temperature' }))).toEqual([
      'attic',
      'kitchen',
      'cellar',
      'garage',
    ]);
  });

  it('filters by status and searches ids, channel keys and labels', () => {
    const m = model();
    expect(ids(m.select({ search: '', status: 'online', sort: 'name' }))).toEqual(['garage', 'kitchen']);
    expect(ids(m.select({ search: 'KITCH', status: 'all', sort: 'name' }))).toEqual(['kitchen']);
    expect(m.select({ search: 'battery', status: 'all', sort: 'name' })).toHaveLength(4);
    expect(
      ids(m.select({ search: 'fridge', status: 'all', sort: 'name' }, { kitchen: { temperature: 'Fridge' } })),
    ).toEqual(['kitchen']);
  });

  it('live data updates last values, last seen and the one-minute trail; presence changes state', () => {
    const m = model();
    m.data(
      {
        garage: {
          temperature: [
            [2000, 5],
            [2500, 6],
            [3100, 7],
          ],
        },
      },
      9000,
    );
    const g = m.devices.get('garage')!;
    expect(g.channels.get('temperature')?.last).toEqual([3100, 7]);
    expect(g.channels.get('temperature')?.trail).toEqual([
      [2500, 6],
      [3100, 7],
    ]);
    expect(g.lastSeenMs).toBe(9000);
    m.presence({
      type: 'presence',
      device: 'garage',
      state: 'offline',
      reason: 'heartbeat',
      sinceMs: 9500,
      lastSeenMs: 9000,
      firmwareVersion: '1.0',
      bootId: 1,
    });
    expect(m.counts()).toEqual({ online: 1, stale: 1, offline: 2 });
    expect(m.channelKeys()).toEqual(['temperature', 'battery_v']);
  });
});
