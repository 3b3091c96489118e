/**
 * Devices → hub → InfluxDB, end to end: the highest PACED rate at which every frame is acknowledged
 * AND confirmed by InfluxDB within 2 s of the load's end, with 100 and with 1,000 devices, into the
 * test harness's real InfluxDB (Debian's 1.x `influxd` behind the nginx `/api/v2/write` rewrite),
 * co-located on this machine. Baseline, measured in the same run against the same engine: a trivial
 * writer POSTing pre-built lines of the same shape, two requests in flight (and one, for reference).
 *
 * Processes: the hub as `npm start` runs it (`server/main.ts`, forwarding mode, temp data dir), a
 * load generator (this file as a child with `load`), influxd and nginx; the runner measures the
 * trivial writer itself. `BENCH_CPU_PROF=<dir>` runs the hub under `node --cpu-prof` and leaves its
 * `.cpuprofile`s in `<dir>/hub-<N>dev/` (docs/performance.md has the table of where the time goes).
 *
 * Frames: 8 f32 channels × 1 sample (8 readings), each device's frames 1 ms apart in time so every
 * reading is its own point. A step passes when the generator achieved ≥ 95 % of the target, every
 * frame sent was ACKed, and `hub_forwarder_lines_written_total` covered every reading, all within 2 s
 * of the step's end. Search: doubling from a start rate, then bisection.
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import { WebSocket } from 'ws';
import {
  type ChannelDescriptor,
  decodeFrame,
  descriptorHash,
  encodeFrame,
  f32Value,
  SUBPROTOCOL,
  ValueType,
} from '../server/codec/index.ts';
import { configFrom } from '../server/config/index.ts';
import { createLogger } from '../server/log/index.ts';
import { openDeviceRegistry } from '../server/registry/index.ts';
import { type InfluxServer, startInflux } from '../test/harness/index.ts';
import type { BenchOptions, BenchReport, BenchRow } from './run.ts';
import {
  benchHello,
  type CpuShare,
  cpuMeter,
  describeCpuShare,
  freePort,
  type MemoryPeak,
  metricValue,
  nextMessage,
  paced,
  processTree,
  SATURATED_PERCENT,
  sampleMemory,
  sleep,
  waitReady,
} from './workers.ts';

export const name = 'influx-e2e';

/** Design bar: readings/s into a co-located InfluxDB, and the ratio to the trivial writer. */
const BAR_READINGS = 250_000;
const BAR_RATIO = 0.4;
/** Paced rate of the CPU-per-frame step, the same for every device count (frames/s). */
export const CPU_RATE = 8000;
/** How often the settle check scrapes the hub's /metrics (each scrape costs the hub CPU too). */
const POLL_MS = 100;
/** Everything sent must be ACKed and in InfluxDB this long after the load's end. */
const SETTLE_MS = 2000;
/** The hub's default INFLUX_BATCH_LINES: the bench measures the hub as shipped, the trivial writer uses the same. */
const DEFAULTS = configFrom({
  INFLUX_URL: 'http://127.0.0.1:1',
  INFLUX_TOKEN: 't',
  INFLUX_ORG: 'o',
  INFLUX_BUCKET: 'b',
}).influx as { batchLines: number; maxInFlightWrites?: number };
const BATCH_LINES = DEFAULTS.batchLines;
const THIS_FILE = fileURLToPath(import.meta.url);
const ROOT = join(dirname(THIS_FILE), '..');
const HOUR = 3_600_000;

const CHANNELS: ChannelDescriptor[] = Array.from({ length: 8 }, (_, i) => ({
  index: i,
  key: `ch${i}`,
  unit: i % 2 === 0 ? '°C' : 'V',
  valueType: ValueType.F32,
  scaleExp: 0,
  periodMs: 1000,
}));
export const READINGS_PER_FRAME = CHANNELS.length;
const HASH = descriptorHash(CHANNELS);
/** Offsets in a TELEMETRY frame: header 8, then bootId, seq, descriptor hash, baseTime u64 [PROTO-3.4]. */
const SEQ_AT = 12;
const BASE_TIME_AT = 20;

// ───────────────────────── messages between the processes ─────────────────────────

interface DeviceCred {
  id: string;
  token: string;
}
type ToWorker =
  | { type: 'connect'; url: string; devices: DeviceCred[] }
  | { type: 'step'; rate: number; seconds: number; settleMs: number }
  | { type: 'exit' };
interface StepResult {
  type: 'result';
  target: number;
  sent: number;
  achieved: number;
  /** Frames ACKed within `settleMs` of the load's end. */
  acked: number;
  ackP50Ms: number;
  ackP99Ms: number;
  /** Date.now() at the load's end (the processes share the machine's clock). */
  endAtMs: number;
}
type FromWorker = { type: 'ready' } | StepResult;

export interface HubRun {
  devices: number;
  best: StepResult & { forwardedAfterMs: number; memory: MemoryPeak; cpu: CpuShare };
  /** The step at the fixed rate (`fixedRate`, default CPU_RATE: the same load for every run). */
  fixed: StepResult & { cpu: CpuShare };
  trail: string;
  cpuMsPer1kFrames: number;
  rssBytes: number;
  checked: number;
}

// ───────────────────────── orchestration ─────────────────────────

export async function run(options: BenchOptions = { quick: false }): Promise<BenchReport> {
  const quick = options.quick;
  const deviceCounts = quick ? [100, 1000] : [100, 1000];
  const dir = mkdtempSync(join(tmpdir(), 'esp32hub-bench-e2e-'));
  const children: ChildProcess[] = [];
  const influx = await startInflux({ bucket: 'e2e' });
  const rows: BenchRow[] = [];
  const notes: string[] = [];
  try {
    // The trivial writer (2 in flight) right before and right after each hub run: the machine is
    // shared and its other load moves by 2-3× within minutes, so each device count is compared with
    // the mean of the two measurements around it, taken under about the same conditions.
    const lines = buildTrivialLines(quick ? 400_000 : 800_000, 1000);
    const one = await trivialWriter(influx, lines, 1, BATCH_LINES);
    // What the engine does with the old 5000-line requests and many series, for docs/storage.md.
    const smallLines = buildTrivialLines(quick ? 400_000 : 800_000, 100);
    const small5000 = await trivialWriter(influx, smallLines, 2, 5000);
    const smallDefault = await trivialWriter(influx, smallLines, 2, BATCH_LINES);
    const big5000 = await trivialWriter(influx, lines, 2, 5000);
    const around: number[] = [await trivialWriter(influx, lines, 2, BATCH_LINES)];
    const runs: HubRun[] = [];
    for (const devices of deviceCounts) {
      runs.push(await measureHub(influx, join(dir, `hub-${devices}`), devices, quick, children));
      around.push(await trivialWriter(influx, lines, 2, BATCH_LINES));
    }
    const big = runs.at(-1) as HubRun;
    const small = runs[0] as HubRun;
    const baseOf = (i: number) => ({
      label: 'trivial writer, 2 in flight, around this run',
      value: ((around[i] as number) + (around[i + 1] as number)) / 2,
    });
    runs.forEach((r, i) => {
      rows.push({
        metric: `into InfluxDB, ${r.devices} devices`,
        value: r.best.achieved * READINGS_PER_FRAME,
        unit: 'readings/s',
        baseline: baseOf(i),
        note: `${Math.round(r.best.achieved)} frames/s; bar ≥ ${BAR_READINGS / 1000} k and ≥ ${BAR_RATIO}×`,
      });
    });
    rows.push({
      metric: `rate ${big.devices} vs ${small.devices} devices`,
      value: big.best.achieved,
      unit: 'frames/s',
      baseline: { label: `${small.devices} devices`, value: small.best.achieved },
      note: 'bar: within ± 15 %',
    });
    rows.push({
      metric: `hub CPU per frame at ${CPU_RATE / 1000}k frames/s, ${big.devices} vs ${small.devices} devices`,
      value: big.cpuMsPer1kFrames,
      unit: 'µs',
      baseline: { label: `${small.devices} devices`, value: small.cpuMsPer1kFrames },
      note: 'the per-device cost as CPU (1.00× = none); less noisy than the rates',
    });
    const perFrameUs = (r: HubRun, part: string) =>
      ((r.fixed.cpu.seconds[part] ?? 0) * 1e6) / Math.max(1, r.fixed.sent);
    rows.push({
      metric: `load generator CPU per frame at ${CPU_RATE / 1000}k frames/s, ${big.devices} vs ${small.devices} devices`,
      value: perFrameUs(big, 'generator'),
      unit: 'µs',
      baseline: { label: `${small.devices} devices`, value: perFrameUs(small, 'generator') },
      note: `the bench's own per-device cost, on the cores the hub uses; InfluxDB ${perFrameUs(big, 'InfluxDB').toFixed(1)} vs ${perFrameUs(small, 'InfluxDB').toFixed(1)} µs per frame`,
    });
    for (const r of runs) {
      rows.push({
        metric: `in InfluxDB after the load's end (${r.devices} dev)`,
        value: r.best.forwardedAfterMs,
        unit: 'ms',
        note: `bar ≤ ${SETTLE_MS} ms; ACK p99 ${r.best.ackP99Ms.toFixed(1)} ms`,
      });
      rows.push({
        metric: `hub CPU per 1 k frames at ${CPU_RATE / 1000}k frames/s (${r.devices} dev)`,
        value: r.cpuMsPer1kFrames,
        unit: 'ms',
      });
      rows.push({
        metric: `peak RssAnon in the sustained step (${r.devices} dev)`,
        value: r.best.memory.anon / 2 ** 20,
        unit: 'MiB',
        note: `peak RSS ${(r.best.memory.rss / 2 ** 20).toFixed(0)} MiB (with the log's mapped pages); goal at 1,000 devices ≤ 200 / ≤ 400 MiB`,
      });
      rows.push({ metric: `hub RSS after the run (${r.devices} dev)`, value: r.rssBytes / 1024 / 1024, unit: 'MB' });
      rows.push({
        metric: `machine CPU busy in the sustained step (${r.devices} dev)`,
        value: r.best.cpu.machinePercent,
        unit: '% of all cores',
        note: `${describeCpuShare(r.best.cpu)}${r.best.cpu.machinePercent >= SATURATED_PERCENT ? ': the rate is where the machine runs out, not the hub alone' : ''}`,
      });
    }
    const first = { label: `trivial, 2 in flight, ${BATCH_LINES}-line requests`, value: around[0] as number };
    rows.push({ metric: 'trivial writer, 1 in flight', value: one, unit: 'points/s', baseline: first });
    rows.push({
      metric: 'trivial, 2 in flight, 5000-line requests, 1,000 dev',
      value: big5000,
      unit: 'points/s',
      baseline: first,
      note: 'InfluxDB’s cost per request grows with its series',
    });
    rows.push({
      metric: 'trivial, 2 in flight, 5000-line requests, 100 dev',
      value: small5000,
      unit: 'points/s',
      baseline: first,
    });
    rows.push({
      metric: `trivial, 2 in flight, ${BATCH_LINES}-line requests, 100 dev`,
      value: smallDefault,
      unit: 'points/s',
      baseline: first,
    });
    notes.push(
      `frames: 8 f32 readings (8 channels × 1 sample), each device's frames 1 ms apart; paced in 10 ms ticks; ${quick ? 3 : 6} s per step; a step passes when ≥ 95 % of the target was sent and every frame was ACKed and confirmed by InfluxDB within ${SETTLE_MS} ms of the load's end`,
      `steps (frames/s → pass?): ${runs.map((r) => `${r.devices} dev: ${r.trail}`).join('; ')}`,
      `after each device count: COUNT("value") in InfluxDB = readings ACKed (${runs.map((r) => r.checked).join(', ')})`,
      `hub: server/main.ts (as npm start, forwarding mode, default settings: INFLUX_BATCH_LINES ${BATCH_LINES}, INFLUX_MAX_IN_FLIGHT_WRITES ${DEFAULTS.maxInFlightWrites ?? 1}; hub_stats off), load generator, influxd 1.x and nginx: separate processes on this machine`,
      `trivial writer: ${lines.length} pre-built lines of the same shape (1,000 devices unless said) in ${BATCH_LINES}-line POSTs (fetch) into a fresh database; 2 in flight before, between and after the hub runs: ${around.map((a) => Math.round(a)).join(', ')} points/s`,
      `load average at the end: ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} (shared machine: compare ratios)`,
    );
    return { title: 'devices → hub → InfluxDB, sustained paced rate vs a trivial writer', rows, notes };
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await influx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function resetDatabase(influx: InfluxServer): Promise<void> {
  await influx.influxQL(`DROP DATABASE "${influx.bucket}"`);
  await influx.influxQL(`CREATE DATABASE "${influx.bucket}"`);
}

/**
 * Starts a hub (server/main.ts, forwarding mode, `env` on top of the defaults) on `dataDir`, finds its
 * highest passing paced rate with `devices` devices, measures the fixed-rate step (`fixedRate` frames/s),
 * stops it and checks InfluxDB holds every ACKed reading. Also used by ack-durability.bench.ts.
 */
export async function measureHub(
  influx: InfluxServer,
  dataDir: string,
  devices: number,
  quick: boolean,
  children: ChildProcess[],
  env: Record<string, string> = {},
  fixedRate = CPU_RATE,
): Promise<HubRun> {
  await resetDatabase(influx);
  const registry = openDeviceRegistry({ dataDir, logger: createLogger('silent'), watchIntervalMs: 0 });
  const creds: DeviceCred[] = [];
  for (let i = 0; i < devices; i++) creds.push({ id: `e2e-${i}`, token: (await registry.add(`e2e-${i}`)).token });
  await registry.close();
  const port = await freePort();
  const prof = process.env.BENCH_CPU_PROF;
  // One directory per device count: node writes one profile per thread (tsx's loader runs in its own);
  // the hub's main thread is the largest file.
  const execArgv = prof ? ['--cpu-prof', `--cpu-prof-dir=${join(prof, `hub-${devices}dev`)}`] : [];
  const hub = spawn(process.execPath, [...execArgv, '--import', 'tsx', join(ROOT, 'server/main.ts')], {
    cwd: ROOT,
    env: {
      ...process.env,
      ENV_FILE: '/dev/null', // not a developer's own .env
      HUB_HOST: '127.0.0.1',
      HUB_PORT: String(port),
      HUB_DATA_DIR: dataDir,
      HUB_LOG_LEVEL: 'warn',
      DEVICE_HANDSHAKES_PER_SEC: '10000',
      INFLUX_URL: influx.url,
      INFLUX_TOKEN: influx.token,
      INFLUX_ORG: influx.org,
      INFLUX_BUCKET: influx.bucket,
      // No hub_stats points: the step check counts the forwarder's written lines, readings only.
      INFLUX_STATS_INTERVAL_MS: '0',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(hub);
  const base = `http://127.0.0.1:${port}`;
  await waitReady(`${base}/readyz`);
  const load = fork(THIS_FILE, ['load'], { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
  children.push(load);
  load.send({ type: 'connect', url: `ws://127.0.0.1:${port}/v1/device`, devices: creds } satisfies ToWorker);
  await nextMessage<FromWorker>(load, 'ready', 300_000);

  const seconds = quick ? 3 : 6;
  let ackedTotal = 0;
  const memory = sampleMemory(hub.pid as number);
  // The machine's CPU in each step, and who used it: the hub, the load generator and InfluxDB share it.
  const parts = { hub: [hub.pid as number], generator: [load.pid as number], InfluxDB: processTree(influx.dir) };
  const step = async (rate: number) => {
    memory.take();
    const meter = cpuMeter(parts);
    load.send({ type: 'step', rate, seconds, settleMs: SETTLE_MS } satisfies ToWorker);
    const r = (await nextMessage<FromWorker>(load, 'result')) as StepResult;
    const cpu = meter.stop();
    // The worker answers once every frame is ACKed (it waits for late ones too): all of them count.
    ackedTotal += r.sent;
    const want = ackedTotal * READINGS_PER_FRAME;
    let written = await metric(base, 'hub_forwarder_lines_written_total');
    while (written < want && Date.now() - r.endAtMs < SETTLE_MS) {
      await sleep(POLL_MS);
      written = await metric(base, 'hub_forwarder_lines_written_total');
    }
    const forwardedAfterMs = Date.now() - r.endAtMs;
    // Seen complete within the deadline: a last poll that started in time but answered after it
    // does not count (when the lines arrived is only known to be before the answer).
    const forwardedInTime = written >= want && forwardedAfterMs <= SETTLE_MS;
    const peak = memory.take();
    // Let a failed step's backlog drain before the next one.
    while (written < want) {
      await sleep(100);
      written = await metric(base, 'hub_forwarder_lines_written_total');
    }
    return { ...r, forwardedAfterMs, forwardedInTime, memory: peak, cpu };
  };
  type Step = Awaited<ReturnType<typeof step>>;
  const passes = (r: Step) => {
    const ok = r.achieved >= 0.95 * r.target && r.acked >= r.sent && r.forwardedInTime;
    if (process.env.BENCH_VERBOSE) console.error(`[influx-e2e ${devices}] ${JSON.stringify(r)} → ${ok ? '✓' : '✗'}`);
    return ok;
  };
  await step(2000); // warm-up: JIT, connections, lmdb pages, InfluxDB series
  const trail: string[] = [];
  let best: Step | null = null;
  let lo = 0;
  let hi = 0;
  for (let rate = quick ? 8000 : 10_000; rate <= 400_000; rate *= 2) {
    const r = await step(rate);
    const ok = passes(r);
    trail.push(`${(rate / 1000).toFixed(1)}k ${ok ? '✓' : '✗'}`);
    if (!ok) {
      hi = rate;
      break;
    }
    best = r;
    lo = rate;
  }
  for (let i = 0; i < (quick ? 2 : 4) && hi > 0; i++) {
    const rate = Math.round((lo + hi) / 2);
    const r = await step(rate);
    const ok = passes(r);
    trail.push(`${(rate / 1000).toFixed(1)}k ${ok ? '✓' : '✗'}`);
    if (ok) {
      best = r;
      lo = rate;
    } else hi = rate;
  }
  if (!best) throw new Error(`${devices} devices: no step passed (${trail.join(', ')})`);

  // CPU per frame at one fixed rate for every device count (below either's sustained rate): the
  // per-device cost as CPU, which the machine's other load moves much less than the rates.
  const cpuRate = fixedRate;
  const cpu0 = await cpuSeconds(base);
  const cpuStep = await step(cpuRate);
  const cpuMsPer1kFrames = (((await cpuSeconds(base)) - cpu0) * 1e6) / cpuStep.sent;
  const rssBytes = await metric(base, 'hub_process_process_resident_memory_bytes');
  memory.stop();

  load.send({ type: 'exit' } satisfies ToWorker);
  const exited = new Promise((r) => hub.once('exit', r));
  hub.kill('SIGTERM');
  await exited;
  const { rows } = await influx.influxQL('SELECT COUNT("value") AS n FROM "telemetry"');
  const checked = Number(rows[0]?.n ?? 0);
  if (checked !== ackedTotal * READINGS_PER_FRAME) {
    throw new Error(
      `${devices} devices: InfluxDB holds ${checked} readings, ${ackedTotal * READINGS_PER_FRAME} were ACKed`,
    );
  }
  return { devices, best: { ...best }, fixed: cpuStep, trail: trail.join(', '), cpuMsPer1kFrames, rssBytes, checked };
}

/** Lines shaped like the hub's (8 channels, `devices` devices, ms timestamps), built before the clock starts. */
function buildTrivialLines(count: number, devices: number): string[] {
  const out: string[] = [];
  const t0 = Date.UTC(2024, 0, 18);
  for (let i = 0; out.length < count; i++) {
    const device = `e2e-${i % devices}`;
    const t = t0 + Math.floor(i / devices);
    for (const c of CHANNELS) {
      out.push(
        // The value as the hub writes an f32 reading: its shortest decimal (docs/protocol.md §4).
        `telemetry,channel=${c.key},device=${device},unit=${c.unit} value=${f32Value(Math.fround(3.3 + (i % 97) / 100))} ${t}`,
      );
    }
  }
  return out;
}

/** POSTs `lines` in `batchLines` batches, `inFlight` requests at a time, into a fresh database; points/s. */
async function trivialWriter(
  influx: InfluxServer,
  lines: string[],
  inFlight: number,
  batchLines: number,
): Promise<number> {
  await resetDatabase(influx);
  const url = `${influx.url}/api/v2/write?org=${influx.org}&bucket=${influx.bucket}&precision=ms`;
  const bodies: string[] = [];
  for (let i = 0; i < lines.length; i += batchLines) bodies.push(lines.slice(i, i + batchLines).join('\n'));
  // Warm-up, not timed: the first pass creates the series (8 channels × each device), as the hub's
  // warm-up step does for it.
  const warm = await fetch(url, { method: 'POST', body: lines.slice(0, 16_000).join('\n') });
  await warm.text();
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < bodies.length) {
        const body = bodies[next++] as string;
        const res = await fetch(url, { method: 'POST', body });
        await res.text();
        if (res.status !== 204) throw new Error(`trivial writer got HTTP ${res.status}`);
      }
    }),
  );
  return lines.length / ((performance.now() - t0) / 1000);
}

// ───────────────────────── load generator (child) ─────────────────────────

interface Conn {
  ws: WebSocket;
  frame: Buffer;
  seq: number;
  acked: number;
  baseTime: number;
  sentAt: Map<number, number>;
}

function loadWorker(): void {
  const conns: Conn[] = [];
  let latencies: number[] = [];
  process.on('message', async (msg: ToWorker) => {
    if (msg.type === 'exit') {
      for (const c of conns) c.ws.terminate();
      process.exit(0);
    }
    if (msg.type === 'connect') {
      const bootId = 1 + (Date.now() % 1_000_000);
      const template = Buffer.from(
        encodeFrame({
          type: 'telemetry',
          unsynced: false,
          bootId,
          seq: 1,
          descriptorHash: HASH,
          baseTime: Date.now(),
          blocks: CHANNELS.map((c) => ({
            channel: c.index,
            valueType: c.valueType,
            deltasMs: [0],
            values: [Math.fround(3.3 + c.index / 10)],
          })),
        }),
      );
      const connectOne = async (d: DeviceCred): Promise<void> => {
        const ws = new WebSocket(msg.url, [SUBPROTOCOL], {
          headers: { Authorization: `Bearer ${d.token}` },
          perMessageDeflate: false,
        });
        await new Promise<void>((resolve, reject) => {
          ws.once('open', () => resolve());
          ws.once('error', reject);
        });
        const conn: Conn = { ws, frame: Buffer.from(template), seq: 0, acked: 0, baseTime: 0, sentAt: new Map() };
        const welcome = new Promise<void>((resolve) => {
          ws.on('message', (data: Buffer) => {
            const m = decodeFrame(data);
            if (m.type === 'welcome') resolve();
            else if (m.type === 'ack') {
              const now = performance.now();
              for (const [seq, t] of conn.sentAt) {
                if (seq > m.seq) break;
                latencies.push(now - t);
                conn.sentAt.delete(seq);
              }
              conn.acked = m.seq;
            } else if (m.type === 'error') console.error(`[influx-e2e] hub error ${m.code}: ${m.message}`);
          });
        });
        ws.send(benchHello(d.id, bootId, HASH, HOUR));
        await welcome;
        ws.send(encodeFrame({ type: 'descriptors', channels: CHANNELS }));
        // After the hub's first sighting of the device: frames 1 ms apart from here on.
        conn.baseTime = Date.now();
        conns.push(conn);
      };
      for (let i = 0; i < msg.devices.length; i += 50) await Promise.all(msg.devices.slice(i, i + 50).map(connectOne));
      process.send?.({ type: 'ready' } satisfies FromWorker);
      return;
    }
    const { rate, seconds, settleMs } = msg;
    latencies = [];
    const startSeq = conns.map((c) => c.seq);
    let rr = 0;
    const { sent, seconds: sendSeconds } = await paced(rate, seconds, () => {
      const c = conns[rr] as Conn;
      rr = (rr + 1) % conns.length;
      c.seq++;
      const f = Buffer.from(c.frame);
      f.writeUInt32LE(c.seq, SEQ_AT);
      const t = c.baseTime + c.seq;
      f.writeUInt32LE(t % 2 ** 32, BASE_TIME_AT);
      f.writeUInt32LE(Math.floor(t / 2 ** 32), BASE_TIME_AT + 4);
      f.writeUInt32LE(crc32(f.subarray(0, f.length - 4)), f.length - 4);
      c.ws.send(f);
      c.sentAt.set(c.seq, performance.now());
    });
    const endAtMs = Date.now();
    const end = performance.now();
    while (performance.now() - end < settleMs && conns.some((c) => c.acked < c.seq)) await sleep(5);
    const acked = conns.reduce((s, c, i) => s + (c.acked - (startSeq[i] as number)), 0);
    // Frames still unACKed after the wait: wait for them (a later step must start clean).
    while (conns.some((c) => c.acked < c.seq)) await sleep(20);
    latencies.sort((a, b) => a - b);
    process.send?.({
      type: 'result',
      target: rate,
      sent,
      achieved: sent / Math.max(sendSeconds, seconds),
      acked,
      ackP50Ms: latencies[Math.floor(0.5 * latencies.length)] ?? 0,
      ackP99Ms: latencies[Math.min(latencies.length - 1, Math.floor(0.99 * latencies.length))] ?? 0,
      endAtMs,
    } satisfies FromWorker);
  });
}

// ───────────────────────── helpers ─────────────────────────

async function metric(base: string, name: string): Promise<number> {
  return metricValue(await (await fetch(`${base}/metrics`)).text(), name);
}

async function cpuSeconds(base: string): Promise<number> {
  return (
    (await metric(base, 'hub_process_process_cpu_user_seconds_total')) +
    (await metric(base, 'hub_process_process_cpu_system_seconds_total'))
  );
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1] && process.argv[2] === 'load') loadWorker();
