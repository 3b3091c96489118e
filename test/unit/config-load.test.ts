import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../server/config/index.ts';
import { COMMIT_WINDOW_MAX_LIMIT_MS, COMMIT_WINDOW_MAX_MS, COMMIT_WINDOW_MS } from '../../server/storage/local-log.ts';

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('CONFIG_INVALID');
    return (err as ConfigError).problems;
  }
  throw new Error('expected loadConfig to refuse');
}

describe('loadConfig', () => {
  it('lists every problem of a bad configuration at once', () => {
    const problems = problemsOf({
      HUB_PORT: '70000',
      HUB_PUBLIC_URL: 'not a url',
      HUB_ADMIN_TOKEN: 'short',
      INFLUX_URL: 'http://localhost:8086',
      INFLUX_TOKEN: 'tok',
      HUB_TLS_CERT_FILE: '/etc/hub/cert.pem',
      HUB_ALLOWED_ORIGINS: 'https://ok.example,ftp://bad.example',
      LOG_FULL_POLICY: 'panic',
    });
    const expected = [
      /^HUB_PORT: /,
      /^HUB_PUBLIC_URL: /,
      /^HUB_ADMIN_TOKEN: .*at least 32 characters/,
      /^LOG_FULL_POLICY: /,
      /^INFLUX_ORG, INFLUX_BUCKET: required when INFLUX_URL, INFLUX_TOKEN is set$/,
      /^HUB_TLS_CERT_FILE, HUB_TLS_KEY_FILE: set both or neither$/,
      /^HUB_ALLOWED_ORIGINS: ftp:\/\/bad\.example is not an origin/,
    ];
    for (const pattern of expected)
      expect(
        problems.some((p) => pattern.test(p)),
        String(pattern),
      ).toBe(true);
    expect(problems).toHaveLength(expected.length);
  });

  it('LOG_COMMIT_WINDOW_MAX_MS: the local log’s default, refused outside [COMMIT_WINDOW_MS, COMMIT_WINDOW_MAX_LIMIT_MS]', () => {
    expect(loadConfig({}).storage.commitWindowMaxMs).toBe(COMMIT_WINDOW_MAX_MS);
    expect(loadConfig({ LOG_COMMIT_WINDOW_MAX_MS: '1000' }).storage.commitWindowMaxMs).toBe(1000);
    expect(loadConfig({ LOG_COMMIT_WINDOW_MAX_MS: String(COMMIT_WINDOW_MS) }).storage.commitWindowMaxMs).toBe(
      COMMIT_WINDOW_MS,
    );
    for (const bad of [String(COMMIT_WINDOW_MS - 1), String(COMMIT_WINDOW_MAX_LIMIT_MS + 1), '1.5', 'soon']) {
      expect(problemsOf({ LOG_COMMIT_WINDOW_MAX_MS: bad, HUB_PORT: '70000' })).toEqual([
        expect.stringMatching(/^HUB_PORT: /),
        expect.stringMatching(/^LOG_COMMIT_WINDOW_MAX_MS: /),
      ]);
    }
  });

  it('puts every problem in the error message too', () => {
    try {
      loadConfig({ HUB_PORT: 'x', INFLUX_BUCKET: 'b' });
      throw new Error('expected a refusal');
    } catch (err) {
      expect((err as Error).message).toMatch(/HUB_PORT[\s\S]*INFLUX_URL, INFLUX_TOKEN, INFLUX_ORG: required/);
    }
  });

  it('reports problems from the config file alongside the environment ones', () => {
    const dir = mkdtempSync(join(tmpdir(), 'config-'));
    try {
      const file = join(dir, 'hub.json');
      writeFileSync(file, JSON.stringify({ HUB_PORT: 8081, HUB_COLOUR: 'blue', INFLUX_ORG: 'o' }));
      const problems = problemsOf({ HUB_CONFIG_FILE: file, HUB_LOG_LEVEL: 'loud' });
      expect(problems.some((p) => p.includes('unknown setting HUB_COLOUR'))).toBe(true);
      expect(problems.some((p) => p.startsWith('HUB_LOG_LEVEL: '))).toBe(true);
      expect(problems.some((p) => p.includes('required when INFLUX_ORG is set'))).toBe(true);
      expect(problems).toHaveLength(3);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('builds a frozen config from a good environment; empty strings count as unset', () => {
    const config = loadConfig({
      HUB_PORT: '9000',
      HUB_ADMIN_TOKEN: 'x'.repeat(32),
      INFLUX_URL: '',
      HUB_ALLOWED_ORIGINS: 'https://a.example, https://b.example:8443',
    });
    expect(config.server.port).toBe(9000);
    expect(config.server.publicUrl).toBe('http://localhost:9000');
    expect(config.server.allowedOrigins).toEqual(['https://a.example', 'https://b.example:8443']);
    expect(config.auth.adminToken).toBe('x'.repeat(32));
    expect(config.influx).toBeNull();
    expect(Object.isFrozen(config.server)).toBe(true);
  });

  it('HUB_HEAP_GROWTH_PERCENT: 60 by default, 0 leaves V8 its own, out of range or not a number is refused', () => {
    expect(loadConfig({}).heapGrowthPercent).toBe(60);
    expect(loadConfig({ HUB_HEAP_GROWTH_PERCENT: '0' }).heapGrowthPercent).toBe(0);
    const problems = problemsOf({ HUB_HEAP_GROWTH_PERCENT: '500', HUB_PORT: 'x' });
    expect(problems.some((p) => p.startsWith('HUB_HEAP_GROWTH_PERCENT: '))).toBe(true);
    expect(problemsOf({ HUB_HEAP_GROWTH_PERCENT: 'lots' }).some((p) => p.startsWith('HUB_HEAP_GROWTH_PERCENT: '))).toBe(
      true,
    );
  });
});
