/**
 * `npm run hub -- devices …` as a real process on a temp data dir: output, exit codes, and what
 * lands in the store and the tokens file.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../server/log/index.ts';
import { hashToken, openDeviceRegistry, REGISTRY_FILE_NAME } from '../../server/registry/index.ts';
import { runCli } from './registry-cli.ts';

const TOKEN = /esp32hub_[A-Za-z0-9_-]{43}/;
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'registry-cli-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function registryIn(dataDir: string) {
  return openDeviceRegistry({ dataDir, logger: createLogger('silent'), watchIntervalMs: 0 });
}

describe('hub CLI: devices', () => {
  it('add prints the token once with how to use it, and stores only its hash', async () => {
    const res = await runCli(['devices', 'add', 'dev-1', '--data-dir', dir]);
    expect(res.code).toBe(0);
    const token = TOKEN.exec(res.stdout)?.[0] as string;
    expect(token).toBeDefined();
    expect(res.stdout.split(token).length - 1).toBe(2); // the token line and the header line
    expect(res.stdout).toContain('ws://localhost:8080/v1/device');
    expect(res.stdout).toContain(`Authorization: Bearer ${token}`);
    expect(res.stdout).toContain('esp32hub.v1');
    expect(res.stderr).toBe('');

    const stored = readFileSync(join(dir, REGISTRY_FILE_NAME), 'utf8');
    expect(stored).not.toContain(token);
    expect(stored).toContain(hashToken(token));
    const registry = registryIn(dir);
    expect(registry.authenticate(token)).toBe('dev-1');
    await registry.close();
  });

  it('add --json --tokens-file appends id,token lines to a 0600 file', async () => {
    const file = join(dir, 'devices.tokens');
    const first = await runCli([
      'devices',
      'add',
      'sim-1',
      'sim-2',
      '--json',
      '--tokens-file',
      file,
      '--data-dir',
      dir,
    ]);
    expect(first.code).toBe(0);
    const out = JSON.parse(first.stdout) as { devices: { id: string; token: string }[]; deviceUrl: string };
    expect(out.devices.map((d) => d.id)).toEqual(['sim-1', 'sim-2']);
    expect(out.deviceUrl).toBe('ws://localhost:8080/v1/device');
    const second = await runCli(['devices', 'add', 'sim-3', '--json', '--tokens-file', file, '--data-dir', dir]);
    const sim3 = (JSON.parse(second.stdout) as typeof out).devices[0];
    expect(readFileSync(file, 'utf8')).toBe([...out.devices, sim3].map((d) => `${d?.id},${d?.token}\n`).join(''));
    expect(statSync(file).mode & 0o777).toBe(0o600);

    // rotate appends the new token; readers take the last line for an id.
    const rotated = await runCli(['devices', 'rotate', 'sim-2', '--json', '--tokens-file', file, '--data-dir', dir]);
    expect(rotated.code).toBe(0);
    const fresh = (JSON.parse(rotated.stdout) as { token: string }).token;
    expect(readFileSync(file, 'utf8').trimEnd().split('\n').at(-1)).toBe(`sim-2,${fresh}`);
  });

  it('list, rotate and revoke work on the same store', async () => {
    const added = JSON.parse((await runCli(['devices', 'add', 'dev-1', '--json', '--data-dir', dir])).stdout) as {
      devices: { token: string }[];
    };
    const oldToken = added.devices[0]?.token as string;
    const rotated = await runCli(['devices', 'rotate', 'dev-1', '--json', '--data-dir', dir]);
    expect(rotated.code).toBe(0);
    const newToken = (JSON.parse(rotated.stdout) as { token: string }).token;
    expect(newToken).toMatch(TOKEN);

    const registry = registryIn(dir);
    expect(registry.authenticate(oldToken)).toBeNull();
    expect(registry.authenticate(newToken)).toBe('dev-1');
    await registry.close();

    expect((await runCli(['devices', 'revoke', 'dev-1', '--data-dir', dir])).code).toBe(0);
    const list = await runCli(['devices', 'list', '--json', '--data-dir', dir]);
    const devices = (JSON.parse(list.stdout) as { devices: { id: string; revoked: boolean; rotatedAt: string }[] })
      .devices;
    expect(devices).toHaveLength(1);
    expect(devices[0]).toMatchObject({ id: 'dev-1', revoked: true });
    expect(devices[0]?.rotatedAt).toMatch(/^\d{4}-/);
    expect(list.stdout).not.toContain('esp32hub_');
    const table = await runCli(['devices', 'list', '--data-dir', dir]);
    expect(table.stdout).toMatch(/^ID\s+STATUS\s+CREATED\s+LAST ROTATED\s+REVOKED\ndev-1\s+revoked\s/);
  });

  it.each([
    ['a duplicate id', ['add', 'dup'], 1, /already exists; rotate it.*\(DEVICE_EXISTS\)/],
    ['a bad id', ['add', 'bad/id'], 1, /device id "bad\/id" is invalid/],
    ['an unknown device', ['revoke', 'ghost'], 1, /no device ghost is registered \(NOT_FOUND\)/],
    ['an unknown command', ['frob'], 2, /unknown command "frob"/],
    ['a missing id', ['rotate'], 2, /rotate needs one device id/],
    ['an unknown option', ['list', '--verbose'], 2, /Unknown option '--verbose'/],
    ['--tokens-file on revoke', ['revoke', 'dup', '--tokens-file', 'x'], 2, /only applies to add and rotate/],
  ])('explains %s with its exit code', async (_name, args, code, message) => {
    const registry = registryIn(dir);
    await registry.add('dup');
    await registry.close();
    const res = await runCli(['devices', ...args, '--data-dir', dir]);
    expect(res.code).toBe(code);
    expect(res.stderr).toMatch(message);
    expect(res.stdout).toBe('');
  });

  it('reports errors as JSON with --json', async () => {
    const res = await runCli(['devices', 'revoke', 'ghost', '--json', '--data-dir', dir]);
    expect(res.code).toBe(1);
    expect(JSON.parse(res.stderr)).toEqual({ error: { code: 'NOT_FOUND', message: 'no device ghost is registered' } });
  });

  it('takes the data dir and public URL from the environment, and refuses a bad configuration', async () => {
    const res = await runCli(['devices', 'add', 'dev-9'], {
      HUB_DATA_DIR: dir,
      HUB_PUBLIC_URL: 'https://hub.example.net:8443',
    });
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('wss://hub.example.net:8443/v1/device');
    expect(res.stdout).not.toContain('cannot reach "localhost"');
    expect(readFileSync(join(dir, REGISTRY_FILE_NAME), 'utf8')).toContain('"dev-9"');

    const bad = await runCli(['devices', 'list'], { HUB_DATA_DIR: dir, HUB_PORT: 'eighty' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/HUB_PORT/);
  });
});
