/**
 * The CLI's flags: parsed and validated once, every problem listed, then used. Pure (the caller
 * passes argv and env), so it is unit-tested without a process.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { isDeviceId } from '../server/codec/index.ts';
import { isScenarioName, SCENARIO_NAMES, type ScenarioName } from './scenarios.ts';

export const USAGE = `Usage: npm run sim -- [options]

A fleet of simulated ESP32 boards speaking protocol v1 to a hub.

Options:
  --url <url>              hub device endpoint (default ws://localhost:8080/v1/device), or with
                           --transport mqtt the broker (default mqtt://localhost:1883)
  --transport <ws|mqtt>    WebSocket to the hub, or MQTT through the broker [PROTO-1.6] (default ws)
  --mqtt-prefix <text>     the hub's MQTT_TOPIC_PREFIX (default esp32hub)
  --devices <n>            number of boards (default 1)
  --rate <frames/s>        TELEMETRY frames per second per board (default 1)
  --ticks-per-frame <n>    sample ticks per frame (default 4; sample interval = 1000/(rate*ticks) ms)
  --seed <n>               random seed: same seed, same boards and sensor values (default 1);
                           boot ids never repeat, whatever the seed
  --scenario <name>        ${SCENARIO_NAMES.join(' | ')} (default steady)
  --fault-every <time>     mean time between a board's faults in flaky-wifi, reboot-storm and
                           power-cut (default 20s)
  --state-dir <dir>        keep each board's outbox, boot counter and token in <dir>/<id>/ across
                           power cuts and runs (default: in memory, for this run only)
  --profile <name>         always-on | deep-sleep (default always-on)
  --flush-every <n>        deep-sleep: connect and flush after n samples (default 60)
  --flush-interval <time>  deep-sleep: ... or after this long since the last flush (default 5m)
  --record <file>          append every reading sampled, lost, acked or dropped to <file> (JSON lines)
  --duration <time>        stop after this long, e.g. 90s, 5m, 1h (default: until Ctrl-C)
  --drain <time>           at the end, wait up to this long for the hub to ack the outboxes (default 10s)
  --id-prefix <text>       device ids are <prefix><nnnn> (default sim-)
  --first-index <n>        number of the first device (default 1)
  --outbox <frames>        outbox capacity per board, drop-oldest beyond (default 512)
  --tokens-file <path>     "id,token" lines, as written by: npm run hub -- devices add <id>... --tokens-file <path>
                           (with --state-dir, a board keeps its token there for later runs)
  --enroll                 boards without a token enroll over /v1/enroll [PROTO-8] and wait until an
                           operator approves them (npm run hub -- devices approve <id>), then stream;
                           with --state-dir they keep their enroll key and token for later runs
  --fleet-secret <secret>  with --enroll: present the hub's ENROLL_FLEET_SECRET (auto-approval)
  --provision              register boards missing from the tokens file through the hub's admin API
                           (new tokens are appended to --tokens-file when given)
  --admin-url <url>        admin API base URL (default: derived from --url; required with
                           --transport mqtt and --provision)
  --admin-token-env <var>  environment variable holding the admin token (default HUB_ADMIN_TOKEN)
  --ota-public-key <file>  the OTA signing public key (PEM) built into the boards: the \`ota\` command's
                           images must verify with it (without it boards check the SHA-256 only)
  --ota-fail-health <f>    share of boards (0..1) whose health check fails after an OTA update, so
                           that they roll back to the old version (default 0)
  --insecure               accept a self-signed certificate (wss:// hubs, mqtts:// brokers)
  --json                   print the summary as JSON on stdout
  --per-device             add one row per board to the summary table
  --quiet                  no live status line
  -h, --help               show this help

Time values take ms, s, m or h suffixes (a bare number is seconds).
Ctrl-C stops the run, drains, and prints the summary; a second Ctrl-C exits at once.
`;

export interface CliOptions {
  url: string;
  /** `ws`: WebSocket to the hub; `mqtt`: through the broker at `url` [PROTO-1.6]. */
  transport: 'ws' | 'mqtt';
  /** The hub's MQTT_TOPIC_PREFIX. */
  mqttPrefix: string;
  devices: number;
  rate: number;
  ticksPerFrame: number;
  seed: number;
  scenario: ScenarioName;
  /** Mean ms between a board's scenario faults (null: the scenario's default). */
  faultEveryMs: number | null;
  stateDir: string | null;
  profile: 'always-on' | 'deep-sleep';
  flushEverySamples: number;
  flushIntervalMs: number;
  recordFile: string | null;
  durationMs: number | null;
  drainMs: number;
  idPrefix: string;
  firstIndex: number;
  outboxFrames: number;
  tokensFile: string | null;
  provision: boolean;
  /** Boards without a token enroll [PROTO-8]. */
  enroll: boolean;
  /** With `enroll`: the fleet secret presented; never printed. */
  fleetSecret: string | null;
  adminUrl: string | null;
  /** The admin token's value, read from the environment; never printed. */
  adminToken: string | null;
  adminTokenEnv: string;
  /** PEM of the OTA signing public key, read from --ota-public-key. */
  otaPublicKeyPem: string | null;
  /** Share of boards whose OTA health check fails (0..1). */
  otaFailHealth: number;
  insecure: boolean;
  json: boolean;
  perDevice: boolean;
  quiet: boolean;
  help: boolean;
}

export class UsageError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'UsageError';
  }
}

/** Parses "250ms", "90s", "5m", "1h" or a bare number of seconds into ms; null when invalid. */
export function parseDuration(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) return null;
  const v = Number(m[1]);
  const unit = m[2] ?? 's';
  const factor = unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000;
  return Math.round(v * factor);
}

export function parseCliOptions(argv: string[], env: Record<string, string | undefined>): CliOptions {
  try {
    return parseValidated(argv, env);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    // node:util parseArgs: unknown option, missing value…
    throw new UsageError([(err as Error).message]);
  }
}

function parseValidated(argv: string[], env: Record<string, string | undefined>): CliOptions {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: false,
    strict: true,
    options: {
      url: { type: 'string' },
      transport: { type: 'string' },
      'mqtt-prefix': { type: 'string' },
      devices: { type: 'string' },
      rate: { type: 'string' },
      'ticks-per-frame': { type: 'string' },
      seed: { type: 'string' },
      scenario: { type: 'string' },
      'fault-every': { type: 'string' },
      'state-dir': { type: 'string' },
      profile: { type: 'string' },
      'flush-every': { type: 'string' },
      'flush-interval': { type: 'string' },
      record: { type: 'string' },
      duration: { type: 'string' },
      drain: { type: 'string' },
      'id-prefix': { type: 'string' },
      'first-index': { type: 'string' },
      outbox: { type: 'string' },
      'tokens-file': { type: 'string' },
      provision: { type: 'boolean' },
      enroll: { type: 'boolean' },
      'fleet-secret': { type: 'string' },
      'admin-url': { type: 'string' },
      'admin-token-env': { type: 'string' },
      'ota-public-key': { type: 'string' },
      'ota-fail-health': { type: 'string' },
      insecure: { type: 'boolean' },
      json: { type: 'boolean' },
      'per-device': { type: 'boolean' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const problems: string[] = [];
  const int = (name: string, raw: string | undefined, def: number, min: number, max: number): number => {
    if (raw === undefined) return def;
    const v = Number(raw);
    if (!Number.isInteger(v) || v < min || v > max) {
      problems.push(`--${name} must be an integer ${min}..${max}`);
      return def;
    }
    return v;
  };
  const transport = values.transport ?? 'ws';
  if (transport !== 'ws' && transport !== 'mqtt') problems.push('--transport must be ws or mqtt');
  const mqttTransport = transport === 'mqtt';
  const url = values.url ?? (mqttTransport ? 'mqtt://localhost:1883' : 'ws://localhost:8080/v1/device');
  const mqttPrefix = values['mqtt-prefix'] ?? 'esp32hub';
  if (!/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/.test(mqttPrefix))
    problems.push('--mqtt-prefix must be topic levels without wildcards, e.g. esp32hub');
  if (values['mqtt-prefix'] !== undefined && !mqttTransport) problems.push('--mqtt-prefix needs --transport mqtt');
  try {
    const u = new URL(url);
    if (mqttTransport) {
      if (u.protocol !== 'mqtt:' && u.protocol !== 'mqtts:') problems.push('--url must be a mqtt:// or mqtts:// URL');
    } else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') problems.push('--url must be a ws:// or wss:// URL');
    if (u.username || u.password || u.search)
      problems.push('--url must not carry credentials or a query (tokens never travel in URLs)');
  } catch {
    problems.push(`--url ${url} is not a URL`);
  }
  const rate = values.rate === undefined ? 1 : Number(values.rate);
  if (!(rate > 0 && rate <= 1000))
    problems.push('--rate must be a number > 0 and ≤ 1000 (frames per second per board)');
  const scenario = values.scenario ?? 'steady';
  if (!isScenarioName(scenario)) problems.push(`--scenario must be one of ${SCENARIO_NAMES.join(', ')}`);
  let durationMs: number | null = null;
  if (values.duration !== undefined) {
    durationMs = parseDuration(values.duration);
    if (durationMs === null || durationMs <= 0) problems.push('--duration must be a time like 90s, 5m or 1h');
  }
  const time = (name: string, raw: string | undefined, def: number | null): number | null => {
    if (raw === undefined) return def;
    const v = parseDuration(raw);
    if (v === null || v <= 0) {
      problems.push(`--${name} must be a time like 500ms, 20s or 5m`);
      return def;
    }
    return v;
  };
  const profile = values.profile ?? 'always-on';
  if (profile !== 'always-on' && profile !== 'deep-sleep') problems.push('--profile must be always-on or deep-sleep');
  if (profile !== 'deep-sleep' && (values['flush-every'] !== undefined || values['flush-interval'] !== undefined))
    problems.push('--flush-every and --flush-interval need --profile deep-sleep');
  let drainMs = 10_000;
  if (values.drain !== undefined) {
    const d = parseDuration(values.drain);
    if (d === null) problems.push('--drain must be a time like 10s');
    else drainMs = d;
  }
  const idPrefix = values['id-prefix'] ?? 'sim-';
  if (!isDeviceId(`${idPrefix}0001`) || idPrefix.length > 56)
    problems.push('--id-prefix must use A-Z a-z 0-9 . _ - (at most 56 characters)');
  const adminTokenEnv = values['admin-token-env'] ?? 'HUB_ADMIN_TOKEN';
  const adminToken = env[adminTokenEnv] || null;
  const provision = values.provision === true;
  if (provision && mqttTransport && values['admin-url'] === undefined) {
    problems.push('--provision with --transport mqtt needs --admin-url (the hub, not the broker)');
  }
  if (provision && adminToken === null) {
    problems.push(`--provision needs the admin token in the environment variable ${adminTokenEnv}`);
  }
  if (values['admin-url'] !== undefined) {
    try {
      new URL(values['admin-url']);
    } catch {
      problems.push('--admin-url is not a URL');
    }
  }
  const enroll = values.enroll === true;
  if (values['fleet-secret'] !== undefined && !enroll) problems.push('--fleet-secret needs --enroll');
  const otaFailHealth = values['ota-fail-health'] === undefined ? 0 : Number(values['ota-fail-health']);
  if (!Number.isFinite(otaFailHealth) || otaFailHealth < 0 || otaFailHealth > 1) {
    problems.push('--ota-fail-health must be a fraction 0..1');
  }
  let otaPublicKeyPem: string | null = null;
  if (values['ota-public-key'] !== undefined) {
    try {
      otaPublicKeyPem = readFileSync(values['ota-public-key'], 'utf8');
    } catch {
      problems.push(`--ota-public-key: cannot read ${values['ota-public-key']}`);
    }
  }
  if (enroll && mqttTransport) problems.push('--enroll needs --transport ws (boards enroll over the hub WebSocket)');
  if (enroll && provision) problems.push('--enroll and --provision are two ways to get tokens: pick one');
  const opts: CliOptions = {
    url,
    transport: mqttTransport ? 'mqtt' : 'ws',
    mqttPrefix,
    devices: int('devices', values.devices, 1, 1, 100_000),
    rate,
    ticksPerFrame: int('ticks-per-frame', values['ticks-per-frame'], 4, 1, 255),
    seed: int('seed', values.seed, 1, 0, 0xffffffff),
    scenario: scenario as ScenarioName,
    faultEveryMs: time('fault-every', values['fault-every'], null),
    stateDir: values['state-dir'] ?? null,
    profile: profile === 'deep-sleep' ? 'deep-sleep' : 'always-on',
    flushEverySamples: int('flush-every', values['flush-every'], 60, 1, 1_000_000),
    flushIntervalMs: time('flush-interval', values['flush-interval'], 300_000) as number,
    recordFile: values.record ?? null,
    durationMs,
    drainMs,
    idPrefix,
    firstIndex: int('first-index', values['first-index'], 1, 0, 9_999_999),
    outboxFrames: int('outbox', values.outbox, 512, 1, 1_000_000),
    tokensFile: values['tokens-file'] ?? null,
    provision,
    enroll,
    fleetSecret: values['fleet-secret'] ?? null,
    adminUrl: values['admin-url'] ?? null,
    adminToken,
    adminTokenEnv,
    otaPublicKeyPem,
    otaFailHealth: Number.isFinite(otaFailHealth) ? otaFailHealth : 0,
    insecure: values.insecure === true,
    json: values.json === true,
    perDevice: values['per-device'] === true,
    quiet: values.quiet === true,
    help: values.help === true,
  };
  if (!opts.help && !opts.tokensFile && !opts.provision && !opts.stateDir && !opts.enroll) {
    problems.push(
      'devices need tokens: pass --tokens-file <path> and/or --provision or --enroll, or a --state-dir that keeps them (see docs/simulator.md)',
    );
  }
  if (problems.length > 0 && !opts.help) throw new UsageError(problems);
  return opts;
}
