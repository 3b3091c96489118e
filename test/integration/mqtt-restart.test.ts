/**
 * The hub's MQTT client against a real Mosquitto: its persistent session carries a device's frames
 * across a hub restart (nothing lost, nothing stored twice), and a broker that is unreachable or
 * refuses the hub's credentials is one log line and a not-ready /readyz, never a failed start.
 */
import { fork } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeFrame, ValueType } from '../../server/codec/index.ts';
import { createLogger } from '../../server/log/index.ts';
import { openDeviceRegistry } from '../../server/registry/index.ts';
import { INFLIGHT_MAX_BYTES } from '../../server/transport/inflight-budget.ts';
import { type MosquittoServer, startMosquitto, type TempDir, tempDir, until } from '../harness/index.ts';
import { freePort } from '../harness/ports.ts';
import { expectedReadings, startTestHub, TEST_HASH, type TestHub, telemetry } from './ingest-device-client.ts';
import { MqttTestDevice } from './mqtt-device-client.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const HUB_USER = 'hub';
const HUB_PASSWORD = 'hub-broker-password-2';

function simplify(rs: { timeMs: number; channel: string; value: number | boolean }[]) {
  return rs
    .map((r) => ({ timeMs: r.timeMs, channel: r.channel, value: r.value }))
    .sort((a, b) => a.timeMs - b.timeMs || a.channel.localeCompare(b.channel));
}

/** A pino destination that keeps the JSON lines. */
function captureLog() {
  const lines: Record<string, unknown>[] = [];
  return {
    lines,
    logger: createLogger('info', {
      write(s: string) {
        lines.push(JSON.parse(s));
      },
    }),
  };
}

/**
 * The device publishes `total` frames, three every 5 ms, one reading each, 100 ms apart in time (a
 * steady stream that keeps going while the hub is away).
 */
function produceFrames(d: MqttTestDevice, total: number) {
  const base = Date.now();
  const timeOf = (seq: number) => base + seq * 100;
  let seq = 0;
  const timer = setInterval(() => {
    for (let i = 0; i < 3 && seq < total; i++) {
      seq++;
      d.produce(seq, timeOf(seq), 1);
    }
  }, 5);
  return { total, base, timeOf, produced: () => seq, stop: () => clearInterval(timer) };
}

/** Every reading of the producer's frames is in the hub's store, once, with its value. */
function expectEveryReading(h: TestHub, deviceId: string, p: ReturnType<typeof produceFrames>) {
  const readings = h.hub
    .context()
    .queryHistory({ deviceId, fromMs: p.base, toMs: p.timeOf(p.total) + 10_000, limit: 100_000 }).readings;
  const want = Array.from({ length: p.total }, (_, i) => expectedReadings(i + 1, p.timeOf(i + 1), 1)).flat();
  expect(simplify(readings)).toEqual(simplify(want));
}

describe('the hub MQTT client (real Mosquitto)', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
  });

  const mqttEnv = (broker: { url: string }, password = HUB_PASSWORD) => ({
    MQTT_URL: broker.url,
    MQTT_USERNAME: HUB_USER,
    MQTT_PASSWORD: password,
    MQTT_DEVICE_ACCESS: 'dynsec',
    MQTT_CLIENT_ID: 'hub-restart-test',
  });
  const retry = { mqttRetryMs: { min: 50, max: 500 } };

  it('a hub restarted mid-stream while the device keeps publishing loses nothing and stores nothing twice', async () => {
    const broker: MosquittoServer = await startMosquitto({
      dynsec: { adminUser: HUB_USER, adminPassword: HUB_PASSWORD },
      // The broker queues what the device publishes while the hub is away (default 1000 per client).
      extraConfig: ['max_queued_messages 100000'],
    });
    cleanup.push(() => broker.stop());
    const dir: TempDir = await tempDir('mqtt-restart');
    cleanup.push(() => dir.remove());
    let h: TestHub = await startTestHub(mqttEnv(broker), retry, dir);
    cleanup.push(() => h.stop());
    await until('hub 1 ready', async () => (await fetch(`${h.http}/readyz`)).status === 200);
    const { token } = await h.hub.context().registry!.add('mq-restart');

    const d = await MqttTestDevice.connect(broker.url, { deviceId: 'mq-restart', password: token });
    cleanup.push(() => d.close());
    d.useOutbox(21);
    await d.hello(21);
    const p = produceFrames(d, 600);
    cleanup.push(async () => p.stop());

    await until('frames acknowledged by hub 1', () => p.produced() >= 150 && d.pending() < p.produced() - 100);
    await h.stop();
    const whileAway = p.produced();
    await until(
      'the device to publish while the hub is away',
      () => p.produced() >= whileAway + 150 || p.produced() === p.total,
    );
    const producedWhileAway = p.produced() - whileAway;
    h = await startTestHub(mqttEnv(broker), retry, dir);
    await until('every frame produced and acknowledged', () => p.produced() === p.total && d.pending() === 0, 60_000);
    p.stop();

    const ready = (await (await fetch(`${h.http}/readyz`)).json()) as { mqtt: { sessionPresent: boolean } };
    // The broker kept hub 1's session: hub 2 got what was published while no hub was there (here the
    // device's new HELLO: after the SHUTTING_DOWN ERROR it holds new frames until WELCOME [PROTO-1.6]).
    expect(ready.mqtt.sessionPresent).toBe(true);
    expect(producedWhileAway).toBeGreaterThan(0);
    expectEveryReading(h, 'mq-restart', p);
    console.log(
      `restart: ${producedWhileAway} frames produced while the hub was away; the device said HELLO ${d.helloCount} times`,
    );
  });

  it('kill -9 of the hub: frames published while no hub runs wait in its session, nothing lost or doubled', async () => {
    // Anonymous broker, MQTT_DEVICE_ACCESS=none: the killed hub is a separate process with its own registry.
    const broker = await startMosquitto({ extraConfig: ['max_queued_messages 100000'] });
    cleanup.push(() => broker.stop());
    const dir = await tempDir('mqtt-kill');
    cleanup.push(() => dir.remove());
    const registry = openDeviceRegistry({ dataDir: dir.path, logger: createLogger('silent'), watchIntervalMs: 0 });
    await registry.add('mq-kill');
    await registry.close();
    const env = {
      HUB_HOST: '127.0.0.1',
      HUB_PORT: '0',
      HUB_DATA_DIR: dir.path,
      HUB_LOG_LEVEL: 'warn',
      MQTT_URL: broker.url,
      MQTT_CLIENT_ID: 'hub-kill-test',
    };
    const logFd = openSync(join(dir.path, 'hub-child.log'), 'a');
    const child = fork(join(ROOT, 'test/integration/crash-hub-child.ts'), [], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', logFd, logFd, 'ipc'],
    });
    closeSync(logFd);
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    cleanup.push(async () => {
      child.kill('SIGKILL');
      await exited;
    });
    const port = await new Promise<number>((resolve, reject) => {
      child.on('message', (m: { type: string; port?: number }) => m.type === 'ready' && resolve(m.port as number));
      void exited.then(() => reject(new Error('the hub child exited while starting')));
    });
    await until('hub 1 ready', async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200);

    const d = await MqttTestDevice.connect(broker.url, { deviceId: 'mq-kill' });
    cleanup.push(() => d.close());
    d.useOutbox(31);
    await d.hello(31);
    const p = produceFrames(d, 600);
    cleanup.push(async () => p.stop());
    await until('frames acknowledged by hub 1', () => p.produced() >= 150 && d.pending() < p.produced() - 100);
    child.kill('SIGKILL');
    await exited;
    const killedAt = p.produced();
    // The device does not know: it keeps publishing, and the broker queues for the hub's session.
    await until(
      'the device to publish while no hub runs',
      () => p.produced() >= killedAt + 150 || p.produced() === p.total,
    );
    const publishedWhileAway = p.produced() - killedAt;
    const h = await startTestHub({ MQTT_URL: broker.url, MQTT_CLIENT_ID: 'hub-kill-test' }, retry, dir);
    cleanup.push(() => h.stop());
    await until('every frame produced and acknowledged', () => p.produced() === p.total && d.pending() === 0, 60_000);
    p.stop();

    // Hub 2 received what was published while no hub ran (frames with no session: the device was
    // asked for HELLO and replayed them).
    expect(await h.metricValue('hub_mqtt_messages_total', { direction: 'in', outcome: 'no_session' })).toBeGreaterThan(
      0,
    );
    expectEveryReading(h, 'mq-kill', p);
    console.log(`kill -9: ${publishedWhileAway} frames published while no hub ran, delivered to the next hub`);
  });

  it('without broker ACLs managed by the hub, frames of unregistered or revoked devices are dropped', async () => {
    const broker = await startMosquitto();
    cleanup.push(() => broker.stop());
    const h = await startTestHub({ MQTT_URL: broker.url, MQTT_CLIENT_ID: 'hub-unknown-test' }, retry);
    cleanup.push(() => h.stop());
    await until('hub ready', async () => (await fetch(`${h.http}/readyz`)).status === 200);
    const dropped = () => h.metricValue('hub_mqtt_messages_total', { direction: 'in', outcome: 'unknown_device' });
    const stranger = await MqttTestDevice.connect(broker.url, { deviceId: 'mq-stranger' });
    cleanup.push(() => stranger.close());
    await stranger.send(stranger.helloFrame(1));
    await until('the stranger dropped', async () => (await dropped()) >= 1);
    expect(stranger.history).toEqual([]);
    expect(h.hub.context().sessions.get('mq-stranger')).toBeUndefined();

    await h.addDevice('mq-known');
    const known = await MqttTestDevice.connect(broker.url, { deviceId: 'mq-known' });
    cleanup.push(() => known.close());
    await known.hello(2);
    await h.registry.revoke('mq-known');
    expect(await known.next('error')).toMatchObject({ fatal: true, code: 208 }); // REVOKED
    await known.send(known.helloFrame(3));
    await until('the revoked device dropped', async () => (await dropped()) >= 2);
    expect(known.history.filter((m) => m.type === 'welcome')).toHaveLength(1);
  });

  it('backpressure: a paused session holds the hub MQTT input, and everything is acknowledged after', async () => {
    const broker = await startMosquitto({ extraConfig: ['max_queued_messages 100000'] });
    cleanup.push(() => broker.stop());
    let release: () => void = () => undefined;
    const released = new Promise<void>((r) => {
      release = r;
    });
    let holding = true;
    const h = await startTestHub(
      { MQTT_URL: broker.url, MQTT_CLIENT_ID: 'hub-pause-test' },
      // Commits wait until released: in-flight frames pile up past the session's bound.
      { ...retry, storageFaults: { beforeCommit: () => (holding ? released : undefined) } },
    );
    cleanup.push(() => h.stop());
    await until('hub ready', async () => (await fetch(`${h.http}/readyz`)).status === 200);
    await h.addDevice('mq-pause');
    const d = await MqttTestDevice.connect(broker.url, { deviceId: 'mq-pause' });
    cleanup.push(() => d.close());
    d.useOutbox(41);
    await d.hello(41);
    // Large frames (two blocks of 255 samples, ~2.8 KB) so the hub-wide in-flight byte bound is passed.
    const deltas = Array.from({ length: 255 }, (_, i) => i * 1000);
    const frameOf = (seq: number) =>
      encodeFrame({
        type: 'telemetry',
        unsynced: false,
        bootId: 41,
        seq,
        descriptorHash: TEST_HASH,
        baseTime: Date.now(),
        blocks: [
          { channel: 2, valueType: ValueType.BOOL, deltasMs: deltas, values: deltas.map((_, i) => i % 2 === 0) },
          { channel: 3, valueType: ValueType.F32, deltasMs: deltas, values: deltas.map(() => 3.25) },
        ],
      });
    const total = Math.ceil((INFLIGHT_MAX_BYTES * 1.2) / frameOf(1).length);
    for (let seq = 1; seq <= total; seq++) d.produceFrame(seq, frameOf(seq));
    await until('the hub to hold its MQTT input', async () => (await h.metricValue('hub_mqtt_input_paused')) === 1);
    expect(await h.metricValue('hub_device_session_pauses_total')).toBeGreaterThanOrEqual(1);
    holding = false;
    release();
    await until('every frame acknowledged', () => d.pending() === 0, 60_000);
    expect(await h.metricValue('hub_mqtt_input_paused')).toBe(0);
    expect(await h.metricValue('hub_frames_received_total', { type: 'telemetry' })).toBeGreaterThanOrEqual(total);
  });

  it('heartbeat over MQTT: a silent session ends (reason heartbeat) and its next frame is asked for HELLO', async () => {
    const broker = await startMosquitto();
    cleanup.push(() => broker.stop());
    const h = await startTestHub(
      { MQTT_URL: broker.url, MQTT_CLIENT_ID: 'hub-idle-test', MQTT_DEVICE_IDLE_SEC: '5' },
      retry,
    );
    cleanup.push(() => h.stop());
    await until('hub ready', async () => (await fetch(`${h.http}/readyz`)).status === 200);
    await h.addDevice('mq-idle');
    const d = await MqttTestDevice.connect(broker.url, { deviceId: 'mq-idle' });
    cleanup.push(() => d.close());
    const offline = new Promise<{ reason: string }>((resolve) =>
      h.hub.bus.on('device:offline', (e) => {
        if (e.deviceId === 'mq-idle') resolve(e);
      }),
    );
    await d.hello(51);
    // Silent from here: the MQTT connection stays up (keepalive), but no frame reaches the hub.
    expect((await offline).reason).toBe('heartbeat');
    expect(h.hub.context().sessions.get('mq-idle')).toBeUndefined();
    await d.send(telemetry(51, 1, Date.now()));
    expect(await d.next('error')).toMatchObject({ fatal: true, code: 201 });
  });

  it('dynsec at start: logins of devices revoked meanwhile are deleted, active devices without one are named', async () => {
    const broker = await startMosquitto({ dynsec: { adminUser: HUB_USER, adminPassword: HUB_PASSWORD } });
    cleanup.push(() => broker.stop());
    const dir = await tempDir('mqtt-reconcile');
    cleanup.push(() => dir.remove());
    const h1 = await startTestHub(mqttEnv(broker), retry, dir);
    await until('hub 1 ready', async () => (await fetch(`${h1.http}/readyz`)).status === 200);
    const { token } = await h1.hub.context().registry!.add('mq-kept');
    await h1.hub.context().registry!.add('mq-gone');
    await h1.stop();
    // While no hub runs: one device revoked, one added, both by another process (as the CLI does).
    const registry = openDeviceRegistry({ dataDir: dir.path, logger: createLogger('silent'), watchIntervalMs: 0 });
    await registry.revoke('mq-gone');
    await registry.add('mq-cli');
    await registry.close();
    const loginOf = (id: string) =>
      new RegExp(`"username":\\s*"${id}"`).test(readFileSync(broker.dynsecFile as string, 'utf8'));
    expect(loginOf('mq-gone')).toBe(true);

    const { lines, logger } = captureLog();
    const h2 = await startTestHub(mqttEnv(broker), { ...retry, logger }, dir);
    cleanup.push(() => h2.stop());
    await until('the revoked device login deleted', () => !loginOf('mq-gone'));
    const warning = await until('the warning', () =>
      lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('devices without a broker login')),
    );
    expect(warning).toMatchObject({ devices: 1, first: ['mq-cli'] });
    expect(loginOf('mq-kept')).toBe(true);
    const kept = await MqttTestDevice.connect(broker.url, { deviceId: 'mq-kept', password: token });
    cleanup.push(() => kept.close());
    await until('hub 2 ready', async () => (await fetch(`${h2.http}/readyz`)).status === 200);
    expect((await kept.hello(61)).acceptedVersion).toBe(1);
  });

  it('an unreachable broker: the hub starts, /readyz is 503 with the reason, one error line', async () => {
    const port = await freePort('127.0.0.1');
    const { lines, logger } = captureLog();
    const h = await startTestHub({ ...mqttEnv({ url: `mqtt://127.0.0.1:${port}` }) }, { ...retry, logger });
    cleanup.push(() => h.stop());
    await until('a few attempts', async () => (await h.metricValue('hub_mqtt_connect_failures_total')) >= 4);
    const res = await fetch(`${h.http}/readyz`);
    expect(res.status).toBe(503);
    const body = (await res.json()) as { mqtt: { state: string; lastError: { code: string } } };
    expect(body.mqtt).toMatchObject({ state: 'unreachable', lastError: { code: 'MQTT_UNREACHABLE' } });
    expect(lines.filter((l) => l.code === 'MQTT_UNREACHABLE')).toHaveLength(1);
    expect((await fetch(`${h.http}/healthz`)).status).toBe(200);
  });

  it('bad credentials: /readyz is 503 (not_authorized), one error line, never the password', async () => {
    const broker = await startMosquitto({ dynsec: { adminUser: HUB_USER, adminPassword: HUB_PASSWORD } });
    cleanup.push(() => broker.stop());
    const { lines, logger } = captureLog();
    const h = await startTestHub(mqttEnv(broker, 'wrong-password-123'), { ...retry, logger });
    cleanup.push(() => h.stop());
    await until('a few attempts', async () => (await h.metricValue('hub_mqtt_connect_failures_total')) >= 4);
    const res = await fetch(`${h.http}/readyz`);
    expect(res.status).toBe(503);
    const body = (await res.json()) as { mqtt: { state: string } };
    expect(body.mqtt.state).toBe('not_authorized');
    expect(lines.filter((l) => l.code === 'MQTT_NOT_AUTHORIZED')).toHaveLength(1);
    expect(JSON.stringify(lines)).not.toContain('wrong-password-123');
    expect(JSON.stringify(body)).not.toContain('wrong-password-123');
  });
});
