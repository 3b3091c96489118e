/**
 * The reused-boot-id rule [PROTO-3.4.3] at its edges, with the real ingest on a real local log: a
 * board up for a month whose uptime clock drifted 500 ppm from the hub's is still the same boot; a HELLO
 * of a boot that started after the boot's first stored frame is a new boot; the decision survives a
 * restart of the hub. And the dedupe state of the current boot and of boots a device left survives a
 * restart (a boot's highest seq is persisted through the device record's last ACK).
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
import { HubEventBus } from '../../server/events.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics } from '../../server/metrics/index.ts';
import { createIngest } from '../../server/pipeline/ingest.ts';
import { type LocalLog, openLocalLog } from '../../server/storage/local-log.ts';

const CHANNELS: ChannelDescriptor[] = [
  { index: 0, key: 'temperature', unit: '°C', valueType: ValueType.I16, scaleExp: -1, periodMs: 1000 },
];
const HASH = descriptorHash(CHANNELS);
const T0 = 1_716_200_000_000;
const DAY = 86_400_000;
const BOOT = 99;

const dirs: string[] = [];
const logs: LocalLog[] = [];
afterEach(async () => {
  for (const l of logs.splice(0)) await l.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function open(dir: string, clock: { now: number }) {
  const metrics = createMetrics();
  const log = openLocalLog({
    dataDir: dir,
    maxBytes: 64 * 1024 * 1024,
    retentionHours: 24 * 60,
    fullPolicy: 'backpressure',
    forwarding: false,
    metrics,
    logger: createLogger('silent'),
    maintenanceIntervalMs: 3_600_000,
    now: () => clock.now,
    freeBytes: () => 1024 ** 4,
  });
  logs.push(log);
  const bus = new HubEventBus();
  const reused: number[] = [];
  bus.on('device:boot-reused', (_id, bootId) => reused.push(bootId));
  const ingest = createIngest({
    log,
    metrics,
    bus,
    devices: configFrom({}).devices,
    logger: createLogger('silent'),
    now: () => clock.now,
  });
  return { log, ingest, reused };
}

const hello = (uptimeMs: number, bootId = BOOT): Hello => ({
  type: 'hello',
  deviceId: 'dev',
  firmwareVersion: '1',
  maxProtocolVersion: 1,
  bootId,
  resetReason: 1,
  uptimeMs,
  descriptorHash: HASH,
  bufferedFrames: 0,
  droppedFrames: 0,
  timeSynced: true,
});

/** Stores one frame and waits for its commit (each frame in a group of its own). */
async function store(
  ingest: ReturnType<typeof createIngest>,
  seq: number,
  atMs: number,
  bootId = BOOT,
): Promise<string> {
  const f = encodeFrame({
    type: 'telemetry',
    unsynced: false,
    bootId,
    seq,
    descriptorHash: HASH,
    baseTime: atMs - 500,
    blocks: [{ channel: 0, valueType: ValueType.I16, deltasMs: [0], values: [seq] }],
  });
  return new Promise((resolve, reject) =>
    ingest.store('dev', f, ingest.scan('dev', f), atMs, (err, outcome) => (err ? reject(err) : resolve(outcome))),
  );
}

describe('boot ids and their dedupe state', () => {
  it('a month of uptime with 500 ppm drift is the same boot; a boot younger than its frames is not', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'boot-reuse-'));
    dirs.push(dir);
    const clock = { now: T0 };
    let { ingest, reused, log } = open(dir, clock);
    ingest.hello('dev', hello(1000), clock.now);
    ingest.descriptors('dev', HASH, CHANNELS);
    expect(await store(ingest, 1, clock.now)).toBe('stored');

    // 30 days later, the same boot reconnects; its uptime clock ran 500 ppm slow (1296 s behind).
    clock.now = T0 + 30 * DAY;
    const driftedUptime = 1000 + 30 * DAY * (1 - 500e-6);
    expect(ingest.hello('dev', hello(driftedUptime), clock.now).lastAck).toEqual({ bootId: BOOT, seq: 1 });
    expect(await store(ingest, 1, T0)).toBe('duplicate');
    expect(reused).toEqual([]);

    // A restart of the hub, then a HELLO of a boot up for a minute: it started 30 days after the boot's
    // first frame, so it is a new boot that drew the same id.
    await log.close();
    logs.splice(logs.indexOf(log), 1);
    ({ ingest, reused, log } = open(dir, clock));
    expect(ingest.hello('dev', hello(60_000), clock.now).lastAck).toBeNull();
    expect(reused).toEqual([BOOT]);
    expect(await store(ingest, 1, clock.now)).toBe('stored');

    // The fresh start is durable: after another restart the new boot's position is what WELCOME says.
    await log.close();
    logs.splice(logs.indexOf(log), 1);
    ({ ingest, reused } = open(dir, clock));
    expect(ingest.hello('dev', hello(61_000), clock.now + 1000).lastAck).toEqual({ bootId: BOOT, seq: 1 });
    expect(reused).toEqual([]);
  });

  it('frames of the current boot and of a boot the device left stay duplicates after a restart', async () => {
    // A boot's highest seq is persisted through the device record's last ACK; the boot state itself
    // is written only when more changes or when the device moves to another boot.
    const dir = mkdtempSync(join(tmpdir(), 'boot-state-'));
    dirs.push(dir);
    const clock = { now: T0 };
    let { ingest, log } = open(dir, clock);
    const restart = async () => {
      await log.close();
      logs.splice(logs.indexOf(log), 1);
      ({ ingest, log } = open(dir, clock));
    };
    const expectDuplicates = async (frames: [bootId: number, seq: number][]) => {
      for (const [bootId, seq] of frames) expect(await store(ingest, seq, T0, bootId)).toBe('duplicate');
    };
    ingest.hello('dev', hello(60_000, 7), T0);
    ingest.descriptors('dev', HASH, CHANNELS);
    for (let seq = 1; seq <= 5; seq++) expect(await store(ingest, seq, T0, 7)).toBe('stored');

    await restart();
    expect(ingest.hello('dev', hello(60_000, 7), T0).lastAck).toEqual({ bootId: 7, seq: 5 });
    await expectDuplicates([
      [7, 1],
      [7, 3],
      [7, 5],
    ]);
    expect(await store(ingest, 6, T0, 7)).toBe('stored');

    // The device reboots (boot 8); boot 7 is left behind.
    ingest.hello('dev', hello(60_000, 8), T0);
    for (let seq = 1; seq <= 3; seq++) expect(await store(ingest, seq, T0, 8)).toBe('stored');
    await restart();
    expect(ingest.hello('dev', hello(60_000, 8), T0).lastAck).toEqual({ bootId: 8, seq: 3 });
    await expectDuplicates([
      [7, 4],
      [7, 6],
      [8, 3],
    ]);

    // Its outbox still held a frame of boot 7: stored between frames of boot 8.
    expect(await store(ingest, 7, T0, 7)).toBe('stored');
    expect(await store(ingest, 4, T0, 8)).toBe('stored');
    await restart();
    expect(ingest.hello('dev', hello(60_000, 8), T0).lastAck).toEqual({ bootId: 8, seq: 4 });
    await expectDuplicates([
      [7, 7],
      [8, 2],
      [8, 4],
    ]);
    expect(await store(ingest, 5, T0, 8)).toBe('stored');
    expect(await store(ingest, 8, T0, 7)).toBe('stored');
  });
});
