/**
 * History queries against InfluxDB in InfluxQL over HTTP `/query` — the one query language that runs
 * on InfluxDB 1.8+ (natively), 2.x (v1 compatibility API; the bucket is reached through its DBRP
 * mapping, `db=<bucket>`) and 3.x, and that this project's tests run against a real engine.
 * Authorization is `Token <token>` on every version (1.x accepts `Token user:password`).
 *
 * Device ids and channel keys are checked against their alphabets [PROTO-2.8] before they reach the
 * query text, and quoted as InfluxQL string literals anyway.
 */

import { isChannelKey, isDeviceId } from '../../codec/index.ts';
import type { InfluxConfig } from '../../config/index.ts';
import { HubError } from '../../errors.ts';
import type { HistoryQuery, Reading } from '../types.ts';
import { MEASUREMENT, STATE_FIELD, VALUE_FIELD } from './line-protocol.ts';

/** The largest `limit` a history query may ask for. */
export const MAX_HISTORY_LIMIT = 100_000;

export type { HistoryQuery };

export interface InfluxHistory {
  /** Readings sorted by time, then channel; throws HubError BAD_REQUEST for bad parameters, INTERNAL when InfluxDB fails. */
  query(q: HistoryQuery): Promise<Reading[]>;
  /** Runs any InfluxQL read statement (dashboards, tests); returns the parsed JSON `results`. */
  influxQL(statement: string): Promise<InfluxQLResult[]>;
}

export interface InfluxQLSeries {
  name: string;
  tags?: Record<string, string>;
  columns: string[];
  values: unknown[][];
}

export interface InfluxQLResult {
  statement_id: number;
  series?: InfluxQLSeries[];
  error?: string;
}

/** Quotes an InfluxQL string literal. */
export function quoteString(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/**
 * The WHERE condition of a query on one device (one channel or all) over [fromMs, toMs]: history and
 * downsample queries. Refuses with BAD_REQUEST a device id, channel key or range that is not valid.
 */
export function rangeCondition(q: Pick<HistoryQuery, 'deviceId' | 'channel' | 'fromMs' | 'toMs'>): string {
  if (!isDeviceId(q.deviceId)) throw new HubError('BAD_REQUEST', 'deviceId is not a valid device id');
  if (q.channel !== undefined && !isChannelKey(q.channel)) {
    throw new HubError('BAD_REQUEST', 'channel is not a valid channel key');
  }
  if (!Number.isSafeInteger(q.fromMs) || !Number.isSafeInteger(q.toMs) || q.fromMs > q.toMs) {
    throw new HubError('BAD_REQUEST', 'fromMs and toMs must be integers with fromMs <= toMs');
  }
  const where = [`"device" = ${quoteString(q.deviceId)}`];
  if (q.channel !== undefined) where.push(`"channel" = ${quoteString(q.channel)}`);
  where.push(`time >= ${q.fromMs}ms`, `time <= ${q.toMs}ms`);
  return where.join(' AND ');
}

/** Builds the InfluxQL statement for a history query (exported for tests and for the docs). */
export function historyStatement(q: HistoryQuery): string {
  const where = rangeCondition(q);
  if (!Number.isInteger(q.limit) || q.limit < 1 || q.limit > MAX_HISTORY_LIMIT) {
    throw new HubError('BAD_REQUEST', `limit must be an integer in 1..${MAX_HISTORY_LIMIT}`);
  }
  // Selecting the tags next to the fields returns one row per point, across series, in time order.
  return (
    `SELECT "${VALUE_FIELD}", "${STATE_FIELD}", "channel", "unit" FROM "${MEASUREMENT}" ` +
    `WHERE ${where} ORDER BY time ASC LIMIT ${q.limit}`
  );
}

export function createInfluxHistory(config: InfluxConfig): InfluxHistory {
  const base = config.url.replace(/\/+$/, '');

  async function influxQL(statement: string): Promise<InfluxQLResult[]> {
    const params = new URLSearchParams({ db: config.bucket, epoch: 'ms', q: statement });
    let res: Response;
    try {
      res = await fetch(`${base}/query`, {
        method: 'POST',
        headers: {
          authorization: `Token ${config.token}`,
          accept: 'application/json',
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: params.toString(),
        signal: AbortSignal.timeout(config.timeoutMs),
      });
    } catch (err) {
      throw new HubError('INTERNAL', `InfluxDB query failed: ${(err as Error).message}`, { cause: err });
    }
    const text = await res.text();
    if (!res.ok) throw new HubError('INTERNAL', `InfluxDB query failed with HTTP ${res.status}: ${text.slice(0, 500)}`);
    const body = JSON.parse(text) as { results?: InfluxQLResult[]; error?: string };
    if (body.error) throw new HubError('INTERNAL', `InfluxDB query failed: ${body.error}`);
    const results = body.results ?? [];
    for (const r of results) if (r.error) throw new HubError('INTERNAL', `InfluxDB query failed: ${r.error}`);
    return results;
  }

  return {
    influxQL,
    async query(q) {
      const [result] = await influxQL(historyStatement(q));
      const readings: Reading[] = [];
      for (const series of result?.series ?? []) {
        const col = (name: string) => series.columns.indexOf(name);
        const [t, v, s, c, u] = [col('time'), col(VALUE_FIELD), col(STATE_FIELD), col('channel'), col('unit')];
        for (const row of series.values) {
          const value = (row[v] ?? row[s] ?? null) as number | boolean | null;
          if (value === null) continue;
          readings.push({
            deviceId: q.deviceId,
            channel: String(row[c] ?? ''),
            unit: String(row[u] ?? ''),
            timeMs: Number(row[t]),
            value,
          });
        }
      }
      // InfluxDB orders by time only; ties (several channels sampled together) go by channel key.
      return readings.sort(
        (a, b) => a.timeMs - b.timeMs || (a.channel < b.channel ? -1 : a.channel > b.channel ? 1 : 0),
      );
    },
  };
}
