/**
 * A real InfluxDB for integration tests: Debian's `influxd` (1.6.x engine) as a plain process, with
 * an `nginx` in front of it that serves the InfluxDB 1.8+ `/api/v2/write` compatibility endpoint.
 *
 * Why the nginx: `@influxdata/influxdb-client` (what the hub uses) writes to `/api/v2/write?org=&bucket=
 * &precision=`, which InfluxDB 1.8+ and 2.x serve; the 1.6 engine only has the v1 `/write?db=&precision=`.
 * InfluxDB 1.8 implements the v2 endpoint by mapping `bucket` ("db" or "db/rp") to database and
 * retention policy and the v2 precisions `ns|us|ms|s` to the v1 ones `n|u|ms|s` (ns by default). The
 * nginx rewrite does exactly that, so the real client writes to the real engine: points are parsed
 * and stored for real, field-type conflicts come back as real HTTP 400s, and InfluxQL runs for real.
 *
 * Without the mapping the 1.6 engine would silently read `us` (and anything unknown) as nanoseconds.
 *
 * See docs/testing.md.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startNginx } from './nginx.ts';
import { freePorts } from './ports.ts';
import { findExecutable, httpProbe, type ServerDir, type ServerProcess, startInServerDir } from './process.ts';

/** Options for {@link startInflux}. */
export interface StartInfluxOptions {
  /** Bucket (= InfluxDB 1.x database) created on start. Default `telemetry`. */
  bucket?: string;
  /** Organisation name handed to the client; the 1.x engine ignores it (as 1.8 does). Default `esp32hub`. */
  org?: string;
  /** Token handed to the client; auth is disabled in the engine, so any value works. Default `test-token`. */
  token?: string;
  /**
   * Largest write body in bytes; a larger one gets a real HTTP 413. Default: 25 000 000 in the engine,
   * no limit in nginx. When set, it is enforced twice, because the 1.6 engine's `max-body-size` only
   * applies to uncompressed bodies (a gzip body bypasses it, and the client gzips bodies above
   * 1000 bytes): by the engine on uncompressed bodies (`{"error":"Request Entity Too Large"}`), and by
   * nginx on the body as sent, compressed or not (same JSON answer). 0 = unlimited.
   */
  maxBodyBytes?: number;
  /** Bound on each readiness wait. Default 30 s. */
  startTimeoutMs?: number;
}

/** Which unit InfluxQL returns `time` in. `rfc3339` returns ISO strings. Default `ms`. */
export type InfluxQLEpoch = 'ns' | 'u' | 'ms' | 's' | 'rfc3339';

/** Options for {@link InfluxServer.influxQL}. */
export interface InfluxQLOptions {
  /** Database to run against. Default: the server's bucket. */
  db?: string;
  /** Default `ms`, matching the explicit millisecond timestamps the hub writes. */
  epoch?: InfluxQLEpoch;
}

/** One series of an InfluxQL result, exactly as `/query` returns it. */
export interface InfluxQLSeries {
  name: string;
  /** GROUP BY tags; empty when the query has no GROUP BY. */
  tags: Record<string, string>;
  columns: string[];
  values: unknown[][];
}

/** The series of every statement of a query, in order, plus the same data flattened to rows. */
export interface InfluxQLResult {
  series: InfluxQLSeries[];
  /**
   * One object per value row: the series' GROUP BY tags plus one key per column
   * (e.g. `{ time: 1700000000000, device: 'esp-1', value: 21.5 }`). The measurement name is in `series`.
   */
  rows: Record<string, unknown>[];
}

/** A failed InfluxQL statement (the engine answered `{"error": ...}`) or a non-2xx `/query` reply. */
export class InfluxQLError extends Error {
  readonly code = 'INFLUXQL_ERROR';
  constructor(
    message: string,
    readonly query: string,
    readonly statusCode: number,
  ) {
    super(`${message} (query: ${query})`);
    this.name = 'InfluxQLError';
  }
}

/** A running InfluxDB engine behind the v2-write-compatible nginx. */
export interface InfluxServer {
  /** Base URL for `new InfluxDB({ url, token })` (the nginx in front of the engine). */
  readonly url: string;
  readonly org: string;
  readonly bucket: string;
  readonly token: string;
  /** The engine's own v1 HTTP API, bypassing nginx (rarely needed). */
  readonly engineUrl: string;
  /** Temp dir holding configs, data and logs. */
  readonly dir: string;
  /** Runs InfluxQL through `/query` (POST, so `CREATE`/`DROP` work too). Throws {@link InfluxQLError}. */
  influxQL(query: string, options?: InfluxQLOptions): Promise<InfluxQLResult>;
  /**
   * Stops the engine only (SIGTERM by default; `SIGKILL` to simulate a crash). nginx stays up and
   * answers 502 for writes and queries meanwhile, as a proxy in front of a dead InfluxDB would.
   */
  stopEngine(options?: { signal?: 'SIGTERM' | 'SIGKILL' }): Promise<void>;
  /** Starts the engine again on the same port with the same data; resolves once `/ping` answers. */
  startEngine(): Promise<void>;
  engineRunning(): boolean;
  /** Tails of the engine and nginx logs, for failure messages. */
  logs(): string;
  /** Stops nginx and the engine and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts an InfluxDB 1.x engine plus the nginx that serves `/api/v2/write`, on free loopback ports in
 * a temp dir, and creates the bucket's database. Call `stop()` in `afterAll`.
 */
export function startInflux(options: StartInfluxOptions = {}): Promise<InfluxServer> {
  return startInServerDir('influx', (dir) => startInfluxIn(dir, options));
}

async function startInfluxIn(dir: ServerDir, options: StartInfluxOptions): Promise<InfluxServer> {
  const { bucket = 'telemetry', org = 'esp32hub', token = 'test-token' } = options;
  const maxBodyBytes = options.maxBodyBytes ?? 25_000_000;
  const startTimeoutMs = options.startTimeoutMs ?? 30_000;
  const influxd = findExecutable('influxd');
  const [httpPort, rpcPort, proxyPort] = (await freePorts(3)) as [number, number, number];
  const engineUrl = `http://127.0.0.1:${httpPort}`;
  const configFile = join(dir.path, 'influxdb.conf');
  await writeFile(configFile, influxConfig({ dir: dir.path, httpPort, rpcPort, maxBodyBytes }));

  // INFLUXDB_* variables override the config file; the engine must see only our config.
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('INFLUXDB_')));
  let engine: ServerProcess | undefined;
  const startEngine = async (): Promise<void> => {
    if (engine && !engine.hasExited()) return;
    engine = await dir.start({
      name: 'influxd',
      command: influxd,
      args: ['-config', configFile],
      env,
      ready: () => httpProbe(`${engineUrl}/ping`, [204]),
      timeoutMs: startTimeoutMs,
      what: `GET ${engineUrl}/ping`,
    });
  };

  await startEngine();
  const version = await engineVersion(engineUrl);
  await runQuery(engineUrl, `CREATE DATABASE ${quoteIdent(bucket)}`, {});
  const nginx = await startNginx({
    dir,
    port: proxyPort,
    upstreamPort: httpPort,
    engineVersion: version,
    maxBodyBytes: options.maxBodyBytes ?? 0,
    startTimeoutMs,
  });
  const url = nginx.url;
  const logs = (): string =>
    [`--- influxd ---`, engine?.logTail(30) ?? '', `--- nginx ---`, nginx.logTail(30)].join('\n');

  return {
    url,
    org,
    bucket,
    token,
    engineUrl,
    dir: dir.path,
    influxQL: (query, queryOptions = {}) =>
      runQuery(url, query, { db: queryOptions.db ?? bucket, epoch: queryOptions.epoch ?? 'ms' }),
    async stopEngine(stopOptions = {}) {
      await engine?.stop({ signal: stopOptions.signal ?? 'SIGTERM' });
    },
    startEngine,
    engineRunning: () => engine !== undefined && !engine.hasExited(),
    logs,
    stop: dir.stop,
  };
}

function influxConfig(o: { dir: string; httpPort: number; rpcPort: number; maxBodyBytes: number }): string {
  // Every listener is on loopback and a free port: `bind-address` at the top is the backup/restore
  // RPC service (default 127.0.0.1:8088), which would collide between parallel test runs.
  // Debian's build spells the usage-report switch `reporting-enabled`; upstream builds use
  // `reporting-disabled`. Unknown keys are ignored, so both are set.
  return `reporting-enabled = false
reporting-disabled = true
bind-address = "127.0.0.1:${o.rpcPort}"

[meta]
  dir = ${tomlString(join(o.dir, 'meta'))}
  retention-autocreate = true
  logging-enabled = true

[data]
  dir = ${tomlString(join(o.dir, 'data'))}
  wal-dir = ${tomlString(join(o.dir, 'wal'))}
  query-log-enabled = false

[monitor]
  # No _internal database: less background writing on a 2-core machine.
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:${o.httpPort}"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false
  max-body-size = ${o.maxBodyBytes}

[ifql]
  enabled = false

[logging]
  level = "info"
  suppress-logo = true

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false
`;
}

async function engineVersion(engineUrl: string): Promise<string> {
  const response = await fetch(`${engineUrl}/ping`, { signal: AbortSignal.timeout(5_000) });
  await response.body?.cancel();
  return response.headers.get('x-influxdb-version') ?? 'unknown';
}

async function runQuery(
  baseUrl: string,
  query: string,
  options: { db?: string; epoch?: InfluxQLEpoch },
): Promise<InfluxQLResult> {
  const form = new URLSearchParams({ q: query });
  if (options.db !== undefined) form.set('db', options.db);
  if (options.epoch !== undefined && options.epoch !== 'rfc3339') form.set('epoch', options.epoch);
  const response = await fetch(`${baseUrl}/query`, {
    method: 'POST',
    body: form,
    signal: AbortSignal.timeout(30_000),
  });
  const text = await response.text();
  if (!response.ok) {
    throw new InfluxQLError(`HTTP ${response.status}: ${text.trim()}`, query, response.status);
  }
  const body = JSON.parse(text) as QueryResponse;
  if (body.error) throw new InfluxQLError(body.error, query, response.status);
  const series: InfluxQLSeries[] = [];
  for (const result of body.results ?? []) {
    if (result.error) throw new InfluxQLError(result.error, query, response.status);
    for (const s of result.series ?? []) {
      series.push({ name: s.name ?? '', tags: s.tags ?? {}, columns: s.columns ?? [], values: s.values ?? [] });
    }
  }
  const rows = series.flatMap((s) =>
    s.values.map((values) => {
      const row: Record<string, unknown> = { ...s.tags };
      s.columns.forEach((column, i) => {
        row[column] = values[i];
      });
      return row;
    }),
  );
  return { series, rows };
}

interface QueryResponse {
  error?: string;
  results?: Array<{
    error?: string;
    series?: Array<{ name?: string; tags?: Record<string, string>; columns?: string[]; values?: unknown[][] }>;
  }>;
}

/** The hub's InfluxDB settings (`INFLUX_URL`, `_TOKEN`, `_ORG`, `_BUCKET`) for a harness InfluxDB. */
export function influxEnv(influx: Pick<InfluxServer, 'url' | 'token' | 'org' | 'bucket'>): Record<string, string> {
  return { INFLUX_URL: influx.url, INFLUX_TOKEN: influx.token, INFLUX_ORG: influx.org, INFLUX_BUCKET: influx.bucket };
}

/** Quotes an InfluxQL identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
}

function tomlString(value: string): string {
  return JSON.stringify(value);
}
