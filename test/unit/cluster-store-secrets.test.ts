/**
 * The cluster database URL carries a password: it must never reach a log line, an error message, the
 * registry's `file` or the status. Opened against a loopback port where nothing listens, the store
 * retries (logging each attempt) and fails with CLUSTER_DB_UNAVAILABLE naming `user@host:port/db`.
 */
import { createServer } from 'node:net';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { describeDatabase, openClusterStore, redactedUrl } from '../../server/cluster/store/index.ts';
import { HubError } from '../../server/errors.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics } from '../../server/metrics/index.ts';

const PASSWORD = 'S3cr3t-pa55word-7788';

/** A loopback port that was free a moment ago: connecting to it is refused. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('cluster store: the database password', () => {
  it('describeDatabase and redactedUrl show user, host, port and database only', () => {
    const url = `postgres://hub:${PASSWORD}@db.example:6543/fleet?sslmode=require`;
    expect(describeDatabase(url)).toBe('hub@db.example:6543/fleet');
    expect(redactedUrl(url)).toBe('postgres://hub@db.example:6543/fleet');
    expect(describeDatabase('postgresql://db.example/fleet')).toBe('db.example:5432/fleet');
    expect(describeDatabase('not a url')).not.toContain('not a url');
  });

  it('an unreachable database: the start fails with the code, and neither logs nor the error hold the password', async () => {
    const port = await closedPort();
    let logs = '';
    const logger = createLogger(
      'trace',
      new Writable({
        write(chunk: Buffer, _enc, done) {
          logs += chunk.toString('utf8');
          done();
        },
      }),
    );
    const metrics = createMetrics();
    const err = await openClusterStore({
      databaseUrl: `postgres://hub:${PASSWORD}@127.0.0.1:${port}/fleet`,
      instanceId: 'inst-a',
      dataDir: '/nonexistent',
      logger,
      metrics,
      openTimeoutMs: 2_500, // above the 2 s cap of the retry delay
      // A frozen clock for stored times (as tests of other parts pass): the retry bound is real time.
      now: () => 1_700_000_000_000,
    }).catch((e: unknown) => e);

    expect(err).toBeInstanceOf(HubError);
    expect((err as HubError).code).toBe('CLUSTER_DB_UNAVAILABLE');
    expect((err as Error).message).toContain(`hub@127.0.0.1:${port}/fleet`);
    expect((err as Error).message).toMatch(/cannot be reached \(tried \d+ times\)/);
    expect(logs).toContain('cluster database not reachable yet; retrying'); // it did log the attempts
    for (const text of [logs, (err as Error).message, String((err as Error).stack), JSON.stringify(err)]) {
      expect(text).not.toContain(PASSWORD);
    }
    const exported = await metrics.registry.metrics();
    expect(exported).toContain('hub_cluster_db_up 0');
    expect(exported).not.toContain(PASSWORD);
  });
});
