/**
 * The reused-boot-id rule [PROTO-3.4.3] at its edges, with the real ingest on a real local log: a
 * board up for a month whose uptime clock drifted 500 ppm from the hub's is still the same boot; a HELLO
 * of a boot that started after the boot's first stored frame is a new boot; the decision survives a
 * restart of the hub.
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

const hello = (uptimeMs: number): Hello => ({
  type: 'hello',
  deviceId: 'dev',
  firmwareVersion: '1',
  maxProtocolVersion: 1,
  bootId: BOOT,
  resetReason: 1,
  uptimeMs,
  descriptorHash: HASH,
  bufferedFrames: 0,
  droppedFrames: 0,
  timeSynced: true,
});

async function store(ingest: ReturnType<typeof createIngest>, seq: number, atMs: number): Promise<string> {
  const f = encodeFrame({
    type: 'telemetry',
    unsynced: false,
    bootId: BOOT,
    seq,
    descriptorHash: HASH,
    baseTime: atMs - 500,
    blocks: [{ channel: 0, valueType: ValueType.I16, deltasMs: [0], values: [seq] }],
  });
  return new Promise((resolve, reject) =>
    ingest.store('dev', f, ingest.scan('dev', f), atMs, (err, outcome) => (err ? reject(err) : resolve(outcome))),
  );
}

describe('reused boot ids', () => {
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
});
