/**
 * ACK_DURABILITY=influx against the real InfluxDB of the harness (1.x engine behind the nginx-served
 * `/api/v2/write`) and a device on a real socket:
 *
 * - InfluxDB stopped: frames are committed locally (waited for on `hub_readings_stored_total`, counted
 *   at the commit) but no ACK reaches the device, and a reconnect's WELCOME does not name them either;
 *   InfluxDB started: the ACK arrives and every ACKed reading is in InfluxDB.
 * - An instance's disk lost: the hub process is killed with SIGKILL and its data directory deleted.
 *   In `influx` mode every reading the device had ACKed is in InfluxDB and the device replays the rest
 *   into a hub started on an empty directory; in `local` mode the readings ACKed while InfluxDB was
 *   down are gone (deterministic: InfluxDB was stopped before they were sent).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Message } from '../../server/codec/index.ts';
import { createLogger } from '../../server/log/index.ts';
import { openDeviceRegistry } from '../../server/registry/index.ts';
import {
  freePort,
  type InfluxServer,
  influxEnv,
  type ServerProcess,
  startInflux,
  startServerProcess,
  type TempDir,
  tempDir,
  untilValue,
} from '../harness/index.ts';
import { QUICK_FORWARDER, useInfluxHub } from '../harness/influx-hub.ts';
import { metricFromText, TEST_CHANNELS, TestDevice, telemetry } from './ingest-device-client.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const HOUR = 3_600_000;
/** Readings per `telemetry()` frame: 4 channels × 3 samples. */
const PER_FRAME = 12;

const acksOf = (d: TestDevice) => d.history.filter((m): m is Extract<Message, { type: 'ack' }> => m.type === 'ack');
const lastAckSeq = (d: TestDevice) => Math.max(0, ...acksOf(d).map((a) => a.seq));

/** Times (ms) of the device's points in InfluxDB, one per (time, channel). */
async function storedTimes(influx: InfluxServer, deviceId: string): Promise<Set<string>> {
  const { rows } = await influx.influxQL(`SELECT * FROM telemetry WHERE device = '${deviceId}'`);
  return new Set(rows.map((r) => `${r.time as number}/${r.channel as string}`));
}

/** The (time, channel) keys frame `seq` (sent with `baseOf(seq)`) puts into InfluxDB. */
function keysOf(seqs: number[], baseOf: (seq: number) => number): string[] {
  return seqs.flatMap((s) => [0, 1000, 2000].flatMap((d) => TEST_CHANNELS.map((c) => `${baseOf(s) + d}/${c.key}`)));
}

/** A ping round trip: the hub answers it after every frame it sent before, ACKs included. */
async function roundTrip(d: TestDevice): Promise<void> {
  const pong = new Promise<void>((resolve) => d.ws.once('pong', () => resolve()));
  d.ws.ping();
  await pong;
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('ACK_DURABILITY=influx: the ACK waits for InfluxDB', () => {
  const rig = useInfluxHub({ bucket: 'ackinflux', env: { ACK_DURABILITY: 'influx' } });

  it('InfluxDB down: committed locally, no ACK and no WELCOME naming the frames; up: ACKed, and every ACKed reading is in InfluxDB', async () => {
    const id = 'esp-ack-influx';
    const token = await rig.hub.addDevice(id);
    const base = Date.now() - 20 * 60_000;
    const baseOf = (s: number) => base + s * 5000;
    let d = await TestDevice.connect(rig.hub.url, { token });
    await d.hello(id, 3, { uptimeMs: HOUR });
    d.send({ type: 'descriptors', channels: TEST_CHANNELS });
    for (let s = 1; s <= 5; s++) d.send(telemetry(3, s, baseOf(s)));
    await d.ackOf(3, 5);
    // An ACK in this mode means in InfluxDB: no waiting for the forwarder here.
    expect([...(await storedTimes(rig.influx, id))].sort()).toEqual(keysOf(range(1, 5), baseOf).sort());

    await rig.influx.stopEngine();
    const storedBefore = await rig.hub.metricValue('hub_readings_stored_total');
    for (let s = 6; s <= 25; s++) d.send(telemetry(3, s, baseOf(s)));
    // Committed to the local log (the readings counter moves in the commit callback)...
    await untilValue(
      () => rig.hub.metricValue('hub_readings_stored_total'),
      (n) => n >= storedBefore + 20 * PER_FRAME,
      'frames 6–25 committed locally',
    );
    await untilValue(
      () => rig.hub.metricValue('hub_ack_awaiting_influx_frames'),
      (n) => n === 20,
      'the gauge of frames awaiting InfluxDB',
    );
    // /readyz says the forwarder retries once its write to the stopped engine has failed (a write
    // still in flight when the engine stopped shows `writing` until then).
    await untilValue(
      async () =>
        ((await (await fetch(`${rig.hub.http}/readyz`)).json()) as { forwarder: { state: string } }).forwarder,
      (f) => f.state === 'retrying',
      "/readyz's forwarder state retrying",
    );
    // ...and the device, after a ping round trip (answered after any ACK already sent), has no ACK
    // beyond frame 5.
    await roundTrip(d);
    expect(lastAckSeq(d)).toBe(5);

    // A reconnect meanwhile: WELCOME's last ACK frees the device's outbox too, so it stays at 5.
    await d.close();
    d = await TestDevice.connect(rig.hub.url, { token });
    const w = await d.hello(id, 3, { uptimeMs: HOUR + 60_000 });
    expect(w.lastAck).toEqual({ bootId: 3, seq: 5 });
    // The device replays what it holds (duplicates now) and adds one frame.
    for (let s = 6; s <= 26; s++) d.send(telemetry(3, s, baseOf(s)));
    await untilValue(
      () => rig.hub.metricValue('hub_readings_stored_total'),
      (n) => n >= storedBefore + 21 * PER_FRAME,
      'frame 26 committed locally',
    );
    expect(acksOf(d)).toEqual([]);

    await rig.influx.startEngine();
    await d.ackOf(3, 26, 60_000);
    const stored = await storedTimes(rig.influx, id);
    const missing = keysOf(range(1, lastAckSeq(d)), baseOf).filter((k) => !stored.has(k));
    expect(missing).toEqual([]);
    await untilValue(
      () => rig.hub.metricValue('hub_ack_awaiting_influx_frames'),
      (n) => n === 0,
      'the gauge back to 0',
    );
    await d.close();
  });

  it('a frame InfluxDB refuses (field-type conflict) is ACKed once its lines are in the dead-letter store: a poison frame does not hold the device', async () => {
    const DAY = 24 * HOUR;
    // Another writer made `value` a string in the shard of 10 days ago (7-day shards: not the one the
    // test above writes to).
    const base = Date.now() - 10 * DAY;
    await rig.poisonValueField(base);
    const id = 'esp-ack-poison';
    const d = await TestDevice.connect(rig.hub.url, { token: await rig.hub.addDevice(id) });
    await d.hello(id, 4, { uptimeMs: 20 * DAY }); // booted 20 days ago: samples of 10 days ago are plausible
    d.send({ type: 'descriptors', channels: TEST_CHANNELS });
    const before = await rig.hub.metricValue('hub_forwarder_dead_lettered_lines_total');
    for (let s = 1; s <= 3; s++) d.send(telemetry(4, s, base + s * 5000));
    await d.ackOf(4, 3, 60_000);
    // ACKed: the 27 numeric readings (3 channels × 3 samples × 3 frames) are in the dead-letter store,
    // the 9 booleans (field `state`) in InfluxDB.
    expect((await rig.hub.metricValue('hub_forwarder_dead_lettered_lines_total')) - before).toBe(27);
    const { rows } = await rig.influx.influxQL(`SELECT "state" FROM telemetry WHERE device = '${id}'`);
    expect(rows).toHaveLength(9);
    await d.close();
  });
});

/**
 * One run of "the instance's disk is lost": frames 1–10 ACKed and in InfluxDB, InfluxDB stopped,
 * frames 11–20 sent and committed locally, the hub killed (SIGKILL) and its data directory deleted,
 * InfluxDB started; then a hub on an empty directory, to which the device replays what it holds.
 */
async function diskLoss(mode: 'local' | 'influx') {
  const influx = await startInflux({ bucket: `disk${mode}` });
  const port = await freePort();
  const id = `esp-disk-${mode}`;
  const dirs: TempDir[] = [];
  let hub: ServerProcess | null = null;
  let d: TestDevice | null = null;
  const startHub = async (label: string) => {
    const dir = await tempDir(`ack-disk-${mode}-${label}`);
    dirs.push(dir);
    const registry = openDeviceRegistry({ dataDir: dir.path, logger: createLogger('silent'), watchIntervalMs: 0 });
    const token = (await registry.add(id)).token;
    await registry.close();
    hub = await startServerProcess({
      name: `hub-${mode}-${label}`,
      command: process.execPath,
      args: ['--import', 'tsx', 'server/main.ts'],
      cwd: ROOT,
      logFile: join(dir.path, 'hub.log'),
      env: {
        ...process.env,
        ENV_FILE: '/dev/null',
        HUB_HOST: '127.0.0.1',
        HUB_PORT: String(port),
        HUB_DATA_DIR: dir.path,
        HUB_LOG_LEVEL: 'warn',
        ...influxEnv(influx),
        ACK_DURABILITY: mode,
        ...QUICK_FORWARDER,
      },
      ready: async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => null))?.ok ?? false,
    });
    return { dir, token };
  };
  const metric = async (name: string) =>
    metricFromText(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text(), name);
  try {
    const base = Date.now() - 30 * 60_000;
    const baseOf = (s: number) => base + s * 5000;
    const first = await startHub('a');
    d = await TestDevice.connect(`ws://127.0.0.1:${port}/v1/device`, { token: first.token });
    await d.hello(id, 9, { uptimeMs: HOUR });
    d.send({ type: 'descriptors', channels: TEST_CHANNELS });
    for (let s = 1; s <= 10; s++) d.send(telemetry(9, s, baseOf(s)));
    await d.ackOf(9, 10, 30_000);
    // In InfluxDB before it stops (in local mode the forwarder may still be behind the ACK).
    await untilValue(
      () => storedTimes(influx, id),
      (t) => t.size === 10 * PER_FRAME,
      'frames 1–10 in InfluxDB',
    );
    await influx.stopEngine();
    for (let s = 11; s <= 20; s++) d.send(telemetry(9, s, baseOf(s)));
    await untilValue(
      () => metric('hub_readings_stored_total'),
      (n) => n >= 20 * PER_FRAME,
      'frames 11–20 committed',
    );
    if (mode === 'local') await d.ackOf(9, 20, 30_000);
    else {
      await roundTrip(d);
    }
    const acked = lastAckSeq(d);

    // The instance and its disk are gone.
    await (hub as ServerProcess | null)?.stop({ signal: 'SIGKILL' });
    d.ws.terminate();
    await first.dir.remove();
    await influx.startEngine();
    const afterLoss = await storedTimes(influx, id);
    const ackedMissing = keysOf(range(1, acked), baseOf).filter((k) => !afterLoss.has(k));

    // A new instance, empty disk: the device replays every frame it was not ACKed for.
    const second = await startHub('b');
    d = await TestDevice.connect(`ws://127.0.0.1:${port}/v1/device`, { token: second.token });
    const w = await d.hello(id, 9, { uptimeMs: HOUR + 120_000 });
    // An empty disk knows nothing of the device: it announces its descriptors again.
    if (!w.descriptorsKnown) d.send({ type: 'descriptors', channels: TEST_CHANNELS });
    for (let s = acked + 1; s <= 20; s++) d.send(telemetry(9, s, baseOf(s)));
    if (acked < 20) await d.ackOf(9, 20, 30_000);
    const final = await untilValue(
      () => storedTimes(influx, id),
      (t) => t.size >= (20 - ackedMissing.length / PER_FRAME) * PER_FRAME,
      'the replay in InfluxDB',
    );
    return { acked, ackedMissing, welcome: w.lastAck, finalCount: final.size };
  } finally {
    d?.ws.terminate();
    await (hub as ServerProcess | null)?.stop({ signal: 'SIGKILL' });
    for (const dir of dirs) await dir.remove();
    await influx.stop();
  }
}

describe("an instance's disk lost after SIGKILL", () => {
  it('ACK_DURABILITY=influx: every reading the device had ACKed is in InfluxDB; the rest is replayed', async () => {
    const r = await diskLoss('influx');
    expect(r.acked).toBe(10); // frames 11–20 were never ACKed: InfluxDB was down
    expect(r.ackedMissing).toEqual([]);
    expect(r.welcome).toBeNull(); // an empty disk knows nothing of the device
    expect(r.finalCount).toBe(20 * PER_FRAME);
  });

  it('ACK_DURABILITY=local: the readings ACKed while InfluxDB was down are lost with the disk', async () => {
    const r = await diskLoss('local');
    expect(r.acked).toBe(20);
    // Frames 11–20: ACKed after the local commit, never forwarded, gone with the disk; the device
    // freed them on ACK, so nothing replays them.
    expect(r.ackedMissing).toHaveLength(10 * PER_FRAME);
    expect(r.finalCount).toBe(10 * PER_FRAME);
  });
});
