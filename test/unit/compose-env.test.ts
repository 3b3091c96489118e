/**
 * docker-compose.yml passes every documented hub setting: each variable of ENV_SCHEMA (the names
 * `.env.example` lists) reaches the hub service's environment from `.env`, except the three the stack
 * owns, each checked for what it is instead. A new setting without compose wiring fails here. The
 * real compose implementation's view of the same file is in test/integration/compose.test.ts.
 */
// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the strings are compose interpolations, not JS templates.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { ENV_SCHEMA } from '../../server/config/index.ts';

const root = join(import.meta.dirname, '../..');
const compose = parseYaml(readFileSync(join(root, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, { environment?: Record<string, string | number>; volumes?: string[]; ports?: string[] }>;
};
const hub = compose.services.hub ?? {};
const environment = Object.fromEntries(Object.entries(hub.environment ?? {}).map(([k, v]) => [k, String(v)]));

/** Settings whose value the stack sets itself, and why (each is checked below). */
const STACK_OWNED: Record<string, string> = {
  HUB_HOST: 'the hub listens on every interface of its container; HUB_HOST is where compose publishes the port',
  HUB_DATA_DIR: 'the hub-data volume, mounted at /data',
  INFLUX_URL: "the stack's InfluxDB",
};

describe('docker-compose.yml hub service', () => {
  it('passes every hub setting from .env (${NAME:-…} or ${NAME:?…} of the same name)', () => {
    const missing = Object.keys(ENV_SCHEMA).filter((k) => !(k in environment));
    expect(missing, 'settings the hub service does not pass').toEqual([]);
    for (const key of Object.keys(ENV_SCHEMA)) {
      if (key in STACK_OWNED) continue;
      expect(environment[key], key).toMatch(new RegExp(`^\\$\\{${key}(:[-?][^}]*)?\\}$`));
    }
  });

  it('sets nothing the hub does not read', () => {
    for (const key of Object.keys(environment)) expect(Object.keys(ENV_SCHEMA), key).toContain(key);
  });

  it('owns only the data directory, the InfluxDB URL and the listening interface, publishing HUB_HOST:HUB_PORT', () => {
    expect(environment.HUB_DATA_DIR).toBe('/data');
    expect(hub.volumes).toContain('hub-data:/data');
    expect(environment.INFLUX_URL).toBe('http://influxdb:8086');
    expect(environment.HUB_HOST).toBe('0.0.0.0');
    expect(hub.ports).toEqual(['${HUB_HOST:-0.0.0.0}:${HUB_PORT:-8080}:${HUB_PORT:-8080}']);
    expect(environment.HUB_PORT).toBe('${HUB_PORT:-8080}');
  });

  it('mounts a TLS certificate directory read-only; keys in the default one stay out of git', () => {
    expect(hub.volumes).toContain('${HUB_TLS_DIR:-./docker/tls}:/tls:ro');
    expect(existsSync(join(root, 'docker/tls/README.md'))).toBe(true);
    expect(readFileSync(join(root, 'docker/tls/.gitignore'), 'utf8')).toMatch(/^\*$/m);
    const example = readFileSync(join(root, '.env.example'), 'utf8');
    expect(example).toMatch(/^HUB_TLS_DIR=/m);
  });

  it('mounts a directory for the other files settings name (the alert rules)', () => {
    expect(hub.volumes).toContain('${HUB_CONFIG_DIR:-./docker/config}:/config:ro');
    expect(existsSync(join(root, 'docker/config/README.md'))).toBe(true);
  });

  it('health-checks over the configured port and scheme, in the image too', () => {
    const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^COPY docker\/healthcheck\.mjs /m);
    expect(dockerfile).toMatch(/CMD \["node", "docker\/healthcheck\.mjs"\]/);
    expect(JSON.stringify(compose.services.hub)).toContain('docker/healthcheck.mjs');
  });
});

describe('the hub image', () => {
  it('runs an even (LTS) Node major inside the range package.json engines supports', () => {
    const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
    const engines = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).engines.node as string;
    const min = /^>=(\d+)\.(\d+)/.exec(engines);
    expect(min, engines).not.toBeNull();
    const froms = [...dockerfile.matchAll(/^FROM node:(\d+)\.(\d+)\.(\d+)-\S+/gm)];
    expect(froms.length).toBeGreaterThanOrEqual(2);
    expect(new Set(froms.map((m) => m[0].split(' ')[0])).size, 'every stage on the same Node').toBe(1);
    const [major, minor] = [Number(froms[0]?.[1]), Number(froms[0]?.[2])];
    expect(major % 2, 'an LTS line').toBe(0);
    expect(major * 1000 + minor).toBeGreaterThanOrEqual(Number(min?.[1]) * 1000 + Number(min?.[2]));
  });
});
