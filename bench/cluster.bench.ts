/**
 * What one hub instance costs in cluster mode (several instances serving one fleet, docs/scaling.md):
 * the per-instance inputs of the sizing plan ("Sizing: 100 k devices"), each against the same hub
 * without the cluster, measured in the same run on the same machine.
 *
 * Real parts: the test harness's PostgreSQL (pg_stat_statements switched on for the run), Mosquitto
 * and InfluxDB (1.x behind nginx); every hub is `server/main.ts` as a process (MQTT_URL and INFLUX_URL
 * set in both modes, so the only difference is CLUSTER_DATABASE_URL). Each cluster hub gets a fresh
 * database, which imports the run's `devices.json` (the registry's first start).
 *
 * 1. Session setup: N WebSocket devices (a child process, this file with `devices`) connect, 200 at a
 *    time, HELLO → WELCOME: first contact, then all close and reconnect (same boot: the storm after an
 *    instance is lost). Between the two a paced trickle (each device one frame a second, every frame
 *    ACKed) gives PostgreSQL's cost per frame in the regime of a large fleet (one frame per device per
 *    write-behind window) and the hub's CPU per frame.
 * 2. Sustained ingest into InfluxDB (influx-e2e's `measureHub`: paced search, every frame ACKed and in
 *    InfluxDB within 2 s, COUNT checked): the hub without the cluster, in cluster mode with a second
 *    instance `b` idle, and with a live client on `b` (so `a` relays every accepted frame over the
 *    broker); a subscriber on the broker counts the relay's messages and bytes.
 * 3. MQTT uplink fan-in: every instance reads the whole uplink and drops what it does not own
 *    (`hub_mqtt_messages_total{outcome="not_owner"}`); frames of devices owned by `b` are published at a
 *    fixed rate and `a`'s CPU is read against its idle CPU over as long.
 *
 * Parts the hub does not run yet (membership, relay) are named in the notes and their rows left out.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import pg from 'pg';
import { WebSocket } from 'ws';
import { type HubProcess, newAdminToken, startHubProcess } from '../scripts/chaos/hub-process.ts';
import { hrwMembers, hrwOwner } from '../server/cluster/ownership.ts';
import {
  type ChannelDescriptor,
  decodeFrame,
  descriptorHash,
  encodeFrame,
  SUBPROTOCOL,
  ValueType,
} from '../server/codec/index.ts';
import { createLogger } from '../server/log/index.ts';
import { openDeviceRegistry } from '../server/registry/index.ts';
import {
  type InfluxServer,
  type MosquittoServer,
  type PostgresServer,
  startInflux,
  startMosquitto,
  startPostgres,
} from '../test/harness/index.ts';
import { CPU_RATE, type HubRun, measureHub, READINGS_PER_FRAME } from './influx-e2e.bench.ts';
import type { BenchOptions, BenchReport, BenchRow } from './run.ts';
import { benchHello, freePort, nextMessage, paced, procStat, sleep } from './workers.ts';

export const name = 'cluster';

const THIS_FILE = fileURLToPath(import.meta.url);
const MQTT_BENCH = fileURLToPath(new URL('./mqtt.bench.ts', import.meta.url));
/** Devices of the ingest runs (as ack-durability.bench.ts). */
const INGEST_DEVICES = 100;
/** WebSocket handshakes in flight at once in the session-setup rounds. */
const CONCURRENCY = 200;
const TOPIC_PREFIX = 'esp32hub';
/** One frame: 8 f32 channels × 1 sample (the sizing profile's frame of 8 readings). */
const CHANNELS: ChannelDescriptor[] = Array.from({ length: 8 }, (_, index) => ({
  index,
  key: `r${index}`,
  unit: 'x',
  valueType: ValueType.F32,
  scaleExp: 0,
  periodMs: 10_000,
}));
const HASH = descriptorHash(CHANNELS);
/** The hubs' process CPU counters (prom-client's default metrics under the hub's prefix). */
const CPU_METRICS = ['hub_process_process_cpu_user_seconds_total', 'hub_process_process_cpu_system_seconds_total'];

// ───────────────────────── messages to and from the device worker ─────────────────────────

interface DeviceCred {
  id: string;
  token: string;
}
type ToDevices =
  | { type: 'connect'; url: string; devices: DeviceCred[]; concurrency: number }
  | { type: 'trickle'; rate: number; seconds: number }
  | { type: 'close' }
  | { type: 'exit' };
interface Connected {
  type: 'connected';
  ok: number;
  failed: number;
  ms: number;
  helloP50Ms: number;
  helloP99Ms: number;
  errors: string[];
}
interface Trickled {
  type: 'trickled';
  sent: number;
  acked: number;
  seconds: number;
}
type FromDevices = Connected | Trickled | { type: 'closed' };

// ───────────────────────── orchestration ─────────────────────────

interface Rig {
  dir: string;
  pg: PostgresServer;
  admin: pg.Client;
  statements: boolean;
  broker: MosquittoServer;
  influx: InfluxServer;
  children: ChildProcess[];
  hubs: HubProcess[];
  adminToken: string;
  databases: number;
}

export async function run(options: BenchOptions = { quick: false }): Promise<BenchReport> {
  const quick = options.quick;
  const dir = mkdtempSync(join(tmpdir(), 'esp32hub-bench-cluster-'));
  const rig: Partial<Rig> & { children: ChildProcess[]; hubs: HubProcess[] } = { dir, children: [], hubs: [] };
  const rows: BenchRow[] = [];
  const notes: string[] = [];
  try {
    rig.pg = await startPostgres({ database: 'esp32hub' }).catch((err: Error) => {
      throw new Error(`the cluster bench needs PostgreSQL (test/harness/postgres.ts): ${err.message}`);
    });
    rig.broker = await startMosquitto({ extraConfig: ['max_inflight_messages 1000', 'max_queued_messages 100000'] });
    rig.influx = await startInflux({ bucket: 'cluster' });
    const { admin, statements } = await statementStats(rig.pg);
    Object.assign(rig, { admin, statements, adminToken: newAdminToken(), databases: 0 });
    const r = rig as Rig;
    if (!statements) notes.push('pg_stat_statements could not be loaded: PostgreSQL rows from pg_stat_database');

    // ── 1. session setup and PostgreSQL per frame ──
    const devices = quick ? 1000 : 3000;
    const creds = await registryFile(join(dir, 'registry'), 'hello', devices);
    const base = await sessionRounds(r, 'baseline', creds, quick, null);
    const clu = await sessionRounds(r, 'cluster', creds, quick, await freshDatabase(r));
    rows.push(
      {
        metric: `HELLO → WELCOME, reconnect of ${devices} devices, cluster mode`,
        value: rate(clu.reconnect),
        unit: 'sessions/s',
        baseline: { label: 'same hub without cluster', value: rate(base.reconnect) },
        note: `${CONCURRENCY} handshakes in flight; ${joinedNote(clu.reconnect)}; HELLO→WELCOME p50/p99 ${fmt(clu.reconnect.helloP50Ms)}/${fmt(clu.reconnect.helloP99Ms)} ms (without: ${fmt(base.reconnect.helloP50Ms)}/${fmt(base.reconnect.helloP99Ms)})`,
      },
      {
        metric: 'HELLOs joined per second in that reconnect (claim + shared state + boot offset)',
        value: clu.reconnect.joined / (clu.reconnect.ms / 1000),
        unit: 'sessions/s',
        note: 'the storm rate an instance sustains with every session claimed in PostgreSQL',
      },
      {
        metric: `HELLO → WELCOME, first contact of ${devices} devices, cluster mode`,
        value: rate(clu.first),
        unit: 'sessions/s',
        baseline: { label: 'same hub without cluster', value: rate(base.first) },
        note: `${joinedNote(clu.first)}; p50/p99 ${fmt(clu.first.helloP50Ms)}/${fmt(clu.first.helloP99Ms)} ms (without: ${fmt(base.first.helloP50Ms)}/${fmt(base.first.helloP99Ms)})`,
      },
      {
        metric: 'PostgreSQL statements per reconnect (HELLO)',
        value: clu.reconnectPg.calls / Math.max(1, clu.reconnect.ok),
        unit: 'statements',
        note: `${fmt(clu.reconnectPg.writeRows / Math.max(1, clu.reconnect.ok), 1)} rows written, ${fmt(clu.reconnectPg.execMs / Math.max(1, clu.reconnect.ok), 2)} ms statement time, ${fmt((clu.reconnectPg.cpuSeconds * 1e6) / Math.max(1, clu.reconnect.ok))} µs PostgreSQL CPU each (the close before it included: release, last write-behind)`,
      },
      {
        metric: `hub CPU per frame, ${devices} devices × 1 frame/s, cluster mode`,
        value: clu.trickleCpuUsPerFrame,
        unit: 'µs',
        baseline: { label: 'same hub without cluster', value: base.trickleCpuUsPerFrame },
        note: `every frame ACKed (${clu.trickle.acked}/${clu.trickle.sent}; without: ${base.trickle.acked}/${base.trickle.sent})`,
      },
      {
        metric: `PostgreSQL statements/s at ${devices} frames/s (${devices} devices × 1/s)`,
        value: clu.tricklePg.calls / clu.trickle.seconds,
        unit: 'statements/s',
        note: `${fmt(clu.tricklePg.calls / Math.max(1, clu.trickle.acked), 3)} per frame; ${fmt(clu.tricklePg.xacts / clu.trickle.seconds)} transactions/s (pg_stat_database)`,
      },
      {
        metric: `PostgreSQL rows written/s at ${devices} frames/s (write-behind)`,
        value: clu.tricklePg.writeRows / clu.trickle.seconds,
        unit: 'rows/s',
        note: `${fmt(clu.tricklePg.writeRows / Math.max(1, clu.trickle.acked), 3)} per frame; ${fmt(clu.tricklePg.execMs / clu.trickle.seconds)} ms of statement time per s; the hub wrote ${clu.trickleWritten} device states behind in the step, ${clu.tricklePending} pending at its end`,
      },
      {
        metric: `PostgreSQL CPU per 1 k frames (${devices} devices × 1/s)`,
        value: (clu.tricklePg.cpuSeconds * 1e6) / Math.max(1, clu.trickle.acked),
        unit: 'ms',
        note: 'postmaster and its backends (/proc), fsync off: CPU, not disk',
      },
    );

    // ── 2. sustained ingest into InfluxDB ──
    const ingestEnv = (clientId: string, databaseUrl: string): Record<string, string> => ({
      MQTT_URL: r.broker.url,
      MQTT_CLIENT_ID: clientId,
      CLUSTER_DATABASE_URL: databaseUrl, // empty: no cluster (and none from the caller's environment)
      HUB_INSTANCE_ID: 'a',
    });
    const plain = await measureHub(r.influx, join(dir, 'ingest-plain'), INGEST_DEVICES, quick, r.children, {
      ...ingestEnv('bench-plain', ''),
    });
    const idle = await withPeer(r, false, async (db, peer) => {
      const pg0 = await pgCounters(r);
      const t0 = performance.now();
      const run = await measureHub(r.influx, join(dir, 'ingest-cluster'), INGEST_DEVICES, quick, r.children, {
        ...ingestEnv('bench-idle', db),
      });
      return { run, pg: diff(await pgCounters(r), pg0), seconds: (performance.now() - t0) / 1000, peer: await peer() };
    });
    const relayed = await withPeer(r, true, async (db, peer) => {
      const counter = await relayCounter(r.broker.url);
      try {
        const run = await measureHub(r.influx, join(dir, 'ingest-relay'), INGEST_DEVICES, quick, r.children, {
          ...ingestEnv('bench-relay', db),
        });
        return { run, relay: counter.totals(), peer: await peer() };
      } finally {
        await counter.close();
      }
    });
    const framesOf = (x: HubRun) => x.checked / READINGS_PER_FRAME;
    const readings = (x: HubRun) => x.best.achieved * READINGS_PER_FRAME;
    rows.push(
      {
        metric: `into InfluxDB, cluster mode, ${INGEST_DEVICES} devices, no remote live client`,
        value: readings(idle.run),
        unit: 'readings/s',
        baseline: { label: 'same hub without cluster', value: readings(plain) },
        note: `${Math.round(idle.run.best.achieved)} vs ${Math.round(plain.best.achieved)} frames/s; instance b up, idle`,
      },
      {
        metric: `into InfluxDB, cluster mode, ${INGEST_DEVICES} devices, live client on b`,
        value: readings(relayed.run),
        unit: 'readings/s',
        baseline: { label: 'same hub without cluster', value: readings(plain) },
        note: `${Math.round(relayed.run.best.achieved)} frames/s, every accepted frame relayed to b`,
      },
      {
        metric: `hub CPU per 1 k frames at ${CPU_RATE / 1000}k frames/s, cluster mode`,
        value: idle.run.cpuMsPer1kFrames,
        unit: 'ms',
        baseline: { label: 'same hub without cluster', value: plain.cpuMsPer1kFrames },
      },
      {
        metric: `hub CPU per 1 k frames at ${CPU_RATE / 1000}k frames/s, relaying to a live client`,
        value: relayed.run.cpuMsPer1kFrames,
        unit: 'ms',
        baseline: { label: 'cluster mode, no remote live client', value: idle.run.cpuMsPer1kFrames },
      },
      {
        metric: `PostgreSQL statements/s during the ingest run (${INGEST_DEVICES} devices)`,
        value: idle.pg.calls / idle.seconds,
        unit: 'statements/s',
        note: `${fmt(idle.pg.writeRows / idle.seconds)} rows written/s; ${fmt((idle.pg.calls * 1000) / framesOf(idle.run), 3)} statements per 1 k frames (${fmt(framesOf(idle.run))} frames in ${fmt(idle.seconds)} s: steps and pauses)`,
      },
    );
    if (relayed.relay.messages > 0) {
      const per1k = 1000 / framesOf(relayed.run);
      rows.push(
        {
          metric: 'relay on the broker per 1 k frames/s (live client on b)',
          value: relayed.relay.bytes * per1k,
          unit: 'B/s',
          note: `${fmt(relayed.relay.bytes / framesOf(relayed.run))} B per frame (payload; ${fmt(relayed.relay.bytes)} B in ${relayed.relay.messages} messages)`,
        },
        {
          metric: 'relay messages on the broker per 1 k frames/s',
          value: relayed.relay.messages * per1k,
          unit: 'messages/s',
          note: 'batches of ≤ 50 ms: fewer per frame as the rate grows',
        },
        {
          metric: "instance b's CPU per 1 k of a's frames, live client on b",
          value: (relayed.peer.cpuSeconds * 1e6) / framesOf(relayed.run),
          unit: 'ms',
          baseline: { label: 'b without a live client', value: (idle.peer.cpuSeconds * 1e6) / framesOf(idle.run) },
          note: 'receiving the relay and feeding its live view',
        },
      );
    } else {
      notes.push(
        'relay: nothing was published on <prefix>/cluster/v1/events/+ while b had a live client; relay rows left out (is the relay wired into the hub? server/cluster/index.ts attach)',
      );
    }

    // ── 3. MQTT uplink fan-in: frames another instance owns ──
    const fanIn = await notOwnerCost(r, quick);
    if ('missing' in fanIn) notes.push(`MQTT fan-in rows left out: ${fanIn.missing}`);
    else {
      rows.push({
        metric: 'CPU per 1 k MQTT frames another instance owns (not_owner)',
        value: fanIn.msPer1k,
        unit: 'ms',
        baseline: { label: 'bare mqtt.js subscriber, same messages', value: fanIn.bareMsPer1k },
        note: `${fanIn.rate} frames/s for ${fanIn.seconds} s, QoS 1, minus each process's idle CPU over as long; ${fanIn.dropped}/${fanIn.sent} counted not_owner (bare: ${fanIn.bareCount}); an owned WebSocket frame at ${CPU_RATE / 1000}k frames/s: ${idle.run.cpuMsPer1kFrames.toFixed(1)} ms per 1 k (above)`,
      });
    }

    notes.push(
      `session setup: ${devices} WebSocket devices in a child process, ${CONCURRENCY} handshakes in flight, DEVICE_HANDSHAKES_PER_SEC 100000 (the default 500 would be the limit otherwise); the reconnect keeps each device's boot (shared state, boot offset and claim all exist)`,
      `ingest: influx-e2e's measureHub (${quick ? 3 : 6} s steps, 8 f32 readings per frame); steps (frames/s → pass?): without cluster ${plain.trail}; cluster ${idle.run.trail}; with relay ${relayed.run.trail}; InfluxDB COUNT = readings ACKed (${plain.checked}, ${idle.run.checked}, ${relayed.run.checked})`,
      `PostgreSQL: harness server (fsync off), pool of 4 per instance; statements and rows from ${r.statements ? 'pg_stat_statements (rows: INSERT/UPDATE/DELETE)' : 'pg_stat_database'}, transactions from pg_stat_database (flushed by backends about once a second)`,
      `load average at the end: ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} (shared 2-core machine: compare the ratios)`,
    );
    return { title: 'one instance in cluster mode vs the same hub without the cluster', rows, notes };
  } finally {
    for (const h of rig.hubs) await h.stop('SIGKILL').catch(() => undefined);
    for (const c of rig.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await rig.admin?.end().catch(() => undefined);
    await rig.influx?.stop().catch(() => undefined);
    await rig.broker?.stop().catch(() => undefined);
    await rig.pg?.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

function rate(r: Round): number {
  return r.ok / (r.ms / 1000);
}

function joinedNote(r: Round): string {
  return `${r.joined} joined, ${r.degraded} went on locally after waiting for the database`;
}

function fmt(v: number, digits = 0): string {
  return v.toFixed(digits);
}

async function freshDatabase(r: Rig): Promise<string> {
  return r.pg.createDatabase(`bench_${++r.databases}`);
}

/** A file registry with `count` devices `<prefix>-<i>` in `dir` (its devices.json); returns their tokens. */
async function registryFile(dir: string, prefix: string, count: number): Promise<DeviceCred[]> {
  mkdirSync(dir, { recursive: true });
  const registry = openDeviceRegistry({ dataDir: dir, logger: createLogger('silent'), watchIntervalMs: 0 });
  const creds: DeviceCred[] = [];
  try {
    for (let i = 0; i < count; i++)
      creds.push({ id: `${prefix}-${i}`, token: (await registry.add(`${prefix}-${i}`)).token });
  } finally {
    await registry.close();
  }
  return creds;
}

/** Starts a hub process (MQTT and InfluxDB set; cluster mode when `databaseUrl`), registry from `registryDir`. */
async function startHub(
  r: Rig,
  label: string,
  env: Record<string, string>,
  registryDir: string | null,
): Promise<HubProcess> {
  const dataDir = join(r.dir, `hub-${label}`);
  mkdirSync(dataDir, { recursive: true });
  const logDir = join(r.dir, `logs-${label}`);
  mkdirSync(logDir, { recursive: true });
  if (registryDir) copyFileSync(join(registryDir, 'devices.json'), join(dataDir, 'devices.json'));
  const hub = startHubProcess({
    dataDir,
    port: await freePort(),
    influx: r.influx,
    adminToken: r.adminToken,
    logDir,
    env: {
      HUB_LOG_LEVEL: 'warn',
      MQTT_URL: r.broker.url,
      MQTT_CLIENT_ID: `bench-${label}`,
      DEVICE_HANDSHAKES_PER_SEC: '100000',
      DEVICE_MAX_CONNECTIONS: '20000',
      CLUSTER_DATABASE_URL: '',
      ...env,
    },
  });
  r.hubs.push(hub);
  await hub.ready().catch((err: Error) => {
    throw new Error(`hub ${label} did not start: ${err.message}\n${hub.proc.logTail(20)}`);
  });
  return hub;
}

async function stopHub(r: Rig, hub: HubProcess): Promise<void> {
  await hub.stop('SIGTERM');
  r.hubs.splice(r.hubs.indexOf(hub), 1);
}

async function cpuOf(hub: HubProcess): Promise<number> {
  const text = await hub.metricsText();
  let s = 0;
  for (const m of CPU_METRICS) s += metricSum(text, m);
  return s;
}

function metricSum(text: string, metric: string, label = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(metric) || (label && !line.includes(label))) continue;
    const m = /^(\w+)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && m[1] === metric) sum += Number(m[3]);
  }
  return sum;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A connect round; in cluster mode how many HELLOs joined and how many went on locally (database too slow). */
interface Round extends Connected {
  joined: number;
  degraded: number;
}

interface SessionRounds {
  first: Round;
  reconnect: Round;
  trickle: Trickled;
  trickleCpuUsPerFrame: number;
  tricklePg: PgCounters;
  /** Device states the hub wrote behind during the trickle (its metric), and those pending at its end. */
  trickleWritten: number;
  tricklePending: number;
  reconnectPg: PgCounters;
}

/**
 * First contact of every device, a trickle of one frame per device per second, all close, all
 * reconnect (same boot). `databaseUrl` null: the hub without the cluster.
 */
async function sessionRounds(
  r: Rig,
  label: string,
  creds: DeviceCred[],
  quick: boolean,
  databaseUrl: string | null,
): Promise<SessionRounds> {
  const hub = await startHub(
    r,
    `sessions-${label}`,
    databaseUrl ? { CLUSTER_DATABASE_URL: databaseUrl, HUB_INSTANCE_ID: 'a' } : {},
    join(r.dir, 'registry'),
  );
  const worker = fork(THIS_FILE, ['devices'], { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
  r.children.push(worker);
  try {
    const hellos = async (outcome: string) =>
      metricSum(await hub.metricsText(), 'hub_cluster_hellos_total', `outcome="${outcome}"`);
    const connect = async (): Promise<Round> => {
      const joined0 = await hellos('joined');
      const degraded0 = await hellos('degraded');
      worker.send({ type: 'connect', url: hub.wsUrl, devices: creds, concurrency: CONCURRENCY } satisfies ToDevices);
      const c = (await nextMessage<FromDevices>(worker, 'connected', 600_000)) as Connected;
      if (c.failed > 0) throw new Error(`${label}: ${c.failed} devices failed to connect: ${c.errors.join('; ')}`);
      return { ...c, joined: (await hellos('joined')) - joined0, degraded: (await hellos('degraded')) - degraded0 };
    };
    const first = await connect();

    const seconds = quick ? 5 : 10;
    const written = async () =>
      metricSum(await hub.metricsText(), 'hub_cluster_state_writes_total', 'outcome="written"');
    const written0 = await written();
    const cpu0 = await cpuOf(hub);
    const pg0 = await pgCounters(r);
    worker.send({ type: 'trickle', rate: creds.length, seconds } satisfies ToDevices);
    const trickle = (await nextMessage<FromDevices>(worker, 'trickled', 120_000)) as Trickled;
    const tricklePg = diff(await pgCounters(r), pg0);
    const trickleCpuUsPerFrame = (((await cpuOf(hub)) - cpu0) * 1e6) / Math.max(1, trickle.acked);
    // What the hub says it wrote behind in the step, and what still waits (the database's view may lag).
    const trickleWritten = (await written()) - written0;
    const tricklePending = metricSum(await hub.metricsText(), 'hub_cluster_state_pending');

    const pg1 = await pgCounters(r);
    worker.send({ type: 'close' } satisfies ToDevices);
    await nextMessage<FromDevices>(worker, 'closed', 120_000);
    await until(`${label}: every session ended`, async () => {
      const body = (await hub.readyz())?.body;
      return body !== undefined && Number(JSON.parse(body).deviceSessions) === 0;
    });
    if (databaseUrl) {
      await until(`${label}: write-behind and claim releases done`, async () => {
        const text = await hub.metricsText();
        return metricSum(text, 'hub_cluster_state_pending') === 0 && (await claimsLeft(databaseUrl)) === 0;
      });
    }
    const reconnect = await connect();
    const reconnectPg = diff(await pgCounters(r), pg1);
    worker.send({ type: 'exit' } satisfies ToDevices);
    return { first, reconnect, trickle, trickleCpuUsPerFrame, tricklePg, trickleWritten, tricklePending, reconnectPg };
  } finally {
    if (worker.exitCode === null) worker.kill('SIGKILL');
    await stopHub(r, hub);
  }
}

async function claimsLeft(databaseUrl: string): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const res = await client.query<{ n: string }>('SELECT count(*) AS n FROM esp32hub_sessions');
    return Number(res.rows[0]?.n ?? 0);
  } catch {
    return 0; // no such table: nothing claimed
  } finally {
    await client.end();
  }
}

/**
 * Runs `body` with instance `b` (cluster mode, a fresh database shared with the run's `a`) up, and a
 * live client on it when `live`. `body` gets the database URL and a function giving b's CPU since.
 */
async function withPeer<T>(
  r: Rig,
  live: boolean,
  body: (databaseUrl: string, peer: () => Promise<{ cpuSeconds: number }>) => Promise<T>,
): Promise<T> {
  const db = await freshDatabase(r);
  const b = await startHub(r, `peer-${r.databases}`, { CLUSTER_DATABASE_URL: db, HUB_INSTANCE_ID: 'b' }, null);
  let client: WebSocket | null = null;
  try {
    if (live) {
      client = new WebSocket(`${b.baseUrl.replace('http', 'ws')}/v1/live`, { perMessageDeflate: false });
      const ws = client;
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      ws.on('message', () => undefined);
      ws.send(JSON.stringify({ type: 'subscribe', sub: 'fleet', mode: 'latest' }));
    }
    const cpu0 = await cpuOf(b);
    return await body(db, async () => ({ cpuSeconds: (await cpuOf(b)) - cpu0 }));
  } finally {
    client?.terminate();
    await stopHub(r, b);
  }
}

/** Counts the messages and payload bytes the broker carries on every instance's relay topic. */
async function relayCounter(
  url: string,
): Promise<{ totals(): { messages: number; bytes: number }; close(): Promise<void> }> {
  const client = await mqtt.connectAsync(url, { protocolVersion: 5, clientId: 'bench-relay-counter' });
  let messages = 0;
  let bytes = 0;
  client.on('message', (_topic, payload) => {
    messages++;
    bytes += payload.length;
  });
  await client.subscribeAsync(`${TOPIC_PREFIX}/cluster/v1/events/+`, { qos: 0 });
  return {
    totals: () => ({ messages, bytes }),
    close: () => client.endAsync(true).catch(() => undefined),
  };
}

type NotOwner =
  | { missing: string }
  | {
      msPer1k: number;
      bareMsPer1k: number;
      bareCount: number;
      rate: number;
      seconds: number;
      sent: number;
      dropped: number;
    };

/**
 * Instances `a` and `b` (cluster mode, one database) as members; devices whose HRW owner is `b`
 * publish frames at a fixed rate; `a`'s CPU over the step minus its CPU over as long idle.
 */
async function notOwnerCost(r: Rig, quick: boolean): Promise<NotOwner> {
  const db = await freshDatabase(r);
  const env = (id: string) => ({ CLUSTER_DATABASE_URL: db, HUB_INSTANCE_ID: id });
  const b = await startHub(r, 'fanin-b', env('b'), null);
  const a = await startHub(r, 'fanin-a', env('a'), null);
  const publisher = await mqtt.connectAsync(r.broker.url, { protocolVersion: 5, clientId: 'bench-fanin-devices' });
  // The floor: mqtt.bench.ts's bare subscriber (QoS 1 on every up topic, counts only) takes the same messages.
  const bare = fork(MQTT_BENCH, ['bare'], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, BENCH_BROKER: r.broker.url },
  });
  r.children.push(bare);
  try {
    await nextMessage(bare, 'ready');
    const members = async (h: HubProcess) => metricSum(await h.metricsText(), 'hub_cluster_members');
    const deadline = Date.now() + 20_000;
    while ((await members(a)) < 2 || (await members(b)) < 2) {
      if (Date.now() > deadline) {
        const text = await a.metricsText();
        return {
          missing: text.includes('hub_cluster_members')
            ? `instance a sees ${await members(a)} members, b ${await members(b)} (membership did not converge in 20 s)`
            : 'the hub does not run cluster membership yet (no hub_cluster_members; server/cluster/index.ts attach)',
        };
      }
      await sleep(100);
    }
    const owners = hrwMembers(['a', 'b']);
    const ids: string[] = [];
    for (let i = 0; ids.length < 100; i++) if (hrwOwner(`fanin-${i}`, owners) === 'b') ids.push(`fanin-${i}`);
    const frame = Buffer.from(
      encodeFrame({
        type: 'telemetry',
        unsynced: false,
        bootId: 1,
        seq: 1,
        descriptorHash: HASH,
        baseTime: Date.now(),
        blocks: CHANNELS.map((c) => ({ channel: c.index, valueType: c.valueType, deltasMs: [0], values: [1.5] })),
      }),
    );
    const rate = 2000;
    const seconds = quick ? 5 : 10;
    const bareCpu = () => procStat(bare.pid as number)?.cpuSeconds ?? 0;
    const idle0 = await cpuOf(a);
    const bareIdle0 = bareCpu();
    await sleep(seconds * 1000);
    const idle = (await cpuOf(a)) - idle0;
    const bareIdle = bareCpu() - bareIdle0;
    const bare0 = bareCpu();
    const text0 = await a.metricsText();
    const dropped0 = metricSum(text0, 'hub_mqtt_messages_total', 'outcome="not_owner"');
    const cpu0 = metricSum(text0, CPU_METRICS[0] as string) + metricSum(text0, CPU_METRICS[1] as string);
    let next = 0;
    const { sent } = await paced(rate, seconds, () => {
      publisher.publish(`${TOPIC_PREFIX}/v1/${ids[next++ % ids.length]}/up`, frame, { qos: 1 });
    });
    const dropped = async () =>
      metricSum(await a.metricsText(), 'hub_mqtt_messages_total', 'outcome="not_owner"') - dropped0;
    await until('instance a to read every published frame', async () => (await dropped()) >= sent, 60_000).catch(
      () => undefined,
    );
    const busy = (await cpuOf(a)) - cpu0;
    bare.send({ type: 'count' });
    const bareCount = (await nextMessage<{ type: 'count'; n: number }>(bare, 'count')).n;
    const bareBusy = bareCpu() - bare0;
    return {
      msPer1k: ((busy - idle) * 1e6) / sent,
      bareMsPer1k: ((bareBusy - bareIdle) * 1e6) / sent,
      bareCount,
      rate,
      seconds,
      sent,
      dropped: await dropped(),
    };
  } finally {
    bare.kill();
    await publisher.endAsync(true).catch(() => undefined);
    await stopHub(r, a);
    await stopHub(r, b);
  }
}

// ───────────────────────── PostgreSQL counters ─────────────────────────

interface PgCounters {
  /** Statements executed in the benchmark's databases. */
  calls: number;
  /** Rows written (INSERT, UPDATE, DELETE; with pg_stat_statements: rows its writes affected). */
  writeRows: number;
  /** Statement execution time (ms). */
  execMs: number;
  /** Committed transactions (pg_stat_database). */
  xacts: number;
  /** CPU of the postmaster and its child processes (s). */
  cpuSeconds: number;
}

/**
 * A connection to the `postgres` database as the harness's superuser; switches pg_stat_statements on
 * (shared_preload_libraries, server restart) when the module is installed.
 */
async function statementStats(server: PostgresServer): Promise<{ admin: pg.Client; statements: boolean }> {
  const url = server.url.replace(/\/[^/]*$/, '/postgres');
  const connect = async () => {
    const c = new pg.Client({ connectionString: url });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  };
  let admin = await connect();
  try {
    await admin.query("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'");
    await admin.end();
    await server.stopServer();
    await server.startServer();
    admin = await connect();
    await admin.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    return { admin, statements: true };
  } catch {
    if (!server.serverRunning()) await server.startServer();
    admin = await connect().catch(() => admin);
    return { admin, statements: false };
  }
}

async function pgCounters(r: Rig): Promise<PgCounters> {
  const dbs = "(SELECT oid FROM pg_database WHERE datname LIKE 'bench\\_%')";
  const db = await r.admin.query<{ xacts: string; written: string }>(
    `SELECT coalesce(sum(xact_commit), 0) AS xacts,
            coalesce(sum(tup_inserted + tup_updated + tup_deleted), 0) AS written
       FROM pg_stat_database WHERE datid IN ${dbs}`,
  );
  const out: PgCounters = {
    calls: 0,
    writeRows: Number(db.rows[0]?.written ?? 0),
    execMs: 0,
    xacts: Number(db.rows[0]?.xacts ?? 0),
    cpuSeconds: postgresCpuSeconds(r.pg.dir),
  };
  if (r.statements) {
    const st = await r.admin.query<{ calls: string; rows: string; ms: string }>(
      `SELECT coalesce(sum(calls), 0) AS calls,
              coalesce(sum(rows) FILTER (WHERE query ~* '^\\s*(with|insert|update|delete)'), 0) AS rows,
              coalesce(sum(total_exec_time), 0) AS ms
         FROM pg_stat_statements WHERE dbid IN ${dbs}`,
    );
    out.calls = Number(st.rows[0]?.calls ?? 0);
    out.writeRows = Number(st.rows[0]?.rows ?? 0);
    out.execMs = Number(st.rows[0]?.ms ?? 0);
  }
  return out;
}

function diff(after: PgCounters, before: PgCounters): PgCounters {
  return {
    calls: after.calls - before.calls,
    writeRows: after.writeRows - before.writeRows,
    execMs: after.execMs - before.execMs,
    xacts: after.xacts - before.xacts,
    cpuSeconds: after.cpuSeconds - before.cpuSeconds,
  };
}

/**
 * CPU of PostgreSQL from /proc (s): the postmaster's own and that of its children it has reaped
 * (cutime + cstime: backends that exited, e.g. idle pool connections closed) plus its live children's.
 */
function postgresCpuSeconds(serverDir: string): number {
  let postmaster: number;
  try {
    postmaster = Number(readFileSync(join(serverDir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return 0;
  }
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const st = procStat(Number(entry));
    if (!st) continue;
    if (Number(entry) === postmaster) total += st.cpuSeconds + st.reapedSeconds;
    else if (st.ppid === postmaster) total += st.cpuSeconds;
  }
  return total;
}

// ───────────────────────── device worker (child) ─────────────────────────

interface Conn {
  ws: WebSocket;
  id: string;
  seq: number;
  acked: number;
}

function devicesWorker(): void {
  const bootStartMs = Date.now() - 3_600_000;
  const bootId = 1 + (Date.now() % 1_000_000);
  let conns: Conn[] = [];
  const connectOne = (
    url: string,
    d: DeviceCred,
    seq: number,
  ): Promise<{ conn: Conn | null; helloMs: number; error?: string }> =>
    new Promise((resolve) => {
      const ws = new WebSocket(url, [SUBPROTOCOL], {
        headers: { Authorization: `Bearer ${d.token}` },
        perMessageDeflate: false,
      });
      const conn: Conn = { ws, id: d.id, seq, acked: seq };
      let helloAt = 0;
      let settled = false;
      const done = (ok: boolean, error?: string) => {
        if (settled) return;
        settled = true;
        if (!ok) ws.terminate();
        resolve({ conn: ok ? conn : null, helloMs: performance.now() - helloAt, ...(error ? { error } : {}) });
      };
      ws.on('error', (err) => done(false, `${d.id}: ${err.message}`));
      ws.on('close', (code) => done(false, `${d.id}: closed ${code}`));
      ws.on('message', (data: Buffer) => {
        const m = decodeFrame(data);
        if (m.type === 'welcome') {
          done(true);
          ws.send(encodeFrame({ type: 'descriptors', channels: CHANNELS }));
        } else if (m.type === 'ack') conn.acked = m.seq;
        else if (m.type === 'error') done(false, `${d.id}: hub error ${m.code}`);
      });
      ws.once('open', () => {
        helloAt = performance.now();
        ws.send(benchHello(d.id, bootId, HASH, Date.now() - bootStartMs));
      });
    });

  process.on('message', async (msg: ToDevices) => {
    if (msg.type === 'exit') {
      for (const c of conns) c.ws.terminate();
      process.exit(0);
    }
    if (msg.type === 'connect') {
      const previous = new Map(conns.map((c) => [c.id, c.seq]));
      conns = [];
      const errors: string[] = [];
      const hello: number[] = [];
      let failed = 0;
      let next = 0;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: msg.concurrency }, async () => {
          while (next < msg.devices.length) {
            const d = msg.devices[next++] as DeviceCred;
            const r = await connectOne(msg.url, d, previous.get(d.id) ?? 0);
            if (r.conn) {
              conns.push(r.conn);
              hello.push(r.helloMs);
            } else {
              failed++;
              if (errors.length < 5 && r.error) errors.push(r.error);
            }
          }
        }),
      );
      const ms = performance.now() - t0;
      hello.sort((x, y) => x - y);
      const pct = (p: number) => hello[Math.min(hello.length - 1, Math.floor(p * hello.length))] ?? 0;
      process.send?.({
        type: 'connected',
        ok: conns.length,
        failed,
        ms,
        helloP50Ms: pct(0.5),
        helloP99Ms: pct(0.99),
        errors,
      } satisfies FromDevices);
      return;
    }
    if (msg.type === 'trickle') {
      const start = conns.map((c) => c.seq);
      let rr = 0;
      const { sent, seconds } = await paced(msg.rate, msg.seconds, () => {
        const c = conns[rr] as Conn;
        rr = (rr + 1) % conns.length;
        c.seq++;
        c.ws.send(
          encodeFrame({
            type: 'telemetry',
            unsynced: false,
            bootId,
            seq: c.seq,
            descriptorHash: HASH,
            baseTime: Date.now(),
            blocks: CHANNELS.map((ch) => ({
              channel: ch.index,
              valueType: ch.valueType,
              deltasMs: [0],
              values: [c.seq % 100],
            })),
          }),
        );
      });
      const deadline = performance.now() + 10_000;
      while (performance.now() < deadline && conns.some((c) => c.acked < c.seq)) await sleep(10);
      const acked = conns.reduce((s, c, i) => s + (c.acked - (start[i] as number)), 0);
      process.send?.({ type: 'trickled', sent, acked, seconds } satisfies FromDevices);
      return;
    }
    if (msg.type === 'close') {
      await Promise.all(
        conns.map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.ws.readyState === WebSocket.CLOSED) return resolve();
              c.ws.once('close', () => resolve());
              c.ws.close(1000);
              setTimeout(() => {
                c.ws.terminate();
                resolve();
              }, 5000);
            }),
        ),
      );
      process.send?.({ type: 'closed' } satisfies FromDevices);
    }
  });
}

if (process.argv[1] === THIS_FILE && process.argv[2] === 'devices') devicesWorker();
