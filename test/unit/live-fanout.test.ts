// The live fan-out's decisions, with a socket whose bufferedAmount the test controls and fake timers
// for the tick and drain clocks. Real-socket behaviour is in test/integration/live-slow-client.test.ts.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { AcceptedFrame, SampleSink } from '../../server/events.ts';
import { LiveFanout, type LiveSocket, readingsFrame, TICK_COST_FACTOR } from '../../server/live/fanout.ts';
import { LiveState } from '../../server/live/state.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics, type Metrics } from '../../server/metrics/index.ts';
import type { Reading } from '../../server/storage/types.ts';

/** A socket that records what it was sent; `bufferedAmount` is set by the test. */
class RecordingSocket implements LiveSocket {
  bufferedAmount = 0;
  sent: Buffer[] = [];
  terminated = false;
  closed: { code?: number; reason?: string } | null = null;
  send(data: Buffer): void {
    this.sent.push(data);
  }
  terminate(): void {
    this.terminated = true;
  }
  close(code?: number, reason?: string): void {
    this.closed = { code, reason };
  }
  // biome-ignore lint/suspicious/noExplicitAny: test helper over heterogeneous JSON messages
  messages(): any[] {
    return this.sent.map((b) => JSON.parse(b.toString('utf8')));
  }
  // biome-ignore lint/suspicious/noExplicitAny: as above
  ofType(type: string): any[] {
    return this.messages().filter((m) => m.type === type);
  }
}

const HW = 10_000;
const DRAIN = 1000;
const TICK = 50;

function reading(deviceId: string, channel: string, timeMs: number, value: number): Reading {
  return { deviceId, channel, unit: 'u', timeMs, value };
}

let metrics: Metrics;
let state: LiveState;
let fanout: LiveFanout;

beforeEach(() => {
  vi.useFakeTimers({ now: 1_000_000 });
  metrics = createMetrics();
  state = new LiveState();
  fanout = new LiveFanout({
    state,
    metrics,
    logger: createLogger('silent'),
    tickMs: TICK,
    highWaterBytes: HW,
    drainTimeoutMs: DRAIN,
    maxSubscriptions: 3,
  });
  fanout.start();
});

afterEach(() => {
  fanout.stop();
  vi.useRealTimers();
});

function client(subs: object[]): RecordingSocket {
  const socket = new RecordingSocket();
  const c = fanout.addClient(socket, 'viewer');
  for (const s of subs) fanout.receive(c, JSON.stringify({ type: 'subscribe', ...s }));
  return socket;
}

async function counter(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await metrics.registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
  return v?.value ?? 0;
}

describe('broadcast once', () => {
  it('sends the very same Buffer to every client with the same subscriptions', () => {
    const a = client([{ sub: 'f' }]);
    const b = client([{ sub: 'other-id' }]);
    fanout.readings('d1', [reading('d1', 't', 1, 20)]);
    vi.advanceTimersByTime(TICK);
    const da = a.sent.at(-1);
    const db = b.sent.at(-1);
    expect(da).toBeDefined();
    expect(da).toBe(db); // identity: serialized once
    expect(JSON.parse(String(da))).toEqual({ type: 'data', tick: 1, updates: { d1: { t: [[1, 20]] } } });
  });

  it('batches everything that arrives within a tick into one message per client', () => {
    const a = client([{ sub: 'f', mode: 'all' }]);
    const before = a.sent.length;
    fanout.readings('d1', [reading('d1', 't', 1, 1)]);
    fanout.readings('d2', [reading('d2', 't', 1, 2)]);
    fanout.readings('d1', [reading('d1', 't', 2, 3), reading('d1', 'h', 2, 4)]);
    vi.advanceTimersByTime(TICK);
    expect(a.sent.length - before).toBe(1);
    expect(a.ofType('data')[0].updates).toEqual({
      d1: {
        t: [
          [1, 1],
          [2, 3],
        ],
        h: [[2, 4]],
      },
      d2: { t: [[1, 2]] },
    });
  });

  it('latest mode keeps the newest sample per channel and tick; all mode keeps every sample', () => {
    const latest = client([{ sub: 'f' }]);
    const all = client([{ sub: 'd', device: 'd1' }]); // device subscriptions default to all
    fanout.readings('d1', [reading('d1', 't', 3, 30), reading('d1', 't', 1, 10), reading('d1', 't', 2, 20)]);
    vi.advanceTimersByTime(TICK);
    expect(latest.ofType('data')[0].updates.d1.t).toEqual([[3, 30]]);
    expect(all.ofType('data')[0].updates.d1.t).toEqual([
      [3, 30],
      [1, 10],
      [2, 20],
    ]);
  });

  it('filters by device and channel; a client gets nothing for what it did not subscribe to', () => {
    const c = client([{ sub: 'x', device: 'd1', channels: ['t'] }]);
    fanout.readings('d1', [reading('d1', 't', 1, 1), reading('d1', 'h', 1, 2)]);
    fanout.readings('d2', [reading('d2', 't', 1, 3)]);
    vi.advanceTimersByTime(TICK);
    expect(c.ofType('data')).toEqual([{ type: 'data', tick: 1, updates: { d1: { t: [[1, 1]] } } }]);
    fanout.readings('d2', [reading('d2', 't', 2, 3)]);
    vi.advanceTimersByTime(TICK);
    expect(c.ofType('data')).toHaveLength(1);
  });

  it('flushes at once when the previous tick is older than tickMs (leading edge)', () => {
    const c = client([{ sub: 'f' }]);
    vi.advanceTimersByTime(10 * TICK);
    fanout.readings('d1', [reading('d1', 't', 1, 1)]);
    vi.advanceTimersByTime(0);
    expect(c.ofType('data')).toHaveLength(1);
    fanout.readings('d1', [reading('d1', 't', 2, 2)]);
    vi.advanceTimersByTime(TICK - 1);
    expect(c.ofType('data')).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(c.ofType('data')).toHaveLength(2);
  });
});

describe('snapshot then deltas', () => {
  it('a snapshot reflects the last tick and the next data message holds only later samples', () => {
    client([{ sub: 'watch', device: 'd1' }]); // another viewer: d1's frames go through the ticks
    fanout.online({ deviceId: 'd1', firmwareVersion: '1.0', bootId: 7, timeSynced: true, atMs: Date.now() });
    fanout.readings('d1', [reading('d1', 't', 1, 10)]);
    vi.advanceTimersByTime(TICK);
    fanout.readings('d1', [reading('d1', 't', 2, 20)]); // pending, not yet in the state
    const c = client([{ sub: 's', device: 'd1' }]);
    const [snap] = c.ofType('snapshot');
    expect(snap.sub).toBe('s');
    expect(snap.devices).toHaveLength(1);
    expect(snap.devices[0]).toMatchObject({ id: 'd1', state: 'online', firmwareVersion: '1.0', bootId: 7 });
    expect(snap.devices[0].channels).toEqual([{ key: 't', unit: 'u', periodMs: 0, last: [1, 10] }]);
    vi.advanceTimersByTime(TICK);
    expect(c.ofType('data').map((m) => m.updates.d1.t)).toEqual([[[2, 20]]]);
  });

  it('a device nobody watched: its snapshot holds everything accepted so far, the deltas only later frames', () => {
    fanout.online({ deviceId: 'd1', firmwareVersion: '1.0', bootId: 7, timeSynced: true, atMs: Date.now() });
    fanout.readings('d1', [reading('d1', 't', 1, 10)]);
    vi.advanceTimersByTime(TICK);
    fanout.readings('d1', [reading('d1', 't', 2, 20)]);
    const c = client([{ sub: 's', device: 'd1' }]);
    expect(c.ofType('snapshot')[0].devices[0].channels).toEqual([{ key: 't', unit: 'u', periodMs: 0, last: [2, 20] }]);
    fanout.readings('d1', [reading('d1', 't', 3, 30)]);
    vi.advanceTimersByTime(TICK);
    expect(c.ofType('data').map((m) => m.updates.d1.t)).toEqual([[[3, 30]]]);
  });
  it('answers subscribed before the snapshot, and unsubscribe stops deltas', () => {
    const socket = new RecordingSocket();
    const c = fanout.addClient(socket, 'viewer');
    fanout.receive(c, JSON.stringify({ type: 'subscribe', sub: 'f' }));
    expect(socket.messages().map((m) => m.type)).toEqual(['hello', 'subscribed', 'snapshot']);
    fanout.receive(c, JSON.stringify({ type: 'unsubscribe', sub: 'f' }));
    expect(socket.messages().at(-1)).toEqual({ type: 'unsubscribed', sub: 'f' });
    fanout.readings('d1', [reading('d1', 't', 1, 1)]);
    vi.advanceTimersByTime(TICK);
    expect(socket.ofType('data')).toHaveLength(0);
  });
});

describe('events', () => {
  it('sends presence and command events after the tick data, to clients covering the device', () => {
    const fleet = client([{ sub: 'f' }]);
    const other = client([{ sub: 'o', device: 'd2' }]);
    fanout.readings('d1', [reading('d1', 't', 1, 1)]);
    fanout.online({ deviceId: 'd1', firmwareVersion: '1.0', bootId: 1, timeSynced: true, atMs: Date.now() });
    fanout.command({
      type: 'command',
      device: 'd1',
      commandId: 5,
      name: 'identify',
      state: 'done',
      status: 0,
      atMs: 1,
    });
    vi.advanceTimersByTime(TICK);
    const types = fleet.messages().map((m) => m.type);
    expect(types.slice(-3)).toEqual(['data', 'presence', 'command']);
    expect(other.ofType('presence')).toHaveLength(0);
    expect(other.ofType('command')).toHaveLength(0);
  });

  it('an offline device does not come back online from late readings, and replaced sessions are ignored', () => {
    const c = client([{ sub: 'f' }]);
    fanout.online({ deviceId: 'd1', firmwareVersion: '1.0', bootId: 1, timeSynced: true, atMs: Date.now() });
    fanout.offline({ deviceId: 'd1', reason: 'replaced', atMs: Date.now() });
    vi.advanceTimersByTime(TICK);
    expect(c.ofType('presence').map((m) => m.state)).toEqual(['online']);
    fanout.offline({ deviceId: 'd1', reason: 'heartbeat', atMs: Date.now() });
    fanout.readings('d1', [reading('d1', 't', 1, 1)]);
    vi.advanceTimersByTime(TICK);
    expect(c.ofType('presence').map((m) => [m.state, m.reason])).toEqual([
      ['online', 'connected'],
      ['offline', 'heartbeat'],
    ]);
  });

  it('marks a silent device stale after ~3 of its data gaps and online again when data resumes', () => {
    const c = client([{ sub: 'f' }]);
    fanout.online({ deviceId: 'd1', firmwareVersion: '1.0', bootId: 1, timeSynced: true, atMs: Date.now() });
    for (let i = 0; i < 4; i++) {
      fanout.readings('d1', [reading('d1', 't', i, i)]);
      vi.advanceTimersByTime(1000);
    }
    expect(c.ofType('presence').map((m) => m.state)).toEqual(['online']);
    vi.advanceTimersByTime(2500); // 3.5 s since the last data: past 3 × the 1 s gap
    expect(c.ofType('presence').map((m) => [m.state, m.reason])).toEqual([
      ['online', 'connected'],
      ['stale', 'no_data'],
    ]);
    fanout.readings('d1', [reading('d1', 't', 9, 9)]);
    vi.advanceTimersByTime(TICK);
    expect(c.ofType('presence').at(-1)).toMatchObject({ state: 'online', reason: 'data_resumed' });
  });
});

describe('slow clients', () => {
  it('coalesces to the latest value per (device, channel) while above the high-water mark, then sends skipped + latest', async () => {
    const slow = client([{ sub: 'f', mode: 'all' }]);
    const fast = client([{ sub: 'f', mode: 'all' }]);
    slow.bufferedAmount = HW + 1;
    const sentBefore = slow.sent.length;
    fanout.readings('d1', [reading('d1', 't', 1, 1), reading('d1', 't', 2, 2)]);
    vi.advanceTimersByTime(TICK);
    fanout.readings('d1', [reading('d1', 't', 3, 3), reading('d1', 'h', 3, 30)]);
    fanout.online({ deviceId: 'd1', firmwareVersion: '1.0', bootId: 1, timeSynced: true, atMs: Date.now() });
    vi.advanceTimersByTime(TICK);
    expect(slow.sent.length).toBe(sentBefore); // nothing while behind
    expect(fast.ofType('data')).toHaveLength(2); // the other client is unaffected
    // Tick 1: 2 samples of t → 1 folded; tick 2: t overwrites → +1, h new.
    expect(await counter('hub_live_coalesced_updates_total')).toBe(2);

    slow.bufferedAmount = 0;
    vi.advanceTimersByTime(TICK);
    const after = slow.messages().slice(sentBefore);
    expect(after.map((m) => m.type)).toEqual(['skipped', 'data', 'presence']);
    expect(after[0]).toEqual({ type: 'skipped', fromTick: 1, toTick: 2, samples: 2 });
    expect(after[1].updates).toEqual({ d1: { t: [[3, 3]], h: [[3, 30]] } });
    // Caught up: back on the shared messages.
    fanout.readings('d1', [reading('d1', 't', 4, 4)]);
    vi.advanceTimersByTime(TICK);
    expect(slow.sent.at(-1)).toBe(fast.sent.at(-1));
  });

  it('evicts a client that stays above the mark for drainTimeoutMs, counted by reason', async () => {
    const slow = client([{ sub: 'f' }]);
    const fast = client([{ sub: 'f' }]);
    slow.bufferedAmount = HW + 1;
    fanout.readings('d1', [reading('d1', 't', 1, 1)]);
    vi.advanceTimersByTime(TICK);
    vi.advanceTimersByTime(DRAIN - TICK - 1);
    expect(slow.terminated).toBe(false);
    vi.advanceTimersByTime(DRAIN);
    expect(slow.terminated).toBe(true);
    expect(await counter('hub_live_evictions_total', { reason: 'drain_timeout' })).toBe(1);
    expect(fanout.clientCount).toBe(1);
    expect(await counter('hub_live_clients')).toBe(1);
    fanout.readings('d1', [reading('d1', 't', 2, 2)]);
    vi.advanceTimersByTime(TICK);
    expect(fast.ofType('data')).toHaveLength(2);
  });

  it('defers a snapshot requested while behind until the client drains', () => {
    const socket = new RecordingSocket();
    const c = fanout.addClient(socket, 'viewer');
    fanout.receive(c, JSON.stringify({ type: 'subscribe', sub: 'a' }));
    socket.bufferedAmount = HW + 1;
    fanout.readings('d1', [reading('d1', 't', 1, 1)]);
    vi.advanceTimersByTime(TICK);
    fanout.receive(c, JSON.stringify({ type: 'subscribe', sub: 'b', device: 'd1' }));
    expect(socket.ofType('snapshot').map((m) => m.sub)).toEqual(['a']);
    socket.bufferedAmount = 0;
    vi.advanceTimersByTime(TICK);
    expect(socket.ofType('snapshot').map((m) => m.sub)).toEqual(['a', 'b']);
  });
});

/** An accepted frame that counts how often it was decoded. */
function countingFrame(deviceId: string, readings: Reading[]): AcceptedFrame & { decodes: number } {
  const inner = readingsFrame(deviceId, readings, Date.now());
  const f = {
    decodes: 0,
    deviceId,
    receivedAtMs: inner.receivedAtMs,
    samples: inner.samples,
    channelCount: inner.channelCount,
    readings: () => inner.readings(),
    forEachSample(sink: SampleSink) {
      f.decodes++;
      inner.forEachSample(sink);
    },
  };
  return f;
}

describe('decoding off the hot path', () => {
  it('decodes nothing per frame while nobody covers the device; a read decodes only its newest frame', () => {
    client([{ sub: 'other', device: 'd2' }]);
    const frames = [1, 2, 3].map((t) => countingFrame('d1', [reading('d1', 't', t, t * 10)]));
    for (const f of frames) fanout.accepted('d1', f);
    vi.advanceTimersByTime(TICK);
    expect(frames.map((f) => f.decodes)).toEqual([0, 0, 0]);
    // The state still knows the device had data (presence), and its latest value when read.
    const d = state.devices.get('d1');
    expect(d?.lastDataMs).toBe(Date.now() - TICK);
    expect(state.view(d as NonNullable<typeof d>, false).channels[0]?.last).toEqual([3, 30]);
    expect(frames.map((f) => f.decodes)).toEqual([0, 0, 1]);
  });

  it('latest mode decodes only the newest frame of a tick when it holds every channel; all mode decodes each', () => {
    const latest = client([{ sub: 'f' }]);
    const frames = [1, 2, 3].map((t) => countingFrame('d1', [reading('d1', 't', t, t), reading('d1', 'h', t, -t)]));
    for (const f of frames) fanout.accepted('d1', f);
    vi.advanceTimersByTime(TICK);
    expect(frames.map((f) => f.decodes)).toEqual([0, 0, 1]);
    expect(latest.ofType('data')[0].updates).toEqual({ d1: { t: [[3, 3]], h: [[3, -3]] } });

    const all = client([{ sub: 'a', device: 'd1', channels: ['t'], mode: 'all' }]);
    const more = [4, 5].map((t) => countingFrame('d1', [reading('d1', 't', t, t), reading('d1', 'h', t, -t)]));
    for (const f of more) fanout.accepted('d1', f);
    vi.advanceTimersByTime(TICK);
    expect(more.map((f) => f.decodes)).toEqual([1, 1]);
    expect(all.ofType('data')[0].updates).toEqual({
      d1: {
        t: [
          [4, 4],
          [5, 5],
        ],
      },
    });
    expect(latest.ofType('data')[1].updates).toEqual({ d1: { t: [[5, 5]], h: [[5, -5]] } });
  });

  it('keeps the sparkline trail of a device nobody watches through the presence sweep', () => {
    for (let t = 0; t < 3; t++) {
      fanout.readings('d1', [reading('d1', 't', Date.now(), t)]);
      vi.advanceTimersByTime(1000);
    }
    const d = state.devices.get('d1') as NonNullable<ReturnType<typeof state.devices.get>>;
    expect(d.deferred).toBeNull(); // applied by the sweep, not by a read
    expect(state.view(d, true).channels[0]?.trail?.map((s) => s[1])).toEqual([0, 1, 2]);
  });
});

describe('limits', () => {
  it('refuses subscriptions beyond maxSubscriptions with an error naming the sub', () => {
    const socket = client([{ sub: 'a' }, { sub: 'b' }, { sub: 'c' }, { sub: 'd' }]);
    const errors = socket.ofType('error');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'BAD_REQUEST', sub: 'd' });
    // Re-subscribing an existing id replaces it and is not refused.
    expect(socket.ofType('subscribed').map((m) => m.sub)).toEqual(['a', 'b', 'c']);
  });

  it('answers malformed messages with an error and closes a client that floods', async () => {
    const socket = new RecordingSocket();
    const c = fanout.addClient(socket, 'viewer');
    fanout.receive(c, 'not json');
    fanout.receive(c, JSON.stringify({ type: 'subscribe', sub: 'a', device: 'bad id!' }));
    expect(socket.ofType('error').map((m) => m.message)).toEqual(['message is not JSON', 'device: not a device id']);
    for (let i = 0; i < 100; i++) fanout.receive(c, JSON.stringify({ type: 'ping' }));
    expect(socket.closed).toEqual({ code: 1008, reason: 'too many messages' });
    expect(await counter('hub_live_evictions_total', { reason: 'inbound_rate' })).toBe(1);
  });
});

describe('adaptive tick', () => {
  /** A fan-out with a 1..TICK ms gap whose ticks each "take" `cost()` ms on the work clock. */
  function adaptive(cost: () => number): LiveFanout {
    fanout.stop(); // the default one from beforeEach
    let t = 0;
    const f = new LiveFanout({
      state,
      metrics,
      logger: createLogger('silent'),
      tickMs: TICK,
      minTickMs: 1,
      // Called at a tick's start and end: each tick measures exactly `cost()`.
      workClock: () => {
        t += cost();
        return t;
      },
      highWaterBytes: HW,
      drainTimeoutMs: DRAIN,
      maxSubscriptions: 3,
    });
    f.start();
    fanout = f;
    return f;
  }

  it('cheap ticks: the next one may start TICK_COST_FACTOR × the last tick’s work after it', () => {
    const f = adaptive(() => 2);
    const c = client([{ sub: 'f', mode: 'all' }]);
    vi.advanceTimersByTime(10 * TICK);
    f.readings('d1', [reading('d1', 't', 1, 1)]);
    vi.advanceTimersByTime(0); // idle: on the next turn
    expect(c.ofType('data')).toHaveLength(1);
    f.readings('d1', [reading('d1', 't', 2, 2)]);
    f.readings('d1', [reading('d1', 't', 3, 3)]);
    const gap = TICK_COST_FACTOR * 2;
    vi.advanceTimersByTime(gap - 1);
    expect(c.ofType('data')).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(c.ofType('data').map((m) => m.updates.d1.t)).toEqual([
      [[1, 1]],
      [
        [2, 2],
        [3, 3],
      ],
    ]);
  });

  it('expensive ticks coalesce for at most tickMs', () => {
    const f = adaptive(() => TICK);
    const c = client([{ sub: 'f' }]);
    vi.advanceTimersByTime(10 * TICK);
    f.readings('d1', [reading('d1', 't', 1, 1)]);
    vi.advanceTimersByTime(0);
    f.readings('d1', [reading('d1', 't', 2, 2)]);
    vi.advanceTimersByTime(TICK - 1);
    expect(c.ofType('data')).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(c.ofType('data')).toHaveLength(2);
  });

  it('still builds one buffer per subscription set and sends it to every client', () => {
    const f = adaptive(() => 0.1);
    const a = client([{ sub: 'f' }]);
    const b = client([{ sub: 'g' }]);
    f.readings('d1', [reading('d1', 't', 1, 20)]);
    vi.advanceTimersByTime(TICK);
    expect(a.sent.at(-1)).toBe(b.sent.at(-1));
    expect(JSON.parse(String(a.sent.at(-1)))).toEqual({ type: 'data', tick: 1, updates: { d1: { t: [[1, 20]] } } });
  });
});
