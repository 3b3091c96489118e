/**
 * `.env` as `.env.example` promises: the real hub process (`server/main.ts`, as `npm start` runs it)
 * and the operator CLI (`server/cli.ts`, as `npm run hub` runs it), started from a directory holding
 * a `.env`, take their settings from it; a variable of the real environment wins over the file;
 * `--env-file` and `ENV_FILE` name another file; a malformed file stops the start with every problem
 * listed (and no stack).
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, type ServerProcess, startProcess, type TempDir, tempDir, waitForReady } from '../harness/index.ts';
import { NODE_TSX, REPO_ROOT, runScript } from './run-script.ts';

const ADMIN_TOKEN = 'env-file-admin-token-0123456789abcdef';
const MAIN = join(REPO_ROOT, 'server/main.ts');

describe('.env for npm start and npm run hub', () => {
  let dir: TempDir;
  const procs: ServerProcess[] = [];

  beforeAll(async () => {
    dir = await tempDir('env-file');
  });
  afterAll(async () => {
    for (const p of procs) await p.stop();
    await dir?.remove();
  });

  /** A fresh working directory (the hub resolves `.env` and a relative HUB_DATA_DIR against it). */
  function workDir(name: string, files: Record<string, string>): string {
    const cwd = join(dir.path, name);
    for (const [file, text] of Object.entries(files)) {
      mkdirSync(join(cwd, file, '..'), { recursive: true });
      writeFileSync(join(cwd, file), text);
    }
    return cwd;
  }

  function startHub(cwd: string, env: Record<string, string>, args: string[] = []): ServerProcess {
    const proc = startProcess({
      name: 'hub',
      command: NODE_TSX.command,
      args: [...NODE_TSX.args, MAIN, ...args],
      cwd,
      logFile: join(cwd, 'hub.log'),
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    });
    procs.push(proc);
    return proc;
  }

  const adminStatus = async (port: number, token?: string) => {
    const res = await fetch(`http://127.0.0.1:${port}/api/admin/devices`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    await res.body?.cancel();
    return res.status;
  };

  it('npm start takes its settings from .env; a variable set in the environment wins', async () => {
    const port = await freePort();
    const cwd = workDir('start', {
      '.env': [
        '# as copied from .env.example and edited',
        'HUB_HOST=0.0.0.0',
        `HUB_PORT=${port}`,
        'HUB_DATA_DIR=data-from-dotenv',
        `export HUB_ADMIN_TOKEN="${ADMIN_TOKEN}"  # quoted, with a comment`,
        'HUB_LOG_LEVEL=warn',
        '# read by docker compose only: left alone',
        'GRAFANA_ADMIN_PASSWORD=not-for-the-hub',
        '',
      ].join('\n'),
    });
    // The environment sets HUB_HOST (over the file's 0.0.0.0) and the log level.
    const hub = startHub(cwd, { HUB_HOST: '127.0.0.1', HUB_LOG_LEVEL: 'info' });
    await waitForReady(hub, () => adminStatus(port, ADMIN_TOKEN).then((s) => s === 200), {
      what: `the admin API on the .env port ${port}`,
    });
    expect(await adminStatus(port)).toBe(401);
    // The registry lives in the .env's data directory.
    const added = await fetch(`http://127.0.0.1:${port}/api/admin/devices`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'board-1' }),
    });
    expect(added.status).toBe(201);
    expect(existsSync(join(cwd, 'data-from-dotenv', 'devices.json'))).toBe(true);
    const log = hub.logTail(200);
    expect(log).toContain(`listening on 127.0.0.1:${port}`);
    expect(log).toContain(`settings:        environment over ${join(cwd, '.env')}`);
    // HUB_LOG_LEVEL=info from the environment, not warn from the file: info lines are logged.
    expect(log).toMatch(/"level":30/);
    await hub.stop();
    expect((await hub.exited).code).toBe(0);
  });

  it('--env-file names another file (and ENV_FILE does too); .env is then not read', async () => {
    const [port, other] = [await freePort(), await freePort()];
    const cwd = workDir('named', {
      '.env': `HUB_PORT=${other}\nHUB_DATA_DIR=wrong-dir\n`,
      'conf/hub.env': `HUB_PORT=${port}\nHUB_DATA_DIR=right-dir\nHUB_ADMIN_TOKEN=${ADMIN_TOKEN}\n`,
    });
    const hub = startHub(cwd, { HUB_HOST: '127.0.0.1' }, ['--env-file', 'conf/hub.env']);
    await waitForReady(hub, () => adminStatus(port, ADMIN_TOKEN).then((s) => s === 200), {
      what: `the admin API on port ${port} from conf/hub.env`,
    });
    expect(existsSync(join(cwd, 'right-dir'))).toBe(true);
    expect(existsSync(join(cwd, 'wrong-dir'))).toBe(false);
    await hub.stop();

    const missing = await runScript('server/main.ts', [], { ENV_FILE: 'conf/nope.env' }, { cwd, killAfterMs: 60_000 });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('ENV_FILE conf/nope.env: cannot read the env file (no such file)');

    // Settings are not command-line options: anything but --env-file is refused with the usage.
    const unknown = await runScript('server/main.ts', ['--port', '9000'], {}, { cwd, killAfterMs: 60_000 });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^unknown argument --port\nUsage: npm start \[-- --env-file <path>\]/);
  });

  it('a malformed .env stops the start with every problem listed, the file’s and the values’, no stack', async () => {
    const cwd = workDir('malformed', {
      '.env': [
        'HUB_PORT 8080', // no =
        'HUB_PROT=8081', // typo of a hub setting
        'LOG_FULL_POLICY=panic', // a bad value, reported with where it came from
        'HUB_DATA_DIR=a',
        'HUB_DATA_DIR=b', // set twice
        'HUB_DASHBOARD_PASSWORD="never closed',
        '',
      ].join('\n'),
    });
    const run = await runScript('server/main.ts', [], {}, { cwd, killAfterMs: 60_000 });
    expect(run.code).toBe(1);
    const problems = run.stderr.split('\n').filter((l) => l.startsWith('  - '));
    expect(problems).toEqual([
      '  - .env:1: not a NAME=value line, a # comment or blank',
      '  - .env:2: unknown setting HUB_PROT (the settings are listed in .env.example)',
      '  - .env:5: HUB_DATA_DIR is already set on line 4 (which one should win?)',
      '  - .env:6: HUB_DASHBOARD_PASSWORD: the value\'s opening " is never closed',
      expect.stringMatching(/^ {2}- LOG_FULL_POLICY: .* \(from \.env\)$/),
    ]);
    expect(run.stderr).not.toMatch(/^\s+at /m);
    expect(run.stdout).not.toContain('listening on');
  });

  it('npm run hub reads the same .env: the CLI registers devices in the hub’s data directory', async () => {
    const cwd = workDir('cli', { '.env': 'HUB_DATA_DIR=shared-data\nHUB_PUBLIC_URL=https://hub.example.net\n' });
    const add = await runScript('server/cli.ts', ['devices', 'add', 'board-1'], {}, { cwd });
    expect(add.stderr).toBe('');
    expect(add.code).toBe(0);
    // The device URL printed for the board is the .env's public URL.
    expect(add.stdout).toContain('wss://hub.example.net/v1/device');
    expect(existsSync(join(cwd, 'shared-data', 'devices.json'))).toBe(true);

    // ENV_FILE names another file; a bad one is refused before any command runs.
    writeFileSync(join(cwd, 'bad.env'), 'HUB_DATA_DIR\n');
    const bad = await runScript('server/cli.ts', ['devices', 'list'], { ENV_FILE: 'bad.env' }, { cwd });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('bad.env:1: not a NAME=value line');

    const list = await runScript('server/cli.ts', ['--env-file', '.env', 'devices', 'list'], {}, { cwd });
    expect(list.code).toBe(0);
    expect(list.stdout).toContain('board-1');
  });
});
