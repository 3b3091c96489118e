// The alert rule engine on its own: hold time, hysteresis, one event per transition, resolve, the
// offline rule's timing, out-of-order samples, revocation. A fake clock; no I/O.
import { describe, expect, it } from 'vitest';
import { AlertEngine } from '../../server/alerts/engine.ts';
import type { AlertEvent, AlertsConfig, ThresholdRule } from '../../server/alerts/types.ts';

function rule(over: Partial<ThresholdRule> = {}): ThresholdRule {
  const value = over.value ?? 30;
  return {
    name: 'hot',
    device: '*',
    channel: 'temperature',
    op: '>',
    value,
    clear: value,
    forSec: 0,
    severity: 'warning',
    ...over,
  };
}

function engine(config: Partial<Pick<AlertsConfig, 'offline' | 'rules'>>, online = new Set<string>()) {
  const events: AlertEvent[] = [];
  let now = 1_000_000;
  const e = new AlertEngine({
    config: { offline: config.offline ?? null, rules: config.rules ?? [] },
    now: () => now,
    emit: (ev) => events.push(ev),
    isOnline: (id) => online.has(id),
  });
  return {
    e,
    events,
    advance(ms: number) {
      now += ms;
      e.sweep();
    },
    get now() {
      return now;
    },
    /** Feeds samples of every rule targeting the device's channel. */
    feed(device: string, channel: string, samples: [timeMs: number, value: number | boolean][]) {
      const rules = e.targetsOf(device)?.get(channel) ?? [];
      for (const [t, v] of samples) for (const r of rules) e.sample(r, device, t, v);
    },
  };
}

const states = (events: AlertEvent[]) => events.map((ev) => `${ev.rule}:${ev.device}:${ev.state}`);

describe('threshold rules', () => {
  it('fire once when the value crosses, not once per reading, and resolve once when it is back', () => {
    const t = engine({ rules: [rule()] });
    t.feed('a', 'temperature', [
      [1000, 25],
      [2000, 31],
      [3000, 32],
      [4000, 35],
    ]);
    expect(states(t.events)).toEqual(['hot:a:firing']);
    expect(t.events[0]).toMatchObject({ atMs: 2000, firingSinceMs: 2000, value: 31, threshold: 30, op: '>', seq: 1 });
    t.feed('a', 'temperature', [
      [5000, 29],
      [6000, 28],
    ]);
    expect(states(t.events)).toEqual(['hot:a:firing', 'hot:a:resolved']);
    expect(t.events[1]).toMatchObject({ atMs: 5000, value: 29, id: t.events[0]?.id, seq: 2 });
    expect(t.e.firing()).toEqual([]);
  });

  it('wait for the hold time (forSec) of sample time before firing; a dip restarts it', () => {
    const t = engine({ rules: [rule({ forSec: 10 })] });
    t.feed('a', 'temperature', [
      [0, 31],
      [5000, 31],
      [9999, 31],
    ]);
    expect(t.events).toEqual([]);
    t.feed('a', 'temperature', [
      [10_500, 29], // dip: the hold starts again
      [11_000, 31],
      [20_000, 31],
    ]);
    expect(t.events).toEqual([]);
    t.feed('a', 'temperature', [[21_000, 31]]);
    expect(states(t.events)).toEqual(['hot:a:firing']);
    expect(t.events[0]?.summary).toBe('temperature > 30 for 10 s (31)');
  });

  it('hysteresis: a firing alert resolves only past the clear value', () => {
    const t = engine({ rules: [rule({ clear: 28 })] });
    t.feed('a', 'temperature', [
      [1, 31],
      [2, 29.5], // below the threshold, above clear: still firing
      [3, 30.5],
      [4, 28.1],
    ]);
    expect(states(t.events)).toEqual(['hot:a:firing']);
    t.feed('a', 'temperature', [[5, 28]]);
    expect(states(t.events)).toEqual(['hot:a:firing', 'hot:a:resolved']);
    // Without hysteresis the same series flaps: that is what clear prevents.
    const flap = engine({ rules: [rule()] });
    flap.feed('a', 'temperature', [
      [1, 31],
      [2, 29.5],
      [3, 30.5],
    ]);
    expect(states(flap.events)).toEqual(['hot:a:firing', 'hot:a:resolved', 'hot:a:firing']);
  });

  it('below-rules and booleans', () => {
    const t = engine({
      rules: [
        rule({ name: 'low-battery', channel: 'voltage', op: '<', value: 3.3, clear: 3.5 }),
        rule({ name: 'door-open', channel: 'door', op: '==', value: 1 }),
      ],
    });
    t.feed('a', 'voltage', [
      [1, 3.4],
      [2, 3.2],
      [3, 3.4],
      [4, 3.6],
    ]);
    t.feed('a', 'door', [
      [1, false],
      [2, true],
      [3, true],
      [4, false],
    ]);
    expect(states(t.events)).toEqual([
      'low-battery:a:firing',
      'low-battery:a:resolved',
      'door-open:a:firing',
      'door-open:a:resolved',
    ]);
    expect(t.events[2]).toMatchObject({ value: true, channel: 'door' });
  });

  it('each device has its own alert; globs pick the devices', () => {
    const t = engine({ rules: [rule({ device: 'greenhouse-*' })] });
    expect(t.e.targetsOf('greenhouse-1')?.get('temperature')).toHaveLength(1);
    expect(t.e.targetsOf('garage-1')).toBeNull();
    expect(engine({ rules: [rule({ device: 'esp-?' })] }).e.targetsOf('esp-10')).toBeNull();
    expect(engine({ rules: [rule({ device: 'a.b' })] }).e.targetsOf('axb')).toBeNull();
    t.feed('greenhouse-1', 'temperature', [[1, 31]]);
    t.feed('greenhouse-2', 'temperature', [[1, 31]]);
    t.feed('greenhouse-2', 'temperature', [[2, 20]]);
    expect(states(t.events)).toEqual([
      'hot:greenhouse-1:firing',
      'hot:greenhouse-2:firing',
      'hot:greenhouse-2:resolved',
    ]);
    expect(t.e.firing().map((a) => a.device)).toEqual(['greenhouse-1']);
  });

  it('ignores a sample older than the one that last decided the state', () => {
    const t = engine({ rules: [rule()] });
    t.feed('a', 'temperature', [
      [5000, 31],
      [4000, 20], // late, older: must not resolve
    ]);
    expect(states(t.events)).toEqual(['hot:a:firing']);
  });

  it('revoking a device resolves its alerts', () => {
    const t = engine({ rules: [rule()] });
    t.feed('a', 'temperature', [[1, 31]]);
    t.e.deviceRemoved('a');
    expect(states(t.events)).toEqual(['hot:a:firing', 'hot:a:resolved']);
    expect(t.events[1]?.reason).toBe('revoked');
  });
});

describe('the offline rule', () => {
  const offline = { name: 'offline' as const, afterSec: 60, severity: 'critical' as const };

  it('fires once after the device stayed offline afterSec, resolves when it is back', () => {
    const t = engine({ offline });
    t.e.deviceOffline('a', t.now, 'heartbeat');
    t.advance(59_999);
    expect(t.events).toEqual([]);
    t.advance(1);
    expect(states(t.events)).toEqual(['offline:a:firing']);
    expect(t.events[0]).toMatchObject({
      severity: 'critical',
      reason: 'heartbeat',
      kind: 'offline',
      summary: 'offline for more than 60 s (heartbeat lost)',
      offlineSinceMs: 1_000_000,
    });
    t.advance(60_000);
    t.advance(60_000);
    expect(t.events).toHaveLength(1);
    t.e.deviceOnline('a', t.now);
    expect(states(t.events)).toEqual(['offline:a:firing', 'offline:a:resolved']);
    expect(t.events[1]).toMatchObject({ reason: 'online', id: t.events[0]?.id });
  });

  it('a device back within afterSec raises nothing; a replaced session or the hub stopping is not an offline', () => {
    const t = engine({ offline });
    t.e.deviceOffline('a', t.now, 'closed');
    t.advance(30_000);
    t.e.deviceOnline('a', t.now);
    t.e.deviceOffline('a', t.now, 'replaced');
    t.e.deviceOffline('b', t.now, 'shutdown');
    t.advance(120_000);
    expect(t.events).toEqual([]);
  });

  it('does not fire for a device whose session is ready again (events crossing)', () => {
    const online = new Set(['a']);
    const t = engine({ offline }, online);
    t.e.deviceOffline('a', t.now, 'closed');
    t.advance(61_000);
    expect(t.events).toEqual([]);
  });

  it('is off without its config', () => {
    const t = engine({});
    t.e.deviceOffline('a', t.now, 'closed');
    t.advance(10 * 86_400_000);
    expect(t.events).toEqual([]);
  });
});
