// The alerts service on the hub's event bus: what a frame costs (nothing listens without threshold
// rules; a device no rule targets is never decoded; a targeted one is evaluated on a later turn, or at
// once when 10,000 frames wait), revocation, the sinks it feeds and the log levels of transitions.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createAlerts, MAX_PENDING_FRAMES } from '../../server/alerts/index.ts';
import type { AlertEvent, AlertsConfig, ThresholdRule } from '../../server/alerts/types.ts';
import { type AcceptedFrame, HubEventBus, type SampleSink } from '../../server/events.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics } from '../../server/metrics/index.ts';

const HOT: ThresholdRule = {
  name: 'hot',
  device: 'esp-hot-*',
  channel: 'temperature',
  op: '>',
  value: 30,
  clear: 30,
  forSec: 0,
  severity: 'critical',
};

/** A committed frame as `readings:stored` carries it, counting how often it was decoded. */
function frame(deviceId: string, samples: [channel: string, timeMs: number, value: number][]) {
  const f = {
    deviceId,
    receivedAtMs: 0,
    samples: samples.length,
    channelCount: 2,
    decoded: 0,
    readings: () => {
      throw new Error('alerts must not build reading objects');
    },
    forEachSample(sink: SampleSink) {
      f.decoded++;
      for (const [c, t, v] of samples) sink.sample(c, '°C', t, v);
    },
  };
  return f as typeof f & AcceptedFrame;
}

const clock = { now: 5000 };

function service(config: Partial<AlertsConfig> = {}, revoked = new Set<string>()) {
  const bus = new HubEventBus();
  const lines: { level: number; msg: string }[] = [];
  const logger = createLogger(
    'info',
    new Writable({
      write(chunk, _enc, cb) {
        lines.push(JSON.parse(String(chunk)));
        cb();
      },
    }),
  );
  const events: AlertEvent[] = [];
  bus.on('alert', (e) => events.push(e));
  const metrics = createMetrics();
  const alerts = createAlerts({
    config: { offline: null, rules: [], webhook: null, ...config },
    bus,
    metrics,
    logger,
    now: () => clock.now,
    mqtt: null,
    isOnline: () => false,
    knownDevices: () => [],
    isRevoked: (id) => revoked.has(id),
  });
  alerts.start();
  return { bus, alerts, events, lines, metrics };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('alerts on the event bus', () => {
  it('without threshold rules nothing listens to stored frames (the ingest does not even wrap them)', async () => {
    const { bus, alerts } = service({ offline: { name: 'offline', afterSec: 60, severity: 'warning' } });
    expect(bus.listenerCount('readings:stored')).toBe(0);
    await alerts.stop();
  });

  it('lists every configured rule on /metrics at 0 before anything fires', async () => {
    const { alerts, metrics } = service({
      offline: { name: 'offline', afterSec: 60, severity: 'warning' },
      rules: [HOT],
    });
    const text = await metrics.registry.metrics();
    expect(text).toContain('hub_alerts_firing{rule="offline"} 0');
    expect(text).toContain('hub_alerts_firing{rule="hot"} 0');
    await alerts.stop();
  });

  it('never decodes a frame of a device no rule targets; evaluates a targeted one on a later turn', async () => {
    const { bus, alerts, events } = service({ rules: [HOT] });
    expect(bus.listenerCount('readings:stored')).toBe(1);
    const cold = frame('esp-cold-1', [['temperature', 1000, 40]]);
    const hot = frame('esp-hot-1', [
      ['humidity', 1000, 99],
      ['temperature', 1000, 31],
    ]);
    bus.emit('readings:stored', cold.deviceId, cold);
    bus.emit('readings:stored', hot.deviceId, hot);
    expect(hot.decoded).toBe(0); // not on the emitting (ingest) turn
    await turn();
    expect(hot.decoded).toBe(1);
    expect(cold.decoded).toBe(0);
    expect(events.map((e) => `${e.rule}:${e.device}:${e.state}:${e.value}`)).toEqual(['hot:esp-hot-1:firing:31']);
    await alerts.stop();
  });

  it(`evaluates at once when ${MAX_PENDING_FRAMES} frames wait (bounded, nothing skipped)`, async () => {
    const { bus, alerts, events } = service({ rules: [HOT] });
    const frames = Array.from({ length: MAX_PENDING_FRAMES }, (_, i) =>
      frame('esp-hot-2', [['temperature', i, i % 2 === 0 ? 31 : 20]]),
    );
    for (const f of frames.slice(0, -1)) bus.emit('readings:stored', f.deviceId, f);
    expect(frames[0]?.decoded).toBe(0);
    const last = frames[frames.length - 1] as (typeof frames)[number];
    bus.emit('readings:stored', last.deviceId, last);
    expect(frames.every((f) => f.decoded === 1)).toBe(true);
    // Every frame counted: it alternates above and below, one transition per frame.
    expect(events).toHaveLength(MAX_PENDING_FRAMES);
    await alerts.stop();
  });

  it('a revoked device has its alerts resolved; a rotated one (still active) keeps them', async () => {
    const revoked = new Set<string>();
    const { bus, alerts, events } = service({ rules: [HOT] }, revoked);
    for (const id of ['esp-hot-3', 'esp-hot-4']) {
      const f = frame(id, [['temperature', 1, 35]]);
      bus.emit('readings:stored', id, f);
    }
    await turn();
    bus.emit('device:revoked', 'esp-hot-3'); // rotated: still active
    revoked.add('esp-hot-4');
    bus.emit('device:revoked', 'esp-hot-4');
    expect(events.map((e) => `${e.device}:${e.state}`)).toEqual([
      'esp-hot-3:firing',
      'esp-hot-4:firing',
      'esp-hot-4:resolved',
    ]);
    expect(alerts.snapshot().alerts.map((a) => a.device)).toEqual(['esp-hot-3']);
    await alerts.stop();
  });

  it('a revoked device going offline raises nothing, whichever of the two events comes first', async () => {
    const revoked = new Set(['esp-r1', 'esp-r2']);
    const { bus, alerts, events } = service(
      { offline: { name: 'offline', afterSec: 1, severity: 'warning' } },
      revoked,
    );
    bus.emit('device:revoked', 'esp-r1');
    bus.emit('device:offline', { deviceId: 'esp-r1', reason: 'REVOKED', atMs: clock.now });
    bus.emit('device:offline', { deviceId: 'esp-r2', reason: 'REVOKED', atMs: clock.now });
    bus.emit('device:revoked', 'esp-r2');
    bus.emit('device:offline', { deviceId: 'esp-ok', reason: 'closed', atMs: clock.now });
    clock.now += 2000;
    alerts.engine.sweep();
    expect(events.map((e) => `${e.device}:${e.state}`)).toEqual(['esp-ok:firing']);
    await alerts.stop();
  });

  it('logs each transition: warn for a firing warning/critical alert, info otherwise', async () => {
    const { bus, alerts, lines } = service({ rules: [HOT, { ...HOT, name: 'fyi', severity: 'info' }] });
    bus.emit('readings:stored', 'esp-hot-5', frame('esp-hot-5', [['temperature', 1, 35]]));
    await turn();
    bus.emit('readings:stored', 'esp-hot-5', frame('esp-hot-5', [['temperature', 2, 20]]));
    await turn();
    const seen = lines.filter((l) => l.msg.startsWith('alert ')).map((l) => `${l.msg}:${l.level}`);
    expect(seen).toEqual(['alert firing:40', 'alert firing:30', 'alert resolved:30', 'alert resolved:30']);
    await alerts.stop();
  });
});
