/** Opening cluster stores against the harness's PostgreSQL, with their logs kept for assertions. */
import { Writable } from 'node:stream';
import { type ClusterStore, openClusterStore } from '../../server/cluster/store/index.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics, type Metrics } from '../../server/metrics/index.ts';

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
