/**
 * A real PostgreSQL for integration tests: Debian's `initdb` + `postgres` (from
 * /usr/lib/postgresql/<newest version>/bin) as a plain process, with its data directory and Unix socket
 * in a temp dir and TCP on a free loopback port.
 *
 * - PostgreSQL refuses to run as root: started as root, `initdb` and `postgres` run as the `postgres`
 *   user (setpriv; the temp dir is handed to that user), still with the parent-death signal that stops
 *   the server if the test process dies (see process.ts).
 * - The login is password-checked over TCP (scram-sha-256), so the URL carries a real password, as in
 *   production; the Unix socket in the temp dir trusts the local user.
 * - Durability against a machine crash is off (`fsync=off`, `full_page_writes=off`): a test database is
 *   thrown away, and a machine crash is not what the tests exercise. Commits still reach the operating
 *   system before they are acknowledged (synchronous_commit stays on), so a stopped or killed server
 *   (`stopServer({ mode: 'immediate' })`) keeps every committed transaction. See docs/testing.md.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { chown, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './ports.ts';
import { findExecutable, type ServerDir, type ServerProcess, startInServerDir } from './process.ts';

const execFileAsync = promisify(execFile);

/** Options for {@link startPostgres}. */
export interface StartPostgresOptions {
  /** Database created on start, the one `url` names. Default `esp32hub`. */
  database?: string;
  /** Bound on each readiness wait. Default 30 s. */
  startTimeoutMs?: number;
}

/** A running PostgreSQL. */
export interface PostgresServer {
  /** `postgres://hub:<password>@127.0.0.1:<port>/<database>`. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly user: string;
  /** The login's password (random per server), e.g. to check that it appears in no log. */
  readonly password: string;
  readonly database: string;
  /** Temp dir holding the data directory, the socket and the log. */
  readonly dir: string;
  /** Creates another (empty) database and returns its URL: one per test keeps tests apart. */
  createDatabase(name: string): Promise<string>;
  /**
   * Stops the server only (`fast`: SIGINT, sessions are disconnected; `immediate`: SIGQUIT, as a
   * crash), keeping its data and port, to exercise an outage under a running client.
   */
  stopServer(options?: { mode?: 'fast' | 'immediate' }): Promise<void>;
  /** Starts it again on the same port with the same data; resolves once it accepts logins. */
  startServer(): Promise<void>;
  serverRunning(): boolean;
  /** Tail of the server's log. */
  logs(maxLines?: number): string;
  /** Stops the server and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts PostgreSQL on a free loopback port in a temp dir and creates `database`. Call `stop()` in
 * `afterAll`.
 */
export function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresServer> {
  return startInServerDir('postgres', (dir) => startPostgresIn(dir, options));
}

const USER = 'hub';
const POSTGRES_ROOT = '/usr/lib/postgresql';

async function startPostgresIn(dir: ServerDir, options: StartPostgresOptions): Promise<PostgresServer> {
  const { database = 'esp32hub', startTimeoutMs = 30_000 } = options;
  const bin = findPostgresBin();
  const dataDir = join(dir.path, 'data');
  const host = '127.0.0.1';
  const port = await freePort(host);
  const password = randomBytes(12).toString('hex');
  // As root, everything runs as the `postgres` user, which must own the temp dir.
  const runAs = process.getuid?.() === 0 ? 'postgres' : undefined;
  const pwFile = join(dir.path, 'pwfile');
  await writeFile(pwFile, `${password}\n`, { mode: 0o600 });
  if (runAs) await chownTree(dir.path, runAs);
  // PG* variables would override our arguments (PGDATA, PGPORT, ...): the server sees only ours.
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('PG')));

  let server: ServerProcess | undefined;
  const adminUrl = (db: string) => `postgres://${USER}:${password}@${host}:${port}/${db}`;

  const startServer = async (): Promise<void> => {
    if (server && !server.hasExited()) return;
    server = await dir.start({
      name: 'postgres',
      command: join(bin, 'postgres'),
      args: [
        '-D',
        dataDir,
        '-p',
        String(port),
        '-k',
        dir.path,
        '-c',
        `listen_addresses=${host}`,
        '-c',
        'fsync=off',
        '-c',
        'full_page_writes=off',
        '-c',
        'max_connections=100',
        '-c',
        'shared_buffers=16MB',
      ],
      env,
      ...(runAs ? { runAs } : {}),
      // Fast shutdown: sessions are disconnected (SIGTERM would wait for every client to leave).
      stopSignal: 'SIGINT',
      ready: () => loginProbe(adminUrl('postgres')),
      timeoutMs: startTimeoutMs,
      what: `a login to ${host}:${port}`,
    });
  };

  await runAsUser(
    join(bin, 'initdb'),
    [
      '-D',
      dataDir,
      '-U',
      USER,
      `--pwfile=${pwFile}`,
      '--auth-local=trust',
      '--auth-host=scram-sha-256',
      '--encoding=UTF8',
      '--no-locale',
      '--no-sync',
    ],
    { cwd: dir.path, env, runAs },
  );
  await startServer();
  await adminQuery(adminUrl('postgres'), `CREATE DATABASE ${quoteIdent(database)}`);

  return {
    url: adminUrl(database),
    host,
    port,
    user: USER,
    password,
    database,
    dir: dir.path,
    async createDatabase(name) {
      await adminQuery(adminUrl('postgres'), `CREATE DATABASE ${quoteIdent(name)}`);
      return adminUrl(name);
    },
    async stopServer(stopOptions = {}) {
      await server?.stop({ signal: stopOptions.mode === 'immediate' ? 'SIGQUIT' : 'SIGINT' });
    },
    startServer,
    serverRunning: () => server !== undefined && !server.hasExited(),
    logs: (n = 40) => server?.logTail(n) ?? '',
    stop: dir.stop,
  };
}

/** The bin directory of the newest PostgreSQL under /usr/lib/postgresql holding initdb and postgres. */
function findPostgresBin(): string {
  let versions: string[] = [];
  try {
    versions = readdirSync(POSTGRES_ROOT)
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
  } catch {
    // not installed
  }
  const found = versions
    .map((v) => join(POSTGRES_ROOT, v, 'bin'))
    .find((bin) => existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'postgres')));
  if (found) return found;
  throw new Error(
    `PostgreSQL was not found (initdb and postgres in ${POSTGRES_ROOT}/<version>/bin). ` +
      'Run `bash scripts/ensure-system-deps.sh` (as root it installs the Debian packages the tests need; ' +
      'otherwise it prints the install command).',
  );
}

/** Runs a short-lived program (initdb), as `runAs` when given, dying with this process. */
async function runAsUser(
  command: string,
  args: string[],
  options: { cwd: string; env: NodeJS.ProcessEnv; runAs: string | undefined },
): Promise<void> {
  const user = options.runAs ? [`--reuid=${options.runAs}`, `--regid=${options.runAs}`, '--init-groups'] : [];
  try {
    await execFileAsync(findExecutable('setpriv'), [...user, '--pdeathsig', 'KILL', '--', command, ...args], {
      cwd: options.cwd,
      env: options.env,
    });
  } catch (err) {
    const { stderr, stdout } = err as { stderr?: string; stdout?: string };
    throw new Error(`${command} failed: ${(err as Error).message}\n${stdout ?? ''}${stderr ?? ''}`);
  }
}

async function chownTree(path: string, user: string): Promise<void> {
  const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim());
  await chown(path, uid, gid);
  for (const entry of await readdir(path, { withFileTypes: true, recursive: true })) {
    await chown(join(entry.parentPath, entry.name), uid, gid);
  }
}

/** Logs in with the password (over TCP, as the hub does) and runs `SELECT 1`. */
async function loginProbe(url: string): Promise<boolean> {
  await adminQuery(url, 'SELECT 1');
  return true;
}

async function adminQuery(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query(sql);
  } finally {
    await client.end().catch(() => undefined);
  }
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
