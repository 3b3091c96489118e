// ACK_DURABILITY=influx with several instances (docs/scaling.md): a device that moves
// while the ACK gate of its instance still holds its ACKs (InfluxDB has not confirmed the frames) must
// not have its outbox freed by the other instance's WELCOME, and its replays must be stored there, not
// taken for duplicates of frames that exist only on the first instance's disk. Two real hubs in this
// process sharing a real PostgreSQL and Mosquitto; INFLUX_URL points at a closed port, so InfluxDB never
// confirms anything and every ACK stays held.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeFrame, type Telemetry } from '../../server/codec/index.ts';
import type { AcceptedFrame } from '../../server/events.ts';
import type { AcceptedTelemetry } from '../../server/pipeline/ingest.ts';
import { type MosquittoServer, type PostgresServer, startMosquitto, startPostgres, until } from '../harness/index.ts';
import { type InProcessInstance, startInProcessInstance, stopInProcessCluster } from './cluster-inprocess.ts';
import { TEST_CHANNELS, TestDevice, telemetry } from './ingest-device-client.ts';

const ADMIN = 'e'.repeat(40);
const DEVICE = 'esp-influx-mover';

interface Instance extends InProcessInstance {
  /** `boot/seq` of the frames this hub stored (accepted into its local log). */
  stored: Set<string>;
}

async function startInstance(id: string, env: { broker: string; database: string }): Promise<Instance> {
  const i = await startInProcessInstance(id, ADMIN, { ...env, env: { ACK_DURABILITY: 'influx' } });
  const stored = new Set<string>();
  i.hub.bus.on('readings:accepted', (deviceId: string, a: AcceptedFrame) => {
    if (deviceId !== DEVICE) return;
    const t = decodeFrame((a as AcceptedTelemetry).frame) as Telemetry;
    stored.add(`${t.bootId}/${t.seq}`);
  });
  return { ...i, stored };
}

describe('ACK_DURABILITY=influx: a device moving while its ACKs are held (real PostgreSQL, real Mosquitto)', () => {
  let broker: MosquittoServer;
  let pg: PostgresServer;
  let a: Instance;
  let b: Instance;
  let token: string;
  const devices: TestDevice[] = [];

  beforeAll(async () => {
    [broker, pg] = await Promise.all([startMosquitto(), startPostgres()]);
    const env = { broker: broker.url, database: pg.url };
    a = await startInstance('a', env);
    b = await startInstance('b', env);
    const registry = a.hub.context().registry;
    if (!registry) throw new Error('no registry');
    token = (await registry.add(DEVICE)).token;
    await until('B knows the device', () => b.hub.context().registry?.get(DEVICE) !== undefined);
  }, 120_000);

  afterAll(async () => {
    await stopInProcessCluster(devices, [a, b], [broker, pg]);
  });

  it("B's WELCOME names nothing InfluxDB has not confirmed, and B stores the replays of frames only A's disk holds", async () => {
    const boot = 9;
    const onA = await TestDevice.connect(a.deviceUrl, { token });
    devices.push(onA);
    await onA.hello(DEVICE, boot, { uptimeMs: 60_000, timeSynced: false });
    onA.send({ type: 'descriptors', channels: TEST_CHANNELS });
    for (let seq = 1; seq <= 5; seq++) onA.send(telemetry(boot, seq, 50_000 + seq * 1000, 2, { unsynced: true }));
    // Durable in A's local log, their ACKs held by A's gate (InfluxDB never confirms).
    await until('A stored 5 frames', () => a.stored.size === 5);
    await until('A holds 5 ACKs for InfluxDB', async () => (await a.metric('hub_ack_awaiting_influx_frames')) === 5);
    expect(onA.history.some((m) => m.type === 'ack')).toBe(false);

    // The device's connection to A ends; A writes what it has behind (at once, at session end).
    await onA.close();
    await until('A holds no session', () => a.hub.context().sessions.size() === 0);
    await a.hub.context().cluster?.sessions.flush();

    const onB = await TestDevice.connect(b.deviceUrl, { token });
    devices.push(onB);
    const welcome = await onB.hello(DEVICE, boot, { uptimeMs: 90_000, timeSynced: false });
    expect(welcome.lastAck, 'WELCOME on B frees nothing InfluxDB has not confirmed').toBeNull();
    if (!welcome.descriptorsKnown) onB.send({ type: 'descriptors', channels: TEST_CHANNELS });
    for (let seq = 1; seq <= 5; seq++) onB.send(telemetry(boot, seq, 50_000 + seq * 1000, 2, { unsynced: true }));
    // B stores every replay (A's copies exist only on A's disk until InfluxDB takes them).
    await until('B stored the 5 replays', () => b.stored.size === 5);
    expect([...b.stored].sort()).toEqual([1, 2, 3, 4, 5].map((s) => `${boot}/${s}`));
    await until(
      'B holds their 5 ACKs for InfluxDB',
      async () => (await b.metric('hub_ack_awaiting_influx_frames')) === 5,
    );
    expect(await b.metric('hub_duplicate_frames_total')).toBe(0);
  });
});
