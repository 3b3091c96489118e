/**
 * One session per device across instances, and shared device state (server/cluster/sessions.ts), with
 * real device sessions (DeviceSession over a link the test drives), the real ingest on a real local
 * log, and an in-process ClusterStore at the module boundary (cluster-fake-store.ts): the joining
 * state, replacement by epoch, the merge of shared state at HELLO, agreed boot offsets, write-behind.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startCluster } from '../../server/cluster/index.ts';
import { type ClusterSessions, createClusterSessions, joinWaitMaxMs } from '../../server/cluster/sessions.ts';
import {
  type ChannelDescriptor,
  decodeFrame,
  descriptorHash,
  encodeFrame,
  type Message,
  ValueType,
} from '../../server/codec/index.ts';
import { configFrom } from '../../server/config/index.ts';
import { type AcceptedFrame, HubEventBus } from '../../server/events.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics, type Metrics } from '../../server/metrics/index.ts';
import { createCommandTracker } from '../../server/pipeline/commands.ts';
import { type AcceptedTelemetry, type ClusterIngest, createIngest } from '../../server/pipeline/ingest.ts';
import { type LocalLog, openLocalLog } from '../../server/storage/local-log.ts';
import {
  createSessionTable,
  DeviceSession,
  newSessionCounts,
  type SessionContext,
  type SessionTable,
} from '../../server/transport/device-session.ts';
import type { DeviceLink, LinkHandlers } from '../../server/transport/link.ts';
import { type TempDir, tempDir, until } from '../harness/index.ts';
import { FakeClusterStore, sharedBoot } from './cluster-fake-store.ts';

const CHANNELS: ChannelDescriptor[] = [
  { index: 0, key: 'temperature', unit: '°C', valueType: ValueType.I16, scaleExp: -1, periodMs: 1000 },
];
const HASH = descriptorHash(CHANNELS);
const T0 = 1_716_200_000_000;

class TestLink implements DeviceLink {
  readonly remoteAddress = '127.0.0.1';
  readonly bufferedAmount = 0;
  handlers: LinkHandlers | null = null;
  open = true;
  paused = false;
  closeCode: number | null = null;
  readonly received: Message[] = [];
  constructor(readonly transport: 'websocket' | 'mqtt' = 'websocket') {}
  attach(h: LinkHandlers): void {
    this.handlers = h;
  }
  isOpen(): boolean {
    return this.open;
  }
  send(frame: Uint8Array): void {
    this.received.push(decodeFrame(frame));
  }
  close(code: number, _reason: string, finalFrame?: Uint8Array): void {
    if (!this.open) return;
    if (finalFrame) this.send(finalFrame);
    this.open = false;
    this.closeCode = code;
    setImmediate(() => this.handlers?.closed(code));
  }
  terminate(): void {
    this.close(1006, 'terminated');
  }
  ping(): void {}
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  deliver(m: Message): void {
    this.handlers?.message(Buffer.from(encodeFrame(m)), true);
  }
  /** The device went away (no close handshake). */
  drop(): void {
    this.close(1006, 'lost');
  }
  welcome(): Extract<Message, { type: 'welcome' }> | undefined {
    return this.received.find((m) => m.type === 'welcome') as Extract<Message, { type: 'welcome' }> | undefined;
  }
  acks(): { bootId: number; seq: number }[] {
    return this.received.flatMap((m) => (m.type === 'ack' ? [{ bootId: m.bootId, seq: m.seq }] : []));
  }
  errors(): string[] {
    return this.received.flatMap((m) => (m.type === 'error' ? [String(m.code)] : []));
  }
}

const hello = (deviceId: string, bootId: number, uptimeMs: number, timeSynced = false): Message => ({
  type: 'hello',
  timeSynced,
  deviceId,
  firmwareVersion: 't',
  maxProtocolVersion: 1,
  bootId,
  resetReason: 1,
  uptimeMs,
  descriptorHash: HASH,
  bufferedFrames: 0,
  droppedFrames: 0,
});

const telemetry = (bootId: number, seq: number, baseTime: number, unsynced = true): Message => ({
  type: 'telemetry',
  unsynced,
  bootId,
  seq,
  descriptorHash: HASH,
  baseTime,
  blocks: [{ channel: 0, valueType: ValueType.I16, deltasMs: [0], values: [seq] }],
});

interface Rig {
  log: LocalLog;
  ingest: ClusterIngest;
  store: FakeClusterStore;
  cs: ClusterSessions;
  metrics: Metrics;
  table: SessionTable;
  accepted: { deviceId: string; offset: number }[];
  clock: { now: number };
  connect(deviceId: string, transport?: 'websocket' | 'mqtt'): TestLink;
  counter(name: string, labels?: Record<string, string>): Promise<number>;
}

const dirs: TempDir[] = [];
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  for (const d of dirs.splice(0)) await d.remove();
});

function openTestLog(dataDir: string, metrics: Metrics, now: () => number): LocalLog {
  return openLocalLog({
    dataDir,
    maxBytes: 64 * 1024 * 1024,
    retentionHours: 24,
    fullPolicy: 'backpressure',
    forwarding: false,
    metrics,
    logger: createLogger('silent'),
    maintenanceIntervalMs: 3_600_000,
    now,
    freeBytes: () => 1024 ** 4,
  });
}

async function rig(
  opts: {
    joinTimeoutMs?: number;
    writeBehindIntervalMs?: number;
    store?: FakeClusterStore;
    acknowledged?: (listener: (deviceId: string, bootId: number, seq: number) => void) => () => void;
    /** DEVICE_HELLO_TIMEOUT_MS; with it the sessions come from `startCluster` (the composition) on that config. */
    helloTimeoutMs?: number;
  } = {},
): Promise<Rig> {
  const dir = await tempDir('cluster-sessions');
  dirs.push(dir);
  const clock = { now: T0 };
  const now = () => clock.now;
  const metrics = createMetrics();
  const logger = createLogger('silent');
  const log = openTestLog(dir.path, metrics, now);
  const bus = new HubEventBus();
  const config = configFrom(
    opts.helloTimeoutMs !== undefined ? { DEVICE_HELLO_TIMEOUT_MS: String(opts.helloTimeoutMs) } : {},
  );
  const ingest = createIngest({ log, metrics, bus, devices: config.devices, logger, now });
  const store = opts.store ?? new FakeClusterStore();
  const cs =
    opts.helloTimeoutMs !== undefined
      ? (
          await startCluster({
            config,
            cluster: { databaseUrl: 'postgres://unused', instanceId: 'a' },
            logger,
            metrics,
            bus,
            ingest,
            now,
            openStore: async () => store,
            joinTimeoutMs: opts.joinTimeoutMs ?? 10_000,
            writeBehindIntervalMs: opts.writeBehindIntervalMs ?? 3_600_000,
          })
        ).sessions
      : createClusterSessions({
          store,
          ingest,
          bus,
          metrics,
          logger,
          now,
          helloTimeoutMs: config.devices.helloTimeoutMs,
          joinTimeoutMs: opts.joinTimeoutMs ?? 10_000,
          writeBehindIntervalMs: opts.writeBehindIntervalMs ?? 3_600_000,
          ...(opts.acknowledged ? { acknowledged: opts.acknowledged } : {}),
        });
  const table = createSessionTable();
  const commands = createCommandTracker({ metrics, bus, now });
  const ctx: SessionContext = {
    counts: newSessionCounts(),
    ingest,
    sessions: table,
    commands,
    config,
    metrics,
    bus,
    logger,
    now,
    cluster: cs,
  };
  const accepted: Rig['accepted'] = [];
  bus.on('readings:accepted', (deviceId: string, a: AcceptedFrame) =>
    accepted.push({ deviceId, offset: (a as AcceptedTelemetry).timeOffsetMs }),
  );
  const links: TestLink[] = [];
  cleanups.push(async () => {
    for (const l of links) l.drop();
    await cs.stop();
    commands.close();
    await log.close();
  });
  return {
    log,
    ingest,
    store,
    cs,
    metrics,
    table,
    accepted,
    clock,
    connect(deviceId, transport = 'websocket') {
      const link = new TestLink(transport);
      links.push(link);
      new DeviceSession(link, deviceId, ctx);
      return link;
    },
    async counter(name, labels = {}) {
      const m = await metrics.registry.getSingleMetric(name)?.get();
      const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
      return v?.value ?? 0;
    },
  };
}

/** HELLO, WELCOME, DESCRIPTORS: a ready session. */
async function ready(r: Rig, deviceId: string, bootId: number, uptimeMs: number): Promise<TestLink> {
  const link = r.connect(deviceId);
  link.deliver(hello(deviceId, bootId, uptimeMs));
  await until('WELCOME', () => link.welcome());
  if (!link.welcome()?.descriptorsKnown) link.deliver({ type: 'descriptors', channels: CHANNELS });
  return link;
}

const ackOf = (link: TestLink, bootId: number, seq: number) => () =>
  link.acks().some((a) => a.bootId === bootId && a.seq === seq);

/**
 * The store's join statements held (none answered until `r.store.answer('joinSessions')`): `deviceId`
 * connects and says HELLO; resolves once `asked` join statements (batches) wait for their answer, the
 * last of them with this HELLO in it.
 */
async function heldJoin(
  r: Rig,
  deviceId: string,
  opts: { transport?: 'websocket' | 'mqtt'; asked?: number } = {},
): Promise<TestLink> {
  const asked = opts.asked ?? 1;
  r.store.held.add('joinSessions');
  const link = r.connect(deviceId, opts.transport);
  link.deliver(hello(deviceId, 1, 5000));
  await until(`join ${asked} asked (${deviceId})`, () => r.store.pending('joinSessions') === asked);
  return link;
}

describe('joining: HELLO waits for the cluster', () => {
  it('no WELCOME before the claim; the link is paused meanwhile; WELCOME once the database answered', async () => {
    const r = await rig();
    const link = await heldJoin(r, 'd1');
    expect(link.welcome()).toBeUndefined();
    expect(link.paused).toBe(true);
    r.store.answer('joinSessions');
    await until('WELCOME', () => link.welcome());
    expect(link.paused).toBe(false);
    expect(r.cs.status().claimed).toBe(1);
    expect(await r.counter('hub_cluster_hellos_total', { outcome: 'joined' })).toBe(1);
  });

  it('a frame while joining is refused as before HELLO (UNEXPECTED_MESSAGE, close 1002); the claim goes back', async () => {
    const r = await rig();
    const link = await heldJoin(r, 'd1');
    link.deliver(telemetry(1, 1, 4000));
    expect(link.closeCode).toBe(1002);
    expect(link.welcome()).toBeUndefined();
    r.store.answer('joinSessions');
    await until('claim released', () => r.store.released.length === 1);
    expect(r.store.holders.size).toBe(0);
    expect(r.table.size()).toBe(0);
  });

  it('over MQTT the link is not paused while joining (that would hold the whole broker input)', async () => {
    const r = await rig();
    const link = await heldJoin(r, 'd1', { transport: 'mqtt' });
    expect(link.paused).toBe(false);
    r.store.answer('joinSessions');
    await until('WELCOME', () => link.welcome());
  });

  it('a slow join while the database is connected: the HELLO keeps waiting past the bound (counted), then joins with its claim', async () => {
    const r = await rig({ joinTimeoutMs: 20 });
    const link = await heldJoin(r, 'd1');
    await until('counted as slow', async () => (await r.counter('hub_cluster_slow_joins_total')) === 1);
    expect(link.welcome()).toBeUndefined();
    r.store.answer('joinSessions');
    await until('WELCOME', () => link.welcome());
    expect(await r.counter('hub_cluster_hellos_total', { outcome: 'degraded' })).toBe(0);
    expect(await r.counter('hub_cluster_hellos_total', { outcome: 'joined' })).toBe(1);
    expect(r.cs.status()).toMatchObject({ claimed: 1, unclaimed: 0 });
  });

  it("a join the database does not answer gives up before the device's own HELLO/WELCOME timeout (DEVICE_HELLO_TIMEOUT_MS) would fire", async () => {
    // The device waits for WELCOME as long as the hub waits for HELLO (DEVICE_HELLO_TIMEOUT_MS): a
    // timer of that length started with the HELLO stands for the device giving up and reconnecting.
    const helloTimeoutMs = 3000;
    const r = await rig({ helloTimeoutMs, joinTimeoutMs: 20 });
    let deviceGaveUp = false;
    const deviceTimer = setTimeout(() => {
      deviceGaveUp = true;
    }, helloTimeoutMs);
    cleanups.push(async () => clearTimeout(deviceTimer));
    const link = await heldJoin(r, 'd1');
    await until('counted as slow', async () => (await r.counter('hub_cluster_slow_joins_total')) === 1);
    await until('WELCOME or the device giving up', () => link.welcome() !== undefined || deviceGaveUp);
    expect(deviceGaveUp).toBe(false);
    expect(await r.counter('hub_cluster_hellos_total', { outcome: 'degraded' })).toBe(1);
    r.store.answer('joinSessions');
    await until('claimed late', () => r.cs.status().claimed === 1);
  });

  it('the bound of a join wait follows the device HELLO timeout setting, below it over its whole range', () => {
    expect(joinWaitMaxMs(configFrom({}).devices.helloTimeoutMs)).toBe(8_000);
    for (const ms of [100, 1000, 3000, 10_000, 60_000]) {
      const config = configFrom({ DEVICE_HELLO_TIMEOUT_MS: String(ms) });
      expect(joinWaitMaxMs(config.devices.helloTimeoutMs)).toBe(Math.floor(ms * 0.8));
    }
  });

  it('HELLOs arriving together share one join statement; each gets its own part', async () => {
    const r = await rig();
    r.store.held.add('joinSessions');
    const links = ['d1', 'd2', 'd3'].map((id) => {
      const link = r.connect(id);
      link.deliver(hello(id, 1, 5000));
      return link;
    });
    await until('join asked', () => r.store.pending('joinSessions') === 1);
    r.store.answer('joinSessions');
    await until('WELCOMEs', () => links.every((l) => l.welcome()));
    expect(r.store.joinBatches.map((b) => b.map((j) => j.deviceId))).toEqual([['d1', 'd2', 'd3']]);
    expect(r.cs.status()).toMatchObject({ claimed: 3, unclaimed: 0 });
  });

  it('the database lost while a join waits: WELCOME after the bound (degraded, counted); the late claim is kept', async () => {
    const r = await rig({ joinTimeoutMs: 50 });
    const link = await heldJoin(r, 'd1');
    r.store.database = 'unreachable';
    await until('WELCOME', () => link.welcome());
    expect(await r.counter('hub_cluster_hellos_total', { outcome: 'degraded' })).toBe(1);
    expect(r.cs.status()).toMatchObject({ claimed: 0, unclaimed: 1 });
    r.store.answer('joinSessions');
    await until('claimed', () => r.cs.status().claimed === 1);
    // Newest wins still applies to it.
    r.store.claimElsewhere('d1');
    expect(link.closeCode).toBe(4001);
  });

  it('database unreachable: WELCOME at once; claimed by the tick once it is back', async () => {
    const r = await rig({ writeBehindIntervalMs: 10 });
    r.store.database = 'unreachable';
    const link = r.connect('d1');
    link.deliver(hello('d1', 1, 5000));
    await until('WELCOME', () => link.welcome());
    expect(r.store.holders.size).toBe(0);
    r.store.database = 'connected';
    await until('claimed', () => r.cs.status().claimed === 1);
    expect(r.store.holders.get('d1')?.instanceId).toBe('a');
  });

  it('a session that joined unclaimed ends REPLACED when another instance claimed the device meanwhile', async () => {
    const r = await rig({ writeBehindIntervalMs: 10 });
    r.store.database = 'unreachable';
    const link = r.connect('d1');
    link.deliver(hello('d1', 1, 5000));
    await until('WELCOME', () => link.welcome());
    r.store.holders.set('d1', { deviceId: 'd1', instanceId: 'b', epoch: 99 });
    r.store.database = 'connected';
    await until('replaced', () => link.closeCode === 4001);
  });

  it('a session closed while joining never says WELCOME and releases its claim when it lands', async () => {
    const r = await rig();
    const link = await heldJoin(r, 'd1');
    link.drop();
    await until('session ended', () => r.cs.status().unclaimed === 0);
    r.store.answer('joinSessions');
    await until('claim released', () => r.store.released.length === 1);
    await new Promise((resolve) => setImmediate(resolve));
    expect(link.welcome()).toBeUndefined();
    expect(r.ingest.activeDevices()).toBe(0);
  });
});

describe('newest wins', () => {
  it('a newer claim elsewhere ends the local session with REPLACED (4001) at once; an older one does not', async () => {
    const r = await rig();
    const link = await ready(r, 'd1', 1, 5000);
    const mine = r.store.holders.get('d1');
    r.store.notify({ deviceId: 'd1', instanceId: 'b', epoch: (mine?.epoch ?? 0) - 1 });
    expect(link.closeCode).toBeNull();
    r.store.claimElsewhere('d1');
    expect(link.closeCode).toBe(4001);
    expect(link.errors()).toContain('207'); // REPLACED
    expect(await r.counter('hub_cluster_sessions_replaced_total')).toBe(1);
    // Its claim is released; the newer holder's row stays.
    await until('released', () => r.store.released.length === 1);
    expect(r.store.holders.get('d1')?.instanceId).toBe('b');
  });

  it('a newer claim heard while the own claim is pending ends the session when its claim lands', async () => {
    const r = await rig();
    const link = await heldJoin(r, 'd1');
    r.store.claimElsewhere('d1'); // epoch 2 > ours (1), heard before our answer
    r.store.answer('joinSessions');
    await until('replaced', () => link.closeCode === 4001);
    expect(link.welcome()).toBeUndefined();
    expect(await r.counter('hub_cluster_hellos_total', { outcome: 'replaced' })).toBe(1);
  });

  it('a claim elsewhere heard while the own HELLO still waits in the join queue: the own, newer claim wins (one session stays)', async () => {
    const r = await rig();
    // Two join batches in flight (the bound): the next HELLO waits in the queue, not yet claiming.
    await heldJoin(r, 'x1');
    await heldJoin(r, 'x2', { asked: 2 });
    const link = r.connect('d1');
    link.deliver(hello('d1', 1, 5000));
    await until('d1 queued', async () => (await r.counter('hub_cluster_joins_waiting')) === 3);
    // The device's other connection, on instance b, claims first (simultaneous HELLOs on two instances).
    r.store.claimElsewhere('d1');
    expect(link.closeCode).toBeNull();
    r.store.answer('joinSessions');
    await until('WELCOME', () => link.welcome());
    // d1's own claim came after b's, so it is the newer: it stays, and b's session is the one replaced.
    expect(r.store.holders.get('d1')?.instanceId).toBe('a');
    expect(link.closeCode).toBeNull();
    expect(await r.counter('hub_cluster_sessions_replaced_total')).toBe(0);
  });

  it('a new local session replaces the old one locally; its own claim does not end it', async () => {
    const r = await rig();
    const first = await ready(r, 'd1', 1, 5000);
    const second = await ready(r, 'd1', 1, 6000);
    expect(first.closeCode).toBe(4001);
    expect(second.closeCode).toBeNull();
    expect(r.store.holders.get('d1')?.epoch).toBe(2);
  });

  it('after a resync, a session whose device another instance holds with a higher epoch ends REPLACED', async () => {
    const r = await rig();
    const link = await ready(r, 'd1', 1, 5000);
    // The notification was missed (the LISTEN connection was down): only the row says so.
    r.store.holders.set('d1', { deviceId: 'd1', instanceId: 'b', epoch: 50 });
    r.store.fireResync();
    await until('replaced', () => link.closeCode === 4001);
  });

  it('a session that ends releases its claim', async () => {
    const r = await rig();
    const link = await ready(r, 'd1', 1, 5000);
    link.drop();
    await until('released', () => r.store.released.length === 1);
    expect(r.store.holders.size).toBe(0);
  });
});

describe('shared device state at HELLO (ingest.adopt)', () => {
  it('WELCOME reports the shared last ACK; frames up to the shared highest seq are duplicates; the shared offset and descriptor set are used', async () => {
    const r = await rig();
    const offset = T0 - 50_000;
    r.store.states.set('d1', {
      deviceId: 'd1',
      lastAck: { bootId: 7, seq: 10 },
      firstSeenMs: T0 - 100_000,
      descriptorHash: HASH,
      boots: [sharedBoot({ bootId: 7, highestSeq: 10, timeOffsetMs: offset, firstSeenMs: T0 - 45_000 })],
      descriptors: [{ hash: HASH, channels: CHANNELS }],
    });
    r.store.offsets.set('d1/7', offset);
    const link = await ready(r, 'd1', 7, 60_000); // this instance alone would anchor at T0 - 60,000
    expect(link.welcome()?.lastAck).toEqual({ bootId: 7, seq: 10 });
    expect(link.welcome()?.descriptorsKnown).toBe(true);
    link.deliver(telemetry(7, 10, 55_000)); // a replay of what another instance stored
    await until('ACK of the duplicate', ackOf(link, 7, 10));
    expect(r.accepted).toEqual([]);
    link.deliver(telemetry(7, 11, 56_000));
    await until('ACK', ackOf(link, 7, 11));
    expect(r.accepted).toEqual([{ deviceId: 'd1', offset }]);
    expect(r.ingest.deviceState('d1')?.record.firstSeenMs).toBe(T0 - 100_000);
  });

  it('what this instance knows newer than the shared state stays: its last ACK, its higher seq', async () => {
    const r = await rig();
    const link = await ready(r, 'd1', 7, 60_000);
    for (let seq = 1; seq <= 5; seq++) link.deliver(telemetry(7, seq, 55_000 + seq));
    await until('ACK 5', ackOf(link, 7, 5));
    link.drop();
    await until('released', () => r.store.released.length === 1);
    r.store.states.set('d1', {
      deviceId: 'd1',
      lastAck: { bootId: 7, seq: 3 },
      firstSeenMs: T0,
      descriptorHash: HASH,
      boots: [sharedBoot({ bootId: 7, highestSeq: 3, firstSeenMs: T0 })],
      descriptors: [],
    });
    const again = await ready(r, 'd1', 7, 70_000);
    expect(again.welcome()?.lastAck).toEqual({ bootId: 7, seq: 5 });
    again.deliver(telemetry(7, 4, 55_004));
    await until('duplicate ACK', ackOf(again, 7, 4));
    expect(r.accepted.length).toBe(5);
  });

  it('a shared last ACK of a later boot wins over a local one of an earlier boot', async () => {
    const r = await rig();
    const link = await ready(r, 'd1', 7, 60_000);
    link.deliver(telemetry(7, 1, 55_000));
    await until('ACK', ackOf(link, 7, 1));
    link.drop();
    await until('released', () => r.store.released.length === 1);
    r.store.states.set('d1', {
      deviceId: 'd1',
      lastAck: { bootId: 8, seq: 2 },
      firstSeenMs: T0,
      descriptorHash: HASH,
      boots: [sharedBoot({ bootId: 8, highestSeq: 2, firstSeenMs: T0 + 120_000 })],
      descriptors: [],
    });
    r.clock.now = T0 + 200_000;
    const again = await ready(r, 'd1', 8, 80_000);
    expect(again.welcome()?.lastAck).toEqual({ bootId: 8, seq: 2 });
  });

  it("the HELLO boot's offset is the one claimed in the store, not this instance's own estimate", async () => {
    const r = await rig();
    r.store.offsets.set('d1/3', T0 - 61_000); // another instance anchored this boot first
    const link = await ready(r, 'd1', 3, 60_000);
    link.deliver(telemetry(3, 1, 59_000));
    await until('ACK', ackOf(link, 3, 1));
    expect(r.accepted).toEqual([{ deviceId: 'd1', offset: T0 - 61_000 }]);
    expect(r.ingest.deviceState('d1')?.boots.get(3)?.timeOffsetMs).toBe(T0 - 61_000);
  });
  it("the HELLO boot of a device no instance stored a frame of starts the device's sighting on every instance (no clamp)", async () => {
    const r = await rig();
    // Another instance claimed the boot at its HELLO and stored frames it has not written behind yet:
    // the store knows the boot (first seen at that claim) but no device state.
    r.store.offsets.set('d1/3', T0 - 61_000);
    r.store.states.set('d1', {
      deviceId: 'd1',
      lastAck: null,
      firstSeenMs: T0,
      descriptorHash: 0,
      boots: [sharedBoot({ bootId: 3, timeOffsetMs: T0 - 61_000, firstSeenMs: T0 })],
      descriptors: [],
    });
    r.clock.now = T0 + 5_000;
    const link = await ready(r, 'd1', 3, 64_000);
    link.deliver(telemetry(3, 1, 2_000)); // sampled 2 s after boot: T0 - 59,000 on the shared timeline
    await until('ACK', ackOf(link, 3, 1));
    expect(r.accepted).toEqual([{ deviceId: 'd1', offset: T0 - 61_000 }]);
    expect(await r.counter('hub_timestamps_clamped_total')).toBe(0);
  });
});

describe('a boot with no HELLO anchor: its offset is agreed before its first frame is stored', () => {
  it('the frame (and the ones behind it) wait, are stored with the offset the store answers, then acknowledged', async () => {
    const r = await rig();
    // Seen before (boot 8, on another instance); rebooted: boot 9 now, boot 8's frames in its outbox.
    r.store.states.set('d1', {
      deviceId: 'd1',
      lastAck: null,
      firstSeenMs: T0 - 2_000_000,
      descriptorHash: HASH,
      boots: [],
      descriptors: [],
    });
    const link = await ready(r, 'd1', 9, 10_000);
    r.store.held.add('claimBootOffset');
    link.deliver(telemetry(8, 1, 5_000));
    link.deliver(telemetry(8, 2, 6_000));
    await until('offset asked', () => r.store.pending('claimBootOffset') === 1);
    expect(link.paused).toBe(true);
    // Another instance stored boot 8 first (e.g. the device's previous connection): its offset wins.
    const theirs = T0 - 1_234_567;
    r.store.offsets.set('d1/8', theirs);
    await r.cs.flush(); // nothing is stored meanwhile: nothing to write behind either
    expect(r.accepted).toEqual([]);
    expect(link.acks()).toEqual([]);
    r.store.answer('claimBootOffset');
    await until('ACK 2', ackOf(link, 8, 2));
    expect(r.accepted).toEqual([
      { deviceId: 'd1', offset: theirs },
      { deviceId: 'd1', offset: theirs },
    ]);
    expect(link.paused).toBe(false);
    expect(await r.counter('hub_cluster_boot_offsets_total', { outcome: 'shared' })).toBe(1);
    // A later frame of that boot needs no agreement.
    link.deliver(telemetry(8, 3, 7_000));
    await until('ACK 3', ackOf(link, 8, 3));
    expect(r.store.pending('claimBootOffset')).toBe(0);
  });

  it('no agreement for synced frames, the HELLO boot, or a boot whose offset is known', async () => {
    const r = await rig();
    r.store.held.add('claimBootOffset');
    r.store.offsets.set('d1/9', T0 - 10_000);
    r.store.answer('claimBootOffset');
    const link = await ready(r, 'd1', 9, 10_000);
    r.store.held.add('claimBootOffset');
    link.deliver(telemetry(9, 1, 9_000));
    link.deliver(telemetry(8, 1, T0 - 5_000, false));
    await until('ACK', ackOf(link, 8, 1));
    expect(r.store.pending('claimBootOffset')).toBe(0);
  });

  it('the database unreachable: the frame is stored with this instance offset at once (degraded, counted)', async () => {
    const r = await rig();
    const link = await ready(r, 'd1', 9, 10_000);
    r.store.database = 'unreachable';
    link.deliver(telemetry(8, 1, 5_000));
    await until('ACK', ackOf(link, 8, 1));
    expect(await r.counter('hub_cluster_boot_offsets_total', { outcome: 'degraded' })).toBe(1);
  });
});

describe('write-behind', () => {
  it('one batch for every device changed since the last one, with durable positions only', async () => {
    const r = await rig();
    const a = await ready(r, 'd1', 1, 5_000);
    const b = await ready(r, 'd2', 2, 5_000);
    for (let seq = 1; seq <= 3; seq++) a.deliver(telemetry(1, seq, 4_000 + seq));
    b.deliver(telemetry(2, 1, 4_000));
    await until('ACKs', () => ackOf(a, 1, 3)() && ackOf(b, 2, 1)());
    await r.cs.flush();
    expect(r.store.saved.length).toBe(1);
    const batch = r.store.saved[0] ?? [];
    expect(batch.map((s) => s.deviceId).sort()).toEqual(['d1', 'd2']);
    const d1 = batch.find((s) => s.deviceId === 'd1');
    expect(d1?.lastAck).toEqual({ bootId: 1, seq: 3 });
    expect(d1?.boots).toEqual([expect.objectContaining({ bootId: 1, highestSeq: 3, timeOffsetMs: T0 - 5_000 })]);
    expect(d1?.descriptorHash).toBe(HASH);
    // Nothing new: nothing written.
    await r.cs.flush();
    expect(r.store.saved.length).toBe(1);
  });

  it('a failed batch is kept (one entry per device, newer positions win) and written by the next try', async () => {
    const r = await rig();
    const a = await ready(r, 'd1', 1, 5_000);
    r.store.failing.add('saveDeviceStates');
    a.deliver(telemetry(1, 1, 4_001));
    await until('ACK 1', ackOf(a, 1, 1));
    await r.cs.flush();
    expect(r.cs.status()).toMatchObject({ writeBehindPending: 1, writeBehindFailing: true });
    expect(await r.counter('hub_cluster_state_writes_total', { outcome: 'failed' })).toBe(1);
    a.deliver(telemetry(1, 2, 4_002));
    await until('ACK 2', ackOf(a, 1, 2));
    r.store.failing.delete('saveDeviceStates');
    await r.cs.flush();
    expect(r.store.saved).toEqual([[expect.objectContaining({ deviceId: 'd1', lastAck: { bootId: 1, seq: 2 } })]]);
    expect(r.cs.status()).toMatchObject({ writeBehindPending: 0, writeBehindFailing: false });
  });

  it('the timer writes behind; so does the end of a session, at once', async () => {
    const r = await rig({ writeBehindIntervalMs: 20 });
    const a = await ready(r, 'd1', 1, 5_000);
    a.deliver(telemetry(1, 1, 4_001));
    await until('written by the timer', () => r.store.saved.length === 1);
    const slow = await rig(); // an hour between ticks
    const b = await ready(slow, 'd2', 1, 5_000);
    b.deliver(telemetry(1, 1, 4_001));
    await until('ACK', ackOf(b, 1, 1));
    b.drop();
    await until('written at the session end', () => slow.store.saved.length === 1);
  });

  it('descriptor sets go to the store once committed locally', async () => {
    const r = await rig();
    await ready(r, 'd1', 1, 5_000);
    await until('descriptors', () => r.store.descriptorSets.length === 1);
    expect(r.store.descriptorSets).toEqual([{ deviceId: 'd1', hash: HASH }]);
  });

  it('with ACK_DURABILITY=influx it follows what the ACK gate released, not the local commits', async () => {
    let release: ((deviceId: string, bootId: number, seq: number) => void) | null = null;
    const r = await rig({
      acknowledged: (l) => {
        release = l;
        return () => undefined;
      },
    });
    const a = await ready(r, 'd1', 1, 5_000);
    a.deliver(telemetry(1, 1, 4_001));
    a.deliver(telemetry(1, 2, 4_002));
    await until('ACK 2', ackOf(a, 1, 2));
    await r.cs.flush();
    expect(r.store.saved).toEqual([]); // committed locally, not yet confirmed by InfluxDB
    (release as unknown as (d: string, b: number, s: number) => void)('d1', 1, 1);
    await r.cs.flush();
    expect(r.store.saved).toEqual([[expect.objectContaining({ deviceId: 'd1', lastAck: { bootId: 1, seq: 1 } })]]);
  });
});

describe('startCluster (the composition)', () => {
  it("drops the claims a previous run of this instance left (not others'), shows its status, and on stop writes behind, then closes the store", async () => {
    const dir = await tempDir('cluster-compose');
    dirs.push(dir);
    const metrics = createMetrics();
    const logger = createLogger('silent');
    const log = openTestLog(dir.path, metrics, Date.now);
    cleanups.push(() => log.close());
    const bus = new HubEventBus();
    const config = configFrom({});
    const ingest = createIngest({ log, metrics, bus, devices: config.devices, logger, now: Date.now });
    const store = new FakeClusterStore('a');
    store.holders.set('left-here', { deviceId: 'left-here', instanceId: 'a', epoch: 1 });
    store.holders.set('held-by-b', { deviceId: 'held-by-b', instanceId: 'b', epoch: 2 });
    const cluster = await startCluster({
      config,
      cluster: { databaseUrl: 'postgres://unused', instanceId: 'a' },
      logger,
      metrics,
      bus,
      ingest,
      openStore: async () => store,
      writeBehindIntervalMs: 3_600_000,
    });
    expect([...store.holders.keys()]).toEqual(['held-by-b']);
    expect(cluster.status()).toMatchObject({
      instanceId: 'a',
      database: 'connected',
      sessions: { claimed: 0, unclaimed: 0, writeBehindPending: 0, writeBehindFailing: false },
    });
    // A position committed but not written behind yet is written at stop, before the store closes.
    store.held.add('saveDeviceStates');
    ingest.hello('d1', { ...(hello('d1', 1, 1000) as Extract<Message, { type: 'hello' }>) }, Date.now());
    ingest.descriptors('d1', HASH, CHANNELS);
    const frame = Buffer.from(encodeFrame(telemetry(1, 1, 500)));
    await new Promise<void>((resolve, reject) =>
      ingest.store('d1', frame, ingest.scan('d1', frame), Date.now(), (err) => (err ? reject(err) : resolve())),
    );
    const stopping = cluster.stop();
    await until('write-behind at stop', () => store.pending('saveDeviceStates') === 1);
    expect(store.closed).toBe(false);
    store.answer('saveDeviceStates');
    await stopping;
    expect(store.saved).toEqual([[expect.objectContaining({ deviceId: 'd1', lastAck: { bootId: 1, seq: 1 } })]]);
    expect(store.closed).toBe(true);
  });
});
