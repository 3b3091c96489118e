/**
 * The enrollment store and the operator's decisions (server/enroll/store.ts, operations.ts) on a real
 * temp data dir with a controlled clock: expiry after ENROLL_PENDING_TTL_SEC, what survives a reopen,
 * approval rules (default id, taken ids), rejection and forgetting; and what the file never holds.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { configFrom } from '../../server/config/index.ts';
import {
  approveEnrollment,
  forgetEnrollment,
  listEnrollments,
  rejectEnrollment,
} from '../../server/enroll/operations.ts';
import { type EnrollEntry, type EnrollStore, openEnrollStore } from '../../server/enroll/store.ts';
import { createLogger } from '../../server/log/index.ts';

let dir: string;
let t: number;
const TTL_SEC = 3600;
const stores: EnrollStore[] = [];

function open(ttlSec = TTL_SEC): EnrollStore {
  const s = openEnrollStore({ dataDir: dir, logger: createLogger('silent'), ttlSec, watchIntervalMs: 0, now: () => t });
  stores.push(s);
  return s;
}

function entry(hardwareId: string, over: Partial<EnrollEntry> = {}): EnrollEntry {
  return {
    hardwareId,
    keySha256: 'ab'.repeat(32),
    state: 'pending',
    model: 'esp32',
    firmwareVersion: '1',
    remote: '10.0.0.2',
    requestedAtMs: t,
    lastSeenAtMs: t,
    deviceId: null,
    previousDeviceId: null,
    approvedAtMs: null,
    approvedBy: null,
    handedOverAtMs: null,
    handOvers: 0,
    confirmedAtMs: null,
    ...over,
  };
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'enroll-store-'));
  t = 1_700_000_000_000;
});
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('enrollment store', () => {
  it('pending and approved requests expire after the TTL; delivered ones and rejections stay', async () => {
    const store = open();
    await store.mutate((s) => {
      s.entries.set('p', entry('p'));
      s.entries.set('a', entry('a', { state: 'approved', deviceId: 'a', approvedAtMs: t, approvedBy: 'operator' }));
      s.entries.set('d', entry('d', { state: 'delivered', deviceId: 'd', approvedAtMs: t, confirmedAtMs: t }));
      s.rejections.push({ hardwareId: 'r', keySha256: 'cd'.repeat(32), rejectedAtMs: t });
    });
    t += TTL_SEC * 1000 - 1;
    expect([...store.snapshot().entries.keys()].sort()).toEqual(['a', 'd', 'p']);
    t += 1;
    expect([...store.snapshot().entries.keys()]).toEqual(['d']);
    // The next write prunes them from the file too.
    await store.mutate(() => undefined);
    const file = readFileSync(store.file, 'utf8');
    expect(file).not.toContain('"p"');
    expect(file).toContain('"r"');
  });

  it('ENROLL_PENDING_TTL_SEC is what the hub passes as the TTL', () => {
    expect(configFrom({ ENROLL_PENDING_TTL_SEC: '120' }).enroll.pendingTtlSec).toBe(120);
    expect(configFrom().enroll.pendingTtlSec).toBe(7 * 86_400);
    expect(() => configFrom({ ENROLL_MODE: 'secret' })).toThrow(/ENROLL_FLEET_SECRET/);
  });

  it('survives a reopen (what a restarted hub or the CLI reads)', async () => {
    const a = open();
    await a.mutate((s) => void s.entries.set('esp32-1', entry('esp32-1')));
    const b = open();
    await b.refresh();
    expect(listEnrollments(b.snapshot()).requests.map((r) => r.hardwareId)).toEqual(['esp32-1']);
  });
});

describe('operator decisions', () => {
  it('approve: default id is the hardware id, or the one delivered before; taken ids are refused', async () => {
    const store = open();
    const registered = new Set(['taken-1', 'prev-1']);
    const deps = { store, deviceExists: (id: string) => registered.has(id), now: () => t };
    await store.mutate((s) => {
      s.entries.set('hw-1', entry('hw-1'));
      s.entries.set('hw-2', entry('hw-2', { previousDeviceId: 'prev-1' }));
      s.entries.set('hw-3', entry('hw-3'));
    });
    expect((await approveEnrollment(deps, 'hw-1')).deviceId).toBe('hw-1');
    expect((await approveEnrollment(deps, 'hw-2')).deviceId).toBe('prev-1'); // re-enrollment: rotates prev-1
    await expect(approveEnrollment(deps, 'hw-3', 'taken-1')).rejects.toMatchObject({ code: 'DEVICE_EXISTS' });
    await expect(approveEnrollment(deps, 'hw-3', 'hw-1')).rejects.toMatchObject({ code: 'DEVICE_EXISTS' });
    await expect(approveEnrollment(deps, 'ghost')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(approveEnrollment(deps, 'hw-3', 'bad id')).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    // Again with the same id: nothing changes.
    expect((await approveEnrollment(deps, 'hw-1')).state).toBe('approved');
  });

  it('reject remembers hardware id + key; forget clears it', async () => {
    const store = open();
    const deps = { store, deviceExists: () => false, now: () => t };
    await store.mutate((s) => void s.entries.set('hw-9', entry('hw-9')));
    const r = await rejectEnrollment(deps, 'hw-9');
    expect(r).toMatchObject({ hardwareId: 'hw-9', keyFingerprint: 'abababab' });
    expect(listEnrollments(store.snapshot())).toMatchObject({ requests: [], rejections: [{ hardwareId: 'hw-9' }] });
    await expect(rejectEnrollment(deps, 'hw-9')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await forgetEnrollment(deps, 'hw-9')).toEqual({ hardwareId: 'hw-9', request: false, rejections: 1 });
    expect(store.snapshot().rejections).toEqual([]);
  });
});
