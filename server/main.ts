/**
 * Entry point (`npm start`): the only file that touches `process` — environment, signals, exit.
 * Embedded mode by default (data in `.data/`); with INFLUX_* set, frames are forwarded to InfluxDB.
 * Settings: the environment over `.env` (or `--env-file <path>` / `ENV_FILE`), see server/config/env-file.ts.
 */
import { loadConfigWithEnvFile, takeEnvFileArg } from './config/env-file.ts';
import { applyHeapGrowth } from './config/heap-growth.ts';
import { ConfigError, type HubConfig } from './config/index.ts';
import { HubError } from './errors.ts';
import { buildHub } from './hub.ts';
import { liveExtension } from './live/index.ts';
import { createLogger, resolveLogFormat } from './log/index.ts';
import { prettyDestination } from './log/pretty.ts';

const USAGE = 'Usage: npm start [-- --env-file <path>]   (settings: environment variables, see .env.example)';

/** Set once the config is loaded, for naming the setting behind a listen failure. */
let loaded: Readonly<HubConfig> | undefined;

async function main(): Promise<void> {
  const args = takeEnvFileArg(process.argv.slice(2));
  if (args.problem !== undefined || args.rest.length > 0) {
    process.stderr.write(`${args.problem ?? `unknown argument ${args.rest[0]}`}\n${USAGE}\n`);
    process.exit(2);
  }
  let config: Readonly<HubConfig>;
  let envFile: string | null;
  try {
    ({ config, file: envFile } = loadConfigWithEnvFile(process.env, { cwd: process.cwd(), envFile: args.envFile }));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  loaded = config;
  applyHeapGrowth(config.heapGrowthPercent);

  // The live fan-out and built-in dashboard plug in as an extension; with INFLUX_* set, buildHub
  // starts the InfluxDB forwarder (server/storage/influx) itself.
  const live = liveExtension(config);
  // Readable lines on a terminal, JSON lines for files, pipes and log shippers (HUB_LOG_FORMAT).
  const pretty = resolveLogFormat(config.log.format, process.stdout.isTTY === true) === 'pretty';
  const logger = createLogger(
    config.log.level,
    pretty
      ? prettyDestination(process.stdout, { colors: process.stdout.isTTY === true && process.stdout.hasColors() })
      : undefined,
  );
  const hub = buildHub(config, {
    logger,
    extensions: [live],
    authorizeCommands: live.authorizeCommands,
    readAccess: live.readAccess,
  });

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) {
      hub.logger.warn({ signal }, 'second signal: exiting at once');
      process.exit(1);
    }
    stopping = true;
    hub.logger.info({ signal }, 'shutting down');
    const since = performance.now();
    hub.stop().then(
      () => {
        // The operator's sign that the stop was clean: every commit done, the store closed.
        hub.logger.info({ signal, ms: Math.round(performance.now() - since) }, 'stopped');
        process.exit(0);
      },
      (err: unknown) => {
        hub.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  const { port } = await hub.start();
  const base = new URL(config.server.publicUrl);
  if (config.server.port === 0 || base.port === String(config.server.port)) base.port = String(port);
  const http = base.origin;
  const ws = http.replace(/^http/, 'ws');
  const mode = config.influx ? `forwarding to InfluxDB at ${config.influx.url}` : 'embedded store (no InfluxDB)';
  process.stdout.write(
    [
      '',
      `ESP32 telemetry hub listening on ${config.server.host}:${port} — ${mode}`,
      `  settings:        environment${envFile ? ` over ${envFile}` : ' (no .env file)'}`,
      `  data directory:  ${config.storage.dataDir}`,
      `  device endpoint: ${ws}/v1/device   (subprotocol esp32hub.v1, Authorization: Bearer <token>)`,
      `  dashboard:       ${http}/`,
      `  health/metrics:  ${http}/healthz  ${http}/readyz  ${http}/metrics`,
      '  add a device:    npm run hub -- devices add <id>   (prints its token once)',
      ...(config.enroll.mode === 'off'
        ? []
        : [`  add a board:     ${http}/#/add-board   (boards waiting: npm run hub -- devices pending)`]),
      '',
    ].join('\n'),
  );
}

/**
 * A listener the hub could not open, as one coded line naming the setting to change; null for any
 * other error. HUB_PORT serves devices, the dashboard and the API: the hub's only listening port.
 */
function listenFailure(err: unknown, config: Readonly<HubConfig> | undefined): HubError | null {
  const e = err as NodeJS.ErrnoException & { port?: number; address?: string };
  if (config === undefined || e?.syscall !== 'listen') return null;
  const what = `${config.server.tls ? 'HTTPS' : 'HTTP'} port ${e.port ?? config.server.port}`;
  const where = `${e.address ?? config.server.host}`;
  switch (e.code) {
    case 'EADDRINUSE':
      return new HubError(
        'PORT_IN_USE',
        `${what} on ${where} is in use (HUB_PORT); set HUB_PORT to a free port or stop the program using it`,
      );
    case 'EACCES':
      return new HubError(
        'LISTEN_FAILED',
        `${what} on ${where} needs privileges this user lacks (HUB_PORT); set HUB_PORT to 1024 or above`,
      );
    case 'EADDRNOTAVAIL':
      return new HubError(
        'LISTEN_FAILED',
        `${where} is not an address of this machine (HUB_HOST); set HUB_HOST to one of its addresses or 0.0.0.0`,
      );
    default:
      return null;
  }
}

main().catch((caught: unknown) => {
  // A coded refusal (e.g. DATA_DIR_LOCKED: another hub holds the data directory; PORT_IN_USE) is one
  // line that says what to do; anything else is a bug and gets its stack.
  const err = listenFailure(caught, loaded) ?? caught;
  const text =
    err instanceof HubError
      ? `${err.code}: ${err.message}`
      : err instanceof Error
        ? (err.stack ?? err.message)
        : String(err);
  process.stderr.write(`hub failed to start: ${text}\n`);
  process.exit(1);
});
