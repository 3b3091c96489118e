/**
 * Hub instances of a cluster in this process (server/cluster/), for tests of the cluster parts that
 * need two instances but not processes (test/harness/cluster.ts runs real processes behind a balancer):
 *
 * - {@link startInProcessServers}: the real Mosquitto and PostgreSQL the instances share;
 * - {@link startInProcessInstance}: one instance with its own temp data dir, and INFLUX_URL (required in
 *   cluster mode) pointing at a closed port unless a real one is given (the forwarder then keeps retrying);
 * - {@link registerFleet}: devices in the shared registry, known to every instance, and the test devices
 *   connected for them;
 * - {@link stopInProcessCluster}: everything stopped and removed.
 */
import { createServer } from 'node:net';
import { decodeFrame, type Telemetry } from '../../server/codec/index.ts';
import { configFrom, type EnvName } from '../../server/config/index.ts';
import type { AcceptedFrame } from '../../server/events.ts';
import { buildHub, type Hub, type HubDeps } from '../../server/hub.ts';
import { liveExtension } from '../../server/live/index.ts';
import { createLogger } from '../../server/log/index.ts';
import type { AcceptedTelemetry } from '../../server/pipeline/ingest.ts';
import {
  type MosquittoServer,
  type PostgresServer,
  startMosquitto,
  startPostgres,
  type TempDir,
  tempDir,
  until,
} from '../harness/index.ts';
import { metricFromText, TestDevice } from './ingest-device-client.ts';

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
  /** Device sessions this instance holds. */
  sessions(): number;
  /**
   * The frames of `deviceId` this instance accepted (`boot/seq` → the time offset in ms its samples
   * were stored with); a live map. Needs the option `recordAccepted`.
   */
  accepted(deviceId: string): Map<string, number>;
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
  /** Record the frames the instance accepts, for {@link InProcessInstance.accepted}. */
  recordAccepted?: boolean;
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
  const accepted = opts.recordAccepted ? recordAcceptedFrames(hub) : null;
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
    sessions: () => hub.context().sessions.size(),
    accepted(deviceId) {
      if (!accepted) throw new Error(`instance ${id}: start it with recordAccepted to read its accepted frames`);
      return framesOf(accepted, deviceId);
    },
  };
}

/** Device → `boot/seq` → time offset (ms) of every frame `hub` accepts from now on. */
function recordAcceptedFrames(hub: Hub): Map<string, Map<string, number>> {
  const frames = new Map<string, Map<string, number>>();
  hub.bus.on('readings:accepted', (deviceId: string, a: AcceptedFrame) => {
    const t = decodeFrame((a as AcceptedTelemetry).frame) as Telemetry;
    framesOf(frames, deviceId).set(`${t.bootId}/${t.seq}`, (a as AcceptedTelemetry).timeOffsetMs);
  });
  return frames;
}

function framesOf(frames: Map<string, Map<string, number>>, deviceId: string): Map<string, number> {
  let m = frames.get(deviceId);
  if (!m) {
    m = new Map();
    frames.set(deviceId, m);
  }
  return m;
}

/** The servers in-process instances share: a real Mosquitto (the bus) and a real PostgreSQL (the state). */
export interface InProcessServers {
  readonly broker: MosquittoServer;
  readonly pg: PostgresServer;
  /** The part of {@link InProcessOptions} that names them. */
  readonly shared: { broker: string; database: string };
  /** Stops both. */
  stop(): Promise<void>;
}

export async function startInProcessServers(): Promise<InProcessServers> {
  const [broker, pg] = await Promise.all([startMosquitto(), startPostgres()]);
  return {
    broker,
    pg,
    shared: { broker: broker.url, database: pg.url },
    stop: async () => {
      await Promise.all([broker.stop(), pg.stop()]);
    },
  };
}

/** Devices in the shared registry, and the test devices connected for them. */
export interface InProcessFleet {
  /** id → device token. */
  readonly tokens: ReadonlyMap<string, string>;
  /** Connects a test device with `deviceId`'s token to instance `i` (no HELLO yet). */
  connect(i: InProcessInstance, deviceId: string): Promise<TestDevice>;
  /** Every test device connected so far, for {@link stopInProcessCluster}. */
  readonly connected: readonly TestDevice[];
}

/**
 * Registers `ids` through the first instance's registry (the shared one) and waits until every other
 * instance knows each of them.
 */
export async function registerFleet(
  instances: readonly InProcessInstance[],
  ids: readonly string[],
): Promise<InProcessFleet> {
  const [first, ...others] = instances;
  const registry = first?.hub.context().registry;
  if (!registry) throw new Error('no registry');
  const tokens = new Map<string, string>();
  for (const id of ids) tokens.set(id, (await registry.add(id)).token);
  for (const i of others) {
    await until(`${i.id} knows the devices`, () => ids.every((id) => i.hub.context().registry?.get(id) !== undefined));
  }
  const connected: TestDevice[] = [];
  return {
    tokens,
    async connect(i, deviceId) {
      const token = tokens.get(deviceId);
      if (token === undefined) throw new Error(`${deviceId} is not in the fleet`);
      const d = await TestDevice.connect(i.deviceUrl, { token });
      connected.push(d);
      return d;
    },
    connected,
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
