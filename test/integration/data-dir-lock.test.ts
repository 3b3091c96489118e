/**
 * One hub per data directory (docs/architecture.md §7): two real hub processes (`node --import tsx server/main.ts`,
 * what `npm start` runs) on one data dir.
 *   - the second refuses at start with one line naming the holder (pid, host, since, port) and a
 *     non-zero exit, and never listens;
 *   - the registry CLI (`npm run hub -- devices ...`) keeps working on that data dir meanwhile;
 *   - after kill -9 of the holder, a new hub starts on the stale lock; a graceful stop removes it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, type ServerProcess, startProcess, type TempDir, tempDir, waitForReady } from '../harness/index.ts';
import { httpProbe } from '../harness/process.ts';
import { REPO_ROOT, runCli } from './registry-cli.ts';

/** An upgrade request to /v1/device without the subprotocol; resolves when the hub has closed it. */
function refusedUpgrade(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () =>
      s.end(
        'GET /v1/device HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      ),
    );
    s.on('data', () => undefined);
    s.once('error', reject);
    s.once('close', () => resolve());
  });
}

describe('data directory lock', () => {
  let dir: TempDir;
  const procs: ServerProcess[] = [];

  beforeAll(async () => {
    dir = await tempDir('dir-lock');
  });
  afterAll(async () => {
    for (const p of procs) await p.stop({ signal: 'SIGKILL' });
    await dir?.remove();
  });

  function spawnHub(label: string, port: number, env: Record<string, string> = {}): ServerProcess {
    const proc = startProcess({
      name: `hub-${label}`,
      command: process.execPath,
      args: ['--import', 'tsx', 'server/main.ts'],
      cwd: REPO_ROOT,
      logFile: join(dir.path, `hub-${label}.log`),
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        ENV_FILE: '/dev/null', // a developer's own .env stays out of the run
        HUB_HOST: '127.0.0.1',
        HUB_PORT: String(port),
        HUB_DATA_DIR: dir.path,
        HUB_LOG_LEVEL: 'info',
        ...env,
      },
    });
    procs.push(proc);
    return proc;
  }

  async function startHub(
    label: string,
    env: Record<string, string> = {},
  ): Promise<{ proc: ServerProcess; port: number }> {
    const port = await freePort();
    const proc = spawnHub(label, port, env);
    await waitForReady(proc, () => httpProbe(`http://127.0.0.1:${port}/readyz`), { what: 'GET /readyz' });
    return { proc, port };
  }

  it('refuses a second hub with one line naming the holder, and takes over after kill -9', async () => {
    const first = await startHub('first');

    const secondPort = await freePort();
    const second = spawnHub('second', secondPort);
    // Today's failure mode is a second hub that listens: wait for whichever comes first.
    const listening = (async () => {
      while (!second.hasExited()) {
        if (await httpProbe(`http://127.0.0.1:${secondPort}/healthz`).catch(() => false)) return true;
        await new Promise((r) => setTimeout(r, 50));
      }
      return false;
    })();
    expect(await Promise.race([listening, second.exited.then(() => false)]), 'the second hub listened').toBe(false);
    const exit = await second.exited;
    expect(exit.signal).toBeNull();
    expect(exit.code).not.toBe(0);
    const log = readFileSync(second.logFile, 'utf8');
    const lines = log.split('\n').filter((l) => l.includes(`pid ${first.proc.pid}`));
    expect(lines, log).toHaveLength(1);
    const line = lines[0] as string;
    expect(line).toContain('DATA_DIR_LOCKED');
    expect(line).toContain(dir.path);
    expect(line).toContain(`host ${hostname()}`);
    expect(line).toContain(`port ${first.port}`);
    expect(line).toMatch(/since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/);
    expect(log).not.toMatch(/^\s+at /m); // one line, not a stack trace
    expect(await httpProbe(`http://127.0.0.1:${secondPort}/healthz`).catch(() => false)).toBe(false);
    // The first hub is unharmed.
    expect(await httpProbe(`http://127.0.0.1:${first.port}/readyz`)).toBe(true);

    // The registry CLI shares the data dir with the running hub.
    const added = await runCli(['devices', 'add', 'esp-lock-1'], { HUB_DATA_DIR: dir.path });
    expect(added.stderr).toBe('');
    expect(added.code).toBe(0);
    const listed = await runCli(['devices', 'list'], { HUB_DATA_DIR: dir.path });
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain('esp-lock-1');

    // kill -9 leaves the lock file behind; the next hub sees its holder is gone and starts.
    // Its log goes to a file: JSON lines (HUB_LOG_FORMAT=auto, stdout is not a terminal). A refused
    // handshake is logged at once.
    await refusedUpgrade(first.port);
    const refusedLine = /^\{"level":40,.*"msg":"handshake refused: BAD_SUBPROTOCOL"/m;
    while (!refusedLine.test(readFileSync(first.proc.logFile, 'utf8'))) await new Promise((r) => setTimeout(r, 20));
    await first.proc.stop({ signal: 'SIGKILL' });
    expect(existsSync(join(dir.path, 'hub.lock'))).toBe(true);
    // (HUB_LOG_FORMAT=pretty: the human-readable form a terminal gets by default.)
    const third = await startHub('third', { HUB_LOG_FORMAT: 'pretty' });
    const thirdLog = readFileSync(third.proc.logFile, 'utf8');
    const tookOver = thirdLog.split('\n').find((l) => l.includes('took over the data directory lock'));
    expect(tookOver, thirdLog).toMatch(/^\d\d:\d\d:\d\d\.\d{3} WARN {2}\[data-dir\] took over/);
    expect(tookOver).toContain(`pid ${first.proc.pid}`); // says whose lock it took
    expect(thirdLog).not.toMatch(/^\{/m);
    await third.proc.stop({ signal: 'SIGTERM' });
    expect((await third.proc.exited).code).toBe(0);
    expect(existsSync(join(dir.path, 'hub.lock'))).toBe(false);
  });
});
