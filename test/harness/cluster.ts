/**
 * Several hub instances serving one fleet, all real, for the integration tests of issue 17
 * (docs/scaling.md, "Running several instances"):
 *
 *   PostgreSQL (shared state)  ─┐
 *   Mosquitto (dynsec; the bus) ├─ hub `a` ─┐
 *   InfluxDB 1.x behind nginx  ─┤           ├─ HAProxy (devices, admin API, dashboards)
 *                               └─ hub `b` ─┘
 *
 * Each hub is `server/main.ts` as a real process (scripts/chaos/hub-process.ts: what `npm start`
 * runs, configured through the environment only, ENV_FILE=/dev/null) with its own data dir and
 * port, HUB_INSTANCE_ID, CLUSTER_DATABASE_URL, MQTT_URL (the broker's dynamic security on, device
 * logins managed by the hubs) and the shared InfluxDB. An instance can be killed with SIGKILL and
 * started again on the same port with the same data dir.
 *
 * `clusterDatabase: false` runs the same processes without CLUSTER_DATABASE_URL: independent hubs
 * behind one balancer (what the must-show tests look like without the cluster parts).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { type HubProcess, newAdminToken, startHubProcess } from '../../scripts/chaos/hub-process.ts';
import { type HaproxyServer, startHaproxy } from './haproxy.ts';
import { type InfluxServer, startInflux } from './influx.ts';
import { type MosquittoServer, startMosquitto } from './mosquitto.ts';
import { freePorts } from './ports.ts';
import { type PostgresServer, startPostgres } from './postgres.ts';
import { type TempDir, tempDir } from './temp.ts';

/** Options for {@link startCluster}. */
export interface StartClusterOptions {
  /** Instance ids (HUB_INSTANCE_ID), one hub each. Default `['a', 'b']`. */
  instances?: readonly string[];
  /** Settings for every hub (they win over the rig's). */
  env?: Record<string, string>;
  /** Settings for one hub, by instance id (they win over `env`). */
  envFor?: Record<string, Record<string, string>>;
  /** false: no PostgreSQL, no CLUSTER_DATABASE_URL (independent hubs). Default true. */
  clusterDatabase?: boolean;
  /** InfluxDB bucket. Default `cluster`. */
  bucket?: string;
}

/** A response of the admin API (or any JSON route). */
export interface ApiResponse {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: JSON bodies of many routes
  body: any;
}

/** One hub process of the cluster. */
export interface ClusterInstance {
  /** HUB_INSTANCE_ID. */
  readonly id: string;
  readonly port: number;
  /** `http://127.0.0.1:<port>`: this instance directly, bypassing the balancer. */
  readonly baseUrl: string;
  /** `ws://127.0.0.1:<port>/v1/device`. */
  readonly deviceUrl: string;
  /** `ws://127.0.0.1:<port>/v1/live`. */
  readonly liveUrl: string;
  readonly dataDir: string;
  /** The process is running (not killed or stopped). */
  alive(): boolean;
  /** `/readyz`: status and parsed body; null when the instance does not answer. */
  readyz(): Promise<ApiResponse | null>;
  /** `/readyz`'s `deviceSessions`: device sessions this instance holds (0 when it does not answer). */
  deviceSessions(): Promise<number>;
  /** Sum of a metric's samples whose labels include `labels` (`/metrics`). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  metricsText(): Promise<string>;
  /** A JSON request to this instance with the admin token (or `token`); never throws on a status. */
  api(method: string, path: string, body?: unknown, options?: { token?: string | null }): Promise<ApiResponse>;
  /** kill -9 of the process (its group), awaited. */
  kill(): Promise<void>;
  /** SIGTERM: a graceful stop. */
  stop(): Promise<void>;
  /** Starts it again, same port, same data dir, same settings; waits for `/readyz` 200. */
  restart(): Promise<void>;
  /** Tail of its current log. */
  logs(maxLines?: number): string;
}

/** The running rig. */
export interface Cluster {
  readonly instances: readonly ClusterInstance[];
  /** The first and second instance (`a`, `b` by default). */
  readonly a: ClusterInstance;
  readonly b: ClusterInstance;
  readonly lb: HaproxyServer;
  readonly influx: InfluxServer;
  readonly broker: MosquittoServer;
  /** Null with `clusterDatabase: false`. */
  readonly postgres: PostgresServer | null;
  readonly adminToken: string;
  /** The hubs' broker login (the dynamic-security admin): it may read every topic. */
  readonly brokerLogin: { username: string; password: string };
  instance(id: string): ClusterInstance;
  /**
   * Registers devices through `via`'s admin API (default the first instance) and, unless `waitShared`
   * is false, waits until every running instance knows each of them ({@link Cluster.waitKnown}): the
   * registry is shared. Returns id → token.
   */
  registerDevices(
    ids: readonly string[],
    options?: { via?: ClusterInstance; waitShared?: boolean },
  ): Promise<Map<string, string>>;
  /** Waits until every running instance knows each device (`GET /api/admin/devices/:id` 200). */
  waitKnown(ids: readonly string[], options?: { timeoutMs?: number; registeredOn?: string }): Promise<void>;
  /** Device sessions per instance id (`/readyz`; 0 for an instance that does not answer). */
  sessions(): Promise<Record<string, number>>;
  /** Every `telemetry` point of devices whose id starts with `devicePrefix`. */
  telemetryPoints(devicePrefix: string): Promise<TelemetryPoint[]>;
  /**
   * Waits until the broker's retained member records (`esp32hub/cluster/v1/members/+`, what every
   * instance announces and its last will clears) name exactly `ids` (default: the running
   * instances): every instance then sees the same members, and MQTT device ownership is settled.
   */
  waitMembers(ids?: readonly string[], timeoutMs?: number): Promise<void>;
  /** Waits until every running instance has forwarded its whole local log to InfluxDB. */
  forwarded(timeoutMs?: number): Promise<void>;
  /** Tails of every process's log, for failure messages. */
  logs(maxLines?: number): string;
  /** Stops everything and removes the temp dirs. Idempotent. */
  stop(): Promise<void>;
}

/** One point of the `telemetry` measurement. */
export interface TelemetryPoint {
  device: string;
  channel: string;
  timeMs: number;
  value: number | boolean;
}

const HUB_USER = 'hub';
const HUB_PASSWORD = 'cluster-hub-broker-password';

/** Starts PostgreSQL, Mosquitto, InfluxDB, the hubs and HAProxy; resolves once the balancer sees every hub up. */
export async function startCluster(options: StartClusterOptions = {}): Promise<Cluster> {
  const ids = options.instances ?? ['a', 'b'];
  if (ids.length < 2) throw new Error('startCluster: at least two instances');
  const clusterDatabase = options.clusterDatabase ?? true;
  const adminToken = newAdminToken();
  const dir = await tempDir('cluster');
  const started: { stop(): Promise<void> }[] = [];
  const stopStarted = async () => {
    for (const s of started.reverse()) await s.stop().catch(() => undefined);
    await dir.remove();
  };

  try {
    const [postgres, broker, influx] = await Promise.all([
      clusterDatabase ? startPostgres({ database: 'esp32hub' }) : Promise.resolve(null),
      startMosquitto({ dynsec: { adminUser: HUB_USER, adminPassword: HUB_PASSWORD } }),
      startInflux({ bucket: options.bucket ?? 'cluster' }),
    ]);
    if (postgres) started.push(postgres);
    started.push(broker, influx);

    const ports = await freePorts(ids.length);
    const instances = await Promise.all(
      ids.map(async (id, i) => {
        const env: Record<string, string> = {
          HUB_INSTANCE_ID: id,
          MQTT_URL: broker.url,
          MQTT_USERNAME: HUB_USER,
          MQTT_PASSWORD: HUB_PASSWORD,
          MQTT_DEVICE_ACCESS: 'dynsec',
          ACK_DURABILITY: 'local',
          INFLUX_FLUSH_INTERVAL_MS: '100',
          INFLUX_MAX_RETRY_DELAY_MS: '1000',
          // Empty = unset: a CLUSTER_DATABASE_URL of the caller's environment must not reach independent hubs.
          CLUSTER_DATABASE_URL: postgres ? postgres.url : '',
          ...options.env,
          ...options.envFor?.[id],
        };
        const instance = await startInstance(id, ports[i] as number, dir, { adminToken, influx, env });
        started.push(instance);
        return instance;
      }),
    );

    const lb = await startHaproxy({ backends: instances.map((x) => ({ name: x.id, address: `127.0.0.1:${x.port}` })) });
    started.push(lb);
    await lb.waitForServers('UP');

    const byId = new Map(instances.map((x) => [x.id, x]));
    const cluster: Cluster = {
      instances,
      a: instances[0] as ClusterInstance,
      b: instances[1] as ClusterInstance,
      lb,
      influx,
      broker,
      postgres,
      adminToken,
      brokerLogin: { username: HUB_USER, password: HUB_PASSWORD },
      instance(id) {
        const x = byId.get(id);
        if (!x) throw new Error(`no instance ${id}`);
        return x;
      },
      async registerDevices(deviceIds, registerOptions = {}) {
        const via = registerOptions.via ?? cluster.a;
        const tokens = new Map<string, string>();
        for (const id of deviceIds) {
          const res = await via.api('POST', '/api/admin/devices', { id });
          if (res.status !== 201)
            throw new Error(`registering ${id} on ${via.id}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
          tokens.set(id, res.body.token as string);
        }
        if (registerOptions.waitShared ?? true) await cluster.waitKnown(deviceIds, { registeredOn: via.id });
        return tokens;
      },
      async waitKnown(deviceIds, knownOptions = {}) {
        const timeoutMs = knownOptions.timeoutMs ?? 30_000;
        const deadline = Date.now() + timeoutMs;
        const where = knownOptions.registeredOn ? `, registered on instance ${knownOptions.registeredOn},` : '';
        for (const x of instances.filter((i) => i.alive())) {
          for (const id of deviceIds) {
            for (;;) {
              const res = await x.api('GET', `/api/admin/devices/${id}`);
              if (res.status === 200) break;
              if (Date.now() > deadline) {
                throw new Error(
                  `device ${id}${where} is unknown to instance ${x.id} after ${timeoutMs} ms ` +
                    `(GET /api/admin/devices/${id}: HTTP ${res.status}): the registry is not shared`,
                );
              }
              await sleep(50);
            }
          }
        }
      },
      async sessions() {
        const out: Record<string, number> = {};
        for (const x of instances) out[x.id] = await x.deviceSessions();
        return out;
      },
      async telemetryPoints(devicePrefix) {
        const r = await influx.influxQL(`SELECT * FROM telemetry WHERE device =~ /^${devicePrefix}/`);
        return r.rows.map((row) => ({
          device: row.device as string,
          channel: row.channel as string,
          timeMs: row.time as number,
          value: (row.state ?? row.value) as number | boolean,
        }));
      },
      async waitMembers(wanted, timeoutMs = 60_000) {
        const want = [...(wanted ?? instances.filter((x) => x.alive()).map((x) => x.id))].sort();
        const client = await mqtt.connectAsync(broker.url, {
          username: HUB_USER,
          password: HUB_PASSWORD,
          clientId: `cluster-harness-${process.pid}-${Date.now()}`,
          reconnectPeriod: 0,
        });
        const members = new Set<string>();
        client.on('message', (topic, payload) => {
          const id = topic.split('/').at(-1) as string;
          if (payload.length > 0) members.add(id);
          else members.delete(id);
        });
        try {
          await client.subscribeAsync('esp32hub/cluster/v1/members/+', { qos: 1 });
          const deadline = Date.now() + timeoutMs;
          for (;;) {
            const got = [...members].sort();
            if (got.join(',') === want.join(',')) return;
            if (Date.now() > deadline) {
              throw new Error(
                `cluster members on the broker: [${got.join(', ')}], wanted [${want.join(', ')}] within ${timeoutMs} ms`,
              );
            }
            await sleep(50);
          }
        } finally {
          await client.endAsync();
        }
      },
      async forwarded(timeoutMs = 120_000) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const left: string[] = [];
          for (const x of instances.filter((i) => i.alive())) {
            const n = await x.metric('hub_local_log_unforwarded_frames').catch(() => Number.NaN);
            if (n !== 0) left.push(`${x.id}: ${n}`);
          }
          if (left.length === 0) return;
          if (Date.now() > deadline)
            throw new Error(`local logs not forwarded to InfluxDB (unforwarded frames ${left.join(', ')})`);
          await sleep(100);
        }
      },
      logs(maxLines = 30) {
        return [
          ...instances.map((x) => `--- hub ${x.id} ---\n${x.logs(maxLines)}`),
          `--- haproxy ---\n${lb.logs(maxLines)}`,
          `--- mosquitto ---\n${broker.logs(maxLines)}`,
          ...(postgres ? [`--- postgres ---\n${postgres.logs(maxLines)}`] : []),
        ].join('\n');
      },
      stop: (() => {
        let stopping: Promise<void> | undefined;
        return () => {
          stopping ??= stopStarted();
          return stopping;
        };
      })(),
    };
    return cluster;
  } catch (err) {
    await stopStarted();
    throw err;
  }
}

interface InstanceSettings {
  adminToken: string;
  influx: InfluxServer;
  env: Record<string, string>;
}

async function startInstance(
  id: string,
  port: number,
  dir: TempDir,
  s: InstanceSettings,
): Promise<ClusterInstance & { stop(): Promise<void> }> {
  const dataDir = join(dir.path, `hub-${id}`);
  const logDir = join(dir.path, `logs-${id}`);
  await mkdir(dataDir, { recursive: true });
  await mkdir(logDir, { recursive: true });
  const baseUrl = `http://127.0.0.1:${port}`;
  const launch = (): HubProcess =>
    startHubProcess({ dataDir, port, influx: s.influx, adminToken: s.adminToken, logDir, env: s.env });
  let proc = launch();
  await proc.ready();

  const api: ClusterInstance['api'] = async (method, path, body, options = {}) => {
    const token = options.token === undefined ? s.adminToken : options.token;
    const headers: Record<string, string> = {};
    if (token !== null) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(`${baseUrl}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text === '' ? null : JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    return { status: res.status, body: parsed };
  };
  const readyz = async (): Promise<ApiResponse | null> => {
    const r = await proc.readyz();
    if (!r) return null;
    try {
      return { status: r.status, body: JSON.parse(r.body) };
    } catch {
      return { status: r.status, body: r.body };
    }
  };
  return {
    id,
    port,
    baseUrl,
    deviceUrl: `ws://127.0.0.1:${port}/v1/device`,
    liveUrl: `ws://127.0.0.1:${port}/v1/live`,
    dataDir,
    alive: () => proc.alive(),
    readyz,
    async deviceSessions() {
      if (!proc.alive()) return 0;
      const r = await readyz();
      return Number(r?.body?.deviceSessions ?? 0);
    },
    metric: (name, labels) => proc.metric(name, labels),
    metricsText: () => proc.metricsText(),
    api,
    kill: () => proc.stop('SIGKILL'),
    stop: () => proc.stop('SIGTERM'),
    async restart() {
      if (proc.alive()) throw new Error(`instance ${id} is still running`);
      proc = launch();
      await proc.ready();
    },
    logs: (n = 40) => proc.proc.logTail(n),
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
