/**
 * `npm run chaos -- <scenario> [options]`: faults injected into a real hub process under load, with
 * an independent device fleet, then a reconciliation of every acknowledged reading against the store.
 * See docs/chaos.md. Exit code: 0 pass, 1 fail (any loss, duplicate, changed value or failed check),
 * 2 bad arguments, 77 skipped (the scenario cannot run here, e.g. disk-full without root).
 */
import { parseCli } from '../../server/cli-args.ts';
import { stopAll } from '../../test/harness/index.ts';
import { runDiskFull } from './disk-full.ts';
import { runInfluxOutage } from './influx-outage.ts';
import { runKill9 } from './kill9.ts';
import { type ChaosReport, formatReport, passed } from './report.ts';

const USAGE = `usage: npm run chaos -- <scenario> [options]

scenarios:
  kill9          SIGKILL the hub under load, restart it, repeat      --rounds N (20) --load-seconds S (2)
                                                                     --store influx|embedded (influx)
  influx-outage  stop InfluxDB for a while under load, restart it    --minutes M (10) | --seconds S
                                                                     --min-drain-multiple X (3)
  disk-full      fill the data dir's filesystem (a tmpfs, as root)   --size-mb N (128) --hold-seconds S (10)
                                                                     --reserve-mb N (16: the hub's LOG_MIN_FREE_BYTES)

common:          --devices N (10)  --rate R readings/s (5000)
exit code: 0 pass, 1 fail, 2 usage, 77 skipped`;

const say = (line: string) => process.stderr.write(`[chaos] ${line}\n`);

function num(v: string | undefined, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`--${name} must be a non-negative number`);
  return n;
}

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const io = { stdout: process.stdout, stderr: process.stderr };
  const cli = parseCli(argv, io, { text: `${USAGE}\n`, errorPrefix: '' }, OPTIONS);
  if (typeof cli === 'number') return cli;
  const { positionals, values, usage } = cli;
  const scenario = positionals[0];
  if (positionals.length !== 1 || (scenario !== 'kill9' && scenario !== 'influx-outage' && scenario !== 'disk-full')) {
    return usage(positionals.length === 0 ? 'which scenario?' : `unknown scenario: ${positionals.join(' ')}`);
  }
  let report: ChaosReport;
  try {
    const devices = num(values.devices, 'devices', 10);
    const rate = num(values.rate, 'rate', 5000);
    if (devices < 1 || rate <= 0) throw new UsageError('--devices and --rate must be positive');
    if (scenario === 'kill9') {
      const store = values.store ?? 'influx';
      if (store !== 'influx' && store !== 'embedded') throw new UsageError('--store must be influx or embedded');
      report = await runKill9({
        rounds: num(values.rounds, 'rounds', 20),
        loadSeconds: num(values['load-seconds'], 'load-seconds', 2),
        store,
        devices,
        rate,
        say,
      });
    } else if (scenario === 'influx-outage') {
      const outageMs =
        values.seconds !== undefined
          ? num(values.seconds, 'seconds', 0) * 1000
          : num(values.minutes, 'minutes', 10) * 60_000;
      report = await runInfluxOutage({
        outageMs,
        minDrainMultiple: num(values['min-drain-multiple'], 'min-drain-multiple', 3),
        devices,
        rate,
        say,
      });
    } else {
      report = await runDiskFull({
        sizeBytes: num(values['size-mb'], 'size-mb', 128) * 1024 * 1024,
        holdMs: num(values['hold-seconds'], 'hold-seconds', 10) * 1000,
        reserveBytes: num(values['reserve-mb'], 'reserve-mb', 16) * 1024 * 1024,
        devices,
        rate,
        say,
      });
    }
  } catch (err) {
    if (err instanceof UsageError) return usage(err.message);
    throw err;
  }
  process.stdout.write(`${formatReport(report)}\n`);
  if (report.skipped !== null) return 77;
  return passed(report) ? 0 : 1;
}

const OPTIONS = {
  rounds: { type: 'string' },
  'load-seconds': { type: 'string' },
  store: { type: 'string' },
  minutes: { type: 'string' },
  seconds: { type: 'string' },
  'min-drain-multiple': { type: 'string' },
  'size-mb': { type: 'string' },
  'hold-seconds': { type: 'string' },
  'reserve-mb': { type: 'string' },
  devices: { type: 'string' },
  rate: { type: 'string' },
} as const;

main(process.argv.slice(2)).then(
  async (code) => {
    await stopAll().catch(() => undefined);
    process.exit(code);
  },
  async (err: unknown) => {
    process.stderr.write(`chaos failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    await stopAll().catch(() => undefined);
    process.exit(1);
  },
);
