/**
 * Ownership of MQTT devices across hub instances (server/cluster/ownership.ts) and the member view
 * built from the retained member records (server/cluster/membership.ts, MemberTable).
 */
import { describe, expect, it } from 'vitest';
import { type MemberRecord, MemberTable } from '../../server/cluster/membership.ts';
import { hrwMembers, hrwOwner, murmur3 } from '../../server/cluster/ownership.ts';

const IDS = Array.from({ length: 10_000 }, (_, i) => `esp32-${i.toString(16).padStart(6, '0')}`);
const owners = (members: string[]) => {
  const hrw = hrwMembers(members);
  return IDS.map((id) => hrwOwner(id, hrw));
};
const counts = (list: (string | null)[]) => {
  const c = new Map<string, number>();
  for (const o of list) c.set(o as string, (c.get(o as string) ?? 0) + 1);
  return c;
};

describe('HRW ownership of MQTT devices', () => {
  it('murmur3 matches the reference vectors (x86, 32-bit)', () => {
    // Reference values of MurmurHash3_x86_32 for UTF-16 code units as little-endian bytes.
    expect(murmur3('', 0)).toBe(0);
    expect(murmur3('', 1)).toBe(0x514e28b7);
    // "ab" = bytes 61 00 62 00; "a" = bytes 61 00.
    expect(murmur3('ab', 0)).toBe(murmurBytes([0x61, 0, 0x62, 0], 0));
    expect(murmur3('a', 0)).toBe(murmurBytes([0x61, 0], 0));
    expect(murmur3('esp32-0001', 42)).toBe(
      murmurBytes(
        [...'esp32-0001'].flatMap((c) => [c.charCodeAt(0), 0]),
        42,
      ),
    );
  });

  it('is stable: the owner depends on the member set, not its order or duplicates', () => {
    const a = owners(['hub-a', 'hub-b', 'hub-c']);
    expect(owners(['hub-c', 'hub-a', 'hub-b'])).toEqual(a);
    expect(owners(['hub-b', 'hub-c', 'hub-a', 'hub-b'])).toEqual(a);
    expect(owners(['hub-a'])).toEqual(IDS.map(() => 'hub-a'));
    expect(hrwOwner('x', hrwMembers([]))).toBeNull();
  });

  it('is balanced within 5 % over 10,000 ids, for 2 to 5 members', () => {
    for (const n of [2, 3, 4, 5]) {
      const members = Array.from({ length: n }, (_, i) => `hub-${i + 1}`);
      const c = counts(owners(members));
      expect([...c.keys()].sort()).toEqual(members);
      const fair = IDS.length / n;
      for (const m of members) expect(Math.abs((c.get(m) ?? 0) - fair) / fair).toBeLessThan(0.05);
    }
  });

  it('moves only what it must when a member joins or leaves', () => {
    const before = owners(['hub-a', 'hub-b', 'hub-c']);
    // A fourth joins: devices move only to it, about a quarter of them.
    const joined = owners(['hub-a', 'hub-b', 'hub-c', 'hub-d']);
    let moved = 0;
    for (let i = 0; i < IDS.length; i++) {
      if (joined[i] === before[i]) continue;
      moved++;
      expect(joined[i]).toBe('hub-d');
    }
    expect(Math.abs(moved / IDS.length - 0.25)).toBeLessThan(0.02);
    // One leaves: only its devices move, spread over the others.
    const left = owners(['hub-a', 'hub-c']);
    const spread = new Map<string, number>();
    for (let i = 0; i < IDS.length; i++) {
      if (before[i] !== 'hub-b') expect(left[i]).toBe(before[i]);
      else spread.set(left[i] as string, (spread.get(left[i] as string) ?? 0) + 1);
    }
    const share = (spread.get('hub-a') ?? 0) / ((spread.get('hub-a') ?? 0) + (spread.get('hub-c') ?? 0));
    expect(Math.abs(share - 0.5)).toBeLessThan(0.05);
  });
});

/** The reference MurmurHash3_x86_32 over bytes (test oracle). */
function murmurBytes(bytes: number[], seed: number): number {
  let h = seed >>> 0;
  const n = bytes.length;
  const blocks = n - (n % 4);
  const mix = (k0: number) => {
    let k = Math.imul(k0, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    return Math.imul(k, 0x1b873593);
  };
  for (let i = 0; i < blocks; i += 4) {
    const k = (bytes[i] ?? 0) | ((bytes[i + 1] ?? 0) << 8) | ((bytes[i + 2] ?? 0) << 16) | ((bytes[i + 3] ?? 0) << 24);
    h ^= mix(k);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  const rest = n % 4;
  if (rest >= 3) k ^= (bytes[blocks + 2] ?? 0) << 16;
  if (rest >= 2) k ^= (bytes[blocks + 1] ?? 0) << 8;
  if (rest >= 1) {
    k ^= bytes[blocks] ?? 0;
    h ^= mix(k);
  }
  h ^= n;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const rec = (instanceId: string, startedAtMs = 1000, connection = 1): MemberRecord => ({
  instanceId,
  startedAtMs,
  url: `http://${instanceId}:8080`,
  connection,
});
const enc = (r: MemberRecord | null) => Buffer.from(r ? JSON.stringify(r) : '');

describe('member view from retained records', () => {
  it('records are members, an empty payload (the will) is a leave; itself is always a member', () => {
    const t = new MemberTable('hub-a');
    t.beginSync(rec('hub-a'));
    expect(t.members()).toEqual(['hub-a']);
    expect(t.synced()).toBe(false);
    expect(t.receive('hub-b', enc(rec('hub-b')))).toMatchObject({ joined: ['hub-b'], left: [] });
    expect(t.receive('hub-c', enc(rec('hub-c')))).toMatchObject({ joined: ['hub-c'] });
    // The same record again (a resubscribe) changes nothing.
    expect(t.receive('hub-b', enc(rec('hub-b')))).toMatchObject({ joined: [], left: [], restarted: [] });
    // Our own record of this connection: synced.
    expect(t.receive('hub-a', enc(rec('hub-a')))).toMatchObject({ synced: true, left: [] });
    expect(t.members()).toEqual(['hub-a', 'hub-b', 'hub-c']);
    expect(t.get('hub-b')?.url).toBe('http://hub-b:8080');
    // hub-b's broker connection died: its will clears the record.
    expect(t.receive('hub-b', enc(null))).toMatchObject({ left: ['hub-b'] });
    expect(t.members()).toEqual(['hub-a', 'hub-c']);
    // A clear of a member not known changes nothing; a restart (new startedAtMs) is not a join.
    expect(t.receive('hub-x', enc(null))).toMatchObject({ left: [], joined: [] });
    expect(t.receive('hub-c', enc(rec('hub-c', 2000)))).toMatchObject({ restarted: ['hub-c'], joined: [] });
  });

  it('our own record cleared while a member asks for it to be published again; a stale own record is ignored', () => {
    const t = new MemberTable('hub-a');
    t.beginSync(rec('hub-a', 5000, 1));
    // The retained record of a previous run (older startedAtMs) does not complete the sync.
    expect(t.receive('hub-a', enc(rec('hub-a', 4000, 1)))).toMatchObject({ synced: false });
    expect(t.synced()).toBe(false);
    expect(t.receive('hub-a', enc(null))).toMatchObject({ selfCleared: true });
    expect(t.members()).toEqual(['hub-a']);
    expect(t.receive('hub-a', enc(rec('hub-a', 5000, 1)))).toMatchObject({ synced: true });
  });

  it('a reconnect drops members whose records are gone (leaves missed while disconnected)', () => {
    const t = new MemberTable('hub-a');
    t.beginSync(rec('hub-a', 1000, 1));
    t.receive('hub-b', enc(rec('hub-b')));
    t.receive('hub-c', enc(rec('hub-c')));
    t.receive('hub-a', enc(rec('hub-a', 1000, 1)));
    // Reconnect: the retained records hold hub-c only (hub-b's will fired while we were away and its
    // clear never reached us).
    t.beginSync(rec('hub-a', 1000, 2));
    expect(t.synced()).toBe(false);
    expect(t.members()).toEqual(['hub-a', 'hub-b', 'hub-c']);
    expect(t.receive('hub-c', enc(rec('hub-c')))).toMatchObject({ joined: [] });
    // Our previous connection's record (retained) is not this connection's.
    expect(t.receive('hub-a', enc(rec('hub-a', 1000, 1)))).toMatchObject({ synced: false });
    expect(t.receive('hub-a', enc(rec('hub-a', 1000, 2)))).toMatchObject({ synced: true, left: ['hub-b'] });
    expect(t.members()).toEqual(['hub-a', 'hub-c']);
  });

  it('a member whose record stops coming while ours keeps coming is silent (a record no will clears)', () => {
    const t = new MemberTable('hub-a');
    t.beginSync(rec('hub-a'));
    t.receive('hub-b', enc(rec('hub-b')), 1000);
    t.receive('hub-c', enc(rec('hub-c')), 1000);
    t.receive('hub-a', enc(rec('hub-a')), 1000);
    t.receive('hub-c', enc(rec('hub-c')), 40_000);
    // Our own refreshes stopped arriving too (our input stalled): nobody is judged.
    expect(t.silent(30_000)).toEqual([]);
    t.receive('hub-a', enc(rec('hub-a')), 50_000);
    expect(t.silent(30_000)).toEqual(['hub-b']);
    // Once its clear arrives it is gone, and no longer silent.
    expect(t.receive('hub-b', enc(null), 50_001)).toMatchObject({ left: ['hub-b'] });
    expect(t.silent(30_000)).toEqual([]);
  });

  it('ignores what is not a member record', () => {
    const t = new MemberTable('hub-a');
    t.beginSync(rec('hub-a'));
    expect(t.receive('hub-b', Buffer.from('{nope'))).toMatchObject({ invalid: true });
    expect(t.receive('hub-b', enc(rec('hub-c')))).toMatchObject({ invalid: true });
    expect(t.receive('bad id', enc(rec('bad id')))).toMatchObject({ invalid: true });
    expect(t.receive('hub-b', Buffer.from('{"instanceId":"hub-b"}'))).toMatchObject({ invalid: true });
    expect(t.members()).toEqual(['hub-a']);
  });
});
