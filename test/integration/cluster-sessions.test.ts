// One session per device across two hub instances and the device state they share
// (server/cluster/sessions.ts; docs/scaling.md "One session per device, shared device state"). Two
// real hubs in this process, each with its own data dir and local log, sharing a real PostgreSQL
// (registry, session claims, device state) and a real Mosquitto (required in cluster mode); devices
// are real WebSocket clients speaking the protocol. InfluxDB is not needed for what is checked here
// (the time mapping each hub gives a frame, which is what its points in InfluxDB would carry):
// INFLUX_URL points at a closed port and the forwarders keep retrying. The full stack with InfluxDB
// and a load balancer is test/integration/cluster.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../harness/index.ts';
import {
  type InProcessFleet,
  type InProcessInstance,
  type InProcessServers,
  registerFleet,
  startInProcessInstance,
  startInProcessServers,
  stopInProcessCluster,
} from './cluster-inprocess.ts';
import { TEST_CHANNELS, telemetry } from './ingest-device-client.ts';

const ADMIN = 'd'.repeat(40);

describe('one session per device and shared device state across two instances (real PostgreSQL, real Mosquitto)', () => {
  let servers: InProcessServers;
  let a: InProcessInstance;
  let b: InProcessInstance;
  let fleet: InProcessFleet;
  const connect = (i: InProcessInstance, deviceId: string) => fleet.connect(i, deviceId);

  beforeAll(async () => {
    servers = await startInProcessServers();
    // A writes its devices' state behind only when their sessions end (B's default: every 250 ms), so
    // a device that moves from A to B while its session on A is open meets B before A's positions.
    a = await startInProcessInstance('a', ADMIN, {
      ...servers.shared,
      recordAccepted: true,
      deps: { cluster: { writeBehindIntervalMs: 3_600_000 } },
    });
    b = await startInProcessInstance('b', ADMIN, { ...servers.shared, recordAccepted: true });
    fleet = await registerFleet([a, b], ['esp-twice', 'esp-mover', 'esp-both', 'esp-revoked']);
  }, 120_000);

  afterAll(async () => {
    await stopInProcessCluster(fleet?.connected ?? [], [a, b], [servers]);
  });

  it('the same device id connecting to both instances ends with one session: the older is closed with 4001', async () => {
    const first = await connect(a, 'esp-twice');
    await first.hello('esp-twice', 1);
    expect(a.sessions()).toBe(1);
    const second = await connect(b, 'esp-twice');
    const welcomedAt = Date.now();
    await second.hello('esp-twice', 1);
    const code = await first.closed();
    console.info(`older session on A closed ${Date.now() - welcomedAt} ms after WELCOME on B`);
    expect(code).toBe(4001);
    expect(first.history.some((m) => m.type === 'error' && m.code === 207)).toBe(true); // REPLACED
    await until('A holds no session', () => a.sessions() === 0);
    expect(b.sessions()).toBe(1);
    expect(second.closeCode).toBeNull();
    expect(await a.metric('hub_cluster_sessions_replaced_total')).toBe(1);
    const ready = await fetch(`${a.http}/readyz`);
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as { cluster: unknown }).cluster).toMatchObject({
      instanceId: 'a',
      database: 'connected',
      sessions: { claimed: 0, unclaimed: 0 },
    });
    // And back: the newest wins again, wherever it lands.
    const third = await connect(a, 'esp-twice');
    await third.hello('esp-twice', 1);
    expect(await second.closed()).toBe(4001);
    await until('B holds no session', () => b.sessions() === 0);
    expect(a.sessions()).toBe(1);
  });

  it("a device with unsynced time moving from A to B: B maps its boot with A's offset, replays are the same points, and WELCOME reports the last ACK written behind", async () => {
    const boot = 5;
    const onA = await connect(a, 'esp-mover');
    const helloAt = Date.now();
    await onA.hello('esp-mover', boot, { uptimeMs: 60_000, timeSynced: false });
    onA.send({ type: 'descriptors', channels: TEST_CHANNELS });
    for (let seq = 1; seq <= 5; seq++) onA.send(telemetry(boot, seq, 50_000 + seq * 1000, 2, { unsynced: true }));
    await onA.ackOf(boot, 5);
    const offsetOnA = a.accepted('esp-mover').get(`${boot}/1`) as number;
    expect(offsetOnA).toBeGreaterThan(0);

    // The device's path changes: it reaches B, announcing an uptime 7 s off what A's anchor implies
    // (network delays, a slow reconnect): B alone would anchor the boot 7 s away from A.
    const onB = await connect(b, 'esp-mover');
    const welcome = await onB.hello('esp-mover', boot, {
      uptimeMs: 60_000 + (Date.now() - helloAt) - 7_000,
      timeSynced: false,
    });
    expect(await onA.closed()).toBe(4001);
    // Whatever WELCOME said, the device replays from it: frames A stored that B does not know are
    // stored again by B, with the same offset (the same points in InfluxDB); known ones are duplicates.
    const from = welcome.lastAck?.seq ?? 0;
    console.info(`WELCOME on B: last ACK ${JSON.stringify(welcome.lastAck)} (replay from seq ${from + 1})`);
    if (!welcome.descriptorsKnown) onB.send({ type: 'descriptors', channels: TEST_CHANNELS });
    for (let seq = from + 1; seq <= 8; seq++)
      onB.send(telemetry(boot, seq, 50_000 + seq * 1000, 2, { unsynced: true }));
    await onB.ackOf(boot, 8);
    const onBOffsets = b.accepted('esp-mover');
    expect([...onBOffsets.keys()].sort()).toEqual(
      Array.from({ length: 8 - from }, (_, i) => `${boot}/${from + 1 + i}`).sort(),
    );
    for (const [frame, offset] of onBOffsets) expect({ frame, offset }).toEqual({ frame, offset: offsetOnA });

    // B writes its positions behind (at once when the session ends); a later HELLO anywhere reports them.
    await onB.close();
    await until(
      "B's state written behind",
      async () =>
        (await b.metric('hub_cluster_state_writes_total', { outcome: 'written' })) >= 1 &&
        (await b.metric('hub_cluster_state_pending')) === 0,
    );
    const backOnA = await connect(a, 'esp-mover');
    const again = await backOnA.hello('esp-mover', boot, { uptimeMs: 90_000, timeSynced: false });
    expect(again.lastAck).toEqual({ bootId: boot, seq: 8 }); // A itself stored only up to 5
    expect(again.descriptorsKnown).toBe(true);
    // A replay of what B stored is a duplicate on A: acknowledged, not stored again.
    backOnA.send(telemetry(boot, 7, 57_000, 2, { unsynced: true }));
    await backOnA.ackOf(boot, 7);
    expect(a.accepted('esp-mover').has(`${boot}/7`)).toBe(false);
    backOnA.send(telemetry(boot, 9, 59_000, 2, { unsynced: true }));
    await backOnA.ackOf(boot, 9);
    expect(a.accepted('esp-mover').get(`${boot}/9`)).toBe(offsetOnA);
  });

  it('HELLOs of one unsynced boot reaching both instances at once (uptimes 7 s apart): one session stays, and both instances store the boot at the one offset PostgreSQL agreed', async () => {
    const id = 'esp-both';
    const boot = 11;
    const [onA, onB] = await Promise.all([connect(a, id), connect(b, id)]);
    // Both HELLOs race: each instance claims the session and proposes its own anchor for the boot.
    const hellos = await Promise.allSettled([
      onA.hello(id, boot, { uptimeMs: 120_000, timeSynced: false }),
      onB.hello(id, boot, { uptimeMs: 113_000, timeSynced: false }),
    ]);
    await until('one session of the device, on one instance', () => {
      const held = [a, b].filter((i) => i.hub.context().sessions.get(id) !== undefined);
      return held.length === 1 && [onA, onB].filter((d) => d.closeCode === null).length === 1;
    });
    const survivor = onA.closeCode === null ? { d: onA, i: a, other: b } : { d: onB, i: b, other: a };
    const welcomed = hellos[survivor.d === onA ? 0 : 1];
    expect(welcomed?.status, 'the session that stayed got its WELCOME').toBe('fulfilled');
    survivor.d.send({ type: 'descriptors', channels: TEST_CHANNELS });
    for (let seq = 1; seq <= 3; seq++)
      survivor.d.send(telemetry(boot, seq, 50_000 + seq * 1000, 2, { unsynced: true }));
    await survivor.d.ackOf(boot, 3);
    const agreed = survivor.i.accepted(id).get(`${boot}/1`) as number;
    expect(agreed).toBeGreaterThan(0);

    // The device continues on the other instance (which lost the race) with yet another uptime.
    const again = await connect(survivor.other, id);
    const welcome = await again.hello(id, boot, { uptimeMs: 125_000, timeSynced: false });
    if (!welcome.descriptorsKnown) again.send({ type: 'descriptors', channels: TEST_CHANNELS });
    for (let seq = 4; seq <= 6; seq++) again.send(telemetry(boot, seq, 50_000 + seq * 1000, 2, { unsynced: true }));
    await again.ackOf(boot, 6);
    expect(await survivor.d.closed()).toBe(4001);
    const offsets = [...survivor.i.accepted(id), ...survivor.other.accepted(id)];
    expect(offsets.map(([frame]) => frame).sort()).toEqual([1, 2, 3, 4, 5, 6].map((s) => `${boot}/${s}`));
    for (const [frame, offset] of offsets) expect({ frame, offset }).toEqual({ frame, offset: agreed });
  });

  it('a revoke on one instance closes the device session on the other (1008)', async () => {
    const d = await connect(b, 'esp-revoked');
    await d.hello('esp-revoked', 1);
    const registry = a.hub.context().registry;
    if (!registry) throw new Error('no registry');
    const revokedAt = Date.now();
    await registry.revoke('esp-revoked');
    expect(await d.closed()).toBe(1008);
    console.info(`revoke on A → session on B closed in ${Date.now() - revokedAt} ms`);
    expect(d.history.some((m) => m.type === 'error' && m.code === 208)).toBe(true); // REVOKED
    await until('B holds no session of it', () => b.hub.context().sessions.get('esp-revoked') === undefined);
  });
});
