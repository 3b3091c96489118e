// The ingest's two readings events with a local log whose group commits the test completes by hand:
// `readings:accepted` when a frame is handed to the log (commit still pending), `readings` only after
// the commit, nothing early for refused frames, nothing after a failed commit, and no decoding at all
// when nobody listens or when the accepted frame's listener does not ask for its values (the live view
// keeps a reference and decodes later, only what is subscribed). Deterministic: no timers, no disk.
import { beforeEach, describe, expect, it, vi } from 'vitest';
import {
  type ChannelDescriptor,
  decodeFrame,
  descriptorHash,
  encodeFrame,
  type Hello,
  type Telemetry,
  ValueType,
} from '../../server/codec/index.ts';
import { configFrom } from '../../server/config/index.ts';
import type { HubError } from '../../server/errors.ts';
import { type AcceptedFrame, HubEventBus } from '../../server/events.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics } from '../../server/metrics/index.ts';
import { createIngest, type Ingest, type TelemetryDone } from '../../server/pipeline/ingest.ts';
import { telemetryToReadings } from '../../server/pipeline/readings.ts';
import type { AppendCallback, LocalLog } from '../../server/storage/local-log.ts';
import type { Reading } from '../../server/storage/types.ts';

// Counts how often frames are turned into readings (the decode the ingest must skip when unobserved).
vi.mock('../../server/pipeline/readings.ts', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../../server/pipeline/readings.ts')>();
  return { ...actual, telemetryToReadings: vi.fn(actual.telemetryToReadings) };
});

const CHANNELS: ChannelDescriptor[] = [
  { index: 0, key: 'temperature', unit: '°C', valueType: ValueType.I16, scaleExp: -2, periodMs: 1000 },
  { index: 1, key: 'voltage', unit: 'V', valueType: ValueType.F32, scaleExp: 0, periodMs: 1000 },
];
const HASH = descriptorHash(CHANNELS);
const DEVICE = 'esp-events';
const BOOT = 7;
const NOW = 1_716_200_000_000;

/** A local log that queues completions until the test commits (or fails) the group. */
class HeldLog {
  full = false;
  readonly pending: { done: AppendCallback; offset: number }[] = [];
  #offset = 0;
  readonly #descriptors = new Map<string, ChannelDescriptor[]>();
  readonly #failListeners: ((err: Error) => void)[] = [];
  /** Settles every pending append; a failure then runs the commit-failed listeners, as the real log does. */
  commit(err: Error | null = null): void {
    for (const p of this.pending.splice(0)) p.done(err, err ? 0 : p.offset);
    if (err) for (const l of this.#failListeners) l(err);
  }
  asLog(): LocalLog {
    const partial: Partial<LocalLog> = {
      loadDevice: () => ({ record: null, boots: new Map() }),
      putDevice: () => undefined,
      putBoot: () => undefined,
      removeBoot: () => undefined,
      putDescriptors: (id, hash, channels) => void this.#descriptors.set(`${id}/${hash}`, channels),
      lookupDescriptors: (id, hash) => this.#descriptors.get(`${id}/${hash}`),
      isFull: () => this.full,
      append: (_entry, done) => void this.pending.push({ done, offset: ++this.#offset }),
      barrier: (done) => void this.pending.push({ done: (err) => done(err, 0), offset: 0 }),
      onCommitFailed: (listener) => {
        this.#failListeners.push(listener);
        return () => undefined;
      },
    };
    return partial as LocalLog;
  }
}

function frame(seq: number): Uint8Array {
  const t: Telemetry = {
    type: 'telemetry',
    unsynced: false,
    bootId: BOOT,
    seq,
    descriptorHash: HASH,
    baseTime: NOW - 10_000 + seq * 1000,
    blocks: [
      { channel: 0, valueType: ValueType.I16, deltasMs: [0, 500], values: [2000 + seq, 2001 + seq] },
      { channel: 1, valueType: ValueType.F32, deltasMs: [0, 500], values: [3.25, 3.5] },
    ],
  };
  return encodeFrame(t);
}

function expected(seq: number): Reading[] {
  const base = NOW - 10_000 + seq * 1000;
  return [
    { deviceId: DEVICE, channel: 'temperature', unit: '°C', timeMs: base, value: (2000 + seq) / 100 },
    { deviceId: DEVICE, channel: 'temperature', unit: '°C', timeMs: base + 500, value: (2001 + seq) / 100 },
    { deviceId: DEVICE, channel: 'voltage', unit: 'V', timeMs: base, value: 3.25 },
    { deviceId: DEVICE, channel: 'voltage', unit: 'V', timeMs: base + 500, value: 3.5 },
  ];
}

const HELLO: Hello = {
  type: 'hello',
  timeSynced: true,
  deviceId: DEVICE,
  firmwareVersion: 'test',
  maxProtocolVersion: 1,
  bootId: BOOT,
  resetReason: 1,
  uptimeMs: 3_600_000,
  descriptorHash: HASH,
  bufferedFrames: 0,
  droppedFrames: 0,
};

let log: HeldLog;
let bus: HubEventBus;
let ingest: Ingest;
/** Every event and completion, in the order they happened. */
let trail: string[];
let outcomes: { seq: number; err: HubError | null; outcome: string }[];

function store(seq: number): void {
  const bytes = frame(seq);
  const scan = ingest.scan(DEVICE, bytes);
  const done: TelemetryDone = (err, outcome) => {
    trail.push(`done ${seq}${err ? ` ${err.code}` : ''}`);
    outcomes.push({ seq, err, outcome });
  };
  ingest.store(DEVICE, bytes, scan, NOW, done);
}

beforeEach(() => {
  vi.mocked(telemetryToReadings).mockClear();
  log = new HeldLog();
  bus = new HubEventBus();
  trail = [];
  outcomes = [];
  ingest = createIngest({
    log: log.asLog(),
    metrics: createMetrics(),
    bus,
    devices: configFrom({}).devices,
    logger: createLogger('silent'),
    now: () => NOW,
  });
  ingest.hello(DEVICE, HELLO, NOW);
  ingest.descriptors(DEVICE, HASH, CHANNELS);
  log.commit(); // the descriptors' barrier
});

describe('readings events of the ingest', () => {
  it('emits readings:accepted while the commit is pending, readings (the same values) after it', () => {
    const accepted: Reading[][] = [];
    const committed: Reading[][] = [];
    bus.on('readings:accepted', (id, frame) => {
      trail.push(`accepted ${id}`);
      accepted.push(frame.readings());
    });
    bus.on('readings', (id, rs) => {
      trail.push(`readings ${id}`);
      committed.push(rs);
    });
    store(1);
    store(2);
    // Both frames are handed to the log; neither is committed nor acknowledged yet.
    expect(log.pending).toHaveLength(2);
    expect(accepted).toEqual([expected(1), expected(2)]);
    expect(committed).toEqual([]);
    expect(outcomes).toEqual([]);

    log.commit();
    expect(committed).toEqual([expected(1), expected(2)]);
    expect(trail).toEqual([
      `accepted ${DEVICE}`,
      `accepted ${DEVICE}`,
      `readings ${DEVICE}`,
      'done 1',
      `readings ${DEVICE}`,
      'done 2',
    ]);
    expect(outcomes.map((o) => o.outcome)).toEqual(['stored', 'stored']);
    // Decoded once per frame although two events carried the readings.
    expect(telemetryToReadings).toHaveBeenCalledTimes(2);
  });

  it('decodes nothing when nobody listens to either event', () => {
    store(1);
    log.commit();
    expect(outcomes).toEqual([{ seq: 1, err: null, outcome: 'stored' }]);
    expect(telemetryToReadings).not.toHaveBeenCalled();
  });

  it('readings:accepted carries the frame undecoded: a listener that keeps it costs no decode', () => {
    const kept: unknown[] = [];
    bus.on('readings:accepted', (_id, frame) => kept.push(frame));
    store(1);
    store(2);
    log.commit();
    expect(kept).toHaveLength(2);
    expect(outcomes.map((o) => o.outcome)).toEqual(['stored', 'stored']);
    expect(telemetryToReadings).not.toHaveBeenCalled();
  });

  it('the accepted frame decodes on demand: the same samples as its readings, with arrival time and counts', () => {
    const frames: AcceptedFrame[] = [];
    bus.on('readings:accepted', (_id, frame) => frames.push(frame));
    store(1);
    const f = frames[0] as AcceptedFrame;
    expect(f).toMatchObject({ deviceId: DEVICE, receivedAtMs: NOW, samples: expected(1).length, channelCount: 2 });
    const visited: Reading[] = [];
    f.forEachSample({
      sample: (channel, unit, timeMs, value) => visited.push({ deviceId: DEVICE, channel, unit, timeMs, value }),
    });
    expect(visited).toEqual(expected(1));
    expect(f.readings()).toEqual(expected(1));
    expect(f.readings()).toBe(f.readings()); // cached
  });

  it('a failed commit: the early event was emitted, no readings follow, the frame fails with INTERNAL', () => {
    const accepted: Reading[][] = [];
    const committed: Reading[][] = [];
    bus.on('readings:accepted', (_id, frame) => accepted.push(frame.readings()));
    bus.on('readings', (_id, rs) => committed.push(rs));
    store(1);
    expect(accepted).toEqual([expected(1)]);
    log.commit(new Error('disk gone'));
    expect(committed).toEqual([]);
    expect(outcomes).toHaveLength(1);
    expect(outcomes[0]?.err?.code).toBe('INTERNAL');
  });

  it('after a failed commit the replay of that frame is stored, not taken for a duplicate', () => {
    store(1);
    log.commit(new Error('disk gone'));
    store(1); // the device replays what was never acknowledged
    log.commit();
    expect(outcomes.map((o) => [o.seq, o.err?.code ?? null, o.outcome])).toEqual([
      [1, 'INTERNAL', 'stored'],
      [1, null, 'stored'],
    ]);
  });

  it('frames refused before acceptance (STORAGE_FULL, unknown descriptors, duplicates) emit nothing', () => {
    const accepted: Reading[][] = [];
    bus.on('readings:accepted', (_id, frame) => accepted.push(frame.readings()));
    store(1);
    log.commit();
    expect(accepted).toHaveLength(1);

    // A replay of an already stored frame: acknowledged again, not shown again.
    store(1);
    log.commit();
    expect(outcomes.at(-1)).toEqual({ seq: 1, err: null, outcome: 'duplicate' });

    log.full = true;
    expect(() => store(2)).toThrow(expect.objectContaining({ code: 'STORAGE_FULL' }));
    log.full = false;

    const other = encodeFrame({ ...(decodeFrame(frame(2)) as Telemetry), descriptorHash: (HASH ^ 1) >>> 0 });
    expect(() => ingest.store(DEVICE, other, ingest.scan(DEVICE, other), NOW, () => undefined)).toThrow(
      expect.objectContaining({ code: 'UNKNOWN_DESCRIPTORS' }),
    );
    expect(accepted).toHaveLength(1);
    expect(log.pending).toHaveLength(0);
  });

  it('a throwing readings:accepted listener does not fail the frame', () => {
    bus.on('readings:accepted', () => {
      throw new Error('view bug');
    });
    expect(() => store(1)).not.toThrow();
    log.commit();
    expect(outcomes).toEqual([{ seq: 1, err: null, outcome: 'stored' }]);
  });
});
