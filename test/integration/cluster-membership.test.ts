/**
 * Cluster membership over a real Mosquitto and the ownership of MQTT devices it decides
 * (server/cluster/membership.ts, docs/scaling.md "MQTT devices with several instances"): two real
 * hubs in this process, each with its own data dir, local log and persistent broker session, each
 * reaching the broker through a TCP relay the test can cut (the broker then sees the connection die
 * as after kill -9 and publishes the hub's will). Simulated boards over MQTT (firmware-sim) publish
 * throughout. No mocks.
 */
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fleet, fleetDeviceIds } from '../../firmware-sim/fleet.ts';
import { mqttConnector } from '../../firmware-sim/mqtt-link.ts';
import { MemoryRecorder } from '../../firmware-sim/recorder.ts';
import { type Membership, startMembership } from '../../server/cluster/membership.ts';
import type { HubContext, HubExtension } from '../../server/hub.ts';
import type { MqttOwnership } from '../../server/mqtt/index.ts';
import type { DeviceRegistry } from '../../server/registry/index.ts';
import { type MosquittoServer, startMosquitto, type TempDir, tempDir } from '../harness/index.ts';
import { startTestHub, type TestHub, telemetry } from './ingest-device-client.ts';
import { MqttTestDevice } from './mqtt-device-client.ts';
import { readRetained, until } from './mqtt-retained.ts';

/** A TCP relay to the broker; `cut()` drops its connections without a word and refuses new ones. */
class CutRelay {
  private readonly sockets = new Set<Socket>();
  private isCut = false;
  private readonly server: Server;
  url = '';

  private constructor(brokerHost: string, brokerPort: number) {
    this.server = createServer((down) => {
      if (this.isCut) {
        down.destroy();
        return;
      }
      const up = tcpConnect(brokerPort, brokerHost);
      for (const s of [down, up]) {
        this.sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => {
          this.sockets.delete(s);
          down.destroy();
          up.destroy();
        });
      }
      down.pipe(up);
      up.pipe(down);
    });
  }

  static async start(brokerHost: string, brokerPort: number): Promise<CutRelay> {
    const relay = new CutRelay(brokerHost, brokerPort);
    await new Promise<void>((resolve) => relay.server.listen(0, '127.0.0.1', resolve));
    relay.url = `mqtt://127.0.0.1:${(relay.server.address() as { port: number }).port}`;
    return relay;
  }

  cut(): void {
    this.isCut = true;
    for (const s of this.sockets) s.destroy();
  }

  restore(): void {
    this.isCut = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Membership (and MQTT ownership) started the way the cluster composition does: before the MQTT connect. */
function membershipExtension(instanceId: string): HubExtension & { membership(): Membership } {
  let m: Membership | null = null;
  return {
    name: `membership-${instanceId}`,
    start(ctx: HubContext) {
      const mqttSide = ctx.mqtt;
      const cfg = ctx.config.mqtt;
      if (!mqttSide || !cfg) throw new Error('MQTT is needed');
      m = startMembership({
        mqtt: mqttSide,
        instanceId,
        topicPrefix: cfg.topicPrefix,
        publicUrl: ctx.config.server.publicUrl,
        logger: ctx.logger,
        metrics: ctx.metrics,
        refreshMs: 500,
      });
      mqttSide.setOwnership(m.ownership);
    },
    async stop() {
      await m?.stop();
    },
    membership() {
      if (!m) throw new Error('not started');
      return m;
    },
  };
}

interface Instance {
  id: string;
  hub: TestHub;
  relay: CutRelay;
  ext: ReturnType<typeof membershipExtension>;
}

const IDS = fleetDeviceIds(6, 'cl-');

describe('several hub instances on one broker: membership and MQTT device ownership', () => {
  let broker: MosquittoServer;
  const dirs: TempDir[] = [];
  const instances: Instance[] = [];
  let registry: DeviceRegistry;

  async function startInstance(id: string, relay?: CutRelay): Promise<Instance> {
    const r = relay ?? (await CutRelay.start(broker.host, broker.port));
    const dir = await tempDir(`cluster-${id}`);
    dirs.push(dir);
    const ext = membershipExtension(id);
    const hub = await startTestHub(
      { MQTT_URL: r.url, MQTT_CLIENT_ID: `cl-${id}`, HUB_PUBLIC_URL: `http://${id}.test:8080` },
      { mqttRetryMs: { min: 100, max: 500 }, extensions: [ext], ...(registry ? { registry } : {}) },
      dir,
    );
    registry ??= hub.registry;
    const inst = { id, hub, relay: r, ext };
    instances.push(inst);
    return inst;
  }
  const members = (i: Instance) => i.ext.membership().members().join(',');
  const storedRefs = (i: Instance, deviceId: string) =>
    [...i.hub.hub.context().log.readAfter(0, 1_000_000)]
      .filter((e) => e.deviceId === deviceId)
      .map((e) => `${e.bootId}|${e.seq}`);

  beforeAll(async () => {
    broker = await startMosquitto();
  });

  afterAll(async () => {
    for (const i of instances.reverse()) {
      await i.hub.stop().catch(() => undefined);
      await i.relay.close().catch(() => undefined);
    }
    for (const d of dirs) await d.remove();
    await broker?.stop();
  });

  it('members see each other; a dead connection leaves by its will, a restart and a graceful stop too', async () => {
    const a = await startInstance('hub-a');
    const b = await startInstance('hub-b');
    for (const i of [a, b]) await until(`${i.id} to see both`, () => members(i) === 'hub-a,hub-b');
    expect(a.ext.membership().member('hub-b')?.url).toBe('http://hub-b.test:8080');
    expect(await a.hub.metricValue('hub_cluster_members')).toBe(2);
    expect(await a.hub.metricValue('hub_cluster_membership_synced')).toBe(1);
    const held = await readRetained(broker.url, 'esp32hub/cluster/v1/members/+');
    expect(JSON.parse(held.get('esp32hub/cluster/v1/members/hub-a') ?? '{}')).toMatchObject({
      instanceId: 'hub-a',
      url: 'http://hub-a.test:8080',
    });

    // B's connection dies without a DISCONNECT (as with kill -9): the broker publishes its will.
    b.relay.cut();
    await until('A to see B leave', () => members(a) === 'hub-a');
    expect(await a.hub.metricValue('hub_cluster_membership_changes_total', { kind: 'left' })).toBe(1);
    expect(
      (await readRetained(broker.url, 'esp32hub/cluster/v1/members/+')).has('esp32hub/cluster/v1/members/hub-b'),
    ).toBe(false);
    // B reaches the broker again: it publishes its record again and both see two members.
    b.relay.restore();
    for (const i of [a, b]) await until(`${i.id} to see both again`, () => members(i) === 'hub-a,hub-b');

    // A graceful stop clears the record; a new process with the same instance id joins again.
    await b.hub.stop();
    instances.splice(instances.indexOf(b), 1);
    await until('A to see B stop', () => members(a) === 'hub-a');
    const b2 = await startInstance('hub-b', b.relay);
    for (const i of [a, b2]) await until(`${i.id} to see the restarted B`, () => members(i) === 'hub-a,hub-b');
    expect(await a.hub.metricValue('hub_cluster_membership_changes_total', { kind: 'joined' })).toBeGreaterThanOrEqual(
      3,
    );

    // A live member's record cleared by someone else is published again by that member.
    const other = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    await other.publishAsync('esp32hub/cluster/v1/members/hub-a', '', { qos: 1, retain: true });
    await other.endAsync();
    await until('A to publish its record again', async () =>
      (await readRetained(broker.url, 'esp32hub/cluster/v1/members/+')).has('esp32hub/cluster/v1/members/hub-a'),
    );
    await until('B to see A again', () => members(b2) === 'hub-a,hub-b');

    // A record no will clears (e.g. of a member that died while a broker with persistence was down):
    // nobody refreshes it, so it is cleared after three refresh periods.
    const ghost = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    const record = { instanceId: 'hub-ghost', startedAtMs: 1, url: null, connection: 1 };
    await ghost.publishAsync('esp32hub/cluster/v1/members/hub-ghost', JSON.stringify(record), { qos: 1, retain: true });
    await ghost.endAsync();
    await until(
      'both to see the ghost',
      () => members(a) === 'hub-a,hub-b,hub-ghost' && members(b2) === 'hub-a,hub-b,hub-ghost',
    );
    await until('both to drop the ghost', () => members(a) === 'hub-a,hub-b' && members(b2) === 'hub-a,hub-b');
    const expired = async (i: Instance) => i.hub.metricValue('hub_cluster_members_expired_total');
    expect((await expired(a)) + (await expired(b2))).toBeGreaterThan(0);
    expect(
      (await readRetained(broker.url, 'esp32hub/cluster/v1/members/+')).has('esp32hub/cluster/v1/members/hub-ghost'),
    ).toBe(false);
  });

  it('each MQTT device is served by exactly one instance; when its owner dies, it continues on the other with nothing lost', async () => {
    const [a, b] = instances as [Instance, Instance];
    await until('both members on both', () => members(a) === 'hub-a,hub-b' && members(b) === 'hub-a,hub-b');
    const tokens = new Map<string, string>();
    for (const id of IDS) tokens.set(id, await a.hub.addDevice(id));
    const owner = (id: string) => a.ext.membership().ownerOf(id);
    const ownedBy = (i: Instance) => IDS.filter((id) => owner(id) === i.id);
    // Both own some (HRW over these ids), and both instances agree on every owner.
    expect(ownedBy(a).length).toBeGreaterThan(0);
    expect(ownedBy(b).length).toBeGreaterThan(0);
    expect(IDS.map((id) => b.ext.membership().ownerOf(id))).toEqual(IDS.map(owner));

    const recorder = new MemoryRecorder();
    const fleet = new Fleet({
      url: broker.url,
      devices: IDS.length,
      idPrefix: 'cl-',
      tokens,
      seed: 17,
      rate: 5,
      connector: mqttConnector(),
      recorder,
      device: { backoff: { initialMs: 200, maxMs: 1000 }, ackTimeoutMs: 3000 },
    });
    const acked = () => fleet.devices.map((d) => d.stats.framesAcked);
    const session = (i: Instance, id: string) => i.hub.hub.context().sessions.get(id)?.isReady() === true;
    fleet.start();
    let summary: Awaited<ReturnType<Fleet['stop']>>;
    try {
      await until('every board acked 10 frames', () => acked().every((n) => n >= 10), 60_000);
      // Exactly one session per device, on its owner; the other stored nothing of it and counted its frames.
      for (const id of IDS) {
        const [mine, other] = owner(id) === 'hub-a' ? [a, b] : [b, a];
        expect(session(mine, id)).toBe(true);
        expect(session(other, id)).toBe(false);
        expect(storedRefs(other, id)).toEqual([]);
      }
      for (const i of [a, b]) {
        expect(
          await i.hub.metricValue('hub_mqtt_messages_total', { direction: 'in', outcome: 'not_owner' }),
        ).toBeGreaterThan(0);
      }

      // A dies (its broker connection drops without DISCONNECT): B takes A's devices.
      const before = acked();
      a.relay.cut();
      await until('B to see A leave', () => members(b) === 'hub-b');
      await until(
        "every board acked 15 more frames, A's through B",
        () => acked().every((n, k) => n >= (before[k] ?? 0) + 15) && ownedBy(a).every((id) => session(b, id)),
        60_000,
      );

      // A comes back: its devices move back to it, B's sessions of them end quietly (reason moved).
      const beforeReturn = acked();
      a.relay.restore();
      await until('both to see two members', () => members(a) === 'hub-a,hub-b' && members(b) === 'hub-a,hub-b');
      await until(
        "A's boards back on A and acking",
        () =>
          ownedBy(a).every((id) => session(a, id) && !session(b, id)) &&
          acked().every((n, k) => n >= (beforeReturn[k] ?? 0) + 10),
        60_000,
      );
      expect(await b.hub.metricValue('hub_device_disconnects_total', { reason: 'moved' })).toBeGreaterThan(0);
    } finally {
      summary = await fleet.stop({ drainMs: 30_000 });
    }
    // Every frame a board produced was acknowledged in the end: what A had not acknowledged when it died
    // was replayed into B (A could not answer any more).
    expect(summary.outboxDepth).toBe(0);
    for (const id of IDS) {
      const stored = new Set([...storedRefs(a, id), ...storedRefs(b, id)]);
      const ackedRefs = recorder.ackedRefs(id).map((r) => `${r.bootId}|${r.seq}`);
      expect(ackedRefs.length).toBeGreaterThan(20);
      // Nothing acknowledged is lost: each acknowledged frame is in the local log of an instance.
      expect(ackedRefs.filter((r) => !stored.has(r))).toEqual([]);
    }
    // A move sends no ERROR of its own on `down`: the boards saw only the new owner's "send HELLO".
    const codes = new Set(fleet.devices.flatMap((d) => Object.keys(d.stats.errorsByCode)));
    expect([...codes].filter((c) => c !== 'UNEXPECTED_MESSAGE')).toEqual([]);
  }, 240_000);

  it('a frame dropped as not ours ends the session: no later ACK covers it (ACKs are cumulative)', async () => {
    // Ownership as the transport sees it, switched by the test: the moment between two views of the
    // members (e.g. before the view is synced after a reconnect) when this instance drops a device's
    // frame while the device keeps publishing in its session here.
    let ours = true;
    const ownership: MqttOwnership = { owns: () => ours, onChange: () => () => undefined };
    const dir = await tempDir('cluster-gap');
    dirs.push(dir);
    const hub = await startTestHub(
      { MQTT_URL: broker.url, MQTT_CLIENT_ID: 'cl-gap', MQTT_TOPIC_PREFIX: 'gap' },
      {
        mqttRetryMs: { min: 100, max: 500 },
        extensions: [{ name: 'ownership', start: (ctx) => ctx.mqtt?.setOwnership(ownership) }],
      },
      dir,
    );
    const d = await MqttTestDevice.connect(broker.url, { deviceId: 'gap-1', prefix: 'gap' });
    try {
      await until('the hub subscribed', async () => (await fetch(`${hub.http}/readyz`)).status === 200);
      await hub.addDevice('gap-1');
      await d.hello(4);
      const base = Date.now();
      for (let seq = 1; seq <= 5; seq++) await d.send(telemetry(4, seq, base + seq * 1000));
      await d.ackOf(4, 5);
      ours = false;
      await d.send(telemetry(4, 6, base + 6000)); // dropped: not ours
      await until('frame 6 dropped', async () => {
        return (await hub.metricValue('hub_mqtt_messages_total', { direction: 'in', outcome: 'not_owner' })) === 1;
      });
      ours = true;
      await d.send(telemetry(4, 7, base + 7000));
      // Frame 7 meets no session: the hub asks for HELLO instead of acknowledging 7 (which would free 6).
      expect(await d.next('error')).toMatchObject({ fatal: true, code: 201 });
      expect(d.history.filter((m) => m.type === 'ack' && m.seq > 5)).toEqual([]);
      // The device replays 6 and 7 after HELLO: both stored.
      await d.hello(4);
      for (const seq of [6, 7]) await d.send(telemetry(4, seq, base + seq * 1000));
      await d.ackOf(4, 7);
      const seqs = [...hub.hub.context().log.readAfter(0, 1000)]
        .filter((e) => e.deviceId === 'gap-1')
        .map((e) => e.seq);
      expect(seqs.sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7]);
      expect(await hub.metricValue('hub_device_disconnects_total', { reason: 'moved' })).toBe(1);
    } finally {
      await d.close();
      await hub.stop();
    }
  });

  it('a session replaced by a newer one on another instance ends without an ERROR on the shared down topic', async () => {
    const dir = await tempDir('cluster-replaced');
    dirs.push(dir);
    const hub = await startTestHub(
      { MQTT_URL: broker.url, MQTT_CLIENT_ID: 'cl-rep', MQTT_TOPIC_PREFIX: 'rep' },
      { mqttRetryMs: { min: 100, max: 500 } },
      dir,
    );
    const d = await MqttTestDevice.connect(broker.url, { deviceId: 'rep-1', prefix: 'rep' });
    try {
      await until('the hub subscribed', async () => (await fetch(`${hub.http}/readyz`)).status === 200);
      await hub.addDevice('rep-1');
      await d.hello(2);
      const ended = new Promise<string>((resolve) => hub.hub.bus.on('device:offline', (i) => resolve(i.reason)));
      // What the cluster sessions do when the device's newer HELLO was claimed on another instance.
      hub.hub.context().sessions.get('rep-1')?.end('REPLACED', 'a newer connection of this device replaced this one');
      expect(await ended).toBe('replaced');
      // Over MQTT the device's new session shares this down topic: an ERROR here would end that one.
      await d.send(telemetry(2, 1, Date.now()));
      expect(await d.next('error')).toMatchObject({ fatal: true, code: 201 });
      expect(d.history.filter((m) => m.type === 'error').map((m) => (m as { code: number }).code)).toEqual([201]);
    } finally {
      await d.close();
      await hub.stop();
    }
  });

  it('the hub role of the dynamic-security plugin gets the cluster topics (records and will work)', async () => {
    const user = 'hub';
    const password = 'hub-broker-password-cl';
    const secured = await startMosquitto({ dynsec: { adminUser: user, adminPassword: password } });
    const relay = await CutRelay.start(secured.host, secured.port);
    const dir = await tempDir('cluster-dynsec');
    dirs.push(dir);
    const ext = membershipExtension('hub-s');
    const login = { username: user, password };
    const hub = await startTestHub(
      {
        MQTT_URL: relay.url,
        MQTT_USERNAME: user,
        MQTT_PASSWORD: password,
        MQTT_DEVICE_ACCESS: 'dynsec',
        MQTT_CLIENT_ID: 'hub-s',
      },
      { mqttRetryMs: { min: 100, max: 500 }, extensions: [ext] },
      dir,
    );
    try {
      // Synced means the broker took the record (its echo came back).
      await until('the record published and synced', () => ext.membership().synced(), 30_000);
      const held = await readRetained(secured.url, 'esp32hub/cluster/v1/members/+', login);
      expect(held.has('esp32hub/cluster/v1/members/hub-s')).toBe(true);
      // The will is published under the same rights: the record goes when the connection dies.
      const watcher = await mqtt.connectAsync(secured.url, { ...login, reconnectPeriod: 0 });
      const cleared = new Promise<void>((resolve) =>
        watcher.on('message', (t, p) => {
          if (t === 'esp32hub/cluster/v1/members/hub-s' && p.length === 0) resolve();
        }),
      );
      await watcher.subscribeAsync('esp32hub/cluster/v1/members/+', { qos: 1 });
      relay.cut();
      await cleared;
      await watcher.endAsync();
      expect((await readRetained(secured.url, 'esp32hub/cluster/v1/members/+', login)).size).toBe(0);
    } finally {
      await hub.stop();
      await relay.close();
      await secured.stop();
    }
  }, 90_000);
});
