/**
 * A revoke or rotate done by the CLI in another process reaches a running registry (the hub's) and
 * is reported through `onRevoked`, which the gateway turns into a 1008 REVOKED close. The bound
 * (within 1 s) follows from detection taking one poll of the store file, every 250 ms: the first
 * test shows one poll suffices, the second runs the real watcher end to end. No timed assertions;
 * the measured delay is printed for information.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../server/log/index.ts';
import { type DeviceRegistry, openDeviceRegistry, REGISTRY_FILE_NAME } from '../../server/registry/index.ts';
import { runCli } from './registry-cli.ts';

let dir: string;
let hub: DeviceRegistry | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'registry-revocation-'));
});
afterEach(async () => {
  await hub?.close();
  hub = undefined;
  rmSync(dir, { recursive: true, force: true });
});

function nextRevocation(registry: DeviceRegistry): Promise<{ id: string; atMs: number }> {
  return new Promise((resolve) => {
    const off = registry.onRevoked((id) => {
      off();
      resolve({ id, atMs: Date.now() });
    });
  });
}

describe('cross-process revocation', () => {
  it('one poll of the store file is enough to see a CLI revoke', async () => {
    hub = openDeviceRegistry({ dataDir: dir, logger: createLogger('silent'), watchIntervalMs: 0 });
    const { token } = await hub.add('dev-1');
    const seen: string[] = [];
    hub.onRevoked((id) => seen.push(id));

    const res = await runCli(['devices', 'revoke', 'dev-1', '--data-dir', dir]);
    expect(res.code).toBe(0);
    expect(hub.authenticate(token)).toBe('dev-1'); // not seen yet: nothing polled
    await hub.refresh(); // one watcher tick
    expect(seen).toEqual(['dev-1']);
    expect(hub.authenticate(token)).toBeNull();
  });

  it('the running watcher reports a CLI revoke and a CLI rotate', async () => {
    hub = openDeviceRegistry({ dataDir: dir, logger: createLogger('silent') }); // default 250 ms watch
    const { token: t1 } = await hub.add('dev-1');
    const { token: t2 } = await hub.add('dev-2');

    const revoked = nextRevocation(hub);
    const res = await runCli(['devices', 'revoke', 'dev-1', '--data-dir', dir]);
    expect(res.code).toBe(0);
    const event = await revoked;
    expect(event.id).toBe('dev-1');
    expect(hub.authenticate(t1)).toBeNull();
    expect(hub.authenticate(t2)).toBe('dev-2');
    const writtenAtMs = statSync(join(dir, REGISTRY_FILE_NAME)).mtimeMs;
    console.info(`revoke: store written → onRevoked in ${Math.round(event.atMs - writtenAtMs)} ms`);

    const rotated = nextRevocation(hub);
    const rot = await runCli(['devices', 'rotate', 'dev-2', '--json', '--data-dir', dir]);
    expect(rot.code).toBe(0);
    expect((await rotated).id).toBe('dev-2');
    const fresh = (JSON.parse(rot.stdout) as { token: string }).token;
    expect(hub.authenticate(t2)).toBeNull();
    expect(hub.authenticate(fresh)).toBe('dev-2');
  });

  it('CLI and hub writing at the same time lose nothing (the lock spans processes)', async () => {
    hub = openDeviceRegistry({ dataDir: dir, logger: createLogger('silent') });
    const cli = runCli(['devices', 'add', 'c-1', 'c-2', 'c-3', 'c-4', 'c-5', '--data-dir', dir]);
    let exited = false;
    void cli.finally(() => {
      exited = true;
    });
    // The hub keeps writing for as long as the CLI process lives, so their writes interleave.
    let n = 0;
    while (!exited && n < 5000) await hub.add(`h-${++n}`);
    const res = await cli;
    expect(res.code).toBe(0);
    await hub.refresh();
    const ids = new Set(hub.list().map((d) => d.id));
    expect(ids.size).toBe(n + 5);
    for (let i = 1; i <= 5; i++) expect(ids.has(`c-${i}`)).toBe(true);
    const reopened = openDeviceRegistry({ dataDir: dir, logger: createLogger('silent'), watchIntervalMs: 0 });
    expect(reopened.list()).toHaveLength(n + 5);
    console.info(`hub wrote ${n} devices while the CLI process added 5`);
    await reopened.close();
  });
});
