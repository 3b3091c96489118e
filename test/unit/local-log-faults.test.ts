/**
 * Failed commits at the storage boundary, on a real lmdb environment with the real ingest: commits are
 * held or failed through `LocalLogOptions.faults` exactly where a disk error would strike.
 *
 * - A frame queued behind a failed commit is never acknowledged, and no state past the failed frame
 *   reaches the disk (WELCOME would report it, and the replay would be dropped as a duplicate).
 * - A failed commit leaves no phantom counters (head, bytes, frames) and no cached descriptor set.
 * - A throwing completion callback or bus listener strands nobody else.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type ChannelDescriptor,
  descriptorHash,
  encodeFrame,
  type Hello,
  ValueType,
} from '../../server/codec/index.ts';
import { configFrom } from '../../server/config/index.ts';
import type { HubError } from '../../server/errors.ts';
import { HubEventBus } from '../../server/events.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics, type Metrics } from '../../server/metrics/index.ts';
import { createIngest, type Ingest, type TelemetryOutcome } from '../../server/pipeline/ingest.ts';
import { type LocalLog, type LocalLogOptions, openLocalLog } from '../../server/storage/local-log.ts';

const CHANNELS: ChannelDescriptor[] = [
  { index: 0, key: 'temperature', unit: '°C', valueType: ValueType.I16, scaleExp: -1, periodMs: 1000 },
];
const HASH = descriptorHash(CHANNELS);
const NOW = 1_716_200_000_000;
const BOOT = 41;

/** Commits the test holds, fails or lets through, in the order the log asks for them. */
class CommitGate {
  private held: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private waiters: (() => void)[] = [];
  /** When true, every commit waits for `release`/`fail`; otherwise commits go through at once. */
  holding = false;
  readonly faults: NonNullable<LocalLogOptions['faults']> = {
    beforeCommit: () => {
      if (!this.holding) return;
      return new Promise<void>((resolve, reject) => {
        this.held.push({ resolve, reject });
        for (const w of this.waiters.splice(0)) w();
      });
    },
  };
  /** Resolves once `n` commits are being held. */
  async waitHeld(n = 1): Promise<void> {
    while (this.held.length < n) await new Promise<void>((r) => this.waiters.push(r));
  }
  release(): void {
    this.held.shift()?.resolve();
  }
  fail(err = new Error('EIO: injected disk error')): void {
    this.held.shift()?.reject(err);
  }
}

const dirs: string[] = [];
const logs: LocalLog[] = [];
afterEach(async () => {
  for (const l of logs.splice(0)) await l.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup(gate: CommitGate, dataDir?: string) {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'local-log-faults-'));
  if (!dataDir) dirs.push(dir);
  const metrics = createMetrics();
  const log = openLocalLog({
    dataDir: dir,
    maxBytes: 64 * 1024 * 1024,
    retentionHours: 24,
    fullPolicy: 'backpressure',
    forwarding: false,
    metrics,
    logger: createLogger('silent'),
    maintenanceIntervalMs: 3_600_000,
    faults: gate.faults,
    minFreeBytes: 1024 * 1024,
    freeBytes: () => 1024 ** 4,
  });
  logs.push(log);
  const bus = new HubEventBus();
  const ingest = createIngest({
    log,
    metrics,
    bus,
    devices: configFrom({}).devices,
    logger: createLogger('silent'),
    now: () => NOW,
  });
  return { dir, log, metrics, bus, ingest };
}

const HELLO: Hello = {
  type: 'hello',
  deviceId: 'dev-a',
  firmwareVersion: '1.0.0',
  maxProtocolVersion: 1,
  bootId: BOOT,
  resetReason: 1,
  uptimeMs: 60_000,
  descriptorHash: HASH,
  bufferedFrames: 0,
  droppedFrames: 0,
  timeSynced: true,
};

function frame(seq: number, deviceBoot = BOOT): Uint8Array {
  return encodeFrame({
    type: 'telemetry',
    unsynced: false,
    bootId: deviceBoot,
    seq,
    descriptorHash: HASH,
    baseTime: NOW - 30_000 + seq * 1000,
    blocks: [{ channel: 0, valueType: ValueType.I16, deltasMs: [0], values: [200 + seq] }],
  });
}

interface Outcome {
  deviceId: string;
  seq: number;
  err: string | null;
  outcome: TelemetryOutcome;
}

function storeFrame(ingest: Ingest, deviceId: string, seq: number, out: Outcome[]): void {
  const f = frame(seq);
  ingest.store(deviceId, f, ingest.scan(deviceId, f), NOW, (err: HubError | null, outcome) =>
    out.push({ deviceId, seq, err: err?.code ?? null, outcome }),
  );
}

async function settled(out: Outcome[], n: number): Promise<void> {
  for (let i = 0; i < 500 && out.length < n; i++) await new Promise((r) => setTimeout(r, 5));
  expect(out).toHaveLength(n);
}

describe('a failed commit at the storage boundary', () => {
  it('fails every frame queued behind it: none is acknowledged, no state past it reaches the disk', async () => {
    const gate = new CommitGate();
    const { dir, log, ingest } = setup(gate);
    ingest.hello('dev-a', HELLO, NOW);
    ingest.descriptors('dev-a', HASH, CHANNELS);
    const out: Outcome[] = [];
    storeFrame(ingest, 'dev-a', 1, out);
    await settled(out, 1); // seq 1 durable
    gate.holding = true;
    storeFrame(ingest, 'dev-a', 2, out); // group A (held)
    await gate.waitHeld(1);
    storeFrame(ingest, 'dev-a', 3, out); // group B, queued behind A
    storeFrame(ingest, 'dev-a', 4, out);
    gate.holding = false;
    gate.fail();
    await settled(out, 4);
    expect(out.map((o) => [o.seq, o.err])).toEqual([
      [1, null],
      [2, 'INTERNAL'],
      [3, 'INTERNAL'],
      [4, 'INTERNAL'],
    ]);

    // A new session: WELCOME reports seq 1, and the replay of 2..4 is stored, not taken for duplicates.
    expect(ingest.hello('dev-a', HELLO, NOW).lastAck).toEqual({ bootId: BOOT, seq: 1 });
    for (const seq of [2, 3, 4]) storeFrame(ingest, 'dev-a', seq, out);
    await settled(out, 7);
    expect(out.slice(4).map((o) => [o.seq, o.err, o.outcome])).toEqual([
      [2, null, 'stored'],
      [3, null, 'stored'],
      [4, null, 'stored'],
    ]);

    // And on disk, after a restart, the state agrees with the frames.
    await log.close();
    logs.splice(logs.indexOf(log), 1);
    const reopened = setup(new CommitGate(), dir);
    expect(reopened.log.loadDevice('dev-a').record?.lastAck).toEqual({ bootId: BOOT, seq: 4 });
    expect(reopened.log.readAfter(0, 100).map((e) => e.seq)).toEqual([1, 2, 3, 4]);
  });

  it('the persisted last ack never runs past a failed frame (a restart right after the failure)', async () => {
    const gate = new CommitGate();
    const { dir, log, ingest } = setup(gate);
    ingest.hello('dev-a', HELLO, NOW);
    ingest.descriptors('dev-a', HASH, CHANNELS);
    const out: Outcome[] = [];
    storeFrame(ingest, 'dev-a', 1, out);
    await settled(out, 1);
    gate.holding = true;
    storeFrame(ingest, 'dev-a', 2, out);
    await gate.waitHeld(1);
    storeFrame(ingest, 'dev-a', 3, out);
    gate.holding = false;
    gate.fail();
    await settled(out, 3);
    await log.close();
    logs.splice(logs.indexOf(log), 1);
    const reopened = setup(new CommitGate(), dir);
    expect(reopened.log.loadDevice('dev-a').record?.lastAck).toEqual({ bootId: BOOT, seq: 1 });
    expect(reopened.log.loadDevice('dev-a').boots.get(BOOT)?.highestSeq).toBe(1);
  });

  it('leaves no phantom counters and no cached descriptors', async () => {
    const gate = new CommitGate();
    const { dir, log, ingest } = setup(gate);
    ingest.hello('dev-a', HELLO, NOW);
    ingest.descriptors('dev-a', HASH, CHANNELS);
    const out: Outcome[] = [];
    storeFrame(ingest, 'dev-a', 1, out);
    await settled(out, 1);
    const before = log.stats();

    gate.holding = true;
    const otherChannels: ChannelDescriptor[] = [{ ...CHANNELS[0], key: 'pressure' } as ChannelDescriptor];
    const otherHash = descriptorHash(otherChannels);
    ingest.descriptors('dev-a', otherHash, otherChannels);
    for (const seq of [2, 3, 4, 5]) storeFrame(ingest, 'dev-a', seq, out);
    await gate.waitHeld(1);
    expect(log.lookupDescriptors('dev-a', otherHash)).toEqual(otherChannels); // usable while pending
    gate.holding = false;
    gate.fail();
    await settled(out, 5);

    const after = log.stats();
    expect({ head: after.headOffset, bytes: after.bytes, frames: after.frames }).toEqual({
      head: before.headOffset,
      bytes: before.bytes,
      frames: before.frames,
    });
    expect(log.lookupDescriptors('dev-a', otherHash)).toBeUndefined();

    // The next frame takes the next offset: no hole, and the persisted counters match after a restart.
    storeFrame(ingest, 'dev-a', 2, out);
    await settled(out, 6);
    expect(log.readAfter(0, 10).map((e) => e.offset)).toEqual([1, 2]);
    const live = log.stats();
    await log.close();
    logs.splice(logs.indexOf(log), 1);
    const reopened = setup(new CommitGate(), dir).log.stats();
    expect({ head: reopened.headOffset, bytes: reopened.bytes, frames: reopened.frames }).toEqual({
      head: live.headOffset,
      bytes: live.bytes,
      frames: live.frames,
    });
  });
});

describe('the flush', () => {
  it('no append callback (so no ACK) runs before the flush of its commit; the flush is waited for', async () => {
    let releaseFlush: (() => void) | null = null;
    let flushesHeld = 0;
    const gate = new CommitGate();
    gate.faults.beforeFlush = () => {
      flushesHeld++;
      return new Promise<void>((resolve) => {
        releaseFlush = resolve;
      });
    };
    const { ingest } = setup(gate);
    ingest.hello('dev-a', HELLO, NOW);
    ingest.descriptors('dev-a', HASH, CHANNELS);
    const out: Outcome[] = [];
    storeFrame(ingest, 'dev-a', 1, out);
    // The commit happened and its flush is held: the log must be waiting for it, with nothing settled.
    for (let i = 0; i < 500 && flushesHeld === 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(flushesHeld).toBe(1);
    for (let turn = 0; turn < 20; turn++) await new Promise((r) => setImmediate(r));
    expect(out).toEqual([]);
    (releaseFlush as (() => void) | null)?.();
    await settled(out, 1);
    expect(out[0]?.err).toBeNull();
  });
});

describe('isolated callbacks', () => {
  it('a throwing completion callback does not strand the other frames of its group', async () => {
    const gate = new CommitGate();
    const { log, metrics } = setup(gate);
    gate.holding = true;
    const calls: string[] = [];
    const entry = (deviceId: string, seq: number) => ({
      deviceId,
      bootId: BOOT,
      seq,
      receivedAtMs: NOW,
      timeOffsetMs: 0,
      frame: frame(seq),
      minTimeMs: NOW,
      maxTimeMs: NOW,
    });
    log.append(entry('dev-a', 1), () => {
      calls.push('a');
      throw new Error('session bug');
    });
    log.append(entry('dev-b', 1), (err) => calls.push(err ? 'b failed' : 'b'));
    log.barrier((err) => calls.push(err ? 'barrier failed' : 'barrier'));
    await gate.waitHeld(1);
    gate.holding = false;
    gate.release();
    for (let i = 0; i < 500 && calls.length < 3; i++) await new Promise((r) => setTimeout(r, 5));
    expect(calls).toEqual(['a', 'b', 'barrier']);
    expect(await counter(metrics, 'hub_callback_errors_total', { component: 'local-log' })).toBe(1);
  });

  it('a throwing bus listener does not keep the others from the event', async () => {
    const gate = new CommitGate();
    const { ingest, bus, metrics } = setup(gate);
    let reported = 0;
    bus.onListenerError = () => {
      reported++;
      metrics.callbackErrors.inc({ component: 'bus' });
    };
    const seen: string[] = [];
    bus.on('readings', () => {
      throw new Error('consumer bug');
    });
    bus.on('readings', (id) => seen.push(id));
    ingest.hello('dev-a', HELLO, NOW);
    ingest.descriptors('dev-a', HASH, CHANNELS);
    const out: Outcome[] = [];
    storeFrame(ingest, 'dev-a', 1, out);
    await settled(out, 1);
    expect(out[0]?.err).toBeNull();
    expect(seen).toEqual(['dev-a']);
    expect(reported).toBe(1);
  });
});

async function counter(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  const m = (await metrics.registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return Number(v?.value ?? 0);
}
