/**
 * A hub instance of a cluster in this process (server/cluster/): its own temp data dir, the shared
 * PostgreSQL and broker, and INFLUX_URL (required in cluster mode) pointing at a closed port unless a
 * real one is given (the forwarder then keeps retrying). For tests of the cluster parts that need two
 * instances but not processes (test/harness/cluster.ts runs real processes behind a balancer).
 */
import { createServer } from 'node:net';
import { configFrom, type EnvName } from '../../server/config/index.ts';
import { buildHub, type Hub, type HubDeps } from '../../server/hub.ts';
import { liveExtension } from '../../server/live/index.ts';
import { createLogger } from '../../server/log/index.ts';
import { type TempDir, tempDir } from '../harness/index.ts';
import { metricFromText } from './ingest-device-client.ts';

/** A loopback port with nothing listening on it. */
export function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export interface InProcessInstance {
  id: string;
  hub: Hub;
  port: number;
  dir: TempDir;
  http: string;
  deviceUrl: string;
  /** Sums a metric of this instance's `/metrics` over the samples whose labels include `labels`. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
}

export interface InProcessOptions {
  /** CLUSTER_DATABASE_URL. */
  database: string;
  /** MQTT_URL. */
  broker: string;
  /** INFLUX_URL; default a closed port. */
  influx?: string;
  /** More settings (they win). */
  env?: Partial<Record<EnvName, string>>;
  /** With the live extension (the page, /v1/live; dashboard operators may send commands). */
  live?: boolean;
  /** More `buildHub` deps. */
  deps?: HubDeps;
}

/**
 * Starts instance `id` (HUB_INSTANCE_ID) with the admin token `adminToken` (null: none, so the
 * dashboard in open mode is an operator on loopback).
 */
export async function startInProcessInstance(
  id: string,
  adminToken: string | null,
  opts: InProcessOptions,
): Promise<InProcessInstance> {
  const dir = await tempDir(`cluster-${id}`);
  const config = configFrom({
    HUB_HOST: '127.0.0.1',
    HUB_PORT: '0',
    HUB_DATA_DIR: dir.path,
    HUB_LOG_LEVEL: process.env.TEST_HUB_LOG_LEVEL ?? 'silent',
    ...(adminToken !== null ? { HUB_ADMIN_TOKEN: adminToken } : {}),
    HUB_INSTANCE_ID: id,
    CLUSTER_DATABASE_URL: opts.database,
    MQTT_URL: opts.broker,
    INFLUX_URL: opts.influx ?? `http://127.0.0.1:${await closedPort()}`,
    INFLUX_TOKEN: 'unused',
    INFLUX_ORG: 'unused',
    INFLUX_BUCKET: 'unused',
    ...opts.env,
  });
  const live = opts.live ? liveExtension(config) : null;
  const hub = buildHub(config, {
    logger: createLogger(config.log.level),
    mqttRetryMs: { min: 100, max: 1000 },
    ...(live ? { extensions: [live], authorizeCommands: live.authorizeCommands, readAccess: live.readAccess } : {}),
    ...opts.deps,
  });
  const { port } = await hub.start();
  const http = `http://127.0.0.1:${port}`;
  return {
    id,
    hub,
    port,
    dir,
    http,
    deviceUrl: `ws://127.0.0.1:${port}/v1/device`,
    async metric(name, labels = {}) {
      return metricFromText(await (await fetch(`${http}/metrics`)).text(), name, labels);
    },
  };
}

/** Ends the test devices' sockets, stops the instances, then the shared servers, and removes the data dirs. */
export async function stopInProcessCluster(
  devices: readonly { ws: { terminate(): void } }[],
  instances: readonly (InProcessInstance | undefined)[],
  servers: readonly ({ stop(): Promise<void> } | undefined)[],
): Promise<void> {
  for (const d of devices) d.ws.terminate();
  for (const i of instances) await i?.hub.stop();
  await Promise.all([...servers.map((s) => s?.stop()), ...instances.map((i) => i?.dir.remove())]);
}
