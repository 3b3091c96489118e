/**
 * The transport's own floor under the load patterns of the issue-12 goals: a bare `ws` server that
 * only counts frames (the ingest bench's `bare` role, same load generator, same 193-byte frames), its
 * CPU per frame
 * - with 1,000 against 100 connections at one fixed rate (8 k frames/s, 10 ms ticks): with 1,000 each
 *   socket read carries one frame, with 100 several. The hub's `influx-e2e` row "hub CPU per frame at
 *   8k frames/s, 1000 vs 100 devices" is to be read against this ratio;
 * - at 10 k frames/s against 60 k (50 connections): the light-load floor, to read against the ingest
 *   bench's "light load" goal rows.
 * The bare server sends nothing back (the hub also ACKs), so this is the receive side only.
 */
import { fork } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchOptions, BenchReport } from './run.ts';
import { freePort, nextMessage } from './workers.ts';

export const name = 'transport';

const INGEST = join(dirname(fileURLToPath(import.meta.url)), 'ingest.bench.ts');

/** The bare server's CPU (µs) per frame with `connections` connections at each of `rates`. */
async function bareCpuPerFrame(connections: number, rates: number[], seconds: number): Promise<number[]> {
  const port = await freePort();
  const bare = fork(INGEST, ['bare', String(port)], { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
  const load = fork(INGEST, ['load'], { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
  try {
    await nextMessage(bare, 'ready');
    load.send({
      type: 'connect',
      url: `ws://127.0.0.1:${port}/`,
      devices: Array.from({ length: connections }, (_, i) => ({ id: `t-${i}`, token: null })),
      expectAcks: false,
    });
    await nextMessage(load, 'ready', 300_000);
    const cpu = async () => {
      bare.send({ type: 'cpu' });
      return ((await nextMessage(bare, 'cpu')) as unknown as { us: number }).us;
    };
    const step = async (rate: number) => {
      load.send({ type: 'step', rate, seconds });
      return ((await nextMessage(load, 'result')) as unknown as { sent: number }).sent;
    };
    await step(rates[0] as number); // warm-up: JIT, socket buffers
    const out: number[] = [];
    for (const rate of rates) {
      const before = await cpu();
      const sent = await step(rate);
      out.push(((await cpu()) - before) / Math.max(1, sent));
    }
    return out;
  } finally {
    load.send({ type: 'exit' });
    bare.kill('SIGTERM');
  }
}

export async function run(options: BenchOptions = { quick: false }): Promise<BenchReport> {
  const seconds = options.quick ? 3 : 6;
  const [few] = await bareCpuPerFrame(100, [8000], seconds);
  const [many] = await bareCpuPerFrame(1000, [8000], seconds);
  const [light, heavy] = await bareCpuPerFrame(50, [10_000, 60_000], seconds);
  return {
    title: 'the transport alone: a bare ws server counting frames, CPU per frame under the goals’ load patterns',
    rows: [
      {
        metric: 'bare ws CPU per frame at 8k frames/s, 1000 vs 100 connections',
        value: many as number,
        unit: 'µs',
        baseline: { label: '100 connections', value: few as number },
        note: 'compare: influx-e2e "hub CPU per frame at 8k frames/s, 1000 vs 100 devices"',
      },
      {
        metric: 'bare ws CPU per frame at 10k vs 60k frames/s (50 connections)',
        value: light as number,
        unit: 'µs',
        baseline: { label: 'at 60k frames/s', value: heavy as number },
        note: 'compare: ingest "goal: light load" rows',
      },
    ],
    notes: [
      `${seconds} s per step after a warm-up step; paced in 10 ms ticks, frames round-robin over the connections (the ingest bench's load generator); the server's process.cpuUsage (user + system) per frame sent.`,
      'The bare server sends nothing back; the hub also writes ACKs (ACK pacing makes fewer with many devices).',
    ],
  };
}
