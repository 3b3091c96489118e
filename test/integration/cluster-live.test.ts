// Live view, presence, commands and the offline alert rule across two hub instances
// (server/cluster/relay.ts, remote-commands.ts; docs/scaling.md "Live view and commands across
// instances"). Two real hubs in this process with the live extension, each with its own data dir,
// sharing a real PostgreSQL (registry, session claims) and a real Mosquitto (the bus between them);
// devices are real WebSocket clients speaking the protocol. InfluxDB is not needed here: INFLUX_URL
// (required in cluster mode) points at a closed port and the forwarders keep retrying.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { AlertEvent } from '../../server/alerts/types.ts';
import { type MosquittoServer, type PostgresServer, startMosquitto, startPostgres, until } from '../harness/index.ts';
import { type InProcessInstance, startInProcessInstance } from './cluster-inprocess.ts';
import { TEST_CHANNELS, TestDevice, telemetry } from './ingest-device-client.ts';

const ADMIN = 'c'.repeat(40);

type Instance = InProcessInstance;

interface Live {
  // biome-ignore lint/suspicious/noExplicitAny: JSON messages
  messages: any[];
  ws: WebSocket;
  // biome-ignore lint/suspicious/noExplicitAny: JSON messages
  waitFor(what: string, pred: (m: any) => boolean): Promise<any>;
}

async function liveClient(i: Instance): Promise<Live> {
  const ws = new WebSocket(`ws://127.0.0.1:${i.port}/v1/live`);
  // biome-ignore lint/suspicious/noExplicitAny: JSON messages
  const messages: any[] = [];
  ws.on('message', (d) => messages.push(JSON.parse(String(d))));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const client: Live = {
    messages,
    ws,
    waitFor: (what, pred) => until(`${what} (live client on ${i.id})`, () => messages.find(pred)),
  };
  await client.waitFor('hello', (m) => m.type === 'hello');
  return client;
}

const auth = { authorization: `Bearer ${ADMIN}` };

async function api(i: Instance, method: string, path: string, body?: unknown) {
  const res = await fetch(`${i.http}${path}`, {
    method,
    headers: { ...auth, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function connectDevice(i: Instance, id: string, token: string, bootId: number): Promise<TestDevice> {
  const d = await TestDevice.connect(i.deviceUrl, { token });
  const welcome = await d.hello(id, bootId, { uptimeMs: 60_000 });
  if (!welcome.descriptorsKnown) d.send({ type: 'descriptors', channels: TEST_CHANNELS });
  return d;
}

describe('live view, presence, commands and offline alerts across two instances (real Mosquitto, real PostgreSQL)', () => {
  let broker: MosquittoServer;
  let pg: PostgresServer;
  let a: Instance;
  let b: Instance;
  const tokens = new Map<string, string>();
  const devices: TestDevice[] = [];

  beforeAll(async () => {
    [broker, pg] = await Promise.all([startMosquitto(), startPostgres()]);
    const shared = { broker: broker.url, database: pg.url, live: true };
    // A watches offline devices after 1 s; B's offline rule is off (A alone shows the rule's view).
    a = await startInProcessInstance('a', ADMIN, { ...shared, env: { ALERT_OFFLINE_AFTER_SEC: '1' } });
    b = await startInProcessInstance('b', ADMIN, { ...shared, env: { ALERT_OFFLINE_AFTER_SEC: '0' } });
    const registry = a.hub.context().registry;
    if (!registry) throw new Error('no registry');
    for (const id of ['esp-on-b', 'esp-quiet', 'esp-mover', 'esp-gone']) tokens.set(id, (await registry.add(id)).token);
    // The shared registry: B knows the tokens too.
    await until('B knows the devices', () => b.hub.context().registry?.get('esp-gone') !== undefined);
    // Each sees the other as a member.
    await until(
      'A and B see each other',
      async () => (await a.metric('hub_cluster_members')) === 2 && (await b.metric('hub_cluster_members')) === 2,
    );
  }, 120_000);

  afterAll(async () => {
    for (const d of devices) await d.close().catch(() => undefined);
    await a?.hub.stop();
    await b?.hub.stop();
    await Promise.all([broker?.stop(), pg?.stop(), a?.dir.remove(), b?.dir.remove()]);
  });

  it('publishes no frame batch while no other instance has live clients', async () => {
    const d = await connectDevice(b, 'esp-quiet', tokens.get('esp-quiet') as string, 1);
    devices.push(d);
    // Its presence and descriptor set go to A (A's offline rule needs to know where devices are).
    await until(
      'A heard of esp-quiet',
      async () =>
        (await a.metric('hub_cluster_relay_records_total', { direction: 'in', kind: 'online' })) >= 1 &&
        (await a.metric('hub_cluster_relay_records_total', { direction: 'in', kind: 'descriptors' })) >= 1,
    );
    const before = await b.metric('hub_cluster_relay_batches_total', { direction: 'out', outcome: 'sent' });
    for (let seq = 1; seq <= 20; seq++) d.send(telemetry(1, seq, Date.now(), 4));
    await d.ackOf(1, 20);
    expect(await b.metric('hub_cluster_relay_records_total', { direction: 'out', kind: 'frame' })).toBe(0);
    expect(await b.metric('hub_cluster_relay_batches_total', { direction: 'out', outcome: 'sent' })).toBe(before);
    // /readyz says so: B sees A as a peer that does not watch live, but needs presence.
    const ready = (await (await fetch(`${b.http}/readyz`)).json()) as { cluster: { relay: unknown } };
    expect(ready.cluster.relay).toMatchObject({ peers: ['a'], remoteInterest: { live: false, presence: true } });
  });

  it('a live client on A sees readings and presence of a device connected to B', async () => {
    const live = await liveClient(a);
    live.ws.send(JSON.stringify({ type: 'subscribe', sub: 'fleet' }));
    await live.waitFor('subscribed', (m) => m.type === 'subscribed');
    const d = await connectDevice(b, 'esp-on-b', tokens.get('esp-on-b') as string, 7);
    devices.push(d);
    const online = await live.waitFor(
      'esp-on-b online',
      (m) => m.type === 'presence' && m.device === 'esp-on-b' && m.state === 'online',
    );
    expect(online).toMatchObject({ firmwareVersion: 'test-1.0.0', bootId: 7, reason: 'connected' });
    // Readings: A's client gets the values B accepted, decoded with B's descriptors and time mapping.
    const start = Date.now();
    let seq = 0;
    const data = await until('readings of esp-on-b on A', () => {
      d.send(telemetry(7, ++seq, Date.now(), 2));
      return live.messages.find((m) => m.type === 'data' && m.updates['esp-on-b']?.temperature);
    });
    const temperature = data.updates['esp-on-b'].temperature as [number, number][];
    expect(temperature.length).toBeGreaterThan(0);
    for (const [t, v] of temperature) {
      // telemetry(): raw 2000 + seq*10 + i (scale -2), sample i at baseTime + i*1000
      const i = Math.round(v * 100 - 2000) % 10;
      const s = (Math.round(v * 100 - 2000) - i) / 10;
      expect(s).toBeGreaterThanOrEqual(1);
      expect(s).toBeLessThanOrEqual(seq);
      expect([0, 1]).toContain(i);
      expect(t).toBeGreaterThanOrEqual(start + i * 1000 - 1);
      expect(t).toBeLessThanOrEqual(Date.now() + i * 1000);
    }
    // The fleet view (REST) lists it online with its channels.
    const listed = await api(a, 'GET', '/api/devices/esp-on-b');
    expect(listed.body.device).toMatchObject({ id: 'esp-on-b', state: 'online', firmwareVersion: 'test-1.0.0' });
    expect(await b.metric('hub_cluster_relay_records_total', { direction: 'out', kind: 'frame' })).toBeGreaterThan(0);
    live.ws.close();
  });

  it("a command sent on A's API reaches the device on B and its result comes back to A's GET", async () => {
    const onB = await connectDevice(b, 'esp-mover', tokens.get('esp-mover') as string, 3);
    devices.push(onB);
    // A knows where it is (session claims in PostgreSQL).
    const post = await api(a, 'POST', '/api/devices/esp-mover/commands', {
      name: 'identify',
      args: { duration_ms: 1500 },
    });
    expect(post.status).toBe(202);
    expect(post.body).toMatchObject({ deviceId: 'esp-mover', name: 'identify', state: 'sent' });
    const command = await onB.next('command');
    expect(command).toMatchObject({ commandId: post.body.commandId, name: 'identify' });
    onB.send({ type: 'command_accepted', commandId: command.commandId });
    onB.send({ type: 'command_result', commandId: command.commandId, status: 0, message: 'blinking' });
    const done = await until('A answers done', async () => {
      const got = await api(a, 'GET', `/api/devices/esp-mover/commands/${command.commandId}`);
      return got.body.state === 'done' ? got : null;
    });
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({ status: 0, message: 'blinking', commandId: command.commandId });
    // Online nowhere: 409 as today.
    const nowhere = await api(a, 'POST', '/api/devices/esp-gone/commands', { name: 'identify' });
    expect(nowhere.status).toBe(409);
    expect((nowhere.body.error as { code: string }).code).toBe('DEVICE_OFFLINE');
  });

  it('a device that moves from A to B raises no offline alert on A; one that goes nowhere does', async () => {
    // esp-mover connects to A (a session it may hold on B ends: newest wins), leaves, and comes back
    // on B (a load balancer may send a device anywhere); esp-gone leaves A for good.
    const onA = await connectDevice(a, 'esp-mover', tokens.get('esp-mover') as string, 4);
    const gone = await connectDevice(a, 'esp-gone', tokens.get('esp-gone') as string, 1);
    await onA.close();
    await gone.close();
    const back = await connectDevice(b, 'esp-mover', tokens.get('esp-mover') as string, 4);
    devices.push(back);
    // A's rule fires for the device that went nowhere (1 s) …
    const alerts = await until('A fires for esp-gone', async () => {
      const got = (await api(a, 'GET', '/api/alerts')).body.alerts as AlertEvent[];
      return got.some((e) => e.device === 'esp-gone' && e.rule === 'offline') ? got : null;
    });
    // … and, by then, not for the one online on B.
    expect(alerts.filter((e) => e.device === 'esp-mover')).toEqual([]);
    const later = (await api(a, 'GET', '/api/alerts')).body.alerts as AlertEvent[];
    expect(later.filter((e) => e.device === 'esp-mover')).toEqual([]);
  });
});
