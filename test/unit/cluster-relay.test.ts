// The relay between instances (server/cluster/relay.ts) at its boundary: two relays on an in-process
// broker that routes topics as MQTT does (filters, retained messages, MQTT 5 response properties),
// real buses, real codec frames and the real command tracker. What a user of instance B would see
// of a device on instance A: readings (only while B watches), presence, snapshots when B starts
// watching, `instance_lost` when A leaves, commands through A; and what A pays while nobody watches.
// The real broker and two whole hubs are in test/integration/cluster-live.test.ts.
import { afterEach, describe, expect, it } from 'vitest';
import { createRelay, type MemberSource, type Relay } from '../../server/cluster/relay.ts';
import { createRemoteCommands } from '../../server/cluster/remote-commands.ts';
import { type ChannelDescriptor, encodeFrame } from '../../server/codec/index.ts';
import { HubError } from '../../server/errors.ts';
import { type AcceptedFrame, HubEventBus, type HubEvents } from '../../server/events.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics } from '../../server/metrics/index.ts';
import type { HubMqttClient, MessageHandler, PublishOptions } from '../../server/mqtt/client.ts';
import { topicMatches } from '../../server/mqtt/client.ts';
import { createCommandTracker } from '../../server/pipeline/commands.ts';
import { AcceptedTelemetry } from '../../server/pipeline/ingest.ts';
import type { Reading } from '../../server/storage/types.ts';
import { until } from '../harness/index.ts';
import { TEST_CHANNELS, telemetry } from '../integration/ingest-device-client.ts';

const logger = createLogger('silent');

/** Topics routed like a broker: subscriptions by filter, retained messages, asynchronous delivery. */
class FakeBroker {
  readonly retained = new Map<string, Buffer>();
  readonly clients = new Set<FakeClient>();
  readonly log: { topic: string; from: FakeClient }[] = [];
  deliver(from: FakeClient, topic: string, payload: Buffer, opts: PublishOptions): void {
    this.log.push({ topic, from });
    if (opts.retain) {
      if (payload.length === 0) this.retained.delete(topic);
      else this.retained.set(topic, payload);
    }
    for (const c of this.clients) c.receive(topic, payload, opts);
  }
}

class FakeClient implements HubMqttClient {
  connected = true;
  queued = 0;
  readonly subs = new Map<string, MessageHandler>();
  readonly hooks: ((sessionPresent: boolean) => unknown)[] = [];
  constructor(private readonly broker: FakeBroker) {
    broker.clients.add(this);
  }
  start(): void {}
  async stop(): Promise<void> {
    this.broker.clients.delete(this);
  }
  status() {
    return { queued: this.queued } as ReturnType<HubMqttClient['status']>;
  }
  isConnected(): boolean {
    return this.connected;
  }
  publish(topic: string, payload: Uint8Array | string, opts: PublishOptions = {}): void {
    if (!this.connected) return;
    const buf = typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(payload);
    setImmediate(() => this.broker.deliver(this, topic, buf, opts));
  }
  subscribe(filter: string, handler: MessageHandler): void {
    this.subs.set(filter, handler);
    for (const [topic, payload] of this.broker.retained) {
      if (topicMatches(filter, topic)) setImmediate(() => handler(topic, payload));
    }
  }
  receive(topic: string, payload: Buffer, opts: PublishOptions): void {
    if (!this.connected) return;
    for (const [filter, handler] of this.subs)
      if (topicMatches(filter, topic)) handler(topic, payload, opts.properties);
  }
  onConnect(hook: (sessionPresent: boolean) => unknown): void {
    this.hooks.push(hook);
  }
  onReady(hook: () => void): void {
    this.hooks.push(hook);
  }
  setWill(): void {}
  holdInput(): void {}
  releaseInput(): void {}
}

interface Node {
  id: string;
  bus: HubEventBus;
  client: FakeClient;
  relay: Relay;
  metrics: ReturnType<typeof createMetrics>;
  /** Devices with a "ready local session" and their descriptor sets. */
  local: Map<string, ChannelDescriptor[]>;
  seen: { [K in keyof HubEvents]?: HubEvents[K][] };
}

const nodes: Node[] = [];
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.relay.stop();
});

function node(
  broker: FakeBroker,
  id: string,
  opts: { needsPresence?: boolean; members?: MemberSource; maxPendingBytes?: number } = {},
): Node {
  const bus = new HubEventBus();
  const client = new FakeClient(broker);
  const metrics = createMetrics();
  const local = new Map<string, ChannelDescriptor[]>();
  const relay = createRelay({
    instanceId: id,
    topicPrefix: 'esp32hub',
    client,
    bus,
    metrics,
    logger,
    channelsOf: (d) => local.get(d),
    isLocalOnline: (d) => local.has(d),
    needsPresence: opts.needsPresence ?? false,
    members: opts.members ?? null,
    flushMs: 5,
    rpcTimeoutMs: 2000,
    ...(opts.maxPendingBytes !== undefined ? { maxPendingBytes: opts.maxPendingBytes } : {}),
  });
  const seen: Node['seen'] = {};
  for (const e of [
    'remote:accepted',
    'remote:online',
    'remote:offline',
    'remote:unknown',
    'remote:descriptors',
    'remote:command',
    'remote:lost',
    'remote:alert',
  ] as const) {
    const list: unknown[][] = [];
    (seen as Record<string, unknown[][]>)[e] = list;
    bus.on(e, (...args: unknown[]) => {
      list.push(args);
    });
  }
  relay.start();
  const n = { id, bus, client, relay, metrics, local, seen };
  nodes.push(n);
  return n;
}

function accepted(deviceId: string, seq: number, baseTime: number): AcceptedTelemetry {
  const frame = encodeFrame(telemetry(1, seq, baseTime));
  return new AcceptedTelemetry(deviceId, frame, TEST_CHANNELS, 1000, baseTime + 50, 12);
}

function connect(n: Node, deviceId: string, atMs = 1_000): void {
  n.local.set(deviceId, TEST_CHANNELS);
  n.bus.emit('device:online', {
    deviceId,
    firmwareVersion: 'fw-1',
    bootId: 1,
    timeSynced: true,
    bufferedFrames: 0,
    droppedFrames: 0,
    atMs,
  });
}

async function metric(n: Node, name: string, labels: Record<string, string>): Promise<number> {
  const values = (await n.metrics.registry.getSingleMetric(name)?.get())?.values ?? [];
  return values
    .filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))
    .reduce((s, v) => s + v.value, 0);
}

const readingsOf = (f: AcceptedFrame): Reading[] => f.readings().map((r) => ({ ...r }));

describe('cluster relay', () => {
  it('costs a frame nothing and publishes nothing while no other instance watches; relays frames that decode the same once one does', async () => {
    const broker = new FakeBroker();
    const a = node(broker, 'hub-a');
    const b = node(broker, 'hub-b');
    connect(a, 'esp-1');
    await until('A knows B', () => a.relay.peers().includes('hub-b'));
    expect(a.bus.listenerCount('readings:accepted')).toBe(0);
    for (let seq = 1; seq <= 50; seq++) a.bus.emit('readings:accepted', 'esp-1', accepted('esp-1', seq, 1_000_000));
    expect(a.relay.stats().batchesPublished).toBe(0);
    expect(broker.log.filter((m) => m.topic.includes('/events/'))).toEqual([]);

    // B's live view gets a client: B announces it, A starts relaying.
    b.bus.emit('live:watching', true);
    await until('A sees B watching', () => a.relay.stats().remoteLive);
    expect(a.bus.listenerCount('readings:accepted')).toBe(1);
    const sent = [accepted('esp-1', 51, 2_000_000), accepted('esp-1', 52, 2_004_000)];
    for (const f of sent) a.bus.emit('readings:accepted', 'esp-1', f);
    await until('B got both frames', () => (b.seen['remote:accepted']?.length ?? 0) >= 2);
    const got = (b.seen['remote:accepted'] ?? []).map(([id, f]) => ({ id, readings: readingsOf(f) }));
    expect(got).toEqual(sent.map((f) => ({ id: 'esp-1', readings: readingsOf(f) })));
    // The snapshot B asked for when it started watching says who holds the device.
    await until('B knows where esp-1 is', () => b.relay.holderOf('esp-1') === 'hub-a');
    expect(b.relay.onlineElsewhere('esp-1')).toBe(true);
    expect(a.relay.holderOf('esp-1')).toBeNull();

    // B's last client leaves: A stops listening on the ingest path again.
    b.bus.emit('live:watching', false);
    await until('A sees B stop watching', () => !a.relay.stats().remoteLive);
    expect(a.bus.listenerCount('readings:accepted')).toBe(0);
  });

  it('relays presence (not frames) to an instance whose offline alert rule needs it', async () => {
    const broker = new FakeBroker();
    const a = node(broker, 'hub-a');
    const b = node(broker, 'hub-b', { needsPresence: true });
    await until('A sees B interested in presence', () => a.relay.stats().remotePresence);
    expect(a.bus.listenerCount('readings:accepted')).toBe(0);
    connect(a, 'esp-2', 5_000);
    await until('B sees esp-2 online', () => b.seen['remote:online']?.length === 1);
    expect(b.seen['remote:online']?.[0]?.[0]).toEqual({
      deviceId: 'esp-2',
      firmwareVersion: 'fw-1',
      bootId: 1,
      timeSynced: true,
      atMs: 5_000,
      instanceId: 'hub-a',
    });
    a.local.delete('esp-2');
    a.bus.emit('device:offline', { deviceId: 'esp-2', reason: 'heartbeat', atMs: 6_000 });
    await until('B sees esp-2 offline', () => b.seen['remote:offline']?.length === 1);
    expect(b.seen['remote:offline']?.[0]?.[0]).toEqual({
      deviceId: 'esp-2',
      reason: 'heartbeat',
      atMs: 6_000,
      instanceId: 'hub-a',
    });
    expect(b.relay.holderOf('esp-2')).toBeNull();
    // Alert transitions go too; alerts adopted from another instance (`instance` set) are not sent back.
    const alert = {
      id: 'offline/esp-2/6000',
      rule: 'offline',
      kind: 'offline' as const,
      device: 'esp-2',
      state: 'firing' as const,
      severity: 'warning' as const,
      summary: 'offline',
      firingSinceMs: 6000,
      atMs: 6000,
      seq: 1,
    };
    a.bus.emit('alert', { ...alert, device: 'esp-adopted', instance: 'hub-c' });
    a.bus.emit('alert', alert);
    await until('B got the alert', () => b.seen['remote:alert']?.length === 1);
    expect(b.seen['remote:alert']?.[0]).toEqual([alert, 'hub-a']);
  });

  it('a member that leaves has its devices reported offline (instance_lost), unless they showed up elsewhere', async () => {
    const broker = new FakeBroker();
    let members = ['hub-a', 'hub-b', 'hub-c'];
    const listeners = new Set<(c: { restarted: string[] }) => void>();
    const source: MemberSource = {
      members: () => members,
      onChange: (l) => {
        listeners.add(l);
        return () => listeners.delete(l);
      },
    };
    const a = node(broker, 'hub-a', { members: source });
    const c = node(broker, 'hub-c', { members: source });
    const b = node(broker, 'hub-b', { members: source, needsPresence: true });
    await until('A and C see B', () => a.relay.stats().remotePresence && c.relay.stats().remotePresence);
    connect(a, 'esp-stays');
    connect(a, 'esp-moves');
    await until(
      'B knows both on A',
      () => b.relay.holderOf('esp-moves') === 'hub-a' && b.relay.holderOf('esp-stays') === 'hub-a',
    );
    // esp-moves reconnects to C before A's will is seen.
    connect(c, 'esp-moves');
    await until('B knows esp-moves on C', () => b.relay.holderOf('esp-moves') === 'hub-c');
    members = ['hub-b', 'hub-c'];
    for (const l of listeners) l({ restarted: [] });
    const lost = (b.seen['remote:offline'] ?? []).map(([i]) => i);
    expect(lost).toEqual([
      { deviceId: 'esp-stays', reason: 'instance_lost', atMs: expect.any(Number), instanceId: 'hub-a' },
    ]);
    expect(b.seen['remote:lost']?.map(([id]) => id)).toEqual(['hub-a']);
    expect(b.relay.holderOf('esp-stays')).toBeNull();
    expect(b.relay.holderOf('esp-moves')).toBe('hub-c');
  });

  it('a snapshot that no longer lists a device reports it offline (disconnected): an end that was missed', async () => {
    const broker = new FakeBroker();
    const a = node(broker, 'hub-a');
    const b = node(broker, 'hub-b');
    connect(a, 'esp-5');
    b.bus.emit('live:watching', true);
    await until('B knows esp-5 on A', () => b.relay.holderOf('esp-5') === 'hub-a');
    // A's session ends without a word reaching B (e.g. its batch lost); B asks again when it starts watching.
    a.local.delete('esp-5');
    b.bus.emit('live:watching', false);
    b.bus.emit('live:watching', true);
    await until('B reports esp-5 offline', () => b.seen['remote:offline']?.length === 1);
    expect(b.seen['remote:offline']?.[0]?.[0]).toMatchObject({
      deviceId: 'esp-5',
      reason: 'disconnected',
      instanceId: 'hub-a',
    });
    expect(b.relay.holderOf('esp-5')).toBeNull();
  });

  it('shows remote devices unknown while its own broker link is down', async () => {
    const broker = new FakeBroker();
    const a = node(broker, 'hub-a');
    const b = node(broker, 'hub-b', { needsPresence: true });
    await until('A sees B', () => a.relay.stats().remotePresence);
    connect(a, 'esp-3');
    await until('B sees esp-3', () => b.relay.holderOf('esp-3') === 'hub-a');
    b.client.connected = false;
    await until('B reports esp-3 unknown', () => b.seen['remote:unknown']?.length === 1);
    expect(b.seen['remote:unknown']?.[0]?.[0]).toMatchObject({ deviceId: 'esp-3', instanceId: 'hub-a' });
  });

  it('RPC: an instance that does not answer is CLUSTER_RPC_TIMEOUT; an unknown method is the remote NOT_FOUND', async () => {
    const broker = new FakeBroker();
    const a = node(broker, 'hub-a');
    node(broker, 'hub-b');
    const timeout = await a.relay.call('hub-nobody', 'presence', {}, 30).catch((e: unknown) => e);
    expect(timeout).toBeInstanceOf(HubError);
    expect((timeout as HubError).code).toBe('CLUSTER_RPC_TIMEOUT');
    const unknown = await a.relay.call('hub-b', 'no.such.method', {}).catch((e: unknown) => e);
    expect((unknown as HubError).code).toBe('NOT_FOUND');
    a.client.connected = false;
    const down = await a.relay.call('hub-b', 'presence', {}).catch((e: unknown) => e);
    expect((down as HubError).code).toBe('CLUSTER_RPC_TIMEOUT');
  });

  it('bounded: while the MQTT client has a backlog batches wait up to maxPendingBytes, then are dropped and counted', async () => {
    const broker = new FakeBroker();
    const a = node(broker, 'hub-a', { maxPendingBytes: 20_000 }); // one 15 KiB batch
    const b = node(broker, 'hub-b');
    b.bus.emit('live:watching', true);
    await until('A sees B watching', () => a.relay.stats().remoteLive);
    a.client.queued = 10; // the hub's MQTT queue is not empty: the relay must not add to it
    for (let seq = 1; seq <= 400; seq++) a.bus.emit('readings:accepted', 'esp-1', accepted('esp-1', seq, seq * 4000));
    await until(
      'batches dropped',
      async () => (await metric(a, 'hub_cluster_relay_batches_total', { outcome: 'dropped_overflow' })) > 0,
    );
    expect(a.relay.stats().batchesPublished).toBe(0);
    expect(await metric(a, 'hub_cluster_relay_dropped_total', { reason: 'overflow' })).toBeGreaterThan(0);
    expect((a.relay.status() as { pendingBatches: number }).pendingBatches).toBeGreaterThan(0);
    a.client.queued = 0;
    await until('the held batches go out', () => a.relay.stats().batchesPublished > 0);
    await until('B receives them', () => (b.seen['remote:accepted']?.length ?? 0) > 0);
  });

  it('a command for a device on another instance goes through that instance and its result comes back', async () => {
    const broker = new FakeBroker();
    const a = node(broker, 'hub-a');
    const b = node(broker, 'hub-b');
    b.bus.emit('live:watching', true); // B learns where devices are from snapshots and presence
    const sentOnA: { id: number; name: string }[] = [];
    const trackerA = createCommandTracker({ metrics: a.metrics, bus: a.bus, now: Date.now });
    const trackerB = createCommandTracker({ metrics: b.metrics, bus: b.bus, now: Date.now });
    const session = { isReady: () => true, sendCommand: (id: number, name: string) => sentOnA.push({ id, name }) };
    const cmdA = createRemoteCommands({
      relay: a.relay,
      commands: trackerA,
      session: (id) => (id === 'esp-4' ? session : undefined),
      bus: a.bus,
      logger,
    });
    const cmdB = createRemoteCommands({
      relay: b.relay,
      commands: trackerB,
      session: () => undefined,
      bus: b.bus,
      logger,
    });
    cmdA.start();
    cmdB.start();
    try {
      connect(a, 'esp-4');
      await until('B knows esp-4 is on A', () => b.relay.holderOf('esp-4') === 'hub-a');
      const view = await cmdB.send('esp-4', 'identify', [{ key: 'duration_ms', valueType: 6, value: 3000 }]);
      expect(view).toMatchObject({ deviceId: 'esp-4', name: 'identify', state: 'sent', args: { duration_ms: 3000 } });
      expect(sentOnA).toEqual([{ id: view?.commandId, name: 'identify' }]);
      trackerA.result('esp-4', view?.commandId as number, 0, 'blinking');
      await until('B answers done', async () => (await cmdB.get('esp-4', view?.commandId as number))?.state === 'done');
      expect(await cmdB.get('esp-4', view?.commandId as number)).toMatchObject({ status: 0, message: 'blinking' });
      // Held nowhere: the API answers 409 as for an offline device.
      expect(await cmdB.send('esp-nowhere', 'identify', [])).toBeNull();
    } finally {
      cmdA.stop();
      cmdB.stop();
      trackerA.close();
      trackerB.close();
    }
  });
});
