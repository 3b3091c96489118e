/** The local log as its unit tests open it: a 64 MiB cap, embedded, no maintenance sweep of its own. */
import { createLogger } from '../../server/log/index.ts';
import { createMetrics } from '../../server/metrics/index.ts';
import type { LocalLogOptions } from '../../server/storage/local-log.ts';

export function testLogOptions(dataDir: string, over: Partial<LocalLogOptions> = {}): LocalLogOptions {
  return {
    dataDir,
    maxBytes: 64 * 1024 * 1024,
    retentionHours: 24,
    fullPolicy: 'backpressure',
    forwarding: false,
    metrics: createMetrics(),
    logger: createLogger('silent'),
    maintenanceIntervalMs: 3_600_000,
    ...over,
  };
}
