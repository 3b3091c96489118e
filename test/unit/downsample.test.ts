import { describe, expect, it } from 'vitest';
import { bucketWidthMs, Downsampler } from '../../server/storage/downsample.ts';

describe('Downsampler (min/mean/max per bucket, one pass)', () => {
  it('cuts the range into equal buckets and aggregates each, in any input order', () => {
    const ds = new Downsampler(0, 9_999, 10); // 1 s buckets
    expect(ds.bucketMs).toBe(1000);
    // Out of order on purpose: the bucket follows from the time.
    for (const [t, v] of [
      [2500, 7],
      [0, 1],
      [999, 3],
      [2000, 5],
      [9999, -2],
    ] as const) {
      ds.add('temp', '°C', t, v);
    }
    const { series } = ds.finish();
    expect(series).toHaveLength(1);
    const s = series[0]!;
    expect(s).toMatchObject({ channel: 'temp', unit: '°C', bool: false });
    // Empty buckets are left out (the page breaks its line there).
    expect(s.t).toEqual([0, 2000, 9000]);
    expect(s.min).toEqual([1, 5, -2]);
    expect(s.max).toEqual([3, 7, -2]);
    expect(s.mean).toEqual([2, 6, -2]);
    expect(s.count).toEqual([2, 2, 1]);
  });

  it('ignores readings outside the range and non-finite values', () => {
    const ds = new Downsampler(1000, 1999, 4);
    ds.add('x', '', 999, 100);
    ds.add('x', '', 2000, 100);
    ds.add('x', '', 1500, Number.NaN);
    ds.add('x', '', 1500, 4);
    expect(ds.finish().series[0]).toMatchObject({ t: [1500], min: [4], max: [4], count: [1] });
  });

  it('bool channels: min/max say whether the state changed, mean is the fraction true', () => {
    const ds = new Downsampler(0, 3999, 2);
    ds.add('relay', '', 0, true);
    ds.add('relay', '', 1000, false);
    ds.add('relay', '', 1500, false);
    ds.add('relay', '', 1900, true);
    ds.add('relay', '', 2000, true);
    const s = ds.finish().series[0]!;
    expect(s.bool).toBe(true);
    expect(s.t).toEqual([0, 2000]);
    expect(s.min).toEqual([0, 1]);
    expect(s.max).toEqual([1, 1]);
    expect(s.mean).toEqual([0.5, 1]);
  });

  it('keeps channels apart, sorted by key, and reports the typical interval between readings', () => {
    const ds = new Downsampler(0, 59_999, 6);
    for (let t = 0; t < 60_000; t += 1000) ds.add('b', '', t, t);
    for (let t = 0; t < 60_000; t += 250) ds.add('a', '', t, 1);
    const { series } = ds.finish();
    expect(series.map((s) => s.channel)).toEqual(['a', 'b']);
    expect(series[0]!.intervalMs).toBe(250);
    expect(series[1]!.intervalMs).toBe(1000);
    expect(series[1]!.count).toEqual([10, 10, 10, 10, 10, 10]);
  });

  it('bucket width: the whole range fits, at least 1 ms', () => {
    expect(bucketWidthMs(0, 86_399_999, 1000)).toBe(86_400);
    expect(bucketWidthMs(0, 86_400_000, 1000)).toBe(86_401);
    expect(bucketWidthMs(0, 10, 1000)).toBe(1);
  });

  it('addBucket takes buckets computed elsewhere (InfluxDB) by their start', () => {
    const ds = new Downsampler(500, 10_499, 10);
    ds.addBucket('v', 'V', false, 1500, { min: 1, mean: 2, max: 3, count: 4 });
    expect(ds.finish().series[0]).toMatchObject({
      t: [1500],
      min: [1],
      mean: [2],
      max: [3],
      count: [4],
      intervalMs: null,
    });
  });
});
