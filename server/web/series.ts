/**
 * A chart's data on the device page (pure; unit-tested in test/unit/web-series.test.ts): the
 * downsampled buckets the history route answered, live samples folded into the same buckets, and the
 * arrays handed to uPlot with a `null` wherever data is missing, so lines break at gaps instead of
 * drawing a straight line across them.
 *
 * A gap is a step between two consecutive non-empty buckets longer than the larger of ~2.5 sample
 * intervals and 1.5 buckets: so an empty bucket is a gap as soon as buckets are wider than samples,
 * and with buckets narrower than the sample interval (15 min on a wide screen) the usual empty
 * buckets between samples are not.
 */
import type { SeriesBuckets } from '../storage/downsample.ts';

/** Samples of "a gap" (times the sample interval). */
export const GAP_INTERVALS = 2.5;

/** The longest step between two buckets that is still drawn as a line (ms). */
export function gapThresholdMs(bucketMs: number, intervalMs: number | null): number {
  return Math.max(GAP_INTERVALS * (intervalMs ?? 0), 1.5 * bucketMs);
}

/** One channel's buckets, growing with live samples. Bucket starts are `originMs + i × bucketMs`. */
export class BucketSeries {
  readonly t: number[] = [];
  readonly min: number[] = [];
  readonly mean: number[] = [];
  readonly max: number[] = [];
  readonly count: number[] = [];

  constructor(
    readonly originMs: number,
    readonly bucketMs: number,
    /** The typical time between samples (ms), or null when unknown. */
    public intervalMs: number | null,
    public bool: boolean,
  ) {}

  static from(s: SeriesBuckets, originMs: number, bucketMs: number, periodMs: number): BucketSeries {
    const interval = Math.max(s.intervalMs ?? 0, periodMs) || null;
    const out = new BucketSeries(originMs, bucketMs, interval, s.bool);
    out.t.push(...s.t);
    out.min.push(...s.min);
    out.mean.push(...s.mean);
    out.max.push(...s.max);
    out.count.push(...s.count);
    return out;
  }

  /** Folds a live sample into its bucket; samples older than the newest bucket are skipped. */
  add(timeMs: number, value: number | boolean): void {
    const v = typeof value === 'boolean' ? (value ? 1 : 0) : value;
    if (!Number.isFinite(v)) return;
    if (typeof value === 'boolean') this.bool = true;
    const start = this.originMs + Math.floor((timeMs - this.originMs) / this.bucketMs) * this.bucketMs;
    const last = this.t.length - 1;
    const lastStart = this.t[last];
    if (lastStart === start) {
      const c = this.count[last] as number;
      if (v < (this.min[last] as number)) this.min[last] = v;
      if (v > (this.max[last] as number)) this.max[last] = v;
      this.mean[last] = ((this.mean[last] as number) * c + v) / (c + 1);
      this.count[last] = c + 1;
    } else if (lastStart === undefined || start > lastStart) {
      this.t.push(start);
      this.min.push(v);
      this.mean.push(v);
      this.max.push(v);
      this.count.push(1);
    }
  }

  /** Drops buckets that start before `fromMs` (the window slid past them). */
  trimBefore(fromMs: number): void {
    let n = 0;
    while (n < this.t.length && (this.t[n] as number) + this.bucketMs <= fromMs) n++;
    if (n === 0) return;
    for (const a of [this.t, this.min, this.mean, this.max, this.count]) a.splice(0, n);
  }

  /** The newest bucket's mean, or null. */
  latest(): number | null {
    return this.mean.length > 0 ? (this.mean[this.mean.length - 1] as number) : null;
  }
}

/** uPlot's data: x in seconds, then min, max and mean, with a null row in every gap. */
export interface PlotData {
  xs: number[];
  min: (number | null)[];
  max: (number | null)[];
  mean: (number | null)[];
  /** How many null rows (gaps) were inserted. */
  gaps: number;
}

export function toPlotData(s: BucketSeries): PlotData {
  const out: PlotData = { xs: [], min: [], max: [], mean: [], gaps: 0 };
  const limit = gapThresholdMs(s.bucketMs, s.intervalMs);
  const half = s.bucketMs / 2;
  for (let i = 0; i < s.t.length; i++) {
    const t = s.t[i] as number;
    const prev = s.t[i - 1];
    if (prev !== undefined && t - prev > limit) {
      // A null point just after the previous bucket: uPlot ends the line there (spanGaps off).
      out.xs.push((prev + s.bucketMs) / 1000);
      out.min.push(null);
      out.max.push(null);
      out.mean.push(null);
      out.gaps++;
    }
    // Each bucket is drawn at its middle.
    out.xs.push((t + half) / 1000);
    out.min.push(s.min[i] as number);
    out.max.push(s.max[i] as number);
    out.mean.push(s.mean[i] as number);
  }
  return out;
}

/** One stretch of a bool timeline: `state` 1 on, 0 off, 0.5 changed within; gaps have no segment. */
export interface Segment {
  fromMs: number;
  toMs: number;
  state: 0 | 0.5 | 1;
}

/** The segments a bool channel's timeline draws, adjacent equal buckets merged. */
export function toSegments(s: BucketSeries): Segment[] {
  const out: Segment[] = [];
  const limit = gapThresholdMs(s.bucketMs, s.intervalMs);
  for (let i = 0; i < s.t.length; i++) {
    const t = s.t[i] as number;
    const state: Segment['state'] = s.min[i] === 1 ? 1 : s.max[i] === 0 ? 0 : 0.5;
    const prev = out[out.length - 1];
    const prevT = s.t[i - 1];
    const contiguous = prevT !== undefined && t - prevT <= limit;
    if (prev && contiguous && prev.state === state) prev.toMs = t + s.bucketMs;
    else {
      // Close the previous segment where this one starts when they touch.
      if (prev && contiguous) prev.toMs = t;
      out.push({ fromMs: t, toMs: t + s.bucketMs, state });
    }
  }
  return out;
}
