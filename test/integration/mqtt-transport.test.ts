/**
 * Devices over MQTT through a real Mosquitto (dynamic-security plugin on) into a real hub [PROTO-1.6]:
 * the same session, dedupe, durable ACK and commands as over WebSocket; per-device broker logins and
 * ACLs granted by the hub; revocation cuts the device off at the broker; the last will ends the
 * session. No mocks: real broker, real sockets, the real local log.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFrom } from '../../server/config/index.ts';
import { type MosquittoServer, startMosquitto, until } from '../harness/index.ts';
import { expectedReadings, startTestHub, type TestHub, telemetry } from './ingest-device-client.ts';
import { MqttTestDevice } from './mqtt-device-client.ts';

const ADMIN = 'a'.repeat(40);
const HUB_USER = 'hub';
const HUB_PASSWORD = 'hub-broker-password-1';

function simplify(rs: { timeMs: number; channel: string; value: number | boolean }[]) {
  return rs
    .map((r) => ({ timeMs: r.timeMs, channel: r.channel, value: r.value }))
    .sort((a, b) => a.timeMs - b.timeMs || a.channel.localeCompare(b.channel));
}

describe('devices over MQTT (real Mosquitto with dynamic security)', () => {
  let broker: MosquittoServer;
  let h: TestHub;
  const devices: MqttTestDevice[] = [];

  beforeAll(async () => {
    broker = await startMosquitto({ dynsec: { adminUser: HUB_USER, adminPassword: HUB_PASSWORD } });
    h = await startTestHub(
      {
        HUB_ADMIN_TOKEN: ADMIN,
        MQTT_URL: broker.url,
        MQTT_USERNAME: HUB_USER,
        MQTT_PASSWORD: HUB_PASSWORD,
        MQTT_DEVICE_ACCESS: 'dynsec',
        MQTT_CLIENT_ID: 'hub-under-test',
      },
      { mqttRetryMs: { min: 100, max: 1000 } },
    );
    // Ready only once the hub holds its broker role and its subscription (one reconnect on first start).
    await until('the hub to be ready with MQTT', async () => (await fetch(`${h.http}/readyz`)).status === 200);
  });

  afterAll(async () => {
    await Promise.all(devices.map((d) => d.close().catch(() => undefined)));
    await h?.stop();
    await broker?.stop();
  });

  /** Registers a device through the hub (which grants its broker login) and connects it. */
  async function device(id: string): Promise<{ d: MqttTestDevice; token: string }> {
    const { token } = await h.hub.context().registry!.add(id);
    const d = await MqttTestDevice.connect(broker.url, { deviceId: id, password: token });
    devices.push(d);
    return { d, token };
  }

  it('stores readings exactly once and acknowledges them after the durable commit', async () => {
    const { d } = await device('mq-a');
    const welcome = await d.hello(7);
    expect(welcome.lastAck).toBeNull();
    const base = Date.now();
    for (let seq = 1; seq <= 40; seq++) await d.send(telemetry(7, seq, base + seq * 5000));
    await d.ackOf(7, 40);
    // Replays (as after a lost ACK) are acknowledged again and not stored again.
    for (let seq = 30; seq <= 40; seq++) await d.send(telemetry(7, seq, base + seq * 5000));
    await d.ackOf(7, 40);
    const readings = h.hub
      .context()
      .queryHistory({ deviceId: 'mq-a', fromMs: base, toMs: base + 1_000_000, limit: 100_000 }).readings;
    const want = Array.from({ length: 40 }, (_, i) => expectedReadings(i + 1, base + (i + 1) * 5000)).flat();
    expect(simplify(readings)).toEqual(simplify(want));
    expect(await h.metricValue('hub_duplicate_frames_total')).toBeGreaterThanOrEqual(11);
    // A new HELLO (the device reconnected) starts a new session that knows what is stored.
    const again = await d.hello(7);
    expect(again.lastAck).toEqual({ bootId: 7, seq: 40 });
    expect(again.descriptorsKnown).toBe(true);
    expect(d.history.some((m) => m.type === 'error')).toBe(false);
  });

  it('a frame without a session is not stored and is answered with a FATAL ERROR asking for HELLO', async () => {
    const { d } = await device('mq-nohello');
    await d.send(telemetry(1, 1, Date.now()));
    expect(await d.next('error')).toMatchObject({ fatal: true, code: 201 });
    const stored = h.hub
      .context()
      .queryHistory({ deviceId: 'mq-nohello', fromMs: 0, toMs: Date.now() + 1e6, limit: 10 });
    expect(stored.readings).toHaveLength(0);
  });

  it('ACLs: a device cannot publish to another device or read its commands', async () => {
    const { d: a } = await device('mq-acl-a');
    const { d: b } = await device('mq-acl-b');
    await b.hello(3);
    // Publishing to B's up topic is refused by the broker (MQTT 5 PUBACK 0x87) and never reaches the hub.
    await expect(a.send(a.helloFrame(1), b.up)).rejects.toThrow(/Not authorized/);
    await expect(a.send(telemetry(3, 1, Date.now()), b.up)).rejects.toThrow(/Not authorized/);
    // Subscribing to B's down topic (or everything) is refused.
    const subB = await a.client.subscribeAsync(b.down, { qos: 1 }).catch((e: { packet?: { granted?: number[] } }) => e);
    expect(JSON.stringify(subB)).toMatch(/135/);
    const subAll = await a.client
      .subscribeAsync('esp32hub/#', { qos: 1 })
      .catch((e: { packet?: { granted?: number[] } }) => e);
    expect(JSON.stringify(subAll)).toMatch(/135/);
    // A command for B reaches B, and only B.
    const res = await fetch(`${h.http}/api/devices/mq-acl-b/commands`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'identify' }),
    });
    expect(res.status).toBe(202);
    await b.next('command');
    // A's own traffic still works; the broker delivers in order, so by A's WELCOME the hub would have
    // seen the refused frames: had they reached B's session, B would have got an ERROR (HELLO naming
    // another device) or an ACK (the TELEMETRY).
    await a.hello(1);
    expect(b.history.filter((m) => m.type === 'error' || m.type === 'ack')).toEqual([]);
    expect(a.history.some((m) => m.type === 'command')).toBe(false);
    // A wrong password is refused at the broker.
    await expect(
      MqttTestDevice.connect(broker.url, { deviceId: 'mq-acl-b', clientId: 'mq-acl-b', password: 'esp32hub_wrong' }),
    ).rejects.toThrow(/Bad User Name or Password|Not authorized/i);
  });

  it('commands over MQTT: sent, accepted, result', async () => {
    const { d } = await device('mq-cmd');
    await d.hello(5);
    const headers = { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' };
    const res = await fetch(`${h.http}/api/devices/mq-cmd/commands`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ name: 'identify', args: { duration_ms: 2000 } }),
    });
    expect(res.status).toBe(202);
    const { commandId } = (await res.json()) as { commandId: number };
    const cmd = await d.next('command');
    expect(cmd).toMatchObject({ commandId, name: 'identify' });
    await d.send({ type: 'command_accepted', commandId });
    await until('accepted', async () => {
      const s = await (await fetch(`${h.http}/api/devices/mq-cmd/commands/${commandId}`, { headers })).json();
      return (s as { state: string }).state === 'accepted';
    });
    await d.send({ type: 'command_result', commandId, status: 0, message: 'blinking' });
    await until('done', async () => {
      const s = (await (await fetch(`${h.http}/api/devices/mq-cmd/commands/${commandId}`, { headers })).json()) as {
        state: string;
        message?: string;
      };
      return s.state === 'done' && s.message === 'blinking';
    });
  });

  it('the last will ends the session at once (presence), as a dropped socket does', async () => {
    const { d } = await device('mq-will');
    await d.hello(9);
    const offline = new Promise<{ reason: string }>((resolve) =>
      h.hub.bus.on('device:offline', (e) => {
        if (e.deviceId === 'mq-will') resolve(e);
      }),
    );
    d.kill();
    expect((await offline).reason).toBe('device_closed');
    expect(h.hub.context().sessions.get('mq-will')).toBeUndefined();
  });

  it('revoking a device cuts its MQTT access: disconnected, and it cannot log in again', async () => {
    const { d, token } = await device('mq-revoked');
    await d.hello(11);
    // The broker keeps the login with a hash of the token, never the token itself.
    const before = readFileSync(broker.dynsecFile as string, 'utf8');
    expect(before).toMatch(/"username":\s*"mq-revoked"/);
    expect(before).not.toContain(token);
    expect(before).not.toContain(token.slice('esp32hub_'.length));
    const closed = new Promise<number>((resolve) => d.client.once('close', () => resolve(Date.now())));
    const t0 = Date.now();
    await h.hub.context().registry!.revoke('mq-revoked');
    const at = await closed;
    console.log(`revoke → broker disconnect in ${at - t0} ms`);
    await expect(MqttTestDevice.connect(broker.url, { deviceId: 'mq-revoked', password: token })).rejects.toThrow(
      /Bad User Name or Password|Not authorized/i,
    );
    // Its broker login is gone from the plugin's state.
    expect(readFileSync(broker.dynsecFile as string, 'utf8')).not.toMatch(/"username":\s*"mq-revoked"/);
    const other = h.hub
      .context()
      .registry!.list()
      .find((x) => x.id === 'mq-a');
    expect(other?.revoked).toBe(false);
  });

  it('rotating a token replaces the broker login: the old one is cut off, the new one works', async () => {
    const { d, token: oldToken } = await device('mq-rotate');
    await d.hello(13);
    const closed = new Promise<void>((resolve) => d.client.once('close', () => resolve()));
    const { token: newToken } = await h.hub.context().registry!.rotate('mq-rotate');
    await closed;
    await expect(MqttTestDevice.connect(broker.url, { deviceId: 'mq-rotate', password: oldToken })).rejects.toThrow(
      /Bad User Name or Password|Not authorized/i,
    );
    const again = await MqttTestDevice.connect(broker.url, { deviceId: 'mq-rotate', password: newToken });
    devices.push(again);
    expect((await again.hello(14)).acceptedVersion).toBe(1);
    expect(await h.metricValue('hub_mqtt_broker_access_total', { outcome: 'failed' })).toBe(0);
  });

  it('readiness reports the broker; configuration asks nothing about MQTT when MQTT_URL is unset', async () => {
    const ready = (await (await fetch(`${h.http}/readyz`)).json()) as {
      mqtt?: { state: string; deviceAccess: string };
    };
    expect(ready.mqtt).toMatchObject({ state: 'connected', deviceAccess: 'dynsec' });
    expect(configFrom({}).mqtt).toBeNull();
  });
});
