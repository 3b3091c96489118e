/**
 * The PostgreSQL cluster store (server/cluster/store/) against a real PostgreSQL: two store instances
 * on one database stand for two hub instances. Registry changes on one are seen by the other
 * (authenticate, onRevoked), session claims are newest-wins, boot offsets first-writer-wins, saved
 * device state never moves backwards, and the schema migrates once.
 */
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import {
  type JoinResult,
  SCHEMA_VERSION,
  type SessionClaim,
  type SharedDeviceState,
} from '../../server/cluster/store/index.ts';
import { createLogger } from '../../server/log/index.ts';
import { openDeviceRegistry } from '../../server/registry/index.ts';
import { MAX_BOOTS_PER_DEVICE } from '../../server/storage/device-state.ts';
import { until } from '../harness/index.ts';
import { type OpenedStore, usePostgres } from './cluster-store-helpers.ts';

const fx = usePostgres('cluster-store');

/** A fresh database per test, and `n` stores (instances a, b, ...) on it. */
async function cluster(
  n: number,
  extra: { maxDevices?: number } = {},
): Promise<{ url: string; stores: OpenedStore[] }> {
  const url = await fx.newDatabase();
  const stores: OpenedStore[] = [];
  for (let i = 0; i < n; i++) stores.push(await fx.open({ databaseUrl: url, instanceId: `inst-${'ab'[i]}`, ...extra }));
  return { url, stores };
}

async function sql<T extends pg.QueryResultRow>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    return (await client.query<T>(text, params)).rows;
  } finally {
    await client.end();
  }
}

describe('cluster store: schema', () => {
  it('migrates once: a second and third open change nothing', async () => {
    const { url, stores } = await cluster(2);
    const [a, b] = stores as [OpenedStore, OpenedStore];
    expect(a.logs()).toContain('cluster database schema migrated');
    expect(b.logs()).not.toContain('cluster database schema migrated');
    const versions = await sql<{ version: number }>(url, 'SELECT version FROM esp32hub_schema ORDER BY version');
    expect(versions.map((v) => v.version)).toEqual(Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
    // Data survives a reopen.
    await a.store.registry.add('kept-1');
    await a.store.close();
    const again = await fx.open({ databaseUrl: url, instanceId: 'inst-a' });
    expect(again.logs()).not.toContain('cluster database schema migrated');
    expect(again.store.registry.get('kept-1')?.revoked).toBe(false);
    expect(await sql(url, 'SELECT version FROM esp32hub_schema')).toHaveLength(SCHEMA_VERSION);

    // A database migrated by a newer hub: this one refuses to start instead of writing rows it does not know.
    await sql(url, 'INSERT INTO esp32hub_schema (version, applied_at_ms) VALUES ($1, 0)', [SCHEMA_VERSION + 1]);
    const refused = await fx.open({ databaseUrl: url, instanceId: 'inst-c' }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: 'CONFIG_INVALID' });
    expect((refused as Error).message).toContain(`schema version ${SCHEMA_VERSION + 1}`);
  });
});

describe('cluster store: registry across instances', () => {
  it('add, rotate and revoke on one instance take effect on the other (authenticate, onRevoked)', async () => {
    const { stores } = await cluster(2);
    const [a, b] = stores as [OpenedStore, OpenedStore];
    const revokedOnB: string[] = [];
    const revokedOnA: string[] = [];
    b.store.registry.onRevoked((id) => revokedOnB.push(id));
    a.store.registry.onRevoked((id) => revokedOnA.push(id));

    const first = await a.store.registry.add('dev-1');
    expect(a.store.registry.authenticate(first.token)).toBe('dev-1'); // at once where it was made
    await until('B authenticates the token added on A', () => b.store.registry.authenticate(first.token) === 'dev-1');
    expect(b.store.registry.get('dev-1')).toMatchObject({ id: 'dev-1', revoked: false });

    const rotated = await a.store.registry.rotate('dev-1');
    await until('B hears of the rotation', () => revokedOnB.includes('dev-1'));
    expect(b.store.registry.authenticate(first.token)).toBeNull();
    expect(b.store.registry.authenticate(rotated.token)).toBe('dev-1');
    expect(revokedOnA).toEqual(['dev-1']); // A's own listener, once

    revokedOnB.length = 0;
    revokedOnA.length = 0;
    await b.store.registry.revoke('dev-1');
    await until('A hears of the revoke made on B', () => revokedOnA.includes('dev-1'));
    expect(a.store.registry.authenticate(rotated.token)).toBeNull();
    expect(a.store.registry.get('dev-1')?.revoked).toBe(true);
    expect(revokedOnB).toEqual(['dev-1']);

    // A second revoke changes nothing and notifies no listener of a token loss.
    await a.store.registry.revoke('dev-1');
    expect(a.store.registry.list().map((d) => d.id)).toEqual(['dev-1']);
  });

  it('refuses a duplicate, an unknown id, a bad id and more than maxDevices, with codes', async () => {
    const { stores } = await cluster(2, { maxDevices: 2 });
    const [a, b] = stores as [OpenedStore, OpenedStore];
    await a.store.registry.add('m-1');
    await expect(b.store.registry.add('m-1')).rejects.toMatchObject({ code: 'DEVICE_EXISTS' });
    await b.store.registry.add('m-2');
    await expect(a.store.registry.add('m-3')).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    await expect(a.store.registry.rotate('nobody')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(a.store.registry.revoke('bad id!')).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    await until('A lists both', () => a.store.registry.list().length === 2);
    expect(a.store.registry.list().map((d) => d.id)).toEqual(['m-1', 'm-2']);
  });

  it('imports <dataDir>/devices.json on the first start with an empty table, and only then', async () => {
    const fileDir = fx.dataDir();
    const file = openDeviceRegistry({ dataDir: fileDir, logger: createLogger('silent'), watchIntervalMs: 0 });
    const one = await file.add('old-1');
    const two = await file.add('old-2');
    await file.revoke('old-2');
    await file.close();

    const url = await fx.newDatabase();
    const a = await fx.open({ databaseUrl: url, instanceId: 'inst-a', dataDir: fileDir });
    expect(a.logs()).toContain('imported the device registry file');
    expect(a.store.registry.authenticate(one.token)).toBe('old-1');
    expect(a.store.registry.authenticate(two.token)).toBeNull();
    expect(a.store.registry.get('old-2')?.revoked).toBe(true);

    // Another instance with its own devices.json: the table is not empty any more.
    const otherDir = fx.dataDir();
    const other = openDeviceRegistry({ dataDir: otherDir, logger: createLogger('silent'), watchIntervalMs: 0 });
    await other.add('stray-1');
    await other.close();
    const b = await fx.open({ databaseUrl: url, instanceId: 'inst-b', dataDir: otherDir });
    expect(b.logs()).not.toContain('imported the device registry file');
    expect(b.store.registry.list().map((d) => d.id)).toEqual(['old-1', 'old-2']);
  });
});

describe('cluster store: session claims', () => {
  it('newest wins: concurrent claims of one device leave one highest epoch, both instances notified', async () => {
    const { stores } = await cluster(2);
    const [a, b] = stores as [OpenedStore, OpenedStore];
    const seenA: SessionClaim[] = [];
    const seenB: SessionClaim[] = [];
    a.store.onSessionClaimed((c) => seenA.push(c));
    b.store.onSessionClaimed((c) => seenB.push(c));

    const claims = await Promise.all(
      Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? a : b).store.claimSession('shared-dev')),
    );
    const epochs = claims.map((c) => c.epoch);
    expect(new Set(epochs).size).toBe(10);
    const newest = claims.reduce((x, y) => (y.epoch > x.epoch ? y : x));
    const holder = await a.store.sessionHolder('shared-dev');
    expect(holder).toEqual(newest);
    await until('both instances heard every claim', () => seenA.length === 10 && seenB.length === 10);
    for (const seen of [seenA, seenB]) {
      expect(seen.map((c) => c.epoch).sort((x, y) => x - y)).toEqual([...epochs].sort((x, y) => x - y));
      expect(seen.find((c) => c.epoch === newest.epoch)).toEqual(newest);
    }

    // Releasing an older claim keeps the newest; releasing the newest frees the device.
    const older = claims.find((c) => c.epoch !== newest.epoch) as SessionClaim;
    await (older.instanceId === 'inst-a' ? a : b).store.releaseSession(older);
    expect(await b.store.sessionHolder('shared-dev')).toEqual(newest);
    await (newest.instanceId === 'inst-a' ? a : b).store.releaseSession(newest);
    expect(await b.store.sessionHolder('shared-dev')).toBeNull();
  });

  it('joinSessions: one statement per batch; within a batch the later HELLO of a device wins; offsets first writer wins; states as loaded', async () => {
    const { stores } = await cluster(2);
    const [a, b] = stores as [OpenedStore, OpenedStore];
    const seenB: SessionClaim[] = [];
    b.store.onSessionClaimed((c) => seenB.push(c));
    await a.store.saveDeviceStates([
      {
        deviceId: 'known',
        lastAck: { bootId: 3, seq: 9 },
        firstSeenMs: 1_000,
        descriptorHash: 0,
        boots: [{ bootId: 3, highestSeq: 9, timeOffsetMs: 500, clockCorrectionMs: null, firstSeenMs: 1_000 }],
        descriptors: [],
      },
    ]);
    const results = await a.store.joinSessions([
      { deviceId: 'twice', bootId: 1, offsetMs: 111 },
      { deviceId: 'known', bootId: 3, offsetMs: 999 },
      { deviceId: 'new', bootId: 4, offsetMs: 444 },
      { deviceId: 'twice', bootId: 1, offsetMs: 222 },
    ]);
    const [first, known, fresh, later] = results as [JoinResult, JoinResult, JoinResult, JoinResult];
    // Epochs in request order: the later HELLO of 'twice' holds the device.
    expect(later.claim.epoch).toBeGreaterThan(first.claim.epoch);
    expect(await b.store.sessionHolder('twice')).toEqual(later.claim);
    expect(later.claim).toEqual({ deviceId: 'twice', instanceId: 'inst-a', epoch: later.claim.epoch });
    // Boot offsets: the stored one wins; within the batch the first request's.
    expect(known.bootOffsetMs).toBe(500);
    expect(fresh.bootOffsetMs).toBe(444);
    expect(first.bootOffsetMs).toBe(111);
    expect(later.bootOffsetMs).toBe(111);
    expect(known.state).toMatchObject({ lastAck: { bootId: 3, seq: 9 }, firstSeenMs: 1_000 });
    expect(fresh.state).toBeNull();
    // Every claim is notified, as claimSession's; a later claim of another instance still wins.
    await until('B heard the four claims', () => seenB.length === 4);
    expect(seenB.map((c) => c.epoch).sort((x, y) => x - y)).toEqual(results.map((r) => r.claim.epoch));
    const [onB] = await b.store.joinSessions([{ deviceId: 'twice', bootId: 2, offsetMs: 7 }]);
    expect((await a.store.sessionHolder('twice'))?.instanceId).toBe('inst-b');
    expect(onB?.state?.boots.map((x) => x.bootId)).toEqual([1]);
  });

  it("releaseInstanceClaims drops only this instance's claims", async () => {
    const { stores } = await cluster(2);
    const [a, b] = stores as [OpenedStore, OpenedStore];
    await a.store.claimSession('a-1');
    await a.store.claimSession('a-2');
    const kept = await b.store.claimSession('b-1');
    expect(await a.store.releaseInstanceClaims()).toBe(2);
    expect(await b.store.sessionHolder('a-1')).toBeNull();
    expect(await a.store.sessionHolder('b-1')).toEqual(kept);
  });
});

describe('cluster store: device state', () => {
  it('claimBootOffset: many concurrent claims from two instances all get one value', async () => {
    const { stores } = await cluster(2);
    const [a, b] = stores as [OpenedStore, OpenedStore];
    const proposed = Array.from({ length: 30 }, (_, i) => 1_700_000_000_000 + i * 1000);
    const answers = await Promise.all(
      proposed.map((offset, i) => (i % 2 === 0 ? a : b).store.claimBootOffset('race-dev', 7, offset)),
    );
    expect(new Set(answers).size).toBe(1);
    expect(proposed).toContain(answers[0]);
    // Later claims (another instance, another proposal) keep it; the shared state shows it.
    expect(await b.store.claimBootOffset('race-dev', 7, 42)).toBe(answers[0]);
    const state = await a.store.loadDeviceState('race-dev');
    expect(state?.boots).toEqual([expect.objectContaining({ bootId: 7, timeOffsetMs: answers[0] })]);
  });

  it('saveDeviceStates never moves seq, ACK or first-seen backwards; keeps descriptor sets; trims boots', async () => {
    const { stores } = await cluster(2);
    const [a, b] = stores as [OpenedStore, OpenedStore];
    expect(await a.store.loadDeviceState('st-1')).toBeNull();
    const chans = [{ index: 0, key: 'temp', unit: 'C', valueType: 1, scaleExp: 0, periodMs: 1000 }] as never;
    const base: SharedDeviceState = {
      deviceId: 'st-1',
      lastAck: { bootId: 1, seq: 10 },
      firstSeenMs: 5_000,
      descriptorHash: 111,
      boots: [{ bootId: 1, highestSeq: 10, timeOffsetMs: 100, clockCorrectionMs: null, firstSeenMs: 5_000 }],
      descriptors: [{ hash: 111, channels: chans }],
    };
    await a.store.saveDeviceStates([base]);
    // A stale writer (B, older view): lower seq, older ACK, later first-seen, another offset, no hash.
    await b.store.saveDeviceStates([
      {
        ...base,
        lastAck: { bootId: 1, seq: 4 },
        firstSeenMs: 9_000,
        descriptorHash: 0,
        boots: [{ bootId: 1, highestSeq: 4, timeOffsetMs: 999, clockCorrectionMs: 5, firstSeenMs: 9_000 }],
        descriptors: [],
      },
    ]);
    let state = await b.store.loadDeviceState('st-1');
    expect(state).toEqual({
      ...base,
      boots: [{ bootId: 1, highestSeq: 10, timeOffsetMs: 100, clockCorrectionMs: 5, firstSeenMs: 5_000 }],
    });

    // A new boot (first seen later) moves the ACK to it even with a lower seq; the old boot stays.
    await b.store.saveDeviceStates([
      {
        ...base,
        lastAck: { bootId: 2, seq: 3 },
        descriptorHash: 222,
        boots: [{ bootId: 2, highestSeq: 3, timeOffsetMs: 200, clockCorrectionMs: null, firstSeenMs: 20_000 }],
        descriptors: [{ hash: 222, channels: chans }],
      },
    ]);
    // Then a late write-behind of the old boot (A still flushing) must not take the ACK back.
    await a.store.saveDeviceStates([{ ...base, lastAck: { bootId: 1, seq: 50 }, boots: [], descriptors: [] }]);
    state = await a.store.loadDeviceState('st-1');
    expect(state?.lastAck).toEqual({ bootId: 2, seq: 3 });
    expect(state?.descriptorHash).toBe(222); // the stale writer's hash went with its refused ACK
    expect(state?.descriptors.map((d) => d.hash)).toEqual([111, 222]);
    expect(state?.boots.map((x) => [x.bootId, x.highestSeq])).toEqual([
      [2, 3],
      [1, 10],
    ]);

    // More boots than a device keeps: the newest MAX_BOOTS_PER_DEVICE stay.
    const many = Array.from({ length: MAX_BOOTS_PER_DEVICE + 5 }, (_, i) => ({
      bootId: 100 + i,
      highestSeq: 1,
      timeOffsetMs: null,
      clockCorrectionMs: null,
      firstSeenMs: 30_000 + i,
    }));
    await a.store.saveDeviceStates([{ ...base, lastAck: null, boots: many, descriptors: [] }]);
    state = await b.store.loadDeviceState('st-1');
    expect(state?.boots).toHaveLength(MAX_BOOTS_PER_DEVICE);
    expect(state?.boots[0]?.bootId).toBe(100 + MAX_BOOTS_PER_DEVICE + 4);
    expect(state?.lastAck).toEqual({ bootId: 2, seq: 3 }); // a null ACK changes nothing
  });

  it('saves a write-behind batch of 5000 devices in one call, and counts them', async () => {
    const { stores } = await cluster(1);
    const [a] = stores as [OpenedStore];
    const batch: SharedDeviceState[] = Array.from({ length: 5000 }, (_, i) => ({
      deviceId: `bulk-${i}`,
      lastAck: { bootId: 1, seq: i },
      firstSeenMs: 1_000 + i,
      descriptorHash: 0,
      boots: [{ bootId: 1, highestSeq: i, timeOffsetMs: i, clockCorrectionMs: null, firstSeenMs: 1_000 + i }],
      descriptors: [],
    }));
    await a.store.saveDeviceStates(batch);
    await a.store.saveDeviceStates(batch.map((s) => ({ ...s, lastAck: { bootId: 1, seq: 0 } })));
    expect(await a.metric('hub_cluster_db_saved_devices_total')).toBe(10_000);
    expect((await a.store.loadDeviceState('bulk-4321'))?.lastAck).toEqual({ bootId: 1, seq: 4321 });
    await a.store.putDescriptors('bulk-1', 9, []);
    expect((await a.store.loadDeviceState('bulk-1'))?.descriptors).toEqual([{ hash: 9, channels: [] }]);
  });
});
