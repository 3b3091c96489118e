/**
 * Downsampling for charts: a time range cut into `buckets` equal buckets (one per pixel column the
 * page asks for), and per channel and bucket the min, mean, max and count of the readings in it.
 * One pass over the readings in any order (the bucket follows from the time), fixed memory per
 * channel (four typed arrays of `buckets` entries), nothing kept per reading.
 *
 * Bool channels count `true` as 1 and `false` as 0: min 0 and max 1 mean the state changed inside
 * the bucket; the mean is the fraction of the bucket's samples that were `true`.
 *
 * Buckets without readings are left out of the answer: the page breaks its lines there (a gap is
 * never interpolated).
 */

/** What the page asks for: a range cut into `buckets` buckets. */
export interface DownsampleQuery {
  deviceId: string;
  /** One channel, or all when omitted. */
  channel?: string | undefined;
  /** Inclusive, Unix ms. */
  fromMs: number;
  /** Inclusive, Unix ms. */
  toMs: number;
  /** Number of buckets, 1..{@link MAX_BUCKETS}. */
  buckets: number;
}

/** Upper bound of `buckets` (a 4K screen's width, twice). */
export const MAX_BUCKETS = 8000;

/** One channel's non-empty buckets, column-wise (compact JSON), oldest first. */
export interface SeriesBuckets {
  channel: string;
  unit: string;
  /** True when the channel's readings are booleans (min/mean/max over 0 and 1). */
  bool: boolean;
  /** Bucket start, Unix ms. */
  t: number[];
  min: number[];
  mean: number[];
  max: number[];
  count: number[];
  /**
   * The typical time between two readings (ms): the median of the first gaps seen (embedded store),
   * null when unknown (InfluxDB answers buckets only). The page's gap threshold follows it.
   */
  intervalMs: number | null;
}

/** Gaps between readings kept per channel for `intervalMs`. */
const INTERVAL_SAMPLES = 255;

export interface Downsampled {
  /** Width of one bucket, ms: bucket i covers [fromMs + i·bucketMs, fromMs + (i+1)·bucketMs). */
  bucketMs: number;
  series: SeriesBuckets[];
}

/** The bucket width for a range: the smallest whole number of ms that fits the range in `buckets`. */
export function bucketWidthMs(fromMs: number, toMs: number, buckets: number): number {
  return Math.max(1, Math.ceil((toMs - fromMs + 1) / buckets));
}

interface Acc {
  unit: string;
  bool: boolean;
  min: Float64Array;
  max: Float64Array;
  sum: Float64Array;
  count: Uint32Array;
  lastT: number;
  gaps: number[];
}

/** Accumulates readings into buckets; `finish` returns the non-empty ones per channel. */
export class Downsampler {
  readonly bucketMs: number;
  readonly #from: number;
  readonly #to: number;
  readonly #n: number;
  readonly #channels = new Map<string, Acc>();

  constructor(fromMs: number, toMs: number, buckets: number) {
    this.#from = fromMs;
    this.#to = toMs;
    this.bucketMs = bucketWidthMs(fromMs, toMs, buckets);
    this.#n = Math.ceil((toMs - fromMs + 1) / this.bucketMs);
  }

  /** Adds one reading; readings outside [fromMs, toMs] and non-finite numbers are ignored. */
  add(channel: string, unit: string, timeMs: number, value: number | boolean): void {
    if (timeMs < this.#from || timeMs > this.#to) return;
    const v = typeof value === 'boolean' ? (value ? 1 : 0) : value;
    if (!Number.isFinite(v)) return;
    const acc = this.#acc(channel, unit, typeof value === 'boolean');
    const i = Math.floor((timeMs - this.#from) / this.bucketMs);
    const c = acc.count[i] as number;
    if (c === 0) {
      acc.min[i] = v;
      acc.max[i] = v;
    } else {
      if (v < (acc.min[i] as number)) acc.min[i] = v;
      if (v > (acc.max[i] as number)) acc.max[i] = v;
    }
    acc.sum[i] = (acc.sum[i] as number) + v;
    acc.count[i] = c + 1;
    if (acc.gaps.length < INTERVAL_SAMPLES) {
      const gap = timeMs - acc.lastT;
      if (gap > 0 && Number.isFinite(gap)) acc.gaps.push(gap);
      acc.lastT = timeMs;
    }
  }

  /** Adds a bucket computed elsewhere (InfluxDB's GROUP BY time()), by its start time. */
  addBucket(
    channel: string,
    unit: string,
    bool: boolean,
    startMs: number,
    b: { min: number; mean: number; max: number; count: number },
  ): void {
    if (b.count <= 0 || startMs < this.#from || startMs > this.#to) return;
    const acc = this.#acc(channel, unit, bool);
    const i = Math.floor((startMs - this.#from) / this.bucketMs);
    acc.min[i] = b.min;
    acc.max[i] = b.max;
    acc.sum[i] = b.mean * b.count;
    acc.count[i] = b.count;
  }

  #acc(channel: string, unit: string, bool: boolean): Acc {
    let acc = this.#channels.get(channel);
    if (acc === undefined) {
      const n = this.#n;
      acc = {
        unit,
        bool,
        min: new Float64Array(n),
        max: new Float64Array(n),
        sum: new Float64Array(n),
        count: new Uint32Array(n),
        lastT: Number.NEGATIVE_INFINITY,
        gaps: [],
      };
      this.#channels.set(channel, acc);
    }
    return acc;
  }

  /** The non-empty buckets of every channel, channels sorted by key. */
  finish(): Downsampled {
    const series: SeriesBuckets[] = [];
    const keys = [...this.#channels.keys()].sort();
    for (const channel of keys) {
      const acc = this.#channels.get(channel) as Acc;
      const gaps = acc.gaps.sort((a, b) => a - b);
      const s: SeriesBuckets = {
        channel,
        unit: acc.unit,
        bool: acc.bool,
        t: [],
        min: [],
        mean: [],
        max: [],
        count: [],
        intervalMs: gaps.length > 0 ? (gaps[gaps.length >> 1] as number) : null,
      };
      for (let i = 0; i < this.#n; i++) {
        const c = acc.count[i] as number;
        if (c === 0) continue;
        s.t.push(this.#from + i * this.bucketMs);
        s.min.push(acc.min[i] as number);
        s.max.push(acc.max[i] as number);
        s.mean.push((acc.sum[i] as number) / c);
        s.count.push(c);
      }
      series.push(s);
    }
    return { bucketMs: this.bucketMs, series };
  }
}
