import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfigWithEnvFile, parseEnvFile, takeEnvFileArg, withEnvFile } from '../../server/config/env-file.ts';
import { ConfigError, ENV_SCHEMA, loadConfig } from '../../server/config/index.ts';

describe('parseEnvFile', () => {
  it("reads Node's env-file syntax: export, quotes, comments, multi-line double quotes, CRLF", () => {
    const text = [
      '# comment',
      '',
      'HUB_PORT=8081',
      'export HUB_HOST = 127.0.0.1   # trailing comment',
      'HUB_DASHBOARD_PASSWORD="pass # not a comment"',
      "MQTT_PASSWORD='single $quoted'",
      'MQTT_USERNAME=`backtick`',
      'HUB_ADMIN_TOKEN=abc#def',
      'HUB_PUBLIC_URL="https://a.example',
      'still"',
      'HUB_ALLOWED_ORIGINS="x\\ny"',
      'HUB_TLS_CERT_FILE=',
      'GRAFANA_ADMIN_PASSWORD=compose-only\r',
    ].join('\n');
    const { values, problems } = parseEnvFile(text, '.env');
    expect(problems).toEqual([]);
    expect(values).toEqual({
      HUB_PORT: '8081',
      HUB_HOST: '127.0.0.1',
      HUB_DASHBOARD_PASSWORD: 'pass # not a comment',
      MQTT_PASSWORD: 'single $quoted',
      MQTT_USERNAME: 'backtick',
      HUB_ADMIN_TOKEN: 'abc#def',
      HUB_PUBLIC_URL: 'https://a.example\nstill',
      HUB_ALLOWED_ORIGINS: 'x\ny',
      HUB_TLS_CERT_FILE: '',
      GRAFANA_ADMIN_PASSWORD: 'compose-only',
    });
  });

  it('reads .env.example as is (copied to .env, compose-only names included) and loads it', () => {
    const text = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8');
    const { values, problems } = parseEnvFile(text, '.env');
    expect(problems).toEqual([]);
    expect(() => loadConfig(values)).not.toThrow();
  });

  it('lists every malformed line, never quoting a value', () => {
    const { problems } = parseEnvFile(
      ['HUB_PORT: 80', 'HUB_ADMIN_TOKEN=secret-one', 'HUB_ADMIN_TOKEN=secret-two', "HUB_HOST='x' y", 'LIVE_MAX=1'].join(
        '\n',
      ),
      'site.env',
    );
    expect(problems).toEqual([
      'site.env:1: not a NAME=value line, a # comment or blank',
      'site.env:3: HUB_ADMIN_TOKEN is already set on line 2 (which one should win?)',
      "site.env:4: HUB_HOST: text after the closing ' (put a # before a comment)",
      'site.env:5: unknown setting LIVE_MAX (the settings are listed in .env.example)',
    ]);
    // Every setting's first word is a hub prefix (new groups included); GRAFANA_ is shared with compose.
    expect(parseEnvFile('ENROLL_MOD=secret\nGRAFANA_ADMIN_USER=admin\n', '.env').problems).toEqual([
      '.env:1: unknown setting ENROLL_MOD (the settings are listed in .env.example)',
    ]);
    expect(problems.join('\n')).not.toContain('secret');
  });
});

describe('withEnvFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'env-file-'));
  writeFileSync(join(dir, '.env'), 'HUB_PORT=9001\nHUB_HOST=10.0.0.1\nHUB_DATA_DIR=from-file\n');
  writeFileSync(join(dir, 'other.env'), 'HUB_PORT=9002\n');

  it('puts the file under the real environment: a set variable wins, even an empty one', () => {
    const r = withEnvFile({ HUB_HOST: '127.0.0.1', HUB_DATA_DIR: '' }, { cwd: dir });
    expect(r.file).toBe(join(dir, '.env'));
    expect(r.env).toMatchObject({ HUB_PORT: '9001', HUB_HOST: '127.0.0.1', HUB_DATA_DIR: '' });
    expect([...r.fromFile]).toEqual(['HUB_PORT']);
  });

  it('--env-file beats ENV_FILE, which beats .env; a missing .env is fine, a missing named file is not', () => {
    expect(withEnvFile({ ENV_FILE: 'other.env' }, { cwd: dir }).env.HUB_PORT).toBe('9002');
    expect(withEnvFile({ ENV_FILE: 'nope.env' }, { cwd: dir, envFile: '.env' }).env.HUB_PORT).toBe('9001');
    const empty = mkdtempSync(join(tmpdir(), 'env-none-'));
    expect(withEnvFile({}, { cwd: empty })).toMatchObject({ file: null, problems: [] });
    expect(withEnvFile({}, { cwd: empty, envFile: 'x.env' }).problems).toEqual([
      '--env-file x.env: cannot read the env file (no such file)',
    ]);
  });

  it('loadConfigWithEnvFile lists the file problems with the settings problems, naming the file', () => {
    writeFileSync(join(dir, 'bad.env'), 'HUB_PORT=99999\nHUB_DATA_DIR\n');
    try {
      loadConfigWithEnvFile({ LOG_FULL_POLICY: 'panic' }, { cwd: dir, envFile: 'bad.env' });
      throw new Error('expected a refusal');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const problems = (err as ConfigError).problems;
      expect(problems[0]).toBe('bad.env:2: not a NAME=value line, a # comment or blank');
      expect(problems).toContainEqual(expect.stringMatching(/^HUB_PORT: .* \(from bad\.env\)$/));
      expect(problems).toContainEqual(expect.stringMatching(/^LOG_FULL_POLICY: [^(]*$/));
      expect(problems).toHaveLength(3);
    }
  });
});

describe('the start-up check', () => {
  it('names a TLS certificate or key that cannot be read, with the other problems', () => {
    const dir = mkdtempSync(join(tmpdir(), 'env-tls-'));
    writeFileSync(join(dir, 'cert.pem'), 'not checked here: only that the file can be read');
    const env = { HUB_TLS_CERT_FILE: join(dir, 'cert.pem'), HUB_TLS_KEY_FILE: join(dir, 'missing-key.pem') };
    expect(() => loadConfigWithEnvFile(env, { cwd: dir })).toThrow(ConfigError);
    try {
      loadConfigWithEnvFile({ ...env, HUB_PORT: 'x' }, { cwd: dir });
    } catch (err) {
      expect((err as ConfigError).problems).toEqual([
        expect.stringMatching(/^HUB_PORT: /),
        `HUB_TLS_KEY_FILE: cannot read ${join(dir, 'missing-key.pem')} (no such file)`,
      ]);
    }
    writeFileSync(join(dir, 'missing-key.pem'), 'key');
    expect(loadConfigWithEnvFile(env, { cwd: dir }).config.server.tls).not.toBeNull();
  });

  it('names every file setting (*_FILE) whose file is missing, once', () => {
    const dir = mkdtempSync(join(tmpdir(), 'env-files-'));
    const keys = Object.keys(ENV_SCHEMA).filter((k) => k.endsWith('_FILE'));
    expect(keys).toEqual(expect.arrayContaining(['HUB_TLS_CERT_FILE', 'HUB_TLS_KEY_FILE', 'ALERT_RULES_FILE']));
    const env = Object.fromEntries(keys.map((k) => [k, join(dir, `missing-${k}`)]));
    try {
      loadConfigWithEnvFile(env, { cwd: dir });
      throw new Error('expected a refusal');
    } catch (err) {
      const problems = (err as ConfigError).problems;
      for (const key of keys) {
        expect(
          problems.filter((p) => p.startsWith(key) && p.includes(`missing-${key}`)),
          key,
        ).toHaveLength(1);
      }
    }
  });

  it('names a data directory that is a file, or lies under one, with the other problems', () => {
    const dir = mkdtempSync(join(tmpdir(), 'env-data-'));
    writeFileSync(join(dir, 'a-file'), '');
    const problems = (env: Record<string, string>) => {
      try {
        loadConfigWithEnvFile(env, { cwd: dir });
        return [];
      } catch (err) {
        return (err as ConfigError).problems;
      }
    };
    expect(problems({ HUB_DATA_DIR: 'a-file', LOG_FULL_POLICY: 'x' })).toEqual([
      expect.stringMatching(/^LOG_FULL_POLICY: /),
      'HUB_DATA_DIR: a-file is not a directory',
    ]);
    expect(problems({ HUB_DATA_DIR: 'a-file/data' })).toEqual([
      `HUB_DATA_DIR: a-file/data cannot be created: ${join(dir, 'a-file')} is a file`,
    ]);
    expect(problems({ HUB_DATA_DIR: 'new/data' })).toEqual([]);
  });
});

describe('takeEnvFileArg', () => {
  it('takes --env-file <path> and --env-file=<path>, leaves the rest', () => {
    expect(takeEnvFileArg(['--env-file', 'a.env', 'devices', 'list'])).toEqual({
      envFile: 'a.env',
      rest: ['devices', 'list'],
    });
    expect(takeEnvFileArg(['devices', '--env-file=b.env'])).toEqual({ envFile: 'b.env', rest: ['devices'] });
    expect(takeEnvFileArg(['--env-file']).problem).toBe('--env-file needs a path');
  });
});
