/**
 * Where the hub's main thread spends its time in embedded mode (`npm start`: the local log and the live
 * view, no live client), under a paced load: runs `server/main.ts` under `node --cpu-prof`, drives it
 * with the ingest bench's load generator, and prints the profile as a table (self time by part of the
 * data path), the table docs/performance.md shows before and after a change.
 *
 *   node --import tsx bench/profile.ts [--root DIR] [--rate 20000] [--seconds 10] [--devices 50] [--core]
 *     [--no-profile] [--perf-map] [--influx]
 *
 * `--root` profiles another checkout's hub (e.g. a `git worktree` of an older commit) with this
 * checkout's load generator. The profile covers the main thread only: lmdb commits its transactions
 * and flushes on its own threads, which `CPU per frame` in the ingest bench includes. `--no-profile`
 * prints only the whole process's figures (CPU, commits, ACKs, disk writes, memory) without the
 * profiler's own cost; `--perf-map` lets `perf record -p <hub>` name the JavaScript functions.
 * `--influx` runs the hub in forwarding mode into the test harness's real InfluxDB (as `influx-e2e`).
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createLogger } from '../server/log/index.ts';
import { openDeviceRegistry } from '../server/registry/index.ts';
import { type InfluxServer, startInflux } from '../test/harness/index.ts';
import { freePort, nextMessage, procStat } from './workers.ts';

const HERE = dirname(fileURLToPath(import.meta.url));

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Part of the data path a profile node belongs to (first match wins). */
const PARTS: [string, (url: string, fn: string) => boolean][] = [
  ['idle', (_u, f) => f === '(idle)'],
  ['garbage collector', (_u, f) => f === '(garbage collector)'],
  ['native (program)', (_u, f) => f === '(program)'],
  ['ws (WebSocket frames)', (u) => u.includes('node_modules/ws/')],
  ['lmdb (commit calls)', (u) => u.includes('node_modules/lmdb/') || u.includes('node_modules/msgpackr/')],
  ['codec (scan, decode, CRC)', (u) => u.includes('/server/codec/')],
  ['live view (server/live)', (u) => u.includes('/server/live/')],
  ['ingest (server/pipeline)', (u) => u.includes('/server/pipeline/')],
  ['local log (server/storage)', (u) => u.includes('/server/storage/')],
  ['sessions (server/transport)', (u) => u.includes('/server/transport/')],
  [
    'event bus, metrics, log',
    (u) => /\/server\/(events|metrics|log)/.test(u) || u.includes('node_modules/prom-client/'),
  ],
  ['node core (net, streams, timers)', (u) => u.startsWith('node:')],
  ['native calls (socket writes, …)', (u) => u === ''],
];

export interface ProfileSummary {
  /** Per part: self time (ms) and the three costliest functions. */
  parts: { part: string; ms: number; top: string[] }[];
  busyMs: number;
  totalMs: number;
}

/** Sums samples whose time (µs since the profile's end) lies within [fromEndUs, toEndUs] before its end. */
export function summarize(profile: CpuProfile, window?: { fromEndUs: number; toEndUs: number }): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0;
    t += delta;
    const beforeEnd = profile.endTime - t;
    if (window && (beforeEnd > window.fromEndUs || beforeEnd < window.toEndUs)) continue;
    const id = profile.samples[i] as number;
    self.set(id, (self.get(id) ?? 0) + delta / 1000);
  }
  const parts = new Map<string, { ms: number; fns: Map<string, number> }>();
  let totalMs = 0;
  for (const [id, ms] of self) {
    const node = byId.get(id);
    if (!node) continue;
    const { url, functionName } = node.callFrame;
    const part = PARTS.find(([, match]) => match(url, functionName))?.[0] ?? 'other (tsx, pino, …)';
    const p = parts.get(part) ?? { ms: 0, fns: new Map() };
    p.ms += ms;
    const fn = `${functionName || '(anonymous)'} ${url.split('/').slice(-2).join('/')}`.trim();
    p.fns.set(fn, (p.fns.get(fn) ?? 0) + ms);
    parts.set(part, p);
    totalMs += ms;
  }
  const busyMs = totalMs - (parts.get('idle')?.ms ?? 0);
  return {
    parts: [...parts]
      .map(([part, p]) => ({
        part,
        ms: p.ms,
        top: [...p.fns]
          .sort((a, b) => b[1] - a[1])
          .slice(0, 3)
          .map(([f, ms]) => `${f} ${ms.toFixed(0)}`),
      }))
      .sort((a, b) => b.ms - a.ms),
    busyMs,
    totalMs,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      root: { type: 'string', default: join(HERE, '..') },
      rate: { type: 'string', default: '20000' },
      seconds: { type: 'string', default: '10' },
      devices: { type: 'string', default: '50' },
      // The ingest core (`buildHub` without extensions: no live view) instead of `npm start`.
      core: { type: 'boolean', default: false },
      'no-profile': { type: 'boolean', default: false },
      'perf-map': { type: 'boolean', default: false },
      // Forwarding mode: the hub writes into a real InfluxDB started for the run.
      influx: { type: 'boolean', default: false },
    },
  });
  const root = resolve(values.root);
  const rate = Number(values.rate);
  const seconds = Number(values.seconds);
  const devices = Number(values.devices);
  const profile = !values['no-profile'];
  const dir = mkdtempSync(join(tmpdir(), 'esp32hub-profile-'));
  const profDir = join(dir, 'prof');
  const children: ChildProcess[] = [];
  let influx: InfluxServer | undefined;
  try {
    if (values.influx) influx = await startInflux({ bucket: 'profile' });
    const influxEnv = influx
      ? {
          INFLUX_URL: influx.url,
          INFLUX_TOKEN: influx.token,
          INFLUX_ORG: influx.org,
          INFLUX_BUCKET: influx.bucket,
          INFLUX_STATS_INTERVAL_MS: '0',
        }
      : { INFLUX_URL: '' };
    const dataDir = join(dir, 'data');
    const registry = openDeviceRegistry({ dataDir, logger: createLogger('silent'), watchIntervalMs: 0 });
    const creds: { id: string; token: string }[] = [];
    for (let i = 0; i < devices; i++) creds.push({ id: `bench-${i}`, token: (await registry.add(`bench-${i}`)).token });
    await registry.close();
    const port = await freePort();
    const hub = spawn(
      process.execPath,
      [
        ...(profile ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []),
        ...(values['perf-map'] ? ['--perf-basic-prof-only-functions'] : []),
        '--import',
        'tsx',
        ...(values.core ? [join(root, 'bench/ingest.bench.ts'), 'hub'] : [join(root, 'server/main.ts')]),
      ],
      {
        cwd: root,
        env: {
          ...process.env,
          ENV_FILE: '/dev/null', // not a developer's own .env
          HUB_HOST: '127.0.0.1',
          HUB_PORT: String(port),
          HUB_DATA_DIR: dataDir,
          HUB_LOG_LEVEL: 'warn',
          DEVICE_HANDSHAKES_PER_SEC: '10000',
          ...influxEnv,
        },
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    );
    children.push(hub);
    for (let i = 0; ; i++) {
      const ok = await fetch(`http://127.0.0.1:${port}/readyz`)
        .then((r) => r.ok)
        .catch(() => false);
      if (ok) break;
      if (i > 600) throw new Error('hub never became ready');
      await new Promise((r) => setTimeout(r, 100));
    }
    const load = fork(join(HERE, 'ingest.bench.ts'), ['load'], { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
    children.push(load);
    load.send({ type: 'connect', url: `ws://127.0.0.1:${port}/v1/device`, devices: creds, expectAcks: true });
    await nextMessage(load, 'ready', 300_000);
    // Warm-up (JIT, lmdb pages), then the measured step; only its samples are summarised.
    load.send({ type: 'step', rate, seconds: 2 });
    await nextMessage(load, 'result', 300_000);
    const before = await processFigures(hub.pid as number, port);
    const stepStart = performance.now();
    load.send({ type: 'step', rate, seconds });
    const result = (await nextMessage(load, 'result', 300_000)) as unknown as { sent: number; acked: number };
    // The step's sending ended `drainMs` before its result (the generator waits for the last ACKs).
    const stepEnd = performance.now();
    const after = await processFigures(hub.pid as number, port);
    const memory = readFileSync(`/proc/${hub.pid}/status`, 'utf8')
      .split('\n')
      .filter((l) => /^(VmRSS|RssAnon|RssFile):/.test(l))
      .map((l) => l.replace(/\s+/g, ' '))
      .join(', ');
    load.send({ type: 'exit' });
    const exited = new Promise((r) => hub.once('exit', r));
    hub.kill('SIGTERM');
    await exited;
    const exitAt = performance.now();
    console.log(
      `hub ${root}${values.core ? ' (core, no live view)' : ' (npm start)'}${influx ? ', forwarding to InfluxDB' : ''}: ${result.sent} frames sent, ${result.acked} acked, at ${rate} frames/s for ${seconds} s, ` +
        `${devices} devices; load average ${loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')}`,
    );
    const frames = Math.max(1, result.sent);
    console.log(
      `whole process (all threads, user + system): ${(((after.cpuMs - before.cpuMs) * 1000) / frames).toFixed(1)} µs CPU per frame ` +
        `(system ${(((after.systemMs - before.systemMs) * 1000) / frames).toFixed(1)}, ` +
        `main-thread GC pauses ${(((after.gcMs - before.gcMs) * 1000) / frames).toFixed(1)}); ` +
        `${(frames / Math.max(1, after.commits - before.commits)).toFixed(1)} frames per commit, ` +
        `${(frames / Math.max(1, after.acks - before.acks)).toFixed(1)} frames per ACK; ` +
        `disk writes ${((after.writeBytes - before.writeBytes) / frames / 1000).toFixed(2)} KB per frame (write_bytes); at the end ${memory}`,
    );
    if (!profile) return;
    const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error('no .cpuprofile written');
    const summary = summarize(JSON.parse(readFileSync(join(profDir, file), 'utf8')) as CpuProfile, {
      fromEndUs: (exitAt - stepStart) * 1000,
      toEndUs: (exitAt - stepEnd) * 1000,
    });
    const perK = (ms: number) => ((ms * 1000) / Math.max(1, result.sent)).toFixed(1);
    console.log(
      `main thread busy ${summary.busyMs.toFixed(0)} ms of the measured step's ${summary.totalMs.toFixed(0)} ms (after a 2 s warm-up)\n`,
    );
    console.log('| part | self ms | % of busy | ms per 1 k frames | top functions (self ms) |');
    console.log('|---|---:|---:|---:|---|');
    for (const p of summary.parts) {
      if (p.part === 'idle') continue;
      console.log(
        `| ${p.part} | ${p.ms.toFixed(0)} | ${((100 * p.ms) / summary.busyMs).toFixed(1)} | ${perK(p.ms)} | ${p.top.join('; ')} |`,
      );
    }
    console.log(`| **busy total** | ${summary.busyMs.toFixed(0)} | 100 | ${perK(summary.busyMs)} | |`);
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await influx?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The process's CPU time (ms, all threads) and disk writes (from /proc), its commit and ACK counters. */
async function processFigures(
  pid: number,
  port: number,
): Promise<{ cpuMs: number; systemMs: number; writeBytes: number; commits: number; acks: number; gcMs: number }> {
  const stat = procStat(pid);
  if (!stat) throw new Error(`the hub (pid ${pid}) is gone`);
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const metric = (name: string) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? 0);
  return {
    cpuMs: stat.cpuSeconds * 1000,
    systemMs: stat.systemSeconds * 1000,
    writeBytes: Number(/^write_bytes: (\d+)/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? 0),
    commits: metric('hub_local_log_commits_total'),
    acks: metric('hub_acks_sent_total'),
    // The main thread's garbage-collection pauses, every kind (prom-client's default metrics).
    gcMs:
      1000 *
      [...text.matchAll(/^hub_process_nodejs_gc_duration_seconds_sum\{[^}]*\} (\S+)/gm)].reduce(
        (sum, m) => sum + Number(m[1]),
        0,
      ),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
