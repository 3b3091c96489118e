/**
 * A second process on a dead-letter store (for dead-letters-multiprocess.test.ts): puts `count`
 * one-line records with reason `reason`, then closes. Usage: tsx dead-letters-writer.ts <dataDir> <count> <reason>
 */
import { createMetrics } from '../../server/metrics/index.ts';
import { openDeadLetterStore } from '../../server/storage/dead-letter.ts';

const [dataDir, count, reason] = process.argv.slice(2);
const store = openDeadLetterStore({ dataDir: dataDir as string, metrics: createMetrics(), maxBytes: 64 * 1024 });
for (let i = 0; i < Number(count); i++) await store.put([`m,k=${reason} v=${i} ${i}`], reason as string, 400);
await store.flushed();
await store.close();
