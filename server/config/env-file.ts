/**
 * The `.env` file: `npm start` and `npm run hub` read it before the configuration is checked
 * (docs/configuration.md). Precedence, highest first: real environment variables, the env file,
 * the JSON file named by HUB_CONFIG_FILE, the schema defaults.
 *
 * Which file: `--env-file <path>` on the command line, else `ENV_FILE` from the real environment,
 * else `.env` in the current directory (for `npm start` and `npm run hub`, the project root). A
 * missing `.env` is fine (every setting has a default); a file named explicitly must exist.
 *
 * The syntax is Node's `--env-file` one (`NAME=value`, `export NAME=value`, `# comments`, single,
 * double or backtick quotes, double-quoted values spanning lines with `\n` escapes), but read
 * strictly: a line that is none of those, an unclosed quote or a name set twice is a problem, reported
 * with every other configuration problem at once rather than silently ignored (Node's parser
 * ignores such lines, and a setting that silently does nothing is what this file exists to prevent).
 */
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ConfigError, ENV_SCHEMA, type HubConfig, loadConfig } from './index.ts';

type Source = Record<string, string | undefined>;

/** The default file, relative to the current directory. */
export const DEFAULT_ENV_FILE = '.env';

/** Prefixes the hub shares with docker compose's own variables (GRAFANA_URL is the hub's, GRAFANA_ADMIN_* compose's). */
const SHARED_PREFIXES = new Set(['GRAFANA_']);

/**
 * Name prefixes of hub settings (HUB_, DEVICE_, INFLUX_, MQTT_, …, from ENV_SCHEMA): a name in the
 * env file with one of these prefixes that the hub does not know is a typo (HUB_PROT) and refused.
 * Other names (the compose-only INFLUXDB_*, GRAFANA_*, SIM_* of `.env.example`) are left alone: the
 * same file serves docker compose.
 */
const HUB_PREFIXES = [...new Set(Object.keys(ENV_SCHEMA).map((k) => `${k.split('_')[0]}_`))].filter(
  (p) => !SHARED_PREFIXES.has(p),
);

/** Names with a hub prefix that are not ENV_SCHEMA's: read by the hub itself, or by docker-compose.yml. */
const OTHER_HUB_NAMES = new Set(['HUB_CONFIG_FILE', 'ENV_FILE', 'HUB_TLS_DIR', 'HUB_CONFIG_DIR']);

export interface ParsedEnvFile {
  values: Record<string, string>;
  /** `<file>:<line>: …` for every line that could not be read. Values are never quoted (they may be secrets). */
  problems: string[];
}

const ASSIGNMENT = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$/;

/** Reads env-file text strictly (see the module comment); `name` labels the problems. */
export function parseEnvFile(text: string, name: string): ParsedEnvFile {
  const values: Record<string, string> = {};
  const problems: string[] = [];
  const firstLine = new Map<string, number>();
  const lines = text.replace(/^\uFEFF/, '').split(/\r\n|\n|\r/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i] as string;
    if (/^\s*(#.*)?$/.test(line)) continue;
    const m = ASSIGNMENT.exec(line);
    if (!m) {
      problems.push(`${name}:${lineNo}: not a NAME=value line, a # comment or blank`);
      continue;
    }
    const key = m[1] as string;
    let rest = (m[2] as string).trimStart();
    let value: string;
    const quote = rest[0];
    if (quote === '"' || quote === "'" || quote === '`') {
      // A quoted value ends at the same quote; only double quotes may span lines (as in Node).
      let body = rest.slice(1);
      let end = body.indexOf(quote);
      while (end < 0 && quote === '"' && i + 1 < lines.length) {
        i++;
        body += `\n${lines[i]}`;
        end = body.indexOf(quote);
      }
      if (end < 0) {
        problems.push(`${name}:${lineNo}: ${key}: the value's opening ${quote} is never closed`);
        continue;
      }
      rest = body.slice(end + 1);
      if (!/^\s*(#.*)?$/.test(rest)) {
        problems.push(`${name}:${lineNo}: ${key}: text after the closing ${quote} (put a # before a comment)`);
        continue;
      }
      value = body.slice(0, end);
      if (quote === '"') value = value.replace(/\\n/g, '\n');
    } else {
      // Unquoted: a # after whitespace starts a comment.
      value = rest.replace(/(^|\s)#.*$/, '').trim();
    }
    const seen = firstLine.get(key);
    if (seen !== undefined) {
      problems.push(`${name}:${lineNo}: ${key} is already set on line ${seen} (which one should win?)`);
      continue;
    }
    firstLine.set(key, lineNo);
    const unknownHubSetting =
      HUB_PREFIXES.some((p) => key.startsWith(p)) && !Object.hasOwn(ENV_SCHEMA, key) && !OTHER_HUB_NAMES.has(key);
    if (unknownHubSetting) {
      problems.push(`${name}:${lineNo}: unknown setting ${key} (the settings are listed in .env.example)`);
      continue;
    }
    values[key] = value;
  }
  return { values, problems };
}

export interface EnvFileArgs {
  /** The path given with `--env-file`, if any. */
  envFile: string | undefined;
  /** The other arguments, in order. */
  rest: string[];
  /** Set when `--env-file` has no path. */
  problem?: string;
}

/** Takes `--env-file <path>` / `--env-file=<path>` out of `argv`. */
export function takeEnvFileArg(argv: readonly string[]): EnvFileArgs {
  const rest: string[] = [];
  let envFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--env-file') {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('-')) return { envFile, rest, problem: '--env-file needs a path' };
      envFile = next;
      i++;
    } else if (arg.startsWith('--env-file=')) {
      envFile = arg.slice('--env-file='.length);
      if (envFile === '') return { envFile: undefined, rest, problem: '--env-file needs a path' };
    } else {
      rest.push(arg);
    }
  }
  return { envFile, rest };
}

export interface EnvWithFile {
  /** The real environment over the file's values. */
  env: Source;
  /** Absolute path of the file read, or null when there was none. */
  file: string | null;
  /** Names whose value came from the file (not overridden by the real environment). */
  fromFile: Set<string>;
  problems: string[];
}

/**
 * Adds the env file's values under the real environment `env` (a variable set in `env`, even to an
 * empty string, wins). `envFile` is the `--env-file` argument. Never throws for a bad file: its
 * problems are returned so that they are listed together with the settings' own.
 */
export function withEnvFile(env: Source, options: { cwd: string; envFile?: string | undefined }): EnvWithFile {
  const named = options.envFile ?? (env.ENV_FILE || undefined);
  const file = resolve(options.cwd, named ?? DEFAULT_ENV_FILE);
  const source = options.envFile !== undefined ? '--env-file' : named !== undefined ? 'ENV_FILE' : null;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && source === null) return { env, file: null, fromFile: new Set(), problems: [] };
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : (code ?? String(err));
    const label = source ? `${source} ${named}` : file;
    return { env, file: null, fromFile: new Set(), problems: [`${label}: cannot read the env file (${why})`] };
  }
  const parsed = parseEnvFile(text, named ?? DEFAULT_ENV_FILE);
  const merged: Source = { ...env };
  const fromFile = new Set<string>();
  for (const [key, value] of Object.entries(parsed.values)) {
    if (env[key] !== undefined) continue;
    merged[key] = value;
    fromFile.add(key);
  }
  return { env: merged, file, fromFile, problems: parsed.problems };
}

/**
 * Files the hub opens at start (every setting named `*_FILE`: TLS certificate and key, alert rules,
 * OTA key, …), checked with the settings so that a wrong path is one more listed problem.
 */
const FILE_SETTINGS = Object.keys(ENV_SCHEMA).filter((k) => k.endsWith('_FILE'));

/**
 * The hub's start-up check: {@link loadConfig} over the real environment plus the env file, and the
 * files the settings name are readable. One {@link ConfigError} lists the env file's problems and
 * every setting's, a setting's problem naming the env file when its value came from there.
 */
export function loadConfigWithEnvFile(
  env: Source,
  options: { cwd: string; envFile?: string | undefined },
): { config: Readonly<HubConfig>; file: string | null } {
  const withFile = withEnvFile(env, options);
  const problems = [...withFile.problems];
  let config: Readonly<HubConfig> | undefined;
  try {
    config = loadConfig(withFile.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const problem of err.problems) {
      const key = /^([A-Z][A-Z0-9_]*):/.exec(problem)?.[1];
      const label = options.envFile ?? (env.ENV_FILE || DEFAULT_ENV_FILE);
      problems.push(key !== undefined && withFile.fromFile.has(key) ? `${problem} (from ${label})` : problem);
    }
  }
  for (const key of FILE_SETTINGS) {
    const path = withFile.env[key];
    // A setting whose own check already reported a problem (e.g. the alert rules file) is not repeated.
    if (!path || problems.some((p) => p.startsWith(`${key}:`) || p.startsWith(`${key} `))) continue;
    try {
      accessSync(resolve(options.cwd, path), constants.R_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code;
      problems.push(`${key}: cannot read ${path} (${why})`);
    }
  }
  const dataDir = withFile.env.HUB_DATA_DIR;
  if (config !== undefined || dataDir) {
    const problem = dataDirProblem(resolve(options.cwd, config?.storage.dataDir ?? String(dataDir)));
    if (problem) problems.push(`HUB_DATA_DIR: ${config?.storage.dataDir ?? dataDir} ${problem}`);
  }
  if (problems.length > 0 || config === undefined) throw new ConfigError(problems);
  return { config, file: withFile.file };
}

/** Why the hub could not use `dir` as its data directory (created at start when missing), or null. */
function dataDirProblem(dir: string): string | null {
  let existing = dir;
  for (;;) {
    try {
      if (!statSync(existing).isDirectory())
        return existing === dir ? 'is not a directory' : `cannot be created: ${existing} is a file`;
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || dirname(existing) === existing) return null;
      existing = dirname(existing);
    }
  }
  try {
    accessSync(existing, constants.W_OK | constants.X_OK);
    return null;
  } catch {
    return existing === dir
      ? 'is not writable by this user'
      : `cannot be created: ${existing} is not writable by this user`;
  }
}
