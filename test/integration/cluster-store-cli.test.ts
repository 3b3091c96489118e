/**
 * `npm run hub -- devices …` as a real process with CLUSTER_DATABASE_URL: it works on the cluster
 * registry in a real PostgreSQL, and a running instance (a store opened here) applies each change
 * (authenticate, onRevoked); with MQTT_DEVICE_ACCESS=dynsec the device's broker login on a real
 * Mosquitto follows as without a cluster. The password in the URL appears in no output.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MosquittoServer, type PostgresServer, startMosquitto, startPostgres, until } from '../harness/index.ts';
import { type OpenedStore, openStore } from './cluster-store-helpers.ts';
import { MqttTestDevice } from './mqtt-device-client.ts';
import { runCli } from './registry-cli.ts';

const HUB_USER = 'hub';
const HUB_PASSWORD = 'hub-broker-password-1';

let pgServer: PostgresServer;
let broker: MosquittoServer;
let running: OpenedStore;
let url: string;
let dir: string;
const devices: MqttTestDevice[] = [];

beforeAll(async () => {
  [pgServer, broker] = await Promise.all([
    startPostgres(),
    startMosquitto({ dynsec: { adminUser: HUB_USER, adminPassword: HUB_PASSWORD } }),
  ]);
  url = await pgServer.createDatabase('cli');
  dir = mkdtempSync(join(tmpdir(), 'cluster-cli-'));
  running = await openStore({ databaseUrl: url, instanceId: 'inst-a', dataDir: dir });
});
afterAll(async () => {
  await Promise.all(devices.map((d) => d.close().catch(() => undefined)));
  await running?.store.close();
  await broker?.stop();
  await pgServer?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('devices CLI on the cluster registry (PostgreSQL)', () => {
  it('add, list, rotate and revoke reach a running instance within its notification', async () => {
    // Another data dir than the instance's: the CLI's registry is the database, not a file.
    const cliDir = mkdtempSync(join(tmpdir(), 'cluster-cli-'));
    try {
      const env = { CLUSTER_DATABASE_URL: url, HUB_DATA_DIR: cliDir };
      const revoked: string[] = [];
      running.store.registry.onRevoked((id) => revoked.push(id));

      const added = await runCli(['devices', 'add', 'cli-1', 'cli-2', '--json'], env);
      expect(added.stderr).toBe('');
      expect(added.code).toBe(0);
      const [one, two] = (JSON.parse(added.stdout) as { devices: { id: string; token: string }[] }).devices;
      await until(
        'the instance accepts the new tokens',
        () => running.store.registry.authenticate(two?.token) === 'cli-2',
      );
      expect(running.store.registry.authenticate(one?.token)).toBe('cli-1');

      const text = await runCli(['devices', 'add', 'cli-3'], env);
      expect(text.code).toBe(0);
      expect(text.stdout).toContain(`Registry: postgres://hub@127.0.0.1:${pgServer.port}/cli`);

      const list = await runCli(['devices', 'list', '--json'], env);
      expect((JSON.parse(list.stdout) as { devices: { id: string }[] }).devices.map((d) => d.id)).toEqual([
        'cli-1',
        'cli-2',
        'cli-3',
      ]);

      const rotated = await runCli(['devices', 'rotate', 'cli-1', '--json'], env);
      expect(rotated.code).toBe(0);
      const fresh = (JSON.parse(rotated.stdout) as { token: string }).token;
      await until('the instance hears of the rotation', () => revoked.includes('cli-1'));
      expect(running.store.registry.authenticate(one?.token)).toBeNull();
      expect(running.store.registry.authenticate(fresh)).toBe('cli-1');

      const gone = await runCli(['devices', 'revoke', 'cli-2'], env);
      expect(gone.code).toBe(0);
      await until('the instance hears of the revoke', () => revoked.includes('cli-2'));
      expect(running.store.registry.authenticate(two?.token)).toBeNull();

      const dup = await runCli(['devices', 'add', 'cli-1', '--json'], env);
      expect(dup.code).toBe(1);
      expect(JSON.parse(dup.stderr)).toMatchObject({ error: { code: 'DEVICE_EXISTS' } });

      for (const out of [added, text, list, rotated, gone, dup]) {
        expect(`${out.stdout}${out.stderr}`).not.toContain(pgServer.password);
      }
    } finally {
      rmSync(cliDir, { recursive: true, force: true });
    }
  });

  it('with MQTT_DEVICE_ACCESS=dynsec the broker login follows the cluster registry', async () => {
    const env = {
      CLUSTER_DATABASE_URL: url,
      HUB_DATA_DIR: dir,
      MQTT_URL: broker.url,
      MQTT_USERNAME: HUB_USER,
      MQTT_PASSWORD: HUB_PASSWORD,
      MQTT_DEVICE_ACCESS: 'dynsec',
    };
    const added = await runCli(['devices', 'add', 'cli-mq', '--json'], env);
    expect(added.stderr).toBe('');
    expect(added.code).toBe(0);
    const token = (JSON.parse(added.stdout) as { devices: { token: string }[] }).devices[0]?.token as string;
    await until('the instance knows cli-mq', () => running.store.registry.get('cli-mq')?.revoked === false);
    const d = await MqttTestDevice.connect(broker.url, { deviceId: 'cli-mq', password: token });
    devices.push(d);

    const revoked = await runCli(['devices', 'revoke', 'cli-mq'], env);
    expect(revoked.code).toBe(0);
    await until('the broker cut the revoked device off', () => d.closed);
    await expect(MqttTestDevice.connect(broker.url, { deviceId: 'cli-mq', password: token })).rejects.toThrow(
      /Bad User Name or Password|Not authorized/i,
    );
    await until('the instance hears of the revoke', () => running.store.registry.get('cli-mq')?.revoked === true);
  });
});
