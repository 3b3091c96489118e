/**
 * The cost of ACK_DURABILITY=influx (the ACK waits for InfluxDB's confirmation, besides the local
 * commit) against the default `local`, in one run against the same co-located InfluxDB (the harness's
 * 1.x engine behind the nginx `/api/v2/write` rewrite): the highest paced rate at which every frame is
 * ACKed and in InfluxDB within 2 s of the load's end, and the ACK latency (device side: send → the
 * cumulative ACK covering the frame) at one fixed rate for both modes and at each mode's highest rate.
 * The machinery (hub process, load generator, step search, the InfluxDB count check) is
 * influx-e2e.bench.ts's `measureHub`; only ACK_DURABILITY differs between the two hubs.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startInflux } from '../test/harness/index.ts';
import { type HubRun, measureHub, READINGS_PER_FRAME } from './influx-e2e.bench.ts';
import type { BenchOptions, BenchReport, BenchRow } from './run.ts';

export const name = 'ack-durability';

const DEVICES = 100;
/** The fixed rate both modes are compared at (frames/s): well below either's highest, so latency is not queueing. */
const LATENCY_RATE = 2000;

export async function run(options: BenchOptions = { quick: false }): Promise<BenchReport> {
  const quick = options.quick;
  const dir = mkdtempSync(join(tmpdir(), 'bench-ack-durability-'));
  const children: ChildProcess[] = [];
  const influx = await startInflux({ bucket: 'ackdur' });
  try {
    // local, influx, local: the machine is shared and its other load drifts within minutes, so the
    // influx hub is compared with the mean of the local runs right before and right after it.
    const run1 = (mode: 'local' | 'influx', label: string) =>
      measureHub(influx, join(dir, label), DEVICES, quick, children, { ACK_DURABILITY: mode }, LATENCY_RATE);
    const before = await run1('local', 'local-1');
    const viaInflux = await run1('influx', 'influx');
    const after = await run1('local', 'local-2');
    const mean = (f: (r: HubRun) => number) => (f(before) + f(after)) / 2;
    const local = {
      rate: mean((r) => r.best.achieved) * READINGS_PER_FRAME,
      p50: mean((r) => r.fixed.ackP50Ms),
      p99: mean((r) => r.fixed.ackP99Ms),
    };
    const label = 'ACK_DURABILITY=local, mean of the runs before and after';
    const rows: BenchRow[] = [
      {
        metric: `sustained into InfluxDB, ACK_DURABILITY=influx (${DEVICES} dev)`,
        value: viaInflux.best.achieved * READINGS_PER_FRAME,
        unit: 'readings/s',
        baseline: { label, value: local.rate },
      },
      {
        metric: `ACK latency p50 at ${LATENCY_RATE / 1000}k frames/s, influx`,
        value: viaInflux.fixed.ackP50Ms,
        unit: 'ms',
        baseline: { label, value: local.p50 },
      },
      {
        metric: `ACK latency p99 at ${LATENCY_RATE / 1000}k frames/s, influx`,
        value: viaInflux.fixed.ackP99Ms,
        unit: 'ms',
        baseline: { label, value: local.p99 },
      },
    ];
    for (const [mode, r] of [
      ['local (before)', before],
      ['influx', viaInflux],
      ['local (after)', after],
    ] as const) {
      rows.push({
        metric: `ACK latency p50 at the highest rate, ${mode}`,
        value: r.best.ackP50Ms,
        unit: 'ms',
        note: `p99 ${r.best.ackP99Ms.toFixed(1)} ms at ${Math.round(r.best.achieved)} frames/s; at ${LATENCY_RATE / 1000}k: p50 ${r.fixed.ackP50Ms.toFixed(1)}, p99 ${r.fixed.ackP99Ms.toFixed(1)} ms`,
      });
    }
    const runs = { 'local (before)': before, influx: viaInflux, 'local (after)': after };
    return {
      title: 'ACK_DURABILITY=influx vs local: sustained rate into InfluxDB and ACK latency',
      rows,
      notes: [
        `${DEVICES} devices, frames of 8 f32 readings, paced (influx-e2e's load generator and step search, ${quick ? 3 : 6} s steps); default settings otherwise (INFLUX_FLUSH_INTERVAL_MS 250, 2 writes in flight, 16 MiB in-flight budget); hubs run local, influx, local`,
        `steps (frames/s → pass?): ${Object.entries(runs)
          .map(([m, r]) => `${m}: ${r.trail}`)
          .join('; ')}`,
        `InfluxDB holds every ACKed reading after each run (COUNT: ${Object.values(runs)
          .map((r) => r.checked)
          .join(', ')})`,
        `load average at the end: ${loadavg()
          .map((l) => l.toFixed(1))
          .join(' ')} (shared machine: compare the ratio)`,
      ],
    };
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await influx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
