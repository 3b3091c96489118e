/**
 * Entry point (`npm start`): the only file that touches `process` — environment, signals, exit.
 * Embedded mode by default (data in `.data/`); with INFLUX_* set, frames are forwarded to InfluxDB.
 */
import { ConfigError, loadConfig } from './config/index.ts';
import { HubError } from './errors.ts';
import { buildHub } from './hub.ts';
import { liveExtension } from './live/index.ts';
import { createLogger, resolveLogFormat } from './log/index.ts';
import { prettyDestination } from './log/pretty.ts';

async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }

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
    hub.stop().then(
      () => process.exit(0),
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
      `  data directory:  ${config.storage.dataDir}`,
      `  device endpoint: ${ws}/v1/device   (subprotocol esp32hub.v1, Authorization: Bearer <token>)`,
      `  dashboard:       ${http}/`,
      `  health/metrics:  ${http}/healthz  ${http}/readyz  ${http}/metrics`,
      '  add a device:    npm run hub -- devices add <id>   (prints its token once)',
      '',
    ].join('\n'),
  );
}

main().catch((err: unknown) => {
  // A coded refusal (e.g. DATA_DIR_LOCKED: another hub holds the data directory) is one line that says
  // what to do; anything else is a bug and gets its stack.
  const text =
    err instanceof HubError
      ? `${err.code}: ${err.message}`
      : err instanceof Error
        ? (err.stack ?? err.message)
        : String(err);
  process.stderr.write(`hub failed to start: ${text}\n`);
  process.exit(1);
});
