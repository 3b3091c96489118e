import { describe, expect, it } from 'vitest';
import type { SeriesBuckets } from '../../server/storage/downsample.ts';
import { BucketSeries, gapThresholdMs, toPlotData, toSegments } from '../../server/web/series.ts';

function buckets(t: number[], values: number[], intervalMs: number | null, bool = false): SeriesBuckets {
  return { channel: 'x', unit: '', bool, t, min: values, mean: values, max: values, count: t.map(() => 1), intervalMs };
}

describe('chart series: gaps are gaps', () => {
  it('a missing bucket breaks the line with a null point when buckets are wider than samples', () => {
    // 60 s buckets of 1 s samples; the bucket at 120 s is empty.
    const s = BucketSeries.from(buckets([0, 60_000, 180_000, 240_000], [1, 2, 3, 4], 1000), 0, 60_000, 1000);
    const d = toPlotData(s);
    expect(d.gaps).toBe(1);
    expect(d.mean).toEqual([1, 2, null, 3, 4]);
    expect(d.xs).toEqual([30, 90, 120, 210, 270]);
  });

  it('empty buckets between samples are not gaps when buckets are narrower than the sample interval', () => {
    // 400 ms buckets, a sample every second: two of every five buckets hold a sample.
    const t = [0, 800, 2000, 2800, 4000];
    const s = BucketSeries.from(buckets(t, [1, 2, 3, 4, 5], 1000), 0, 400, 1000);
    expect(toPlotData(s).gaps).toBe(0);
    // ... but 3 s without samples is one.
    const holed = BucketSeries.from(buckets([0, 800, 4000], [1, 2, 3], 1000), 0, 400, 1000);
    expect(toPlotData(holed).mean).toEqual([1, 2, null, 3]);
  });

  it('the threshold is the larger of 2.5 sample intervals and 1.5 buckets; the descriptor period counts', () => {
    expect(gapThresholdMs(1000, 1000)).toBe(2500);
    expect(gapThresholdMs(60_000, 1000)).toBe(90_000);
    expect(gapThresholdMs(100, null)).toBe(150);
    expect(BucketSeries.from(buckets([0], [1], null), 0, 100, 5000).intervalMs).toBe(5000);
  });

  it('live samples fold into the current bucket or open the next; older ones are skipped; the window slides', () => {
    const s = new BucketSeries(0, 1000, 250, false);
    s.add(100, 4);
    s.add(600, 2);
    s.add(1200, 9);
    s.add(50, 100); // older than the newest bucket
    expect([s.t, s.min, s.max, s.mean, s.count]).toEqual([
      [0, 1000],
      [2, 9],
      [4, 9],
      [3, 9],
      [2, 1],
    ]);
    s.trimBefore(1000);
    expect(s.t).toEqual([1000]);
    expect(s.latest()).toBe(9);
  });

  it('bool timelines: on, off and changed-within segments, merged, broken at gaps', () => {
    const t = [0, 1000, 2000, 3000, 10_000, 11_000];
    const s: SeriesBuckets = {
      channel: 'relay',
      unit: '',
      bool: true,
      t,
      min: [1, 1, 0, 0, 0, 0],
      max: [1, 1, 1, 0, 0, 0],
      mean: [1, 1, 0.5, 0, 0, 0],
      count: [1, 1, 2, 1, 1, 1],
      intervalMs: 1000,
    };
    expect(toSegments(BucketSeries.from(s, 0, 1000, 0))).toEqual([
      { fromMs: 0, toMs: 2000, state: 1 },
      { fromMs: 2000, toMs: 3000, state: 0.5 },
      { fromMs: 3000, toMs: 4000, state: 0 },
      { fromMs: 10_000, toMs: 12_000, state: 0 },
    ]);
  });
});
