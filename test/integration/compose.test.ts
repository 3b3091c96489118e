/**
 * The full-stack compose file, checked by a real Compose implementation (Debian's docker-compose
 * parses and validates without an engine) plus the rules the file must keep: pinned images, no
 * secret written in it, health checks and depends_on conditions, a non-root multi-stage Dockerfile.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { ENV_SCHEMA, loadConfig } from '../../server/config/index.ts';
import { COMPOSE_HAPROXY_CFG, composeHaproxyConfig } from '../harness/haproxy.ts';
import { findExecutable, type TempDir, tempDir } from '../harness/index.ts';
import { startTestHub } from './ingest-device-client.ts';

const root = join(import.meta.dirname, '../..');
const composeFile = join(root, 'docker-compose.yml');
const composeText = readFileSync(composeFile, 'utf8');
const compose = parseYaml(composeText, { merge: true });
type Service = {
  image?: string;
  build?: unknown;
  environment?: Record<string, string>;
  healthcheck?: unknown;
  depends_on?: Record<string, { condition: string }>;
  ports?: string[];
  profiles?: string[];
};
const services = compose.services as Record<string, Service>;

/** Variables the file requires (`${NAME:?…}`) and those it lets default (`${NAME:-…}`). */
const required = [...new Set([...composeText.matchAll(/\$\{(\w+):\?/g)].map((m) => m[1] as string))];
const referenced = [...new Set([...composeText.matchAll(/\$\{(\w+)/g)].map((m) => m[1] as string))];

const PROFILES = ['--profile', 'sim', '--profile', 'mqtt', '--profile', 'ha'];

function compose_(envFile: string, ...args: string[]) {
  return spawnSync('docker-compose', ['--env-file', envFile, '-f', composeFile, ...PROFILES, ...args], {
    cwd: root,
    encoding: 'utf8',
  });
}

describe('docker-compose.yml', () => {
  const dir = mkdtempSync(join(tmpdir(), 'compose-'));

  it('is accepted by a real compose implementation when .env provides the secrets', () => {
    const env = join(dir, 'ok.env');
    writeFileSync(env, required.map((name) => `${name}=placeholder-${name.toLowerCase()}`).join('\n'));
    const result = compose_(env, 'config', '-q');
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const services_ = execFileSync(
      'docker-compose',
      ['--env-file', env, '-f', composeFile, ...PROFILES, 'config', '--services'],
      {
        cwd: root,
        encoding: 'utf8',
      },
    );
    expect(services_.trim().split('\n').sort()).toEqual([
      'grafana',
      'haproxy',
      'hub',
      'hub-b',
      'influxdb',
      'mosquitto',
      'postgres',
      'sim',
    ]);
  });

  it('refuses to start without the secrets, naming the missing one', () => {
    const env = join(dir, 'empty.env');
    writeFileSync(env, '');
    const result = compose_(env, 'config', '-q');
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(/set [A-Z_]+ in \.env/);
  });

  it('requires every secret from .env and writes none in the file', () => {
    expect(required).toEqual(
      expect.arrayContaining(['INFLUX_TOKEN', 'INFLUXDB_ADMIN_PASSWORD', 'GRAFANA_ADMIN_PASSWORD', 'HUB_ADMIN_TOKEN']),
    );
    for (const [name, service] of Object.entries(services)) {
      for (const [key, value] of Object.entries(service.environment ?? {})) {
        if (/PASSWORD|TOKEN|SECRET/.test(key))
          expect(String(value), `${name}.${key}`).toMatch(/^(Token )?\$\{\w+(:[?-][^}]*)?\}$/);
      }
    }
  });

  it('.env.example documents every variable the compose file reads', () => {
    const example = readFileSync(join(root, '.env.example'), 'utf8');
    const documented = new Set([...example.matchAll(/^#?\s*([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]));
    for (const name of referenced) expect(documented.has(name), `${name} missing from .env.example`).toBe(true);
  });

  it('pins every image it pulls', () => {
    for (const [name, service] of Object.entries(services)) {
      if (service.build || service.image?.startsWith('esp32hub/')) continue;
      // PostgreSQL's full version has two parts (15.15).
      const full = service.image?.startsWith('postgres:') ? /:\d+\.\d+(-[\w.]+)?$/ : /:\d+\.\d+\.\d+(-[\w.]+)?$/;
      expect(service.image, name).toMatch(full);
    }
  });

  it('has health checks and waits on healthy dependencies; the simulator is opt-in', () => {
    for (const name of ['influxdb', 'mosquitto', 'hub', 'grafana', 'hub-b', 'postgres'])
      expect(services[name]?.healthcheck, name).toBeDefined();
    for (const [name, service] of Object.entries(services)) {
      for (const [dep, cond] of Object.entries(service.depends_on ?? {})) {
        expect(cond.condition, `${name} → ${dep}`).toBe('service_healthy');
      }
    }
    expect(services.sim?.profiles).toEqual(['sim']);
    expect(services.mosquitto?.profiles).toEqual(['mqtt', 'ha']);
    for (const name of ['hub-b', 'haproxy', 'postgres']) expect(services[name]?.profiles, name).toEqual(['ha']);
    expect(services.sim?.ports).toBeUndefined();
  });

  it('the hub image is multi-stage, pinned and runs as a non-root user with a health check', () => {
    const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
    const froms = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1] as string);
    expect(froms.length).toBeGreaterThanOrEqual(2);
    for (const image of froms) expect(image).toMatch(/:\d+\.\d+\.\d+/);
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/^HEALTHCHECK /m);
  });

  type Resolved = Record<
    string,
    { environment?: Record<string, string | number | null>; volumes?: string[]; ports?: string[] }
  >;
  /** An env file with `env` plus the secrets. */
  function writeEnv(env: Record<string, string>): string {
    const file = join(dir, 'resolved.env');
    const secrets = required.map((n) => [n, `placeholder-${n.toLowerCase()}-0123456789abcdef0123456789`]);
    const all = { ...Object.fromEntries(secrets), ...env };
    writeFileSync(
      file,
      Object.entries(all)
        .map(([k, v]) => `${k}=${v}`)
        .join('\n'),
    );
    return file;
  }
  /** The services as the real compose implementation resolves them from `env` (plus the secrets). */
  function resolvedServices(env: Record<string, string>): Resolved {
    const result = compose_(writeEnv(env), 'config');
    expect(result.stderr).toBe('');
    return (parseYaml(result.stdout) as { services: Resolved }).services;
  }
  /** Each service's environment as the real compose implementation resolves it from `env` (plus the secrets). */
  function resolvedEnvironments(env: Record<string, string>): Record<string, Record<string, string>> {
    return Object.fromEntries(
      Object.entries(resolvedServices(env)).map(([name, svc]) => [
        name,
        Object.fromEntries(Object.entries(svc.environment ?? {}).map(([k, v]) => [k, v === null ? '' : String(v)])),
      ]),
    );
  }
  const hubEnvironment = (env: Record<string, string>) => resolvedEnvironments(env).hub ?? {};

  it('without MQTT_URL asks for no MQTT setting, and the hub runs without MQTT', () => {
    const env = hubEnvironment({});
    expect(env.MQTT_URL).toBe('');
    const config = loadConfig(env);
    expect(config.mqtt).toBeNull();
    expect(config.mqttBridge).toBeNull();
  });

  it('with MQTT_URL the hub uses the stack’s broker, its login from .env, and manages device logins', () => {
    const env = hubEnvironment({
      MQTT_URL: 'mqtt://mosquitto:1883',
      MQTT_PASSWORD: 'broker-secret-from-env',
      MQTT_DEVICE_ACCESS: 'dynsec',
      MQTT_BRIDGE: 'on',
      MQTT_HA_DISCOVERY: 'on',
    });
    const config = loadConfig(env);
    expect(config.mqtt).toMatchObject({
      url: 'mqtt://mosquitto:1883',
      username: 'esp32hub',
      password: 'broker-secret-from-env',
      deviceAccess: 'dynsec',
    });
    expect(config.mqttBridge?.haDiscovery).not.toBeNull();
    // The broker's administrator is the same login, from the same .env entries.
    expect(resolvedEnvironments({ MQTT_PASSWORD: 'broker-secret-from-env' }).mosquitto).toMatchObject({
      MQTT_USERNAME: 'esp32hub',
      MQTT_PASSWORD: 'broker-secret-from-env',
    });
  });

  it('every hub setting set in .env reaches the hub container as set; HUB_HOST:HUB_PORT is where it is published', () => {
    const stackOwned = ['HUB_HOST', 'HUB_DATA_DIR', 'INFLUX_URL'];
    const env: Record<string, string> = { HUB_HOST: '127.0.0.1', HUB_PORT: '9443' };
    for (const key of Object.keys(ENV_SCHEMA)) env[key] ??= `from-dotenv-${key.toLowerCase()}`;
    const hub = resolvedServices(env).hub;
    const environment = hub?.environment ?? {};
    for (const key of Object.keys(ENV_SCHEMA)) {
      if (stackOwned.includes(key)) continue;
      expect(String(environment[key]), key).toBe(env[key]);
    }
    expect(environment).toMatchObject({
      HUB_HOST: '0.0.0.0',
      HUB_DATA_DIR: '/data',
      INFLUX_URL: 'http://influxdb:8086',
    });
    expect(hub?.ports).toEqual(['127.0.0.1:9443:9443/tcp']);
    // The simulator follows the port.
    expect(JSON.stringify(resolvedServices(env).sim)).toContain('ws://hub:9443/v1/device');
  });

  it('TLS: the certificate directory is mounted read-only at /tls and the hub serves https on it', () => {
    const services = resolvedServices({
      HUB_TLS_DIR: '/srv/hub-certs',
      HUB_TLS_CERT_FILE: '/tls/fullchain.pem',
      HUB_TLS_KEY_FILE: '/tls/privkey.pem',
      HUB_PORT: '8443',
    });
    expect(services.hub?.volumes).toContain('/srv/hub-certs:/tls:ro');
    const env = Object.fromEntries(
      Object.entries(services.hub?.environment ?? {}).map(([k, v]) => [k, v === null ? '' : String(v)]),
    );
    const config = loadConfig(env);
    expect(config.server.tls).toEqual({ certFile: '/tls/fullchain.pem', keyFile: '/tls/privkey.pem' });
    expect(config.server.publicUrl).toBe('https://localhost:8443');
    // Unset, the default directory in the repository is mounted (its keys are git-ignored).
    expect(resolvedServices({}).hub?.volumes).toContain(`${join(root, 'docker/tls')}:/tls:ro`);
  });

  it('profile ha: a second hub with the first one’s settings, its own volume and instance id, PostgreSQL, and HAProxy running the tested config', () => {
    const cluster = {
      MQTT_URL: 'mqtt://mosquitto:1883',
      MQTT_PASSWORD: 'broker-secret-from-env',
      MQTT_DEVICE_ACCESS: 'dynsec',
      POSTGRES_PASSWORD: 'pg-secret-from-env',
      CLUSTER_DATABASE_URL: 'postgres://esp32hub:pg-secret-from-env@postgres:5432/esp32hub',
      HUB_PORT: '8090',
      HA_PORT: '9000',
    };
    const resolved = resolvedServices(cluster);
    const env = (name: string) =>
      Object.fromEntries(
        Object.entries(resolved[name]?.environment ?? {}).map(([k, v]) => [k, v === null ? '' : String(v)]),
      );
    const [a, b] = [env('hub'), env('hub-b')];
    // The same settings but the instance id; both in cluster mode against the stack's PostgreSQL.
    expect({ ...b, HUB_INSTANCE_ID: a.HUB_INSTANCE_ID }).toEqual(a);
    expect(b.HUB_INSTANCE_ID).toBe('hub-b');
    const configB = loadConfig(b);
    expect(configB.cluster).toEqual({ databaseUrl: cluster.CLUSTER_DATABASE_URL, instanceId: 'hub-b' });
    expect(configB.mqtt?.clientId).toBe('esp32hub-hub-hub-b');
    expect(loadConfig(a).cluster?.databaseUrl).toBe(cluster.CLUSTER_DATABASE_URL);
    // Instance ids stay stable across a recreate: explicit for hub-b, the fixed host name for hub.
    const hostnames = parseYaml(compose_(writeEnv(cluster), 'config').stdout).services as Record<
      string,
      { hostname?: string }
    >;
    expect(hostnames.hub?.hostname).toBe('hub');
    expect(hostnames['hub-b']?.hostname).toBe('hub-b');
    expect(resolved['hub-b']?.volumes).toContain('hub-b-data:/data:rw');
    expect(resolved['hub-b']?.ports).toBeUndefined();
    expect(env('postgres')).toMatchObject({
      POSTGRES_USER: 'esp32hub',
      POSTGRES_DB: 'esp32hub',
      POSTGRES_PASSWORD: 'pg-secret-from-env',
    });

    // HAProxy: published on HA_PORT, reaching the hubs on HUB_PORT, with the config the integration
    // tests run (test/harness/haproxy.ts), which the real haproxy accepts.
    expect(resolved.haproxy?.ports).toEqual(['0.0.0.0:9000:8080/tcp']);
    expect(env('haproxy').HUB_PORT).toBe('8090');
    expect(resolved.haproxy?.volumes).toContain(
      `${join(root, COMPOSE_HAPROXY_CFG)}:/usr/local/etc/haproxy/haproxy.cfg:ro`,
    );
    const cfg = readFileSync(join(root, COMPOSE_HAPROXY_CFG), 'utf8');
    expect(cfg, `regenerate with: npx tsx test/harness/haproxy.ts --write-compose-config`).toBe(composeHaproxyConfig());
    const check = spawnSync(findExecutable('haproxy'), ['-c', '-f', join(root, COMPOSE_HAPROXY_CFG)], {
      env: { PATH: process.env.PATH ?? '', HUB_PORT: '8090' },
      encoding: 'utf8',
    });
    expect(check.status, check.stdout + check.stderr).toBe(0);
  });

  it('the broker refuses to start without MQTT_PASSWORD, naming it; its config turns on dynamic security', () => {
    const run = spawnSync('sh', [join(root, 'docker/mosquitto/start.sh')], {
      env: { PATH: process.env.PATH ?? '', MQTT_USERNAME: 'esp32hub' },
      encoding: 'utf8',
    });
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/set MQTT_PASSWORD in \.env/);
    const conf = readFileSync(join(root, 'docker/mosquitto/mosquitto.conf'), 'utf8');
    expect(conf).toMatch(/^allow_anonymous false$/m);
    expect(conf).toMatch(/^plugin \S+mosquitto_dynamic_security\.so$/m);
    expect(conf).toMatch(/^plugin_opt_config_file \/mosquitto\/data\/dynamic-security\.json$/m);
  });
});

/**
 * The container's health check (docker/healthcheck.mjs) against a real hub: ready over http and, with
 * the TLS settings, over https on the configured port; not ready when nothing answers.
 */
describe('docker/healthcheck.mjs', () => {
  let dir: TempDir;
  beforeAll(async () => {
    dir = await tempDir('healthcheck');
  });
  afterAll(async () => {
    await dir?.remove();
  });

  /** Runs the check as Docker does, asynchronously: the hub under test answers from this process. */
  const check = (env: Record<string, string>) =>
    new Promise<{ status: number | null }>((resolve, reject) => {
      const child = spawn(process.execPath, [join(root, 'docker/healthcheck.mjs')], {
        env: { PATH: process.env.PATH ?? '', ...env },
        stdio: 'ignore',
      });
      child.on('error', reject);
      child.on('close', (status) => resolve({ status }));
    });

  it('passes on a ready hub over http and over https, fails when nothing listens', async () => {
    const plain = await startTestHub();
    try {
      expect((await check({ HUB_PORT: String(plain.port) })).status).toBe(0);
      // The same port asked over https: the check speaks the scheme the settings say.
      expect((await check({ HUB_PORT: String(plain.port), HUB_TLS_CERT_FILE: '/tls/cert.pem' })).status).toBe(1);
    } finally {
      await plain.stop();
      await plain.dir.remove();
    }
    expect((await check({ HUB_PORT: String(plain.port) })).status).toBe(1);

    const cert = join(dir.path, 'cert.pem');
    const key = join(dir.path, 'key.pem');
    execFileSync(
      findExecutable('openssl'),
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=hub'],
      { stdio: 'ignore' },
    );
    const tls = await startTestHub({ HUB_TLS_CERT_FILE: cert, HUB_TLS_KEY_FILE: key });
    try {
      expect((await check({ HUB_PORT: String(tls.port), HUB_TLS_CERT_FILE: cert })).status).toBe(0);
    } finally {
      await tls.stop();
      await tls.dir.remove();
    }
  });
});
