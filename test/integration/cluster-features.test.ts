// Per-instance features with several instances (docs/scaling.md, "Features with several instances"):
// the MQTT readings bridge's retained status and OTA's answer for a board held by another instance.
// Real hubs in this process (buildHub) with their own data dirs, sharing a real PostgreSQL (registry,
// session claims) and a real Mosquitto (the bus between them and the user's broker for the bridge);
// the device is a real WebSocket client speaking the protocol. InfluxDB is not needed: INFLUX_URL
// (required in cluster mode) points at a closed port and the forwarders keep retrying.
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type InfluxServer,
  influxEnv,
  type MosquittoServer,
  type PostgresServer,
  startInflux,
  startMosquitto,
  startPostgres,
  until,
} from '../harness/index.ts';
import { type InProcessInstance, startInProcessInstance } from './cluster-inprocess.ts';
import { TEST_CHANNELS, TestDevice } from './ingest-device-client.ts';
import { readRetained } from './mqtt-retained.ts';

const ADMIN = 'd'.repeat(40);

type Instance = InProcessInstance;

function startInstance(id: string, env: { broker: string; database: string; influx: InfluxServer }): Promise<Instance> {
  return startInProcessInstance(id, ADMIN, {
    broker: env.broker,
    database: env.database,
    env: {
      ...influxEnv(env.influx),
      INFLUX_STATS_INTERVAL_MS: '250',
      MQTT_CLIENT_ID: 'hub-cluster-features',
      MQTT_BRIDGE: 'on',
      MQTT_BRIDGE_INTERVAL_MS: '100',
    },
  });
}

describe('per-instance features with two and three instances (real Mosquitto, real PostgreSQL)', () => {
  let broker: MosquittoServer;
  let pg: PostgresServer;
  let influx: InfluxServer;
  let env: { broker: string; database: string; influx: InfluxServer };
  const instances: Instance[] = [];
  let a: Instance;
  let b: Instance;
  let device: TestDevice | null = null;

  beforeAll(async () => {
    [broker, pg, influx] = await Promise.all([startMosquitto(), startPostgres(), startInflux({ bucket: 'features' })]);
    env = { broker: broker.url, database: pg.url, influx };
    a = await startInstance('a', env);
    instances.push(a);
    b = await startInstance('b', env);
    instances.push(b);
    const registry = a.hub.context().registry;
    if (!registry) throw new Error('no registry');
    const { token } = await registry.add('esp-on-b');
    await until('B knows the device', () => b.hub.context().registry?.get('esp-on-b') !== undefined);
    device = await TestDevice.connect(b.deviceUrl, { token });
    const welcome = await device.hello('esp-on-b', 1, { uptimeMs: 60_000 });
    if (!welcome.descriptorsKnown) device.send({ type: 'descriptors', channels: TEST_CHANNELS });
    await until(
      'the bridge of B published esp-on-b online',
      async () =>
        (await readRetained(broker.url, 'esp32hub/v1/esp-on-b/status')).get('esp32hub/v1/esp-on-b/status') === 'online',
    );
  }, 120_000);

  afterAll(async () => {
    await device?.close();
    for (const i of instances.reverse()) await i.hub.stop().catch(() => undefined);
    for (const i of instances) await i.dir.remove();
    await Promise.all([broker?.stop(), pg?.stop(), influx?.stop()]);
  }, 60_000);

  it('OTA for a board held by another instance is refused with a code naming that instance, not DEVICE_OFFLINE', async () => {
    const res = await fetch(`${a.http}/api/devices/esp-on-b/ota`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ imageId: '0123456789abcdef' }),
    });
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(res.status).toBe(409);
    expect(body.error.code).toBe('OTA_DEVICE_ON_OTHER_INSTANCE');
    expect(body.error.message).toContain('instance b');
  });

  it('an instance starting does not publish offline for a device another instance holds (the retained status stays online)', async () => {
    const watcher = await mqtt.connectAsync(broker.url, { clean: true, reconnectPeriod: 0 });
    const statuses: string[] = [];
    watcher.on('message', (topic, payload, packet) => {
      if (!packet.retain && topic === 'esp32hub/v1/esp-on-b/status') statuses.push(payload.toString('utf8'));
    });
    await watcher.subscribeAsync('esp32hub/v1/esp-on-b/status', { qos: 1 });
    try {
      // A third instance: its bridge's start pass covers every registered device without a session on it.
      const c = await startInstance('c', env);
      instances.push(c);
      await until(
        "C's bridge decided about esp-on-b (an offline published, or skipped as held by B)",
        async () =>
          statuses.includes('offline') ||
          (await c.metric('hub_mqtt_bridge_status_skipped_total', { reason: 'held_elsewhere' })) >= 1,
      );
      expect(statuses).not.toContain('offline');
      const held = await readRetained(broker.url, 'esp32hub/v1/esp-on-b/status');
      expect(held.get('esp32hub/v1/esp-on-b/status')).toBe('online');
    } finally {
      await watcher.endAsync();
    }
  }, 60_000);

  it('each instance writes its hub_stats under its own instance id (instances on one host do not share a series)', async () => {
    const query = async (q: string) => {
      const res = await fetch(`${influx.engineUrl}/query?db=${influx.bucket}&q=${encodeURIComponent(q)}`);
      const body = (await res.json()) as { results: { series?: { values: unknown[][] }[] }[] };
      return body.results[0]?.series?.[0]?.values ?? [];
    };
    const hubs = async () => (await query('SHOW TAG VALUES FROM "hub_stats" WITH KEY = "hub"')).map((v) => v[1]);
    // Both instances run in this process, on one host: before, both wrote hub=<host name>.
    await until(
      'hub_stats points of both instances (a few each)',
      async () => Number((await query('SELECT count("frames_per_s") FROM "hub_stats"'))[0]?.[1] ?? 0) >= 8,
    );
    expect(await hubs()).toEqual(expect.arrayContaining(['a', 'b']));
  }, 60_000);
});
