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
    const modes = ['local', 'influx'] as const;
    const runs = {} as Record<(typeof modes)[number], HubRun>;
    for (const mode of modes) {
      runs[mode] = await measureHub(
        influx,
        join(dir, mode),
        DEVICES,
        quick,
        children,
        { ACK_DURABILITY: mode },
        LATENCY_RATE,
      );
    }
    const { local, influx: viaInflux } = runs;
    const rows: BenchRow[] = [
      {
        metric: `sustained into InfluxDB, ACK_DURABILITY=influx (${DEVICES} dev)`,
        value: viaInflux.best.achieved * READINGS_PER_FRAME,
        unit: 'readings/s',
        baseline: { label: 'ACK_DURABILITY=local, same run', value: local.best.achieved * READINGS_PER_FRAME },
      },
    ];
    for (const [mode, r] of Object.entries(runs)) {
      rows.push(
        {
          metric: `ACK latency p50 at ${LATENCY_RATE / 1000}k frames/s, ${mode}`,
          value: r.fixed.ackP50Ms,
          unit: 'ms',
          ...(mode === 'influx' ? { baseline: { label: 'local', value: local.fixed.ackP50Ms } } : {}),
        },
        {
          metric: `ACK latency p99 at ${LATENCY_RATE / 1000}k frames/s, ${mode}`,
          value: r.fixed.ackP99Ms,
          unit: 'ms',
          ...(mode === 'influx' ? { baseline: { label: 'local', value: local.fixed.ackP99Ms } } : {}),
        },
        {
          metric: `ACK latency p50 / p99 at the highest rate, ${mode}`,
          value: r.best.ackP50Ms,
          unit: 'ms',
          note: `p99 ${r.best.ackP99Ms.toFixed(1)} ms at ${Math.round(r.best.achieved)} frames/s`,
        },
      );
    }
    return {
      title: 'ACK_DURABILITY=influx vs local: sustained rate into InfluxDB and ACK latency',
      rows,
      notes: [
        `${DEVICES} devices, frames of 8 f32 readings, paced (influx-e2e's load generator and step search, ${quick ? 3 : 6} s steps); default settings otherwise (INFLUX_FLUSH_INTERVAL_MS 250, 2 writes in flight, 16 MiB in-flight budget)`,
        `steps (frames/s → pass?): ${modes.map((m) => `${m}: ${runs[m].trail}`).join('; ')}`,
        `InfluxDB holds every ACKed reading after each run (COUNT: ${modes.map((m) => runs[m].checked).join(', ')})`,
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
