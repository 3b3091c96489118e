/**
 * The hub's logger: pino, one child per component and per device session. Secrets are redacted by
 * path so a token can never reach a log line even when a whole request or config object is logged.
 */
import { type Logger, pino } from 'pino';

export type { Logger };

export const REDACT_PATHS = [
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'adminToken',
  '*.adminToken',
  'dashboardPassword',
  '*.dashboardPassword',
  'password',
  '*.password',
];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    { level, base: { app: 'esp32-hub' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } },
    destination,
  );
}

/** `HUB_LOG_FORMAT`: auto = pretty on a terminal, JSON lines otherwise (files, pipes, log shippers). */
export type LogFormat = 'auto' | 'json' | 'pretty';

export function resolveLogFormat(format: LogFormat, stdoutIsTTY: boolean): 'json' | 'pretty' {
  return format === 'auto' ? (stdoutIsTTY ? 'pretty' : 'json') : format;
}
