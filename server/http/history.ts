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
 * - `buckets`: 1..8,000 — downsampled instead of raw: the range cut into that many equal buckets (the
 *   page sends its chart's width in pixels) with min/mean/max/count per channel and non-empty bucket
 *   ({@link DownsampledResponse}); `limit` does not apply. One pass over the embedded store
 *   (`scan`), or an InfluxQL `GROUP BY time()` query on InfluxDB (`downsample`).
 * - `format=csv`: every raw reading in the range as CSV (`time,time_ms,channel,unit,value`),
 *   streamed, as a download; with `buckets`, the buckets instead (`time,time_ms,channel,unit,min,mean,max,count`).
 * Anything else (unknown parameters too) is 400 BAD_REQUEST naming the problem.
 */

import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import { isChannelKey, isDeviceId } from '../codec/index.ts';
import { HubError } from '../errors.ts';
import {
  type Downsampled,
  type DownsampleQuery,
  Downsampler,
  MAX_BUCKETS,
  type SeriesBuckets,
} from '../storage/downsample.ts';
import type { HistoryQuery } from '../storage/types.ts';
import { requireAdmin } from './auth.ts';
import type { Guard, Router } from './router.ts';
import { deviceIdParams } from './schemas.ts';

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
  /**
   * Every reading in the range in one pass, without a limit (the embedded store): used to downsample
   * and for CSV. Without it (and without `downsample`) the route pages through `query`.
   */
  scan?(q: Omit<HistoryQuery, 'limit'>, visit: (r: HistoryPoint) => void): void;
  /** Downsampled history computed by the source itself (InfluxDB's `GROUP BY time()`). */
  downsample?(q: DownsampleQuery): Promise<Downsampled> | Downsampled;
}

/** The answer with `buckets`. */
export interface DownsampledResponse {
  deviceId: string;
  channel: string | null;
  from: string;
  to: string;
  buckets: number;
  /** Bucket i covers [from + i·bucketMs, from + (i+1)·bucketMs). */
  bucketMs: number;
  /** Per channel (sorted by key) its non-empty buckets, column-wise. */
  series: SeriesBuckets[];
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
const PARAMS = new Set(['channel', 'from', 'to', 'limit', 'buckets', 'format']);
/** Page size when the route pages through `query` (sources without `scan`). */
const PAGE = 10_000;

/** Registers the history route on `router`. */
export function registerHistoryRoutes(router: Router, options: HistoryRoutesOptions): void {
  const limits: HistoryLimits = { ...DEFAULT_HISTORY_LIMITS, ...options.limits };
  const now = options.now ?? Date.now;
  const guard = options.guard ?? requireAdmin(options.adminToken ?? null);
  router.get(
    HISTORY_ROUTE,
    async (ctx): Promise<HistoryResponse | DownsampledResponse | undefined> => {
      const deviceId = ctx.params.id as string;
      if (!isDeviceId(deviceId)) {
        throw new HubError('BAD_REQUEST', 'the device id is invalid: 1-64 characters of A-Z a-z 0-9 . _ - [PROTO-2.8]');
      }
      const q = parseHistoryParams(ctx.query, deviceId, now(), limits);
      const buckets = parseBuckets(ctx.query.get('buckets'));
      const format = ctx.query.get('format') ?? 'json';
      if (format !== 'json' && format !== 'csv') throw new HubError('BAD_REQUEST', 'format must be json or csv');
      if (options.deviceExists && !options.deviceExists(deviceId)) {
        throw new HubError('NOT_FOUND', `no device ${deviceId} is registered`);
      }
      if (buckets !== null) {
        const dq: DownsampleQuery = { deviceId, channel: q.channel, fromMs: q.fromMs, toMs: q.toMs, buckets };
        const result = await downsample(options.source, dq);
        const body: DownsampledResponse = {
          deviceId,
          channel: q.channel ?? null,
          from: new Date(q.fromMs).toISOString(),
          to: new Date(q.toMs).toISOString(),
          buckets,
          bucketMs: result.bucketMs,
          series: result.series,
        };
        if (format === 'csv') {
          await sendCsv(ctx.res, csvName(deviceId, q), (write) => writeBucketsCsv(body.series, write));
          return undefined;
        }
        return body;
      }
      if (format === 'csv') {
        const { fromMs, toMs, channel } = q;
        await sendCsv(ctx.res, csvName(deviceId, q), async (write) => {
          write('time,time_ms,channel,unit,value\n');
          await eachReading(options.source, { deviceId, channel, fromMs, toMs }, (r) => {
            write(`${new Date(r.timeMs).toISOString()},${r.timeMs},${r.channel},${csvField(r.unit)},${r.value}\n`);
          });
        });
        return undefined;
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
    {
      guard,
      headers: { 'cache-control': 'no-store' },
      summary: "A device's stored readings, raw or downsampled (min/mean/max per bucket), as JSON or CSV",
      description:
        '`from`/`to`: Unix ms or ISO-8601 with `Z` or an offset, both ends inclusive; default the last hour, at most 31 days apart. Without `buckets`: the earliest `limit` readings, `truncated` saying whether more matched.',
      tags: ['history'],
      params: deviceIdParams,
      query: z.strictObject({
        channel: z.string().optional().describe('One channel key; all channels when omitted'),
        from: z.string().optional().describe('Start: Unix ms or ISO-8601'),
        to: z.string().optional().describe('End: Unix ms or ISO-8601; default now'),
        limit: z.string().optional().describe('1..10000 readings, default 1000 (without buckets)'),
        buckets: z.string().optional().describe(`Downsample into 1..${MAX_BUCKETS} time buckets`),
        format: z.enum(['json', 'csv']).optional().describe('csv: a download of the same data'),
      }),
      responses: {
        200: {
          description: 'The readings, or with `buckets` the series of buckets per channel; text/csv with format=csv',
          schema: z.looseObject({
            deviceId: z.string(),
            channel: z.string().nullable(),
            from: z.string(),
            to: z.string(),
          }),
        },
      },
    },
  );
}

function parseBuckets(raw: string | null): number | null {
  if (raw === null) return null;
  const n = /^\d{1,9}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(n >= 1 && n <= MAX_BUCKETS))
    throw new HubError('BAD_REQUEST', `buckets must be an integer in 1..${MAX_BUCKETS}`);
  return n;
}

/** Downsamples with the source's own query, its one-pass scan, or by paging through `query`. */
async function downsample(source: HistorySource, q: DownsampleQuery): Promise<Downsampled> {
  if (source.downsample) return source.downsample(q);
  const ds = new Downsampler(q.fromMs, q.toMs, q.buckets);
  await eachReading(source, q, (r) => ds.add(r.channel, r.unit, r.timeMs, r.value));
  return ds.finish();
}

/** Every reading in the range: one scan when the source has it, else pages of `query`. */
async function eachReading(
  source: HistorySource,
  q: Omit<HistoryQuery, 'limit'>,
  visit: (r: HistoryPoint) => void,
): Promise<void> {
  if (source.scan) {
    source.scan(q, visit);
    return;
  }
  let from = q.fromMs;
  // Readings at one time may straddle a page boundary: the next page starts at the last page's
  // last time and skips what was already seen at that time.
  let seenAtLast = new Set<string>();
  for (;;) {
    const rows = await source.query({ ...q, fromMs: from, limit: PAGE });
    const last = rows[rows.length - 1];
    const lastTime = last?.timeMs;
    const seen = new Set<string>();
    for (const r of rows) {
      const key = `${r.timeMs}\u0000${r.channel}`;
      if (r.timeMs === from && seenAtLast.has(key)) continue;
      if (r.timeMs === lastTime) seen.add(key);
      visit(r);
    }
    if (rows.length < PAGE || lastTime === undefined) return;
    if (lastTime === from && seen.size >= PAGE) return; // a page of one instant: cannot progress
    from = lastTime;
    seenAtLast = seen;
  }
}

type Write = (chunk: string) => void;

function csvName(deviceId: string, q: HistoryQuery): string {
  const stamp = (ms: number) => new Date(ms).toISOString().replace(/[:.]/g, '-');
  return `${deviceId}${q.channel ? `-${q.channel}` : ''}-${stamp(q.fromMs)}-${stamp(q.toMs)}.csv`;
}

/** Units are free text from the device's descriptors: quoted when they hold a separator or a quote. */
function csvField(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function writeBucketsCsv(series: readonly SeriesBuckets[], write: Write): void {
  write('time,time_ms,channel,unit,min,mean,max,count\n');
  for (const s of series) {
    for (let i = 0; i < s.t.length; i++) {
      const t = s.t[i] as number;
      write(
        `${new Date(t).toISOString()},${t},${s.channel},${csvField(s.unit)},${s.min[i]},${s.mean[i]},${s.max[i]},${s.count[i]}\n`,
      );
    }
  }
}

/** Streams a CSV download; writes are gathered into ~64 KiB chunks. */
function sendCsv(
  res: ServerResponse,
  filename: string,
  produce: (write: Write) => void | Promise<void>,
): Promise<void> {
  res.writeHead(200, {
    'content-type': 'text/csv; charset=utf-8',
    'content-disposition': `attachment; filename="${filename}"`,
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  let buf = '';
  const write: Write = (chunk) => {
    buf += chunk;
    if (buf.length >= 65_536) {
      res.write(buf);
      buf = '';
    }
  };
  return Promise.resolve(produce(write)).then(
    () => {
      res.end(buf);
    },
    (err: unknown) => {
      // Headers are gone: cut the download so it cannot pass for complete.
      res.destroy(err instanceof Error ? err : new Error(String(err)));
    },
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
      throw new HubError(
        'BAD_REQUEST',
        `unknown query parameter "${key.slice(0, 40)}" (use channel, from, to, limit, buckets, format)`,
      );
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
