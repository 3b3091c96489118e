/**
 * The simulator over MQTT (`--transport mqtt`, firmware-sim/mqtt-link.ts) → a real Mosquitto (dynamic
 * security: per-device logins the hub grants) → a real hub → its durable local log → a real InfluxDB,
 * with the readings bridge and Home Assistant discovery on:
 * - every reading the boards saw acknowledged is stored exactly once, in the local log and in InfluxDB
 *   by value, across a hub restart while the boards keep publishing (the broker holds their frames for
 *   the hub's persistent session);
 * - the bridge's retained state and presence, and the HA entities, describe the boards; a press on the
 *   identify button reaches a board as a command and comes back done;
 * - boards that stop say so (their last frame), and their status turns offline.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fleet, type FleetSummary, fleetDeviceIds } from '../../firmware-sim/fleet.ts';
import { mqttConnector } from '../../firmware-sim/mqtt-link.ts';
import { MemoryRecorder } from '../../firmware-sim/recorder.ts';
import type { CommandUpdate } from '../../server/events.ts';
import {
  type InfluxServer,
  influxEnv,
  type MosquittoServer,
  startInflux,
  startMosquitto,
  type TempDir,
  tempDir,
} from '../harness/index.ts';
import { startTestHub, type TestHub } from './ingest-device-client.ts';
import { readRetained, until } from './mqtt-retained.ts';
import { runScript } from './run-script.ts';

const HUB_USER = 'hub';
const HUB_PASSWORD = 'hub-broker-password-2';
const IDS = fleetDeviceIds(3, 'mq-sim-');
/** The hub's login (the dynsec admin) may read every topic: the tests read retained messages with it. */
const LOGIN = { username: HUB_USER, password: HUB_PASSWORD };
const HA_LOGIN = { username: 'homeassistant', password: 'ha-broker-password-1' };

/**
 * Home Assistant's broker login, as docs/mqtt.md tells the operator to create it: read the configs,
 * states and statuses, publish to the command topics, and nothing else.
 */
async function createHaLogin(url: string): Promise<void> {
  const admin = await mqtt.connectAsync(url, { ...LOGIN, reconnectPeriod: 0 });
  try {
    const answered = new Promise<{ command: string; error?: string }[]>((resolve) => {
      admin.on('message', (_t, p) => {
        const r = JSON.parse(p.toString()).responses as { command: string; error?: string }[];
        if (r.some((x) => x.command === 'createClient')) resolve(r);
      });
    });
    await admin.subscribeAsync('$CONTROL/dynamic-security/v1/response', { qos: 1 });
    const acls = [
      { acltype: 'subscribePattern', topic: 'homeassistant/#', allow: true },
      { acltype: 'subscribePattern', topic: 'esp32hub/v1/+/state', allow: true },
      { acltype: 'subscribePattern', topic: 'esp32hub/v1/+/status', allow: true },
      { acltype: 'publishClientSend', topic: 'esp32hub/v1/+/cmd/+', allow: true },
      { acltype: 'publishClientSend', topic: 'homeassistant/status', allow: true },
    ];
    await admin.publishAsync(
      '$CONTROL/dynamic-security/v1',
      JSON.stringify({
        commands: [
          { command: 'createRole', rolename: 'homeassistant', acls },
          { command: 'createClient', ...HA_LOGIN, roles: [{ rolename: 'homeassistant' }] },
        ],
      }),
      { qos: 1 },
    );
    const responses = await answered;
    expect(responses.filter((r) => r.error)).toEqual([]);
  } finally {
    await admin.endAsync();
  }
}

describe('simulator over MQTT → Mosquitto → hub', () => {
  let broker: MosquittoServer;
  let influx: InfluxServer;
  let dir: TempDir;
  let h: TestHub;
  const tokens = new Map<string, string>();

  const startHub = async () => {
    h = await startTestHub(
      {
        MQTT_URL: broker.url,
        MQTT_USERNAME: HUB_USER,
        MQTT_PASSWORD: HUB_PASSWORD,
        MQTT_DEVICE_ACCESS: 'dynsec',
        MQTT_CLIENT_ID: 'hub-sim-test',
        MQTT_BRIDGE: 'on',
        MQTT_BRIDGE_INTERVAL_MS: '100',
        MQTT_HA_DISCOVERY: 'on',
        ...influxEnv(influx),
        INFLUX_FLUSH_INTERVAL_MS: '50',
        INFLUX_STATS_INTERVAL_MS: '0',
      },
      { mqttRetryMs: { min: 100, max: 1000 } },
      dir,
    );
    await until('the hub to be ready with MQTT', async () => (await fetch(`${h.http}/readyz`)).status === 200);
  };

  beforeAll(async () => {
    broker = await startMosquitto({ dynsec: { adminUser: HUB_USER, adminPassword: HUB_PASSWORD } });
    influx = await startInflux({ bucket: 'sim-mqtt' });
    dir = await tempDir('sim-mqtt');
    await startHub();
    // Registered through the hub, which grants each board its broker login.
    for (const id of IDS) tokens.set(id, (await h.hub.context().registry?.add(id))?.token ?? '');
    await createHaLogin(broker.url);
  }, 60_000);

  afterAll(async () => {
    await h?.stop();
    await broker?.stop();
    await influx?.stop();
    await dir?.remove();
  });

  it('stores every acked reading exactly once across a hub restart; bridge, HA and commands work', async () => {
    const recorder = new MemoryRecorder();
    const fleet = new Fleet({
      url: broker.url,
      devices: IDS.length,
      idPrefix: 'mq-sim-',
      tokens,
      seed: 5,
      rate: 5,
      connector: mqttConnector(),
      recorder,
      device: { backoff: { initialMs: 200, maxMs: 1000 } },
    });
    fleet.start();
    try {
      const acked = () => fleet.devices.map((d) => d.stats.framesAcked);
      await until('every board acked 10 frames', () => acked().every((n) => n >= 10), 60_000);

      // The bridge and HA discovery describe the boards.
      const state = await until('retained state and online status of every board', async () => {
        const held = await readRetained(broker.url, 'esp32hub/v1/+/+', LOGIN);
        const ok = IDS.every(
          (id) => held.get(`esp32hub/v1/${id}/status`) === 'online' && held.has(`esp32hub/v1/${id}/state`),
        );
        return ok ? held : null;
      });
      const s = JSON.parse(state.get(`esp32hub/v1/${IDS[0]}/state`) ?? '{}');
      expect(Object.keys(s.channels)).toContain('temperature');
      const configs = await until('HA configs of every board', async () => {
        const held = await readRetained(broker.url, 'homeassistant/#', HA_LOGIN);
        return IDS.every((id) => [...held.keys()].some((t) => t.includes(`/esp32hub_${id}/`))) ? held : null;
      });
      const button = JSON.parse(configs.get(`homeassistant/button/esp32hub_${IDS[0]}/identify/config`) ?? '{}');

      // Home Assistant presses identify: the board gets the command and answers.
      const updates: CommandUpdate[] = [];
      h.hub.bus.on('command:update', (u) => updates.push(u));
      const ha = await mqtt.connectAsync(broker.url, { ...HA_LOGIN, reconnectPeriod: 0 });
      await ha.publishAsync(button.command_topic, button.payload_press, { qos: 1 });
      await ha.endAsync();
      await until('the identify command done', () =>
        updates.some((u) => u.deviceId === IDS[0] && u.name === 'identify' && u.state === 'done'),
      );

      // The hub restarts while the boards keep publishing.
      const beforeRestart = acked();
      await h.stop();
      const whileDown = fleet.devices.map((d) => d.stats.framesSent);
      await until('boards publishing while the hub is away', () =>
        fleet.devices.every((d, i) => d.stats.framesSent + d.outbox.length > (whileDown[i] ?? 0) + 3),
      );
      await startHub();
      await until(
        'acks again on every board',
        () => acked().every((n, i) => n >= (beforeRestart[i] ?? 0) + 15),
        60_000,
      );
    } finally {
      const summary = await fleet.stop({ drainMs: 30_000 });
      expect(summary.outboxDepth).toBe(0);
    }

    // Acked ⇔ stored, each frame once.
    const log = [...h.hub.context().log.readAfter(0, 1_000_000)].filter((e) => IDS.includes(e.deviceId));
    const logRefs = log.map((e) => `${e.deviceId}|${e.bootId}|${e.seq}`);
    expect(new Set(logRefs).size).toBe(logRefs.length);
    const ackedRefs = IDS.flatMap((id) => recorder.ackedRefs(id).map((r) => `${id}|${r.bootId}|${r.seq}`));
    expect(new Set(ackedRefs).size).toBe(ackedRefs.length);
    expect([...ackedRefs].sort()).toEqual([...logRefs].sort());
    for (const id of IDS) {
      const stored = h.hub
        .context()
        .queryHistory({ deviceId: id, fromMs: 0, toMs: Date.now() + 3_600_000, limit: 1_000_000 });
      expect(stored.readings.length).toBe(recorder.ackedReadings(id).length);
    }

    // And in InfluxDB: per (board, channel) the same number of points as acked readings (a lost reading,
    // or two collapsed onto one timestamp, lowers it) with the same values (a changed one differs).
    await until(
      'the forwarder to write the local log to InfluxDB',
      async () => {
        return (await h.metricValue('hub_local_log_unforwarded_frames')) === 0;
      },
      60_000,
    );
    for (const id of IDS) {
      const byChannel = new Map<string, (number | boolean)[]>();
      for (const r of recorder.ackedReadings(id))
        byChannel.set(r.channel, [...(byChannel.get(r.channel) ?? []), r.value]);
      for (const [channel, values] of byChannel) {
        const rows = (
          await influx.influxQL(
            `SELECT "value", "state" FROM "telemetry" WHERE "device" = '${id}' AND "channel" = '${channel}'`,
          )
        ).rows;
        const stored = rows.map((row) => (row.value ?? row.state) as number | boolean);
        const order = (a: number | boolean, b: number | boolean) => Number(a) - Number(b);
        expect([...stored].sort(order), `${id} ${channel}`).toEqual([...values].sort(order));
      }
    }

    // Boards that stopped said so: offline, retained.
    await until('every board offline', async () => {
      const held = await readRetained(broker.url, 'esp32hub/v1/+/status', LOGIN);
      return IDS.every((id) => held.get(`esp32hub/v1/${id}/status`) === 'offline');
    });
  }, 240_000);

  it('npm run sim -- --transport mqtt: the CLI runs boards through the broker and the hub stores what they saw acked', async () => {
    const ids = fleetDeviceIds(2, 'mq-cli-');
    const lines: string[] = [];
    for (const id of ids) lines.push(`${id},${(await h.hub.context().registry?.add(id))?.token ?? ''}`);
    const file = join(dir.path, 'cli.tokens');
    writeFileSync(file, `${lines.join('\n')}\n`);
    const sim = await runScript('firmware-sim/cli.ts', [
      '--transport',
      'mqtt',
      '--url',
      broker.url,
      '--id-prefix',
      'mq-cli-',
      '--devices',
      '2',
      '--rate',
      '2',
      '--tokens-file',
      file,
      '--duration',
      '3s',
      '--json',
    ]);
    expect(sim.code, sim.stderr).toBe(0);
    const summary = JSON.parse(sim.stdout) as FleetSummary;
    expect(summary.totals.framesAcked).toBeGreaterThan(4);
    expect(summary.outboxDepth).toBe(0);
    for (const d of summary.perDevice) {
      const stored = h.hub
        .context()
        .queryHistory({ deviceId: d.id, fromMs: 0, toMs: Date.now() + 3_600_000, limit: 1_000_000 });
      expect(stored.readings.length).toBe(d.readingsAcked);
    }
  }, 120_000);
});
