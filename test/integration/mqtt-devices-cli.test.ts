/**
 * The `devices` CLI (a separate process) manages broker logins when the hub does
 * (MQTT_DEVICE_ACCESS=dynsec): a device it adds connects to a real Mosquitto with its token and
 * talks to a real hub over its own topics; a rotation replaces the login (also once the running hub
 * has noticed the change); a revoke cuts the device off at the broker. With the broker unreachable the
 * registry change is kept and the CLI says the broker login was not changed and how to retry.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, type MosquittoServer, startMosquitto } from '../harness/index.ts';
import { startTestHub, type TestHub } from './ingest-device-client.ts';
import { MqttTestDevice } from './mqtt-device-client.ts';
import { until } from './mqtt-retained.ts';
import { runCli } from './registry-cli.ts';

const HUB_USER = 'hub';
const HUB_PASSWORD = 'hub-broker-password-1';

describe('devices CLI with broker access managed by the hub (real Mosquitto with dynamic security)', () => {
  let broker: MosquittoServer;
  let h: TestHub;
  let env: Record<string, string>;
  const devices: MqttTestDevice[] = [];

  beforeAll(async () => {
    broker = await startMosquitto({ dynsec: { adminUser: HUB_USER, adminPassword: HUB_PASSWORD } });
    const mqttEnv = {
      MQTT_URL: broker.url,
      MQTT_USERNAME: HUB_USER,
      MQTT_PASSWORD: HUB_PASSWORD,
      MQTT_DEVICE_ACCESS: 'dynsec',
    };
    h = await startTestHub({ ...mqttEnv, MQTT_CLIENT_ID: 'hub-under-test' }, { mqttRetryMs: { min: 100, max: 1000 } });
    await until('the hub to be ready with MQTT', async () => (await fetch(`${h.http}/readyz`)).status === 200);
    env = { ...mqttEnv, HUB_DATA_DIR: h.dir.path };
  });

  afterAll(async () => {
    await Promise.all(devices.map((d) => d.close().catch(() => undefined)));
    await h?.stop();
    await broker?.stop();
  });

  async function connect(id: string, token: string): Promise<MqttTestDevice> {
    const d = await MqttTestDevice.connect(broker.url, { deviceId: id, password: token });
    devices.push(d);
    return d;
  }

  it('add gives the device a broker login; rotate replaces it; revoke cuts the device off', async () => {
    const added = await runCli(['devices', 'add', 'cli-mq', '--json'], env);
    expect(added.stderr).toBe('');
    expect(added.code).toBe(0);
    const token = JSON.parse(added.stdout).devices[0].token as string;
    await h.registry.refresh(); // what the hub's file watch does within 250 ms
    const d = await connect('cli-mq', token);
    // Its HELLO on its own up topic is accepted by the broker and answered by the hub.
    expect((await d.hello(3)).lastAck).toBeNull();

    const rotated = await runCli(['devices', 'rotate', 'cli-mq', '--json'], env);
    expect(rotated.code).toBe(0);
    const newToken = JSON.parse(rotated.stdout).token as string;
    await until('the old login kicked', () => d.closed);
    // The running hub notices the rotation after the CLI replaced the login: the new login survives.
    await h.registry.refresh();
    await expect(connect('cli-mq', token)).rejects.toThrow(/Bad User Name or Password|Not authorized/i);
    const d2 = await connect('cli-mq', newToken);
    await d2.hello(4);

    const revoked = await runCli(['devices', 'revoke', 'cli-mq'], env);
    expect(revoked.code).toBe(0);
    // Cut off by the broker itself (the hub here has not even looked at the registry file yet).
    await until('the revoked device disconnected', () => d2.closed);
    await expect(connect('cli-mq', newToken)).rejects.toThrow(/Bad User Name or Password|Not authorized/i);
  });

  it('broker unreachable: the device is registered, the CLI exits 1 saying the login was not created and how to retry', async () => {
    const down = `mqtt://127.0.0.1:${await freePort('127.0.0.1')}`;
    const res = await runCli(['devices', 'add', 'cli-offline'], { ...env, MQTT_URL: down });
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(/Added device cli-offline/); // the token is still shown
    expect(res.stderr).toMatch(/broker login .*cli-offline.* NOT created/);
    expect(res.stderr).toMatch(/npm run hub -- devices rotate cli-offline/);
    expect(res.stderr).toMatch(/MQTT_BROKER_ACCESS/);
    const list = await runCli(['devices', 'list', '--json'], env);
    expect(JSON.parse(list.stdout).devices).toContainEqual(
      expect.objectContaining({ id: 'cli-offline', revoked: false }),
    );
    // A broker that refuses the hub's login: the same.
    const refused = await runCli(['devices', 'add', 'cli-refused'], { ...env, MQTT_PASSWORD: 'wrong' });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/broker login of cli-refused was NOT created/);
    expect(refused.stderr).not.toMatch(/wrong/); // never the password
    // The retry the message names works once the broker is reachable.
    const retry = await runCli(['devices', 'rotate', 'cli-offline', '--json'], env);
    expect(retry.code).toBe(0);
    const d = await connect('cli-offline', JSON.parse(retry.stdout).token);
    await h.registry.refresh();
    await d.hello(1);

    // A rotation the broker did not see: the old login still works there until a retry succeeds.
    const rotated = await runCli(['devices', 'rotate', 'cli-offline'], { ...env, MQTT_URL: down });
    expect(rotated.code).toBe(1);
    expect(rotated.stderr).toMatch(/broker login of cli-offline was NOT replaced/);
    expect(d.closed).toBe(false);
    // A revoke the broker did not see leaves the device connected; the revoke again deletes the login.
    const revoked = await runCli(['devices', 'revoke', 'cli-offline'], { ...env, MQTT_URL: down });
    expect(revoked.code).toBe(1);
    expect(revoked.stderr).toMatch(/broker login of cli-offline was NOT deleted/);
    expect(revoked.stderr).toMatch(/npm run hub -- devices revoke cli-offline/);
    expect(d.closed).toBe(false);
    expect((await runCli(['devices', 'revoke', 'cli-offline'], env)).code).toBe(0);
    await until('the revoked device disconnected', () => d.closed);
  });
});
