/**
 * The connection side of the cluster store: a small pool for queries, the health of the database as
 * this instance sees it (one error log per outage, `hub_cluster_db_up`), and the mapping of failures to
 * coded errors. The connection URL holds a password: it is never logged nor put in an error; messages
 * name the database as `user@host:port/db` ({@link describeDatabase}).
 */
import pg from 'pg';
import { HubError } from '../../errors.ts';
import type { Logger } from '../../log/index.ts';
import type { StoreMetrics } from './metrics.ts';

/** `user@host:port/database` of a postgres:// URL: what logs and errors show (never the password). */
export function describeDatabase(url: string): string {
  try {
    const u = new URL(url);
    const user = u.username ? `${decodeURIComponent(u.username)}@` : '';
    const db = decodeURIComponent(u.pathname.replace(/^\//, '')) || '(default database)';
    return `${user}${u.hostname || 'localhost'}:${u.port || '5432'}/${db}`;
  } catch {
    return '(unparsable CLUSTER_DATABASE_URL)';
  }
}

/** The URL without its password, for places that show a location (the registry's `file`). */
export function redactedUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    u.search = '';
    return u.toString();
  } catch {
    return '(unparsable CLUSTER_DATABASE_URL)';
  }
}

/** bigint (int8) columns as numbers: every value we store (ms times, seqs, epochs) is below 2^53. */
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === 20 ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format as 'text')) as never,
};

/** Connection settings shared by the pool and the listening client. */
export function clientConfig(url: string, instanceId: string): pg.ClientConfig {
  return {
    connectionString: url,
    application_name: `esp32hub-${instanceId}`.slice(0, 63),
    connectionTimeoutMillis: 5_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    statement_timeout: 15_000,
    query_timeout: 20_000,
    types,
  };
}

/** SQLSTATEs that mean "the server is going away or cannot take us", as opposed to a refused statement. */
const CONNECTION_SQLSTATE = /^(08|57P0|53300)/;

/**
 * True when `err` says the database could not be reached or the connection broke (no server answer,
 * or a server answer meaning shutdown / no connection), false for an error in a statement.
 */
export function isConnectionError(err: unknown): boolean {
  if (err instanceof HubError) return err.code === 'CLUSTER_DB_UNAVAILABLE';
  if (err instanceof pg.DatabaseError) return CONNECTION_SQLSTATE.test(err.code ?? '');
  return true;
}

/** Login refused (bad user or password) or no such database: retrying cannot help. */
export function isLoginRefused(err: unknown): boolean {
  return err instanceof pg.DatabaseError && /^(28|3D000)/.test(err.code ?? '');
}

export interface DbOptions {
  url: string;
  instanceId: string;
  logger: Logger;
  metrics: StoreMetrics;
  now: () => number;
}

/** Anything that runs a query: the pool or one checked-out client. */
export type Queryable = Pick<pg.Pool, 'query'>;

export class Db {
  readonly pool: pg.Pool;
  /** `user@host:port/db`, for messages. */
  readonly where: string;
  private readonly secret: string;
  private state: 'connected' | 'unreachable' = 'unreachable';
  private lastError: string | null = null;
  private downSinceMs: number | null = null;
  private closed = false;
  /** Whether the LISTEN connection is up (set by the store): a query that succeeds then ends an outage. */
  isListening: () => boolean = () => false;
  /**
   * Called when a query finds the database gone (set by the store: the listening connection is dropped
   * and reconnected, so the outage ends the one way, with a registry reload and a resync, even when
   * that connection had not noticed, as behind a network that drops packets silently).
   */
  onDown: () => void = () => undefined;

  constructor(private readonly options: DbOptions) {
    this.where = describeDatabase(options.url);
    this.secret = passwordOf(options.url);
    this.pool = new pg.Pool({ ...clientConfig(options.url, options.instanceId), max: 4, idleTimeoutMillis: 30_000 });
    // An idle pooled connection broke. Not an outage by itself (a server may end idle sessions): the
    // listening connection decides that; the next query opens a fresh connection.
    this.pool.on('error', (err) => {
      options.metrics.errors.inc({ op: 'idle_connection' });
      options.logger.debug({ error: this.safeMessage(err) }, 'an idle cluster database connection closed');
    });
    options.metrics.up.set(0);
  }

  status(): { database: 'connected' | 'unreachable'; lastError: string | null } {
    return { database: this.state, lastError: this.lastError };
  }

  get connected(): boolean {
    return this.state === 'connected';
  }

  /** The error's message with the password (should a driver ever echo it) replaced. */
  safeMessage(err: unknown): string {
    const text = err instanceof Error ? err.message || err.name : String(err);
    const code = (err as { code?: unknown }).code;
    const withCode = typeof code === 'string' && !text.includes(code) ? `${text} (${code})` : text;
    return this.secret ? withCode.split(this.secret).join('[redacted]') : withCode;
  }

  /** The database answered and is listened to again: ends an outage (logged once). */
  markUp(): void {
    if (this.state === 'connected') return;
    const wasDown = this.downSinceMs;
    this.state = 'connected';
    this.downSinceMs = null;
    this.options.metrics.up.set(1);
    if (wasDown !== null) {
      this.options.logger.info(
        { database: this.where, outageMs: this.options.now() - wasDown },
        'cluster database reachable again; resynchronising',
      );
    }
  }

  /** Records an outage; logs an error only for the first failure of an episode. */
  markDown(err: unknown, op: string): void {
    // pool.end() resolves before the sockets are closed: a server stopping right after is no outage.
    if (this.closed) return;
    this.lastError = this.safeMessage(err);
    if (this.state === 'unreachable') return;
    this.state = 'unreachable';
    this.downSinceMs = this.options.now();
    this.options.metrics.up.set(0);
    this.options.metrics.outages.inc();
    this.options.logger.error(
      { database: this.where, op, error: this.lastError },
      'cluster database unreachable: serving from the cached registry, reconnecting with backoff',
    );
    this.onDown();
  }

  /**
   * Runs `fn` on the pool, counting a failure under `op`. A connection failure becomes
   * CLUSTER_DB_UNAVAILABLE (and an outage); a refused statement INTERNAL; coded errors pass through.
   */
  async run<T>(op: string, fn: (q: Queryable) => Promise<T>): Promise<T> {
    try {
      const result = await fn(this.pool);
      if (this.state === 'unreachable' && this.isListening()) this.markUp();
      return result;
    } catch (err) {
      throw this.failure(op, err);
    }
  }

  /**
   * Runs `fn` in a transaction on one client; retried (up to 3 times) when PostgreSQL chose it as a
   * deadlock victim or a serialization failure, which concurrent batches of two instances can cause.
   */
  async tx<T>(op: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let client: pg.PoolClient | undefined;
      // A connection lost between two statements of the transaction is emitted as an 'error' event (no
      // query to fail yet): the next statement fails with it, so the event itself is only swallowed.
      const ignore = (): void => undefined;
      try {
        client = await this.pool.connect();
        client.on('error', ignore);
        await client.query('BEGIN');
        const result = await fn(client);
        await client.query('COMMIT');
        client.off('error', ignore);
        client.release();
        return result;
      } catch (err) {
        if (client) {
          const rolledBack = await client.query('ROLLBACK').then(
            () => true,
            () => false,
          );
          client.off('error', ignore);
          client.release(!rolledBack);
        }
        const retry = err instanceof pg.DatabaseError && (err.code === '40P01' || err.code === '40001');
        if (!retry || attempt >= 3) throw this.failure(op, err);
      }
    }
  }

  private failure(op: string, err: unknown): Error {
    if (err instanceof HubError && err.code !== 'CLUSTER_DB_UNAVAILABLE') return err;
    this.options.metrics.errors.inc({ op });
    if (isConnectionError(err)) {
      this.markDown(err, op);
      return new HubError(
        'CLUSTER_DB_UNAVAILABLE',
        `the cluster database ${this.where} is unreachable (${op}): ${this.safeMessage(err)}`,
      );
    }
    return new HubError('INTERNAL', `cluster database ${op} failed: ${this.safeMessage(err)}`);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.pool.end().catch(() => undefined);
  }
}

function passwordOf(url: string): string {
  try {
    return decodeURIComponent(new URL(url).password);
  } catch {
    return '';
  }
}
