/**
 * Benchmark runner: `npm run bench` runs every `bench/*.bench.ts`; `npm run bench -- codec ingest` runs
 * the named ones. Flags: `--quick` (short rounds, for iterating on a shared machine), `--json` (also
 * print the reports as JSON). The module contract and how to read the output are in bench/README.md.
 *
 * Importing this file has no side effects (modules import its types and `measureRate`); it only runs
 * when executed.
 */
import { readdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

/** One measured figure. */
export interface BenchRow {
  metric: string;
  value: number;
  /** Per second rates end in `/s` (`frames/s`, `readings/s`); sizes in `B`, `KB`; times in `ms`, `µs`. */
  unit: string;
  note?: string;
  /** A reference measured in the same run on the same machine; the runner prints value / baseline. */
  baseline?: { label: string; value: number };
}

export interface BenchReport {
  title: string;
  rows: BenchRow[];
  /** Free-form lines printed under the table (setup, bars, caveats). */
  notes?: string[];
}

export interface BenchOptions {
  /** Short rounds: fewer, shorter measurements for iterating; figures are rougher. */
  quick: boolean;
}

/** What a `bench/<name>.bench.ts` module exports. */
export interface BenchModule {
  /** Short name used on the command line (`npm run bench -- <name>`). */
  name: string;
  run(options?: BenchOptions): Promise<BenchReport>;
}

export interface RateResult {
  /** Median operations per second over the rounds, by the chosen clock. */
  median: number;
  min: number;
  max: number;
  /** Median by wall-clock time, whatever the clock (equal to `median` for `clock: 'wall'`). */
  wallMedian: number;
  rounds: number;
}

let sink = 0;
/** Keeps results alive so the optimiser cannot remove the measured work. */
export function consume(value: number): void {
  sink = (sink + value) | 0;
}

/**
 * Measures a synchronous operation: `body(n)` performs the operation `n` times and returns any number
 * derived from the results (kept in a sink so the work is not optimised away). Calibrates `n` so a round
 * lasts `roundMs`, warms up for `warmupMs`, runs `rounds` rounds and reports the median rate.
 */
export interface MeasureOptions {
  quick?: boolean;
  /** Target duration of one measured round (default 250 ms; 60 ms with `quick`). */
  roundMs?: number;
  /** Measured rounds (default 9; 3 with `quick`). */
  rounds?: number;
  /** Warm-up after calibration, so the JIT has optimised `body` (default 500 ms; 100 ms with `quick`). */
  warmupMs?: number;
  /**
   * `wall` (default): elapsed time. `cpu`: this process's CPU time (`process.cpuUsage`, user + system),
   * i.e. a rate per core-second that other tenants of a shared machine do not deflate. Use `cpu` only
   * for synchronous single-threaded work; GC helper threads count too, which makes it conservative.
   */
  clock?: 'wall' | 'cpu';
}

export function measureRate(body: (n: number) => number, options: MeasureOptions = {}): RateResult {
  const quick = options.quick ?? false;
  const roundMs = options.roundMs ?? (quick ? 60 : 250);
  const rounds = options.rounds ?? (quick ? 3 : 9);
  const warmupMs = options.warmupMs ?? (quick ? 100 : 500);
  let n = 1;
  // Calibrate (this is also the first part of the warm-up).
  for (;;) {
    const t0 = performance.now();
    consume(body(n));
    const elapsed = performance.now() - t0;
    if (elapsed >= roundMs / 4 || n >= 2 ** 30) {
      n = Math.max(1, Math.round((n * roundMs) / Math.max(elapsed, 0.001)));
      break;
    }
    n *= 4;
  }
  const warmEnd = performance.now() + warmupMs;
  while (performance.now() < warmEnd) consume(body(Math.max(1, n >> 2)));
  const rates: number[] = [];
  const wallRates: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    consume(body(n));
    const wallSeconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const cpuSeconds = Math.max((cpu.user + cpu.system) / 1e6, 1e-6);
    wallRates.push(n / wallSeconds);
    rates.push(n / (options.clock === 'cpu' ? cpuSeconds : wallSeconds));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] as number;
  return {
    median: median(rates),
    min: Math.min(...rates),
    max: Math.max(...rates),
    wallMedian: median(wallRates),
    rounds,
  };
}

// ───────────── printing ─────────────

/** 3 significant digits with k / M / G suffixes for large numbers. */
export function formatNumber(v: number): string {
  const abs = Math.abs(v);
  const [div, suffix] = abs >= 1e9 ? [1e9, ' G'] : abs >= 1e6 ? [1e6, ' M'] : abs >= 1e4 ? [1e3, ' k'] : [1, ''];
  const x = v / div;
  const digits = Math.abs(x) >= 100 || Number.isInteger(x) ? 0 : Math.abs(x) >= 10 ? 1 : 2;
  return `${x.toFixed(digits)}${suffix}`;
}

function renderTable(header: string[], rows: string[][], rightAligned: Set<number>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (rightAligned.has(i) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '─'.repeat(w))), ...rows.map(line)].join('\n');
}

export function renderReport(name: string, report: BenchReport): string {
  const rows = report.rows.map((r) => [
    r.metric,
    formatNumber(r.value),
    r.unit,
    r.baseline ? `${formatNumber(r.baseline.value)} (${r.baseline.label})` : '',
    r.baseline ? `${(r.value / r.baseline.value).toFixed(2)}×` : '',
    r.note ?? '',
  ]);
  const table = renderTable(['metric', 'value', 'unit', 'baseline', 'ratio', 'note'], rows, new Set([1, 4]));
  const notes = (report.notes ?? []).map((n) => `  · ${n}`);
  return [`\n■ ${name}: ${report.title}`, '', table, ...(notes.length ? ['', ...notes] : [])].join('\n');
}

// ───────────── main ─────────────

const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));

function discover(): Map<string, string> {
  const files = readdirSync(BENCH_DIR)
    .filter((f) => f.endsWith('.bench.ts'))
    .sort();
  return new Map(files.map((f) => [f.slice(0, -'.bench.ts'.length), `${BENCH_DIR}${f}`]));
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { quick: { type: 'boolean', default: false }, json: { type: 'boolean', default: false } },
  });
  const available = discover();
  const wanted = positionals.length > 0 ? positionals : [...available.keys()];
  const unknown = wanted.filter((w) => !available.has(w));
  if (unknown.length > 0) {
    console.error(`unknown benchmark(s): ${unknown.join(', ')}; available: ${[...available.keys()].join(', ')}`);
    return 2;
  }
  console.log(
    `node ${process.version}, ${process.platform}/${process.arch}${values.quick ? ', --quick (rough figures)' : ''}`,
  );

  const summary: { name: string; status: string; seconds: number; report?: BenchReport }[] = [];
  for (const name of wanted) {
    const t0 = performance.now();
    try {
      const mod = (await import(pathToFileURL(available.get(name) as string).href)) as Partial<BenchModule>;
      if (typeof mod.run !== 'function' || typeof mod.name !== 'string') {
        throw new Error('a bench module exports `name` and `run()` (see bench/README.md)');
      }
      const report = await mod.run({ quick: values.quick });
      console.log(renderReport(mod.name, report));
      summary.push({ name, status: 'ok', seconds: (performance.now() - t0) / 1000, report });
    } catch (err) {
      console.error(`\n■ ${name}: FAILED\n${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      summary.push({ name, status: 'failed', seconds: (performance.now() - t0) / 1000 });
    }
  }

  console.log('\n■ summary\n');
  console.log(
    renderTable(
      ['module', 'status', 'rows', 'time'],
      summary.map((s) => [s.name, s.status, String(s.report?.rows.length ?? 0), `${s.seconds.toFixed(1)} s`]),
      new Set([2, 3]),
    ),
  );
  if (values.json) {
    console.log(JSON.stringify(Object.fromEntries(summary.map((s) => [s.name, s.report ?? null])), null, 2));
  }
  return summary.some((s) => s.status !== 'ok') ? 1 : 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
