// Smoke test of the real PostgreSQL used by the cluster store's tests (test/harness/postgres.ts, docs/testing.md).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { startPostgres } from '../harness/index.ts';

/** Pids of processes whose command line mentions `needle`. */
function processesWith(needle: string): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(needle);
      } catch {
        return false;
      }
    })
    .map(Number);
}

describe('real PostgreSQL', () => {
  it('logs in with the password, not as root, survives a restart with its data, and leaves nothing behind', async () => {
    const server = await startPostgres();
    try {
      const client = new pg.Client(server.url);
      await client.connect();
      await client.query('CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)');
      const { rows } = await client.query<{ u: string; fsync: string }>(
        "SELECT current_user AS u, current_setting('fsync') AS fsync",
      );
      expect(rows[0]).toEqual({ u: 'hub', fsync: 'off' });
      await client.end();

      // The password is checked over TCP.
      const wrong = new pg.Client(server.url.replace(server.password, 'not-the-password'));
      await expect(wrong.connect()).rejects.toMatchObject({ code: '28P01' });

      // The postmaster runs as the postgres user when the tests run as root (it refuses root).
      const postmaster = processesWith(server.dir).find((pid) =>
        readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith(`/usr/lib/postgresql/`),
      );
      expect(postmaster).toBeDefined();
      const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${postmaster}/status`, 'utf8'))?.[1];
      if (process.getuid?.() === 0) expect(uid).not.toBe('0');

      await server.stopServer({ mode: 'immediate' });
      expect(server.serverRunning()).toBe(false);
      await server.startServer();
      const again = new pg.Client(server.url);
      await again.connect();
      try {
        // Committed before a SIGQUIT (as a crash of the process): still there.
        expect((await again.query('SELECT v FROM kept')).rows).toEqual([{ v: 42 }]);
      } finally {
        await again.end();
      }
    } finally {
      await server.stop();
    }
    expect(existsSync(server.dir)).toBe(false);
    expect(processesWith(server.dir)).toEqual([]);
  });
});
