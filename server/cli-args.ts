/**
 * What the command-line entry points share (`npm run hub -- <group> ...` in server/cli.ts and its
 * groups, `npm run chaos`): the streams they write to, the exit codes, and their preamble. Arguments
 * are parsed strictly, so an unknown flag or a flag without its value is a usage error; `--help`
 * prints the usage on stdout; usage and configuration errors go to stderr with exit code 2.
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { ConfigError, type HubConfig, loadConfig } from './config/index.ts';
import { HubError } from './errors.ts';

/** Where a CLI writes; `process.stdout`/`process.stderr` in production, buffers in tests. */
export interface CliIo {
  env: Record<string, string | undefined>;
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

/** Exit codes: 0 done, 1 the operation was refused or failed, 2 bad usage or configuration. */
export const EXIT = { OK: 0, FAILED: 1, USAGE: 2 } as const;

type CliOptions = NonNullable<ParseArgsConfig['options']>;

/** The options every `npm run hub -- <group>` command takes: `--data-dir <dir>`, `--json`, `-h`/`--help`. */
export const HUB_CLI_OPTIONS = {
  'data-dir': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** How a CLI reports usage errors: its usage text, after `<errorPrefix><message>` and a blank line. */
export interface CliUsage {
  /** The usage text, printed whole by `--help` and after every usage error. */
  text: string;
  /** Before the message of a usage error (default `error: `). */
  errorPrefix?: string;
}

/** Writes a usage error on stderr: the message, a blank line, the usage text. Returns EXIT.USAGE. */
export function usageError(io: Pick<CliIo, 'stderr'>, usage: CliUsage, message: string): number {
  io.stderr.write(`${usage.errorPrefix ?? 'error: '}${message}\n\n${usage.text}`);
  return EXIT.USAGE;
}

/** Parsed arguments, and the usage error reporter of the CLI they belong to. */
export interface ParsedCli<O extends CliOptions> {
  values: ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>>['values'];
  positionals: string[];
  /** Reports a usage error ({@link usageError}); returns EXIT.USAGE. */
  usage(message: string): number;
}

/**
 * Parses `args` strictly against `options` (positionals allowed). A parse error (an unknown flag, a
 * missing value) is reported as a usage error, and `--help`, when `options` has `help`, prints the
 * usage text on stdout: then the exit code to return at once is returned instead (2, or 0 for help).
 */
export function parseCli<const O extends CliOptions>(
  args: string[],
  io: Pick<CliIo, 'stdout' | 'stderr'>,
  usage: CliUsage,
  options: O,
): ParsedCli<O> | number {
  let parsed: ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>>;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    return usageError(io, usage, (err as Error).message);
  }
  if ((parsed.values as { help?: unknown }).help === true) {
    io.stdout.write(usage.text);
    return EXIT.OK;
  }
  return { values: parsed.values, positionals: parsed.positionals, usage: (message) => usageError(io, usage, message) };
}

/**
 * Runs `load`, which reads what the CLI needs of the configuration: a ConfigError is reported as
 * `error: <message>` and EXIT.USAGE returned instead of a value. Any other error is thrown.
 */
export function cliConfig<T extends object>(io: Pick<CliIo, 'stderr'>, load: () => T): T | number {
  try {
    return load();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr.write(`error: ${err.message}\n`);
    return EXIT.USAGE;
  }
}

/** The configuration from only `keys` of the CLI's environment ({@link cliConfig}, {@link pick}). */
export function loadCliConfig(io: CliIo, keys: readonly string[]): Readonly<HubConfig> | number {
  return cliConfig(io, () => loadConfig(pick(io.env, keys)));
}

/** Only `keys` of `env`: a CLI loads just the settings it needs. */
export function pick(
  env: Record<string, string | undefined>,
  keys: readonly string[],
): Record<string, string | undefined> {
  return Object.fromEntries(keys.map((k) => [k, env[k]]));
}

/** Writes `value` as indented JSON and a newline on stdout (`--json` output). */
export function printJson(io: Pick<CliIo, 'stdout'>, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Reports `err` on stderr (as JSON with `--json`); returns EXIT.FAILED. */
export function failed(io: Pick<CliIo, 'stderr'>, json: boolean, err: unknown): number {
  const code = err instanceof HubError ? err.code : 'INTERNAL';
  const message = err instanceof Error ? err.message : String(err);
  if (json) io.stderr.write(`${JSON.stringify({ error: { code, message } })}\n`);
  else io.stderr.write(`error: ${message}${code === 'INTERNAL' ? '' : ` (${code})`}\n`);
  return EXIT.FAILED;
}
