/**
 * The hub as a real process for the chaos runs: `node --import tsx server/main.ts` (what `npm start`
 * runs), configured through the environment only, on a loopback port and a data directory of the
 * run's choosing, started through the test harness (own process group, parent-death signal, log file).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import {
  type InfluxServer,
  influxEnv,
  type ServerProcess,
  startProcess,
  waitForReady,
} from '../../test/harness/index.ts';
import { metricFromText } from '../../test/integration/ingest-device-client.ts';

const ROOT = join(import.meta.dirname, '..', '..');

export interface HubProcessOptions {
  dataDir: string;
  port: number;
  /** Forward to this InfluxDB; embedded store when absent. */
  influx?: Pick<InfluxServer, 'url' | 'token' | 'org' | 'bucket'>;
  adminToken: string;
  /** Directory of the hub's log files (one per start). */
  logDir: string;
  /** More environment variables (they win). */
  env?: Record<string, string>;
  /** Bound on the wait for `/readyz`. Default 60 s. */
  readyTimeoutMs?: number;
}

export interface HubProcess {
  readonly proc: ServerProcess;
  readonly baseUrl: string;
  readonly wsUrl: string;
  /** Waits for `/readyz` to answer 200. */
  ready(): Promise<void>;
  /** `/metrics` as text. */
  metricsText(): Promise<string>;
  /** Sum of a metric's samples whose labels include `labels`. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  /** `/readyz`: status and body (null when the hub does not answer). */
  readyz(): Promise<{ status: number; body: string } | null>;
  alive(): boolean;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function newAdminToken(): string {
  return randomBytes(24).toString('hex');
}

let starts = 0;

/** Starts the hub; call `ready()` to wait for it. */
export function startHubProcess(o: HubProcessOptions): HubProcess {
  const baseUrl = `http://127.0.0.1:${o.port}`;
  const env: NodeJS.ProcessEnv = {
    ...withoutHubEnv(process.env),
    ENV_FILE: '/dev/null', // the run's settings only, not the .env of the checkout
    HUB_HOST: '127.0.0.1',
    HUB_PORT: String(o.port),
    HUB_DATA_DIR: o.dataDir,
    HUB_LOG_LEVEL: 'info',
    HUB_ADMIN_TOKEN: o.adminToken,
    ...(o.influx ? { ...influxEnv(o.influx), INFLUX_STATS_INTERVAL_MS: '0' } : {}),
    ...o.env,
  };
  const proc = startProcess({
    name: 'hub',
    command: process.execPath,
    args: ['--import', 'tsx', 'server/main.ts'],
    cwd: ROOT,
    logFile: join(o.logDir, `hub-${++starts}.log`),
    env,
  });
  const readyz = async () => {
    try {
      const res = await fetch(`${baseUrl}/readyz`, { signal: AbortSignal.timeout(5_000) });
      return { status: res.status, body: await res.text() };
    } catch {
      return null;
    }
  };
  const metricsText = async () => {
    const res = await fetch(`${baseUrl}/metrics`, { signal: AbortSignal.timeout(10_000) });
    return res.text();
  };
  return {
    proc,
    baseUrl,
    wsUrl: `ws://127.0.0.1:${o.port}/v1/device`,
    ready: () =>
      waitForReady(proc, async () => (await readyz())?.status === 200, {
        timeoutMs: o.readyTimeoutMs ?? 60_000,
        what: 'GET /readyz',
      }),
    metricsText,
    metric: async (name, labels = {}) => metricFromText(await metricsText(), name, labels),
    readyz,
    alive: () => !proc.hasExited(),
    stop: (signal = 'SIGTERM') => proc.stop({ signal }),
  };
}

/** The caller's HUB_*, INFLUX_*, LOG_*, DEVICE_* settings must not leak into the run. */
function withoutHubEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(env).filter(([k]) => !/^(HUB|INFLUX|LOG|DEVICE|LIVE|MQTT)_/.test(k)),
  ) as NodeJS.ProcessEnv;
}

/** Registers devices through the admin API (`POST /api/admin/devices`); returns their tokens. */
export async function registerDevices(
  baseUrl: string,
  adminToken: string,
  ids: readonly string[],
): Promise<{ id: string; token: string }[]> {
  const out: { id: string; token: string }[] = [];
  for (const id of ids) {
    const res = await fetch(`${baseUrl}/api/admin/devices`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${adminToken}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ id }),
    });
    const text = await res.text();
    if (res.status !== 201) throw new Error(`registering ${id}: HTTP ${res.status} ${text}`);
    out.push({ id, token: (JSON.parse(text) as { token: string }).token });
  }
  return out;
}
