/**
 * Human-readable log lines for a terminal: pino writes its JSON line into this destination, which
 * prints `time LEVEL component message key=value ...` instead (an error's stack on the lines after).
 * Used when stdout is a TTY (HUB_LOG_FORMAT=auto) or with HUB_LOG_FORMAT=pretty; pipes and files get
 * pino's JSON, one object per line, for log shippers. Secrets are redacted before this point (pino's
 * `redact`), so the pretty form shows exactly the fields the JSON form has.
 */
import type { DestinationStream } from 'pino';

export interface PrettyOptions {
  /** ANSI colours for levels (default false). */
  colors?: boolean;
  /** Time zone for the time of day (default local; tests pass 'UTC'). */
  utc?: boolean;
}

const LEVELS: Record<number, { label: string; color: string }> = {
  10: { label: 'TRACE', color: '\x1b[90m' },
  20: { label: 'DEBUG', color: '\x1b[90m' },
  30: { label: 'INFO ', color: '\x1b[32m' },
  40: { label: 'WARN ', color: '\x1b[33m' },
  50: { label: 'ERROR', color: '\x1b[31m' },
  60: { label: 'FATAL', color: '\x1b[41m\x1b[97m' },
};
const RESET = '\x1b[0m';
const DIM = '\x1b[2m';
/** Fields shown in the line's head, or not at all (`app` is the same on every line). */
const HEAD_FIELDS = new Set(['level', 'time', 'msg', 'app', 'component', 'pid', 'hostname', 'err']);

/** A pino destination that writes pretty lines to `out` (e.g. `process.stdout`). */
export function prettyDestination(out: { write(chunk: string): unknown }, opts: PrettyOptions = {}): DestinationStream {
  return {
    write(line: string) {
      out.write(formatLogLine(line, opts));
    },
  };
}

/** One pino JSON line → one pretty line (plus indented stack lines); non-JSON input passes through. */
export function formatLogLine(line: string, opts: PrettyOptions = {}): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith('\n') ? line : `${line}\n`;
  }
  const c = opts.colors === true;
  const level = LEVELS[typeof o.level === 'number' ? o.level : 30] ?? { label: String(o.level), color: '' };
  const time = typeof o.time === 'number' ? timeOfDay(new Date(o.time), opts.utc === true) : '';
  const head = [
    c ? `${DIM}${time}${RESET}` : time,
    c ? `${level.color}${level.label}${RESET}` : level.label,
    ...(typeof o.component === 'string' ? [c ? `${DIM}[${o.component}]${RESET}` : `[${o.component}]`] : []),
    typeof o.msg === 'string' ? o.msg : '',
  ].join(' ');
  const pairs: string[] = [];
  for (const [k, v] of Object.entries(o)) {
    if (HEAD_FIELDS.has(k) || v === undefined) continue;
    pairs.push(c ? `${DIM}${k}=${RESET}${value(v)}` : `${k}=${value(v)}`);
  }
  let text = pairs.length > 0 ? `${head}  ${pairs.join(' ')}` : head;
  const err = o.err as { type?: unknown; message?: unknown; stack?: unknown; code?: unknown } | undefined;
  if (err && typeof err === 'object') {
    const stack = typeof err.stack === 'string' ? err.stack : `${String(err.type ?? 'Error')}: ${String(err.message)}`;
    const code = typeof err.code === 'string' ? ` [${err.code}]` : '';
    text += `\n${stack
      .split('\n')
      .map((l, i) => `    ${l}${i === 0 ? code : ''}`)
      .join('\n')}`;
  }
  return `${text}\n`;
}

function value(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return JSON.stringify(v);
}

function timeOfDay(d: Date, utc: boolean): string {
  const [h, m, s, ms] = utc
    ? [d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), d.getUTCMilliseconds()]
    : [d.getHours(), d.getMinutes(), d.getSeconds(), d.getMilliseconds()];
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(h)}:${p(m)}:${p(s)}.${p(ms, 3)}`;
}
