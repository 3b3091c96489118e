import { mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HubError } from '../../server/errors.ts';
import { createLogger } from '../../server/log/index.ts';
import {
  type DeviceRegistry,
  hashToken,
  openDeviceRegistry,
  REGISTRY_FILE_NAME,
  TOKEN_LENGTH,
  TOKEN_PREFIX,
} from '../../server/registry/index.ts';
import { generateToken, isTokenShaped } from '../../server/registry/token.ts';

const logger = createLogger('silent');
let dir: string;
let opened: DeviceRegistry[];
let clock: number;

function open(options: { maxDevices?: number } = {}): DeviceRegistry {
  // watchIntervalMs 0: tests drive change detection through refresh(), never through time.
  const registry = openDeviceRegistry({ dataDir: dir, logger, watchIntervalMs: 0, now: () => clock, ...options });
  opened.push(registry);
  return registry;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(HubError);
    return (err as HubError).code;
  }
  throw new Error('expected a rejection');
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'registry-'));
  opened = [];
  clock = 1_700_000_000_000;
});

afterEach(async () => {
  for (const registry of opened) await registry.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('tokens', () => {
  it('are prefixed, 256-bit random and distinct', () => {
    const tokens = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const token = generateToken();
      expect(token.startsWith(TOKEN_PREFIX)).toBe(true);
      expect(token).toHaveLength(TOKEN_LENGTH);
      expect(Buffer.from(token.slice(TOKEN_PREFIX.length), 'base64url')).toHaveLength(32);
      expect(isTokenShaped(token)).toBe(true);
      tokens.add(token);
    }
    expect(tokens.size).toBe(1000);
  });
});

describe('device registry', () => {
  it('issues a token that authenticates, and stores only its hash', async () => {
    const registry = open();
    const { token, device } = await registry.add('dev-1');
    expect(device).toEqual({ id: 'dev-1', createdAtMs: clock, rotatedAtMs: null, revokedAtMs: null, revoked: false });
    expect(registry.authenticate(token)).toBe('dev-1');

    const file = join(dir, REGISTRY_FILE_NAME);
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain(token);
    expect(text).not.toContain(token.slice(TOKEN_PREFIX.length));
    expect(text).toContain(hashToken(token));
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('refuses tokens that are unknown, malformed or of the wrong type', async () => {
    const registry = open();
    const { token } = await registry.add('dev-1');
    const other = generateToken();
    for (const bad of [null, undefined, '', TOKEN_PREFIX, other, ` ${token}`, `${token} `, token.toUpperCase()]) {
      expect(registry.authenticate(bad)).toBeNull();
    }
    expect(registry.authenticate(123 as unknown as string)).toBeNull();
  });

  it('keeps devices across a reopen', async () => {
    const first = open();
    const { token } = await first.add('dev-1');
    await first.close();
    const second = open();
    expect(second.authenticate(token)).toBe('dev-1');
    expect(second.list().map((d) => d.id)).toEqual(['dev-1']);
  });

  it('rotate invalidates the old token, issues a working new one and reports the revocation', async () => {
    const registry = open();
    const revoked: string[] = [];
    registry.onRevoked((id) => revoked.push(id));
    const { token: oldToken } = await registry.add('dev-1');
    clock += 1000;
    const { token: newToken, device } = await registry.rotate('dev-1');
    expect(newToken).not.toBe(oldToken);
    expect(registry.authenticate(oldToken)).toBeNull();
    expect(registry.authenticate(newToken)).toBe('dev-1');
    expect(device.rotatedAtMs).toBe(clock);
    expect(revoked).toEqual(['dev-1']);
    expect(readFileSync(join(dir, REGISTRY_FILE_NAME), 'utf8')).not.toContain(hashToken(oldToken));
  });

  it('revoke invalidates the token, keeps the record, is idempotent, and rotate re-enables', async () => {
    const registry = open();
    const revoked: string[] = [];
    const unsubscribe = registry.onRevoked((id) => revoked.push(id));
    const { token } = await registry.add('dev-1');
    await registry.add('dev-2');
    clock += 5;
    const info = await registry.revoke('dev-1');
    expect(info).toMatchObject({ id: 'dev-1', revoked: true, revokedAtMs: clock });
    expect(registry.authenticate(token)).toBeNull();
    expect(revoked).toEqual(['dev-1']);
    expect(registry.list().map((d) => [d.id, d.revoked])).toEqual([
      ['dev-1', true],
      ['dev-2', false],
    ]);

    await registry.revoke('dev-1');
    expect(revoked).toEqual(['dev-1']); // nothing new became invalid

    expect(await codeOf(registry.add('dev-1'))).toBe('DEVICE_EXISTS');
    const { token: again } = await registry.rotate('dev-1');
    expect(registry.authenticate(again)).toBe('dev-1');
    expect(registry.get('dev-1')?.revoked).toBe(false);
    unsubscribe();
    await registry.revoke('dev-1');
    expect(revoked).toEqual(['dev-1']);
  });

  it('refuses a duplicate id and leaves the first token valid', async () => {
    const registry = open();
    const { token } = await registry.add('dev-1');
    expect(await codeOf(registry.add('dev-1'))).toBe('DEVICE_EXISTS');
    expect(registry.authenticate(token)).toBe('dev-1');
    expect(registry.list()).toHaveLength(1);
  });

  it('refuses ids outside the [PROTO-2.8] alphabet and writes nothing', async () => {
    const registry = open();
    for (const bad of ['', 'a b', 'dev/1', 'dév', 'x'.repeat(65), 'a\nb', '../etc']) {
      expect(await codeOf(registry.add(bad))).toBe('BAD_REQUEST');
    }
    expect(await codeOf(registry.add(42 as unknown as string))).toBe('BAD_REQUEST');
    expect(registry.list()).toEqual([]);
    expect(() => statSync(join(dir, REGISTRY_FILE_NAME))).toThrow();
    // Edges of the alphabet are accepted.
    await registry.add('A.z_0-9');
    await registry.add('x'.repeat(64));
    expect(registry.list()).toHaveLength(2);
  });

  it('answers NOT_FOUND for revoking or rotating an unknown device', async () => {
    const registry = open();
    expect(await codeOf(registry.revoke('ghost'))).toBe('NOT_FOUND');
    expect(await codeOf(registry.rotate('ghost'))).toBe('NOT_FOUND');
    expect(await codeOf(registry.revoke('bad id'))).toBe('BAD_REQUEST');
  });

  it('is bounded', async () => {
    const registry = open({ maxDevices: 2 });
    await registry.add('a');
    await registry.add('b');
    expect(await codeOf(registry.add('c'))).toBe('BAD_REQUEST');
  });

  it('sees a change made by another instance on refresh and reports the invalidated tokens', async () => {
    const hub = open();
    const cli = open();
    const { token: t1 } = await cli.add('dev-1');
    const { token: t2 } = await cli.add('dev-2');
    await hub.refresh();
    expect(hub.authenticate(t1)).toBe('dev-1');
    expect(hub.authenticate(t2)).toBe('dev-2');

    const revoked: string[] = [];
    hub.onRevoked((id) => revoked.push(id));
    await cli.revoke('dev-1');
    const { token: t2b } = await cli.rotate('dev-2');
    expect(hub.authenticate(t1)).toBe('dev-1'); // not yet seen
    await hub.refresh();
    expect(revoked.sort()).toEqual(['dev-1', 'dev-2']);
    expect(hub.authenticate(t1)).toBeNull();
    expect(hub.authenticate(t2)).toBeNull();
    expect(hub.authenticate(t2b)).toBe('dev-2');
    await hub.refresh(); // unchanged file: nothing reported again
    expect(revoked).toHaveLength(2);
  });

  it('a mutation in one instance does not lose changes another instance made (read under the lock)', async () => {
    const a = open();
    const b = open();
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).add(`dev-${String(i).padStart(2, '0')}`)),
    );
    const reopened = open();
    expect(reopened.list()).toHaveLength(20);
  });

  it('breaks a lock left by a crashed process', async () => {
    const registry = open();
    const lock = join(dir, `${REGISTRY_FILE_NAME}.lock`);
    writeFileSync(lock, '{}');
    const old = new Date(Date.now() - 60_000);
    utimesSync(lock, old, old);
    await registry.add('dev-1');
    expect(() => statSync(lock)).toThrow(); // released after use
  });

  it('refuses to open a corrupt store, and a running instance keeps its state when the file turns bad', async () => {
    const registry = open();
    const { token } = await registry.add('dev-1');
    const file = join(dir, REGISTRY_FILE_NAME);
    const good = readFileSync(file, 'utf8');
    writeFileSync(file, '{"format":"esp32hub-devices","version":1,"devices":[{"id":"x"}]}');
    expect(() => open()).toThrow(/unreadable/);
    await registry.refresh();
    expect(registry.authenticate(token)).toBe('dev-1');
    expect(await codeOf(registry.add('dev-2'))).toBe('INTERNAL'); // never overwrites what it cannot read
    writeFileSync(file, good);
    await registry.refresh();
    await registry.add('dev-2');
    expect(registry.list()).toHaveLength(2);
  });

  it('rejects changes after close', async () => {
    const registry = open();
    await registry.close();
    expect(await codeOf(registry.add('dev-1'))).toBe('SHUTTING_DOWN');
  });
});
