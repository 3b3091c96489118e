// A reconnect storm against two hub instances in this process on a real PostgreSQL and Mosquitto
// (server/cluster/sessions.ts, docs/scaling.md "One session per device, shared device state"): 200
// devices say HELLO at once, and every one joins with its session claimed in PostgreSQL. The HELLO's
// first wait is cut to 100 ms (`joinTimeoutMs`), far below what 200 joins take on a shared machine:
// a join still pending then keeps waiting while the database is connected (counted as slow) instead
// of going on locally without a claim (`degraded`), which is what happened before joins were batched.
// The newest-wins rule holds within one batch: two HELLOs of one device at once leave one session.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MosquittoServer, type PostgresServer, startMosquitto, startPostgres, until } from '../harness/index.ts';
import { type InProcessInstance, startInProcessInstance, stopInProcessCluster } from './cluster-inprocess.ts';
import { TestDevice } from './ingest-device-client.ts';

const ADMIN = 'e'.repeat(40);
const DEVICES = 200;

describe('a HELLO storm on two instances (real PostgreSQL, real Mosquitto)', () => {
  let broker: MosquittoServer;
  let pgServer: PostgresServer;
  let a: InProcessInstance;
  let b: InProcessInstance;
  const tokens = new Map<string, string>();
  const devices: TestDevice[] = [];

  async function holders(): Promise<Map<string, { instance: string; epoch: number }>> {
    const client = new pg.Client(pgServer.url);
    await client.connect();
    try {
      const { rows } = await client.query<{ device_id: string; instance_id: string; epoch: string }>(
        'SELECT device_id, instance_id, epoch FROM esp32hub_sessions',
      );
      return new Map(rows.map((r) => [r.device_id, { instance: r.instance_id, epoch: Number(r.epoch) }]));
    } finally {
      await client.end();
    }
  }

  beforeAll(async () => {
    [broker, pgServer] = await Promise.all([startMosquitto(), startPostgres()]);
    const opts = {
      broker: broker.url,
      database: pgServer.url,
      env: { DEVICE_HANDSHAKES_PER_SEC: '100000' },
      deps: { cluster: { joinTimeoutMs: 100 } },
    };
    a = await startInProcessInstance('a', ADMIN, opts);
    b = await startInProcessInstance('b', ADMIN, opts);
    const registry = a.hub.context().registry;
    if (!registry) throw new Error('no registry');
    for (let i = 0; i < DEVICES; i++) {
      const id = `storm-${i}`;
      tokens.set(id, (await registry.add(id)).token);
    }
    tokens.set('storm-twice', (await registry.add('storm-twice')).token);
    await until('B knows the devices', () => b.hub.context().registry?.get('storm-twice') !== undefined);
  }, 120_000);

  afterAll(async () => {
    await stopInProcessCluster(devices, [a, b], [broker, pgServer]);
  });

  it('200 devices at once: every HELLO joins with its claim (none degraded while the database is up)', async () => {
    const ids = [...tokens.keys()].filter((id) => id !== 'storm-twice');
    const sockets = await Promise.all(
      ids.map(async (id, i) => {
        const d = await TestDevice.connect((i % 2 === 0 ? a : b).deviceUrl, { token: tokens.get(id) as string });
        devices.push(d);
        return d;
      }),
    );
    await Promise.all(sockets.map((d, i) => d.hello(ids[i] as string, 1)));
    for (const i of [a, b]) {
      expect(await i.metric('hub_cluster_hellos_total', { outcome: 'degraded' })).toBe(0);
    }
    const joined =
      (await a.metric('hub_cluster_hellos_total', { outcome: 'joined' })) +
      (await b.metric('hub_cluster_hellos_total', { outcome: 'joined' }));
    expect(joined).toBe(DEVICES);
    // Fewer statements than HELLOs: they were batched.
    const batches =
      (await a.metric('hub_cluster_join_batches_total')) + (await b.metric('hub_cluster_join_batches_total'));
    console.info(
      `${DEVICES} HELLOs in ${batches} join statements; slow (waited past 100 ms): ${
        (await a.metric('hub_cluster_slow_joins_total')) + (await b.metric('hub_cluster_slow_joins_total'))
      }`,
    );
    expect(batches).toBeLessThan(DEVICES);
    // Every device's claim is in PostgreSQL, held by the instance it is connected to.
    const held = await holders();
    for (const [i, id] of ids.entries()) expect(held.get(id)?.instance, id).toBe(i % 2 === 0 ? 'a' : 'b');
    for (const d of sockets) expect(d.closeCode).toBeNull();
  }, 120_000);

  it('two HELLOs of one device in one batch: the later one wins (one session, its epoch is the holder)', async () => {
    const token = tokens.get('storm-twice') as string;
    const [first, second] = await Promise.all([
      TestDevice.connect(a.deviceUrl, { token }),
      TestDevice.connect(a.deviceUrl, { token }),
    ]);
    devices.push(first as TestDevice, second as TestDevice);
    const batchesBefore = await a.metric('hub_cluster_join_batches_total');
    // Both HELLOs leave together: they fall into one batch window of the instance.
    const outcomes = await Promise.allSettled([
      (first as TestDevice).hello('storm-twice', 1),
      (second as TestDevice).hello('storm-twice', 1),
    ]);
    const batches = (await a.metric('hub_cluster_join_batches_total')) - batchesBefore;
    console.info(`two HELLOs of one device went in ${batches} join statement(s)`);
    // Exactly one session survives: the other is closed with REPLACED (4001).
    const closed = await Promise.race([
      (first as TestDevice).closed().then((code) => ({ loser: first as TestDevice, code })),
      (second as TestDevice).closed().then((code) => ({ loser: second as TestDevice, code })),
    ]);
    expect(closed.code).toBe(4001);
    const winner = closed.loser === first ? (second as TestDevice) : (first as TestDevice);
    expect(outcomes.some((o) => o.status === 'fulfilled')).toBe(true);
    await until('one session of the device on A', () => a.hub.context().sessions.size() === DEVICES / 2 + 1);
    expect(winner.closeCode).toBeNull();
    // The winner is the one whose claim PostgreSQL holds: still open after the claims settled.
    const held = (await holders()).get('storm-twice');
    expect(held?.instance).toBe('a');
    const readyz = (await (await fetch(`${a.http}/readyz`)).json()) as {
      cluster: { sessions: { claimed: number; unclaimed: number } };
    };
    expect(readyz.cluster.sessions).toMatchObject({ claimed: DEVICES / 2 + 1, unclaimed: 0 });
    expect(winner.closeCode).toBeNull();
  }, 120_000);
});
