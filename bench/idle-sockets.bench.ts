/**
 * Memory per idle device connection (design bar: 10 k idle device sockets at ≤ 20 KB each).
 *
 * The hub (`buildHub`, embedded mode, temp data dir) runs in one child process; 10,000 devices in
 * another connect through the real upgrade path (token, subprotocol), complete HELLO → WELCOME and then
 * stay idle, answering pings. The hub's RSS and JS heap are read after a forced GC before and after the
 * connections; the difference divided by the sockets is the cost of one. In the same run a bare `ws`
 * server holding the same 10,000 idle sockets gives the baseline: what the WebSocket itself costs.
 *
 * This file is also the worker: run as a child with `hub`, `bare` or `devices`.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';
import { SUBPROTOCOL } from '../server/codec/index.ts';
import { configFrom } from '../server/config/index.ts';
import { buildHub } from '../server/hub.ts';
import { createLogger } from '../server/log/index.ts';
import type { BenchOptions, BenchReport } from './run.ts';
import { benchHello, nextMessage } from './workers.ts';

export const name = 'idle-sockets';

const THIS_FILE = fileURLToPath(import.meta.url);
const BAR_BYTES = 20_000;
/** Tokens the bench hub accepts: `bench-<device id>` (no registry: 10 k hashed entries are not the point). */
const TOKEN_PREFIX = 'bench-';

type FromWorker =
  | { type: 'listening'; port: number }
  | { type: 'memory'; rss: number; heapUsed: number; sockets: number }
  | { type: 'connected'; count: number; failed: number; ms: number };
type ToWorker =
  | { type: 'memory' }
  | { type: 'connect'; port: number; count: number; hello: boolean }
  | { type: 'exit' };

// ───────────────────────── orchestration ─────────────────────────

export async function run(options: BenchOptions = { quick: false }): Promise<BenchReport> {
  const count = options.quick ? 2000 : 10_000;
  const hub = await measure('hub', count);
  const bare = await measure('bare', count);
  const perSocket = (m: Measurement) => (m.after.rss - m.before.rss) / count;
  const perSocketHeap = (m: Measurement) => (m.after.heapUsed - m.before.heapUsed) / count;
  return {
    title: `${count.toLocaleString('en')} idle device connections (HELLO → WELCOME, then silent)`,
    rows: [
      {
        metric: 'hub RSS per idle device',
        value: perSocket(hub) / 1000,
        unit: 'KB',
        baseline: { label: 'bare ws server, same sockets', value: perSocket(bare) / 1000 },
        note: `bar ≤ ${BAR_BYTES / 1000} KB`,
      },
      { metric: 'hub JS heap per idle device', value: perSocketHeap(hub) / 1000, unit: 'KB' },
      { metric: 'hub RSS with all connected', value: hub.after.rss / 1e6, unit: 'MB' },
      { metric: 'connect + HELLO → WELCOME, all devices', value: hub.connectMs, unit: 'ms' },
    ],
    notes: [
      `sessions held by the hub: ${hub.after.sockets}; connections refused or failed: ${hub.failed}`,
      'RSS and heap read after a forced GC in the server process, before and after the connections',
      'the devices run in their own process; kernel socket buffers are not in the server RSS',
    ],
  };
}

interface Measurement {
  before: { rss: number; heapUsed: number; sockets: number };
  after: { rss: number; heapUsed: number; sockets: number };
  connectMs: number;
  failed: number;
}

async function measure(kind: 'hub' | 'bare', count: number): Promise<Measurement> {
  const dataDir = mkdtempSync(join(tmpdir(), `esp32hub-bench-idle-${kind}-`));
  const server = worker([kind, dataDir]);
  const devices = worker(['devices']);
  try {
    const { port } = (await nextMessage<FromWorker>(server, 'listening')) as { port: number };
    const memory = async () => {
      server.send({ type: 'memory' } satisfies ToWorker);
      const m = (await nextMessage<FromWorker>(server, 'memory')) as { rss: number; heapUsed: number; sockets: number };
      return { rss: m.rss, heapUsed: m.heapUsed, sockets: m.sockets };
    };
    // Warm the server path with a few connections first, so one-time allocations are not counted.
    devices.send({ type: 'connect', port, count: 50, hello: kind === 'hub' } satisfies ToWorker);
    await nextMessage<FromWorker>(devices, 'connected', 300_000);
    const before = await memory();
    devices.send({ type: 'connect', port, count, hello: kind === 'hub' } satisfies ToWorker);
    const done = (await nextMessage<FromWorker>(devices, 'connected', 600_000)) as { ms: number; failed: number };
    await new Promise((r) => setTimeout(r, 1000));
    const after = await memory();
    return { before, after, connectMs: done.ms, failed: done.failed };
  } finally {
    for (const child of [devices, server]) {
      child.send({ type: 'exit' } satisfies ToWorker);
      child.kill();
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
}

function worker(args: string[]): ChildProcess {
  return fork(THIS_FILE, args, {
    execArgv: ['--import', 'tsx', '--expose-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

// ───────────────────────── workers ─────────────────────────

function send(m: FromWorker): void {
  process.send?.(m);
}

function memoryReport(sockets: number): FromWorker {
  (globalThis as { gc?: () => void }).gc?.();
  const { rss, heapUsed } = process.memoryUsage();
  return { type: 'memory', rss, heapUsed, sockets };
}

async function hubWorker(dataDir: string): Promise<void> {
  const config = configFrom({
    HUB_HOST: '127.0.0.1',
    HUB_PORT: '0',
    HUB_DATA_DIR: dataDir,
    HUB_LOG_LEVEL: 'silent',
    DEVICE_MAX_CONNECTIONS: '20000',
    DEVICE_HANDSHAKES_PER_SEC: '100000',
  });
  const hub = buildHub(config, {
    logger: createLogger('silent'),
    authenticate: (token) => (token?.startsWith(TOKEN_PREFIX) ? token.slice(TOKEN_PREFIX.length) : null),
  });
  const { port } = await hub.start();
  process.on('message', (m: ToWorker) => {
    if (m.type === 'memory') send(memoryReport(hub.context().sessions.size()));
    if (m.type === 'exit') void hub.stop().then(() => process.exit(0));
  });
  send({ type: 'listening', port });
}

function bareWorker(): void {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 16 * 1024 });
  wss.on('listening', () => {
    const address = wss.address();
    send({ type: 'listening', port: typeof address === 'object' && address ? address.port : 0 });
  });
  wss.on('connection', (ws) => ws.on('error', () => {}));
  process.on('message', (m: ToWorker) => {
    if (m.type === 'memory') send(memoryReport(wss.clients.size));
    if (m.type === 'exit') process.exit(0);
  });
}

function devicesWorker(): void {
  const held: WebSocket[] = [];
  let next = 0;
  process.on('message', async (m: ToWorker) => {
    if (m.type === 'exit') process.exit(0);
    if (m.type !== 'connect') return;
    const t0 = performance.now();
    let failed = 0;
    const ids = Array.from({ length: m.count }, () => `idle-${next++}`);
    // A few hundred handshakes at a time: what a fleet reconnecting after an outage looks like.
    for (let i = 0; i < ids.length; i += 200) {
      const results = await Promise.all(ids.slice(i, i + 200).map((id) => connect(m.port, id, m.hello)));
      for (const ws of results) {
        if (ws) held.push(ws);
        else failed++;
      }
    }
    send({ type: 'connected', count: m.count - failed, failed, ms: performance.now() - t0 });
  });
}

function connect(port: number, id: string, hello: boolean): Promise<WebSocket | null> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/device`, SUBPROTOCOL, {
      headers: { authorization: `Bearer ${TOKEN_PREFIX}${id}` },
      perMessageDeflate: false,
    });
    ws.on('error', () => resolve(null));
    ws.once('open', () => {
      if (!hello) return resolve(ws);
      ws.send(benchHello(id, 1, 0, 1000));
      ws.once('message', () => resolve(ws)); // WELCOME
    });
  });
}

const role = process.argv[2];
if (process.argv[1] === THIS_FILE && role) {
  if (role === 'hub') await hubWorker(process.argv[3] as string);
  else if (role === 'bare') bareWorker();
  else if (role === 'devices') devicesWorker();
}
