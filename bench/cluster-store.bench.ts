/**
 * The cluster store against a real PostgreSQL (the test harness's, fsync off: these are the store's own
 * costs, not a disk's): the write-behind's batched upsert (devices written per second in batches of
 * 5000, each device with one changed boot and its ACK), session claims per second, shared-state loads
 * per second, boot offset claims per second, and how long a registry change on one instance takes to be
 * applied on another (p50 / p99 of add → authenticate). Inputs of the sizing notes in docs/scaling.md
 * ("Shared state in PostgreSQL").
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pgClient from 'pg';
import { type ClusterStore, openClusterStore, type SharedDeviceState } from '../server/cluster/store/index.ts';
import { createLogger } from '../server/log/index.ts';
import { createMetrics } from '../server/metrics/index.ts';
import { startPostgres } from '../test/harness/index.ts';
import type { BenchOptions, BenchReport } from './run.ts';

export const name = 'cluster-store';

const BATCH = 5000;

export async function run(options: BenchOptions = { quick: false }): Promise<BenchReport> {
  const pg = await startPostgres();
  const dir = mkdtempSync(join(tmpdir(), 'bench-cluster-store-'));
  const stores: ClusterStore[] = [];
  const open = async (instanceId: string): Promise<ClusterStore> => {
    const store = await openClusterStore({
      databaseUrl: pg.url,
      instanceId,
      dataDir: dir,
      logger: createLogger('warn'),
      metrics: createMetrics(),
    });
    stores.push(store);
    return store;
  };
  try {
    const a = await open('bench-a');
    const b = await open('bench-b');
    const rounds = options.quick ? 3 : 10;

    // Write-behind: every round moves each of BATCH devices one step forward.
    const state = (i: number, seq: number): SharedDeviceState => ({
      deviceId: `dev-${i}`,
      lastAck: { bootId: 1, seq },
      firstSeenMs: 1_700_000_000_000,
      descriptorHash: 7,
      boots: [
        { bootId: 1, highestSeq: seq, timeOffsetMs: 1_000, clockCorrectionMs: null, firstSeenMs: 1_700_000_000_000 },
      ],
      descriptors: [],
    });
    await a.saveDeviceStates(Array.from({ length: BATCH }, (_, i) => state(i, 0))); // rows exist (the steady state)
    const saveMs: number[] = [];
    for (let r = 1; r <= rounds; r++) {
      const batch = Array.from({ length: BATCH }, (_, i) => state(i, r * 10));
      const t0 = performance.now();
      await a.saveDeviceStates(batch);
      saveMs.push(performance.now() - t0);
    }

    // Storage per device of the write-behind's tables (state row + one boot, with their indexes).
    const sizeClient = new pgClient.Client(pg.url);
    await sizeClient.connect();
    const { rows: size } = await sizeClient.query<{ bytes: string }>(
      `SELECT sum(pg_total_relation_size(t))::bigint AS bytes
       FROM unnest(array['esp32hub_device_state', 'esp32hub_device_boots']::regclass[]) AS t`,
    );
    await sizeClient.end();
    const bytesPerDevice = Number(size[0]?.bytes) / BATCH;

    const timed = async (count: number, op: (i: number) => Promise<unknown>, concurrency = 8): Promise<number> => {
      let next = 0;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < count) await op(next++);
        }),
      );
      return count / ((performance.now() - t0) / 1000);
    };
    const n = options.quick ? 500 : 2000;
    const claims = await timed(n, (i) => (i % 2 ? a : b).claimSession(`dev-${i % BATCH}`));
    const loads = await timed(n, (i) => b.loadDeviceState(`dev-${i % BATCH}`));
    const offsets = await timed(n, (i) => a.claimBootOffset(`dev-${i % BATCH}`, 2 + (i % 5), 1_000 + i));

    // Registry propagation: add on A, poll B's in-memory map (what the gateway's upgrade handler reads).
    const lagMs: number[] = [];
    for (let i = 0; i < (options.quick ? 20 : 100); i++) {
      const t0 = performance.now();
      const { token } = await a.registry.add(`lag-${i}`);
      while (b.registry.authenticate(token) === null) await new Promise((r) => setImmediate(r));
      lagMs.push(performance.now() - t0);
    }

    const med = (v: number[]) => quantile(v, 0.5);
    return {
      title: 'Cluster store (PostgreSQL, harness server on this machine)',
      rows: [
        {
          metric: `write-behind batch of ${BATCH} devices`,
          value: round(med(saveMs)),
          unit: 'ms',
          note: `median of ${rounds}`,
        },
        { metric: 'write-behind rate', value: Math.round((BATCH * 1000) / med(saveMs)), unit: 'devices/s' },
        {
          metric: 'state + boot rows per device (with indexes)',
          value: Math.round(bytesPerDevice),
          unit: 'B',
          note: `${BATCH} devices, after ${rounds} updates each`,
        },
        { metric: 'session claims (8 concurrent)', value: Math.round(claims), unit: 'claims/s' },
        { metric: 'shared state loads (8 concurrent)', value: Math.round(loads), unit: 'loads/s' },
        { metric: 'boot offset claims (8 concurrent)', value: Math.round(offsets), unit: 'claims/s' },
        { metric: 'registry change → other instance, p50', value: round(quantile(lagMs, 0.5)), unit: 'ms' },
        { metric: 'registry change → other instance, p99', value: round(quantile(lagMs, 0.99)), unit: 'ms' },
      ],
      notes: [
        'PostgreSQL 15 from the test harness (fsync=off) on the same 2 cores as the hub',
        'stores; a production server with durable commits adds its commit latency to each write.',
      ],
    };
  } finally {
    for (const s of stores) await s.close();
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

const round = (v: number) => Math.round(v * 10) / 10;
