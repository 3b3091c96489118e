/**
 * `npm run hub -- dead-letters <list|replay|drop>`: the operator's side of the dead-letter store
 * (lines InfluxDB rejected permanently). Side-effect free at import: `server/cli.ts` calls
 * {@link runDeadLettersCli} with argv, env and the standard streams.
 *
 * It opens `<dataDir>/dead-letters/` directly, whether or not the hub is running: lmdb is built for
 * several processes on one environment (write transactions are serialised across processes by its
 * lock, readers see committed snapshots), and the store keeps every total in a meta record updated
 * inside the transaction that changes it, so the hub and the CLI never work from stale counts. This
 * needs no admin token and works while the hub is down (the usual time to clean up). The admin API
 * (`/api/admin/dead-letters`) does the same from another machine. `replay` writes with the hub's
 * InfluxDB settings (`INFLUX_*`); `--bucket` sends to another bucket (database) instead.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { type CliIo, EXIT, failed, HUB_CLI_OPTIONS, loadCliConfig, parseCli, printJson } from '../cli-args.ts';
import { ENV_SCHEMA } from '../config/index.ts';
import { createLogger } from '../log/index.ts';
import { createMetrics } from '../metrics/index.ts';
import {
  type DeadLetterFilter,
  type DeadLetterRecord,
  type OpenDeadLetterStore,
  openDeadLetterStore,
  viewOf,
} from './dead-letter.ts';
import { createDeadLetterReplayer, type ReplayResult } from './influx/replay.ts';

/** Exit codes (as for `devices`): 0 done, 1 failed (or a replay stopped early), 2 bad usage or configuration. */
export { EXIT };

export const DEAD_LETTERS_USAGE = `Usage: npm run hub -- dead-letters <command> [options]

Dead letters are lines InfluxDB rejected permanently (e.g. a field-type conflict), kept with the
reason in <data dir>/dead-letters/. Fix the cause, then replay them; or drop them.

Commands:
  list               show records (oldest first): id, time, status, lines, reason, first lines
  replay             send the matching records to InfluxDB again; lines it rejects again stay,
                     with the new reason. Uses INFLUX_URL/TOKEN/ORG/BUCKET (or --bucket)
  drop               delete the matching records (needs --id, --reason, --status or --all)

Options:
  --id <n>              a record id (repeatable)
  --reason <text>       records whose reason contains <text> (any case)
  --status <code>       records with this HTTP status (0: a stored frame that could not become lines)
  --all                 with drop: every record
  --after <id>          with list: records after this id (paging)
  --limit <n>           list: records to show (default 20); replay: most records to replay
  --lines <n>           with list: lines shown per record (default 3)
  --bucket <name>       with replay: write to this bucket/database instead of INFLUX_BUCKET
  --data-dir <dir>      the hub's data directory (default: HUB_DATA_DIR, else .data)
  --json                machine-readable output on stdout
  -h, --help            show this help

Works whether or not the hub is running (lmdb serialises writers across processes).
Exit codes: 0 ok, 1 failed or replay stopped by InfluxDB, 2 usage or configuration error.
`;

type Command = 'list' | 'replay' | 'drop';

/** Runs `dead-letters ...` (args after the words `dead-letters`); resolves to the process exit code. */
export async function runDeadLettersCli(args: string[], io: CliIo): Promise<number> {
  const cli = parseCli(args, io, { text: DEAD_LETTERS_USAGE }, OPTIONS);
  if (typeof cli === 'number') return cli;
  const { values, positionals, usage } = cli;
  const [command, ...extra] = positionals;
  if (command === undefined) return usage('missing command');
  if (command !== 'list' && command !== 'replay' && command !== 'drop') return usage(`unknown command "${command}"`);
  if (extra.length > 0) return usage(`unexpected argument "${extra[0]}"`);

  let filter: DeadLetterFilter;
  let limit: number | undefined;
  let after: number | undefined;
  let lines: number | undefined;
  try {
    filter = filterOf(values);
    limit = optionalInt(values.limit, 'limit', 1);
    after = optionalInt(values.after, 'after', 0);
    lines = optionalInt(values.lines, 'lines', 0);
  } catch (err) {
    return usage((err as Error).message);
  }
  const only = (option: string, commands: Command[]) =>
    (values as Record<string, unknown>)[option] !== undefined && !commands.includes(command)
      ? `--${option} only applies to ${commands.join(' and ')}`
      : null;
  const misuse =
    only('all', ['drop']) ?? only('after', ['list']) ?? only('lines', ['list']) ?? only('bucket', ['replay']);
  if (misuse) return usage(misuse);
  if (command === 'drop' && !values.all && Object.keys(filter).length === 0) {
    return usage('drop needs --id, --reason, --status or --all');
  }
  if (values.all && Object.keys(filter).length > 0) return usage('--all cannot be combined with a filter');

  const config = loadCliConfig(io, CLI_ENV);
  if (typeof config === 'number') return config;
  if (command === 'replay' && config.influx === null) {
    return usage('replay needs InfluxDB: set INFLUX_URL, INFLUX_TOKEN, INFLUX_ORG and INFLUX_BUCKET as for the hub');
  }

  const json = values.json === true;
  const dataDir = values['data-dir'] ?? config.storage.dataDir;
  const storePath = join(dataDir, 'dead-letters');
  if (!existsSync(storePath)) {
    // Never create a store just to look (a mistyped --data-dir would look like "no dead letters").
    if (json) printJson(io, { totals: null, records: [], next: null, store: null });
    else io.stdout.write(`No dead-letter store at ${resolve(storePath)}: nothing was ever dead-lettered there.\n`);
    return EXIT.OK;
  }
  // Logs (warnings only) go to stderr so `--json` output stays clean.
  const logger = createLogger('warn', pino.destination({ fd: 2, sync: true }));
  let store: OpenDeadLetterStore | undefined;
  try {
    store = openDeadLetterStore({
      dataDir,
      metrics: createMetrics(),
      logger,
      ...(config.influx?.deadLetterMaxBytes !== undefined ? { maxBytes: config.influx.deadLetterMaxBytes } : {}),
    });
    const out = new Output(io, json);
    switch (command) {
      case 'list': {
        const page = store.query({ ...filter, afterId: after ?? 0, limit: limit ?? 20, maxLinesPerRecord: lines ?? 3 });
        out.list(store, page.records, page.nextAfterId);
        return EXIT.OK;
      }
      case 'drop': {
        const dropped = await store.drop(filter);
        out.dropped(dropped);
        return EXIT.OK;
      }
      case 'replay': {
        const replayer = createDeadLetterReplayer({
          config: config.influx!,
          store,
          metrics: createMetrics(),
          logger,
        });
        const result = await replayer.replay({
          filter,
          ...(limit !== undefined ? { limit } : {}),
          ...(values.bucket !== undefined ? { bucket: values.bucket } : {}),
        });
        out.replayed(result, values.bucket ?? config.influx!.bucket);
        return result.complete ? EXIT.OK : EXIT.FAILED;
      }
      default:
        return usage(`unknown command "${command satisfies never}"`);
    }
  } catch (err) {
    return failed(io, json, err);
  } finally {
    await store?.close();
  }
}

class Output {
  constructor(
    readonly io: CliIo,
    readonly json: boolean,
  ) {}

  list(store: OpenDeadLetterStore, records: DeadLetterRecord[], next: number | null): void {
    const totals = store.totals();
    if (this.json) {
      this.print({ totals, records: records.map(viewOf), next });
      return;
    }
    const text: string[] = [
      `${totals.lines} dead-lettered line(s) in ${totals.records} record(s), ${totals.bytes} of ${totals.maxBytes} bytes (${store.path})`,
    ];
    if (records.length === 0) {
      text.push('No records match.');
    }
    for (const r of records) {
      text.push(
        '',
        `#${r.id}  ${new Date(r.atMs).toISOString()}  status ${r.status}  ${r.lineCount} line(s)` +
          (r.replays > 0 ? `  replayed ${r.replays}×, first ${new Date(r.firstAtMs).toISOString()}` : ''),
        `  reason: ${r.reason}`,
        ...r.lines.map((l) => `  ${l}`),
        ...(r.lineCount > r.lines.length ? [`  … ${r.lineCount - r.lines.length} more`] : []),
      );
    }
    if (next !== null) text.push('', `More: add --after ${next}`);
    this.io.stdout.write(`${text.join('\n')}\n`);
  }

  dropped(d: { records: number; lines: number }): void {
    if (this.json) this.print({ dropped: d });
    else this.io.stdout.write(`Dropped ${d.lines} line(s) in ${d.records} record(s).\n`);
  }

  replayed(r: ReplayResult, bucket: string): void {
    if (this.json) {
      this.print({ ...r, bucket });
      return;
    }
    const lines = [
      `Replayed ${r.records} record(s) to bucket "${bucket}": ${r.storedLines} line(s) stored, ` +
        `${r.rejectedLines} rejected again (kept with the new reason).`,
    ];
    if (r.skippedRecords > 0) {
      lines.push(
        `Skipped ${r.skippedRecords} record(s) of stored frames that could not become lines (status 0); ` +
          'they are not line protocol: inspect with list --status 0, drop once resolved.',
      );
    }
    if (!r.complete) {
      lines.push(
        `Stopped early: InfluxDB answered ${r.stoppedBy?.status ?? '?'}: ${r.stoppedBy?.reason ?? ''}`,
        'The records not replayed are untouched; run the command again once InfluxDB accepts writes.',
      );
    }
    this.io.stdout.write(`${lines.join('\n')}\n`);
  }

  private print(value: unknown): void {
    printJson(this.io, value);
  }
}

function filterOf(values: { id?: string[]; reason?: string; status?: string }): DeadLetterFilter {
  const filter: DeadLetterFilter = {};
  if (values.id !== undefined) filter.ids = values.id.map((v) => requiredInt(v, 'id', 1));
  if (values.reason !== undefined) filter.reason = values.reason;
  if (values.status !== undefined) filter.status = requiredInt(values.status, 'status', 0);
  return filter;
}

function requiredInt(text: string, name: string, min: number): number {
  const n = Number(text);
  if (text === '' || !Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}`);
  return n;
}

function optionalInt(text: string | undefined, name: string, min: number): number | undefined {
  return text === undefined ? undefined : requiredInt(text, name, min);
}

const OPTIONS = {
  ...HUB_CLI_OPTIONS,
  id: { type: 'string', multiple: true },
  reason: { type: 'string' },
  status: { type: 'string' },
  all: { type: 'boolean' },
  after: { type: 'string' },
  limit: { type: 'string' },
  lines: { type: 'string' },
  bucket: { type: 'string' },
} as const;

/** Only the settings the CLI needs, so an unrelated bad variable (say LIVE_MAX_CLIENTS) does not block it. */
const CLI_ENV = ['HUB_CONFIG_FILE', 'HUB_DATA_DIR', ...Object.keys(ENV_SCHEMA).filter((k) => k.startsWith('INFLUX_'))];
