/** Opening cluster stores against the harness's PostgreSQL, with their logs kept for assertions. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { type ClusterStore, openClusterStore } from '../../server/cluster/store/index.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics, type Metrics } from '../../server/metrics/index.ts';
import { type PostgresServer, startPostgres } from '../harness/index.ts';

export interface OpenedStore {
  store: ClusterStore;
  metrics: Metrics;
  /** Every log line so far (JSON lines). */
  logs(): string;
  /** Current value of a metric (summed over label sets matching `labels`). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
}

export interface OpenStoreOptions {
  databaseUrl: string;
  instanceId: string;
  dataDir: string;
  maxDevices?: number;
  openTimeoutMs?: number;
}

/** A logger (debug level) whose lines are kept in memory, for tests that read the logs. */
export function memoryLogger(): { logger: ReturnType<typeof createLogger>; text(): string } {
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString('utf8');
      done();
    },
  });
  return { logger: createLogger('debug', sink), text: () => text };
}

export async function openStore(options: OpenStoreOptions): Promise<OpenedStore> {
  const { logger, text } = memoryLogger();
  const metrics = createMetrics();
  const store = await openClusterStore({ ...options, logger, metrics });
  return {
    store,
    metrics,
    logs: text,
    async metric(name, labels = {}) {
      const found = await metrics.registry.getSingleMetric(name)?.get();
      if (!found) throw new Error(`no metric ${name}`);
      return found.values
        .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
        .reduce((sum, v) => sum + v.value, 0);
    },
  };
}

/** One PostgreSQL per test file; stores and data dirs opened through it are closed after each test. */
export interface PostgresFixture {
  readonly server: PostgresServer;
  /** A fresh empty database (one per test keeps tests apart); returns its URL. */
  newDatabase(): Promise<string>;
  /** A temp data dir, removed after the test. */
  dataDir(): string;
  /** Opens a store (in a fresh data dir unless given), closed after the test. */
  open(options: Omit<OpenStoreOptions, 'dataDir'> & { dataDir?: string }): Promise<OpenedStore>;
}

/** Registers the hooks of a test file that works on the harness's PostgreSQL. */
export function usePostgres(label: string): PostgresFixture {
  let server: PostgresServer | undefined;
  let databases = 0;
  const stores: OpenedStore[] = [];
  const dirs: string[] = [];
  beforeAll(async () => {
    server = await startPostgres();
  });
  afterEach(async () => {
    for (const o of stores.splice(0)) await o.store.close();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  afterAll(async () => {
    await server?.stop();
  });
  const fixture: PostgresFixture = {
    get server() {
      if (!server) throw new Error('PostgreSQL is not started yet (use the fixture inside tests)');
      return server;
    },
    newDatabase: () => fixture.server.createDatabase(`t${++databases}`),
    dataDir() {
      const dir = mkdtempSync(join(tmpdir(), `${label}-`));
      dirs.push(dir);
      return dir;
    },
    async open(options) {
      const opened = await openStore({ ...options, dataDir: options.dataDir ?? fixture.dataDir() });
      stores.push(opened);
      return opened;
    },
  };
  return fixture;
}
