/**
 * `GET /api/devices/:id/history?channel=&from=&to=&limit=`: a device's stored readings, from the
 * embedded store (the local log) or InfluxDB, whichever `buildHub` injects as the {@link HistorySource}.
 *
 * - `from`, `to`: Unix ms (digits) or ISO-8601 (`2024-05-01`, `2024-05-01T12:00:00Z`,
 *   `2024-05-01T14:00:00.5+02:00`; a date-time needs `Z` or an offset). Both ends inclusive.
 *   Defaults: `to` = now, `from` = `to` − 1 h. At most 31 days apart.
 * - `limit`: 1..10,000, default 1,000; the earliest readings in the range come first and
 *   `truncated` says whether more matched.
 * - `channel`: one channel key [PROTO-2.8]; all channels when omitted.
 * Anything else (unknown parameters too) is 400 BAD_REQUEST naming the problem.
 */
import { isChannelKey, isDeviceId } from '../codec/index.ts';
import { HubError } from '../errors.ts';
import type { HistoryQuery } from '../storage/types.ts';
import { requireAdmin } from './auth.ts';
import type { Guard, Router } from './router.ts';

export type { HistoryQuery };

/** One reading in a history answer. */
export interface HistoryPoint {
  channel: string;
  unit: string;
  /** Unix ms. */
  timeMs: number;
  value: number | boolean;
}

/**
 * Where history comes from. `query` returns readings in [fromMs, toMs], sorted by time (then
 * channel), at most `limit` of them. Extra fields on the readings (e.g. `deviceId`) are ignored.
 * Throw a `HubError` to answer with its code (e.g. INTERNAL when InfluxDB is unreachable).
 * `createInfluxHistory(config)` satisfies it as is; the local log through
 * `{ query: (q) => log.queryHistory(q).readings }`.
 */
export interface HistorySource {
  query(q: HistoryQuery): Promise<readonly HistoryPoint[]> | readonly HistoryPoint[];
}

/** The answer's body. */
export interface HistoryResponse {
  deviceId: string;
  channel: string | null;
  /** The range actually queried, ISO-8601 UTC, both ends inclusive. */
  from: string;
  to: string;
  limit: number;
  /** True when more readings matched than `limit`. */
  truncated: boolean;
  readings: HistoryPoint[];
}

export interface HistoryLimits {
  /** Default window when `from` is omitted, ms. Default 1 h. */
  defaultWindowMs: number;
  /** Largest `to − from`, ms. Default 31 days. */
  maxRangeMs: number;
  /** Default `limit`. Default 1,000. */
  defaultLimit: number;
  /** Largest `limit`. Default 10,000. */
  maxLimit: number;
}

export const DEFAULT_HISTORY_LIMITS: Readonly<HistoryLimits> = Object.freeze({
  defaultWindowMs: 3600_000,
  maxRangeMs: 31 * 86_400_000,
  defaultLimit: 1000,
  maxLimit: 10_000,
});

export interface HistoryRoutesOptions {
  source: HistorySource;
  /**
   * Who may read history. Plug the dashboard credential in here, e.g.
   * `guardFrom(dashboardAuth.check)` or `anyOf(guardFrom(dashboardAuth.check), requireAdmin(token))`.
   * Default: `requireAdmin(adminToken)`.
   */
  guard?: Guard | readonly Guard[];
  /** Used by the default guard; null (or omitted) with no `guard` makes history answer 404. */
  adminToken?: string | null;
  /** When given, an id it rejects answers 404 NOT_FOUND instead of an empty list. */
  deviceExists?: (deviceId: string) => boolean;
  limits?: Partial<HistoryLimits>;
  /** Clock for the default `to`, Unix ms. Default `Date.now`. */
  now?: () => number;
}

export const HISTORY_ROUTE = '/api/devices/:id/history';
const PARAMS = new Set(['channel', 'from', 'to', 'limit']);

/** Registers the history route on `router`. */
export function registerHistoryRoutes(router: Router, options: HistoryRoutesOptions): void {
  const limits: HistoryLimits = { ...DEFAULT_HISTORY_LIMITS, ...options.limits };
  const now = options.now ?? Date.now;
  const guard = options.guard ?? requireAdmin(options.adminToken ?? null);
  router.get(
    HISTORY_ROUTE,
    async (ctx): Promise<HistoryResponse> => {
      const deviceId = ctx.params.id as string;
      if (!isDeviceId(deviceId)) {
        throw new HubError('BAD_REQUEST', 'the device id is invalid: 1-64 characters of A-Z a-z 0-9 . _ - [PROTO-2.8]');
      }
      const q = parseHistoryParams(ctx.query, deviceId, now(), limits);
      if (options.deviceExists && !options.deviceExists(deviceId)) {
        throw new HubError('NOT_FOUND', `no device ${deviceId} is registered`);
      }
      // One more than asked for tells whether the answer is truncated.
      const rows = await options.source.query({ ...q, limit: q.limit + 1 });
      const truncated = rows.length > q.limit;
      const readings: HistoryPoint[] = [];
      for (const r of rows.slice(0, q.limit)) {
        readings.push({ channel: r.channel, unit: r.unit, timeMs: r.timeMs, value: r.value });
      }
      return {
        deviceId,
        channel: q.channel ?? null,
        from: new Date(q.fromMs).toISOString(),
        to: new Date(q.toMs).toISOString(),
        limit: q.limit,
        truncated,
        readings,
      };
    },
    { guard, headers: { 'cache-control': 'no-store' } },
  );
}

/**
 * Validates the query string into a {@link HistoryQuery}; throws BAD_REQUEST naming the first
 * problem. Exported for tests and for other routes that take the same parameters.
 */
export function parseHistoryParams(
  query: URLSearchParams,
  deviceId: string,
  nowMs: number,
  limits: HistoryLimits = DEFAULT_HISTORY_LIMITS,
): HistoryQuery {
  for (const key of new Set(query.keys())) {
    if (!PARAMS.has(key)) {
      throw new HubError('BAD_REQUEST', `unknown query parameter "${key.slice(0, 40)}" (use channel, from, to, limit)`);
    }
    if (query.getAll(key).length > 1) throw new HubError('BAD_REQUEST', `query parameter "${key}" is repeated`);
  }
  const channel = query.get('channel') ?? undefined;
  if (channel !== undefined && !isChannelKey(channel)) {
    throw new HubError('BAD_REQUEST', 'channel must be a channel key: a-z 0-9 _, starting with a letter, 1-32 long');
  }
  const to = query.has('to') ? parseTime(query.get('to') as string, 'to') : nowMs;
  const from = query.has('from') ? parseTime(query.get('from') as string, 'from') : to - limits.defaultWindowMs;
  if (from > to) throw new HubError('BAD_REQUEST', 'from is after to');
  if (to - from > limits.maxRangeMs) {
    throw new HubError(
      'BAD_REQUEST',
      `the range from..to is longer than ${formatDuration(limits.maxRangeMs)}; narrow it or page through it`,
    );
  }
  let limit = limits.defaultLimit;
  const rawLimit = query.get('limit');
  if (rawLimit !== null) {
    limit = /^\d{1,9}$/.test(rawLimit) ? Number(rawLimit) : Number.NaN;
    if (!(limit >= 1 && limit <= limits.maxLimit)) {
      throw new HubError('BAD_REQUEST', `limit must be an integer in 1..${limits.maxLimit}`);
    }
  }
  return { deviceId, ...(channel === undefined ? {} : { channel }), fromMs: from, toMs: to, limit };
}

const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const ISO_DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/;
/** Latest time JavaScript can represent (±8.64e15 ms). */
const MAX_TIME_MS = 8.64e15;

/** Unix ms or ISO-8601 with a zone → Unix ms; throws BAD_REQUEST. */
export function parseTime(raw: string, name: string): number {
  // A '+' in a query string decodes to a space; take "…T12:00:00 02:00" as the +02:00 it was.
  const text = raw
    .trim()
    .toUpperCase()
    .replace(/ (\d{2}:?\d{2})$/, '+$1');
  if (/^\d{1,16}$/.test(text)) {
    const ms = Number(text);
    if (ms > MAX_TIME_MS) throw new HubError('BAD_REQUEST', `${name} is beyond the representable time range`);
    return ms;
  }
  const date = ISO_DATE.exec(text);
  const dateTime = date ? null : ISO_DATE_TIME.exec(text);
  const fields = date ?? dateTime;
  if (!fields) {
    throw new HubError(
      'BAD_REQUEST',
      `${name} must be Unix milliseconds or ISO-8601 like 2024-05-01T12:00:00Z (a date-time needs Z or an offset)`,
    );
  }
  const [, y, mo, d, h = '00', mi = '00', s = '00'] = fields;
  const ms = Date.parse(dateTime ? text.replace(/([+-]\d{2})(\d{2})$/, '$1:$2') : `${text}T00:00:00Z`);
  // Date.parse rolls 2024-02-30 over to March; the fields must be a real calendar time.
  const check = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)));
  const valid =
    Number.isFinite(ms) &&
    check.getUTCFullYear() === Number(y) &&
    check.getUTCMonth() === Number(mo) - 1 &&
    check.getUTCDate() === Number(d) &&
    check.getUTCHours() === Number(h) &&
    check.getUTCMinutes() === Number(mi) &&
    check.getUTCSeconds() === Number(s);
  if (!valid)
    throw new HubError('BAD_REQUEST', `${name} is not a valid date/time: ${JSON.stringify(raw.slice(0, 40))}`);
  if (ms < 0) throw new HubError('BAD_REQUEST', `${name} is before 1970`);
  return ms;
}

function formatDuration(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000} days`;
  if (ms % 3600_000 === 0) return `${ms / 3600_000} hours`;
  return `${ms} ms`;
}
