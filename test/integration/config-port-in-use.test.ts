/**
 * A busy port is one clear line naming the setting: the real hub process started on a port another
 * program holds exits 1 with `PORT_IN_USE` naming HUB_PORT (no stack trace), leaves nothing behind,
 * and starts on the same data directory once the port is free.
 */
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startProcess, type TempDir, tempDir, waitForReady } from '../harness/index.ts';
import { httpProbe } from '../harness/process.ts';
import { NODE_TSX, REPO_ROOT, runScript } from './run-script.ts';

describe('a busy HUB_PORT', () => {
  let dir: TempDir;
  let blocker: Server | undefined;

  beforeAll(async () => {
    dir = await tempDir('port-in-use');
  });
  afterAll(async () => {
    blocker?.close();
    await dir?.remove();
  });

  it('is one line naming HUB_PORT and exit code 1; with the port free the hub starts', async () => {
    const port = await freePort();
    blocker = createServer();
    await new Promise<void>((resolve) => blocker?.listen(port, '127.0.0.1', resolve));
    const env = { HUB_HOST: '127.0.0.1', HUB_PORT: String(port), HUB_DATA_DIR: join(dir.path, 'data') };

    const run = await runScript('server/main.ts', [], env, { cwd: dir.path, killAfterMs: 60_000 });
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      `hub failed to start: PORT_IN_USE: HTTP port ${port} on 127.0.0.1 is in use (HUB_PORT); ` +
        'set HUB_PORT to a free port or stop the program using it\n',
    );

    await new Promise<void>((resolve) => blocker?.close(() => resolve()));
    blocker = undefined;
    const hub = startProcess({
      name: 'hub',
      command: NODE_TSX.command,
      args: [...NODE_TSX.args, join(REPO_ROOT, 'server/main.ts')],
      cwd: dir.path,
      logFile: join(dir.path, 'hub.log'),
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    });
    try {
      await waitForReady(hub, () => httpProbe(`http://127.0.0.1:${port}/readyz`), { what: 'GET /readyz' });
    } finally {
      await hub.stop();
    }
  });
});
