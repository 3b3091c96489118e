/**
 * The cluster store when PostgreSQL goes away under it: the real server stopped and started again, and
 * one instance cut off (a TCP relay between it and the server stops passing traffic) while another
 * changes the registry. Degraded status, metrics and one error log per outage; after the reconnect the
 * registry is reloaded (missed changes take effect, onRevoked fires) and onResync listeners run.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { HubError } from '../../server/errors.ts';
import { until } from '../harness/index.ts';
import { usePostgres } from './cluster-store-helpers.ts';

const fx = usePostgres('cluster-outage');
const open = (databaseUrl: string, instanceId: string) => fx.open({ databaseUrl, instanceId });

const OUTAGE_LOG = 'cluster database unreachable';
const occurrences = (text: string, needle: string) => text.split(needle).length - 1;

/** A TCP relay to PostgreSQL that can stop passing traffic (existing connections cut, new ones refused). */
async function relay(port: number): Promise<{ port: number; cut(): void; restore(): void; close(): Promise<void> }> {
  let blocked = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((inbound) => {
    if (blocked) {
      inbound.destroy();
      return;
    }
    const outbound = connect({ host: '127.0.0.1', port });
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        sockets.delete(s);
        inbound.destroy();
        outbound.destroy();
      });
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('relay: no port');
  return {
    port: address.port,
    cut() {
      blocked = true;
      for (const s of sockets) s.destroy();
    },
    restore() {
      blocked = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('cluster store: PostgreSQL outages', () => {
  it('the server stopped and restarted: degraded (status, metric, one error log), cached auth, then recovers and resyncs', async () => {
    const url = await fx.newDatabase();
    const a = await open(url, 'inst-a');
    const { token } = await a.store.registry.add('dev-1');
    let resyncs = 0;
    a.store.onResync(() => resyncs++);
    expect(a.store.status()).toEqual({ database: 'connected', lastError: null });
    expect(await a.metric('hub_cluster_db_up')).toBe(1);

    await fx.server.stopServer({ mode: 'fast' });
    await until('the store sees the outage', () => a.store.status().database === 'unreachable');
    expect(await a.metric('hub_cluster_db_up')).toBe(0);
    expect(a.store.status().lastError).toEqual(expect.any(String));
    // Calls fail with the code; the registry keeps authenticating from memory.
    for (let i = 0; i < 3; i++) {
      const err = await a.store.claimSession('dev-1').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HubError);
      expect((err as HubError).code).toBe('CLUSTER_DB_UNAVAILABLE');
    }
    await expect(a.store.registry.add('dev-2')).rejects.toMatchObject({ code: 'CLUSTER_DB_UNAVAILABLE' });
    expect(a.store.registry.authenticate(token)).toBe('dev-1');
    expect(await a.metric('hub_cluster_db_errors_total', { op: 'claim_session' })).toBe(3);
    expect(await a.metric('hub_cluster_db_outages_total')).toBe(1);

    await fx.server.startServer();
    await until('the store is connected again', () => a.store.status().database === 'connected');
    expect(resyncs).toBe(1);
    expect(await a.metric('hub_cluster_db_up')).toBe(1);
    expect(await a.metric('hub_cluster_db_reconnects_total')).toBeGreaterThanOrEqual(1);
    expect((await a.store.claimSession('dev-1')).instanceId).toBe('inst-a');
    expect(occurrences(a.logs(), OUTAGE_LOG)).toBe(1);
    expect(a.logs()).toContain('cluster database reachable again');
  });

  it('a registry change made while an instance was cut off takes effect there after the reconnect', async () => {
    const url = await fx.newDatabase();
    const cutOff = await relay(fx.server.port);
    try {
      const viaRelay = url.replace(`:${fx.server.port}/`, `:${cutOff.port}/`);
      const a = await open(viaRelay, 'inst-a');
      const b = await open(url, 'inst-b');
      const x = await b.store.registry.add('dev-x');
      const y = await b.store.registry.add('dev-y');
      await until('A knows both devices', () => a.store.registry.authenticate(y.token) === 'dev-y');
      const revokedOnA: string[] = [];
      a.store.onResync(() => revokedOnA.push('(resync)'));
      a.store.registry.onRevoked((id) => revokedOnA.push(id));

      cutOff.cut();
      await until('A sees the outage', () => a.store.status().database === 'unreachable');
      await b.store.registry.revoke('dev-x');
      const rotated = await b.store.registry.rotate('dev-y');
      const added = await b.store.registry.add('dev-z');
      // Cut off, A still answers from its cache (the documented degraded behaviour).
      expect(a.store.registry.authenticate(x.token)).toBe('dev-x');

      cutOff.restore();
      await until('A reloads after the reconnect', () => revokedOnA.includes('(resync)'));
      expect(revokedOnA.filter((e) => e !== '(resync)').sort()).toEqual(['dev-x', 'dev-y']);
      expect(a.store.registry.authenticate(x.token)).toBeNull();
      expect(a.store.registry.authenticate(y.token)).toBeNull();
      expect(a.store.registry.authenticate(rotated.token)).toBe('dev-y');
      expect(a.store.registry.authenticate(added.token)).toBe('dev-z');
      expect(a.store.status().database).toBe('connected');
      expect(occurrences(a.logs(), OUTAGE_LOG)).toBe(1);
      expect(b.store.status().database).toBe('connected');
    } finally {
      await cutOff.close();
    }
  });

  it('a query that loses its connection while the listening one stays up: outage, then reconnect and resync', async () => {
    const url = await fx.newDatabase();
    const a = await open(url, 'inst-a');
    let resyncs = 0;
    a.store.onResync(() => resyncs++);
    const batch = Array.from({ length: 60_000 }, (_, i) => ({
      deviceId: `big-${i}`,
      lastAck: null,
      firstSeenMs: 1,
      descriptorHash: 0,
      boots: [{ bootId: 1, highestSeq: 1, timeOffsetMs: 1, clockCorrectionMs: null, firstSeenMs: 1 }],
      descriptors: [],
    }));
    // The write-behind's connection, inside its transaction, is terminated; the listening one stays.
    // A lock the test holds keeps the save waiting at its first statement, so the backend terminated
    // is the save's, mid-transaction, however slow the machine (a backend merely seen busy could have
    // committed and gone idle by the time it was terminated).
    const admin = new pg.Client(url);
    await admin.connect();
    await admin.query('BEGIN');
    await admin.query('LOCK TABLE esp32hub_device_boots IN ACCESS EXCLUSIVE MODE');
    const saving = a.store.saveDeviceStates(batch).catch((e: unknown) => e);
    try {
      await until('the save waits for the lock, and its backend is terminated', async () => {
        const { rows } = await admin.query(
          `SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity
           WHERE datname = current_database() AND application_name = 'esp32hub-inst-a'
             AND wait_event_type = 'Lock'`,
        );
        return rows.some((r: { done: boolean }) => r.done);
      });
    } finally {
      await admin.end(); // ends the test's transaction, and its lock
    }
    expect(await saving).toMatchObject({ code: 'CLUSTER_DB_UNAVAILABLE' });
    await until('the store reconnected and resynced', () => resyncs === 1 && a.store.status().database === 'connected');
    expect(occurrences(a.logs(), OUTAGE_LOG)).toBe(1);
    expect(await a.metric('hub_cluster_db_reconnects_total')).toBe(1);
    await a.store.saveDeviceStates(batch.slice(0, 10));
    expect((await a.store.loadDeviceState('big-3'))?.boots).toHaveLength(1);
  });

  it('a refused login fails the start at once with CLUSTER_DB_UNAVAILABLE naming the database, not the password', async () => {
    const wrong = 'Wr0ngPassw0rdXYZ';
    const url = fx.server.url.replace(`:${fx.server.password}@`, `:${wrong}@`);
    const err = await open(url, 'inst-a').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HubError);
    expect((err as HubError).code).toBe('CLUSTER_DB_UNAVAILABLE');
    expect((err as Error).message).toContain(`hub@127.0.0.1:${fx.server.port}/${fx.server.database}`);
    expect((err as Error).message).toContain('refused the login');
    expect(JSON.stringify(err)).not.toContain(wrong);
    expect(`${(err as Error).message}${(err as Error).stack}`).not.toContain(wrong);
  });
});
