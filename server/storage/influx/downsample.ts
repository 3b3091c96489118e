/**
 * Downsampled history from InfluxDB: one request with three InfluxQL statements grouped by
 * `time(<bucket>ms, <offset>ms)` (the offset aligns the buckets on the query's `from`, as the embedded
 * store's downsampler does), per channel:
 * 1. `min`, `mean`, `max`, `count` of the numeric field;
 * 2. `count` of the bool field, and 3. `count` of its `true` values — InfluxQL has no min/max/mean
 *    for booleans; the fraction of `true` is the mean, and "some" / "all" give min and max.
 * `fill(none)` leaves empty buckets out: the page breaks its lines there.
 */
import { type Downsampled, type DownsampleQuery, Downsampler } from '../downsample.ts';
import { type InfluxHistory, rangeCondition } from './history.ts';
import { MEASUREMENT, STATE_FIELD, VALUE_FIELD } from './line-protocol.ts';

/** The InfluxQL statements for a downsample query (exported for tests and docs). */
export function downsampleStatements(q: DownsampleQuery, bucketMs: number): string[] {
  const w = rangeCondition(q);
  const group = `GROUP BY time(${bucketMs}ms, ${q.fromMs % bucketMs}ms), "channel", "unit" fill(none)`;
  const v = `"${VALUE_FIELD}"`;
  const s = `"${STATE_FIELD}"`;
  return [
    `SELECT min(${v}), mean(${v}), max(${v}), count(${v}) FROM "${MEASUREMENT}" WHERE ${w} ${group}`,
    `SELECT count(${s}) FROM "${MEASUREMENT}" WHERE ${w} ${group}`,
    `SELECT count(${s}) FROM "${MEASUREMENT}" WHERE ${w} AND ${s} = true ${group}`,
  ];
}

/** Runs a downsample query on InfluxDB; same answer shape as the embedded store's. */
export async function influxDownsample(
  history: Pick<InfluxHistory, 'influxQL'>,
  q: DownsampleQuery,
): Promise<Downsampled> {
  const ds = new Downsampler(q.fromMs, q.toMs, q.buckets);
  const results = await history.influxQL(downsampleStatements(q, ds.bucketMs).join('; '));
  const [numeric, boolAll, boolTrue] = [0, 1, 2].map((i) => results.find((r) => r.statement_id === i));
  for (const series of numeric?.series ?? []) {
    const channel = series.tags?.channel ?? '';
    const unit = series.tags?.unit ?? '';
    for (const row of series.values) {
      const [t, min, mean, max, count] = row as [number, number | null, number | null, number | null, number];
      if (min === null || mean === null || max === null || !(count > 0)) continue;
      ds.addBucket(channel, unit, false, Number(t), { min, mean, max, count });
    }
  }
  // Bool channels: true counts per (channel, bucket), then the totals.
  const trues = new Map<string, number>();
  for (const series of boolTrue?.series ?? []) {
    for (const row of series.values) trues.set(`${series.tags?.channel}\u0000${row[0]}`, Number(row[1]));
  }
  for (const series of boolAll?.series ?? []) {
    const channel = series.tags?.channel ?? '';
    const unit = series.tags?.unit ?? '';
    for (const row of series.values) {
      const count = Number(row[1]);
      if (!(count > 0)) continue;
      const on = trues.get(`${channel}\u0000${row[0]}`) ?? 0;
      ds.addBucket(channel, unit, true, Number(row[0]), {
        min: on === count ? 1 : 0,
        max: on > 0 ? 1 : 0,
        mean: on / count,
        count,
      });
    }
  }
  return ds.finish();
}
