/**
 * The full-stack compose file, checked by a real Compose implementation (Debian's docker-compose
 * parses and validates without an engine) plus the rules the file must keep: pinned images, no
 * secret written in it, health checks and depends_on conditions, a non-root multi-stage Dockerfile.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';

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

function compose_(envFile: string, ...args: string[]) {
  return spawnSync('docker-compose', ['--env-file', envFile, '-f', composeFile, '--profile', 'sim', ...args], {
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
      ['--env-file', env, '-f', composeFile, '--profile', 'sim', 'config', '--services'],
      {
        cwd: root,
        encoding: 'utf8',
      },
    );
    expect(services_.trim().split('\n').sort()).toEqual(['grafana', 'hub', 'influxdb', 'mosquitto', 'sim']);
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
      expect.arrayContaining([
        'INFLUX_TOKEN',
        'INFLUXDB_ADMIN_PASSWORD',
        'GRAFANA_ADMIN_PASSWORD',
        'HUB_ADMIN_TOKEN',
        'MQTT_PASSWORD',
      ]),
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
      expect(service.image, name).toMatch(/:\d+\.\d+\.\d+(-[\w.]+)?$/);
    }
  });

  it('has health checks and waits on healthy dependencies; the simulator is opt-in', () => {
    for (const name of ['influxdb', 'mosquitto', 'hub', 'grafana'])
      expect(services[name]?.healthcheck, name).toBeDefined();
    for (const [name, service] of Object.entries(services)) {
      for (const [dep, cond] of Object.entries(service.depends_on ?? {})) {
        expect(cond.condition, `${name} → ${dep}`).toBe('service_healthy');
      }
    }
    expect(services.sim?.profiles).toEqual(['sim']);
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
});
