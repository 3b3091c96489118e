/**
 * Hub statistics as InfluxDB points (`hub_stats`, docs/storage.md), built from the metrics registry
 * every `intervalMs` and handed to the forwarder, which writes them with the next batch. Stats are
 * not durable: while InfluxDB is unreachable only the newest set waits (the forwarder counts the
 * replaced ones), because a gap in a health chart matters less than a bounded queue.
 */
import type { Logger } from '../../log/index.ts';
import type { Metrics } from '../../metrics/index.ts';
import type { DeviceHealthRow } from '../../pipeline/device-health.ts';
import { DEVICE_STATUS_MEASUREMENT, escapeTag, STATS_MEASUREMENT } from './line-protocol.ts';

/** `device_status.state_code`: Grafana maps 2/1/0 to online/stale/offline. */
const STATE_CODE = { online: 2, stale: 1, offline: 0 } as const;

export interface StatsWriterOptions {
  metrics: Metrics;
  /** Value of the `hub` tag: the instance id (host name by default). */
  hubId: string;
  intervalMs: number;
  submit: (lines: string[]) => void;
  logger: Logger;
  now?: () => number;
  /**
   * Per-device health (presence, gaps, rejected frames, device-side drops). When given, each collection
   * also writes fleet counts into `hub_stats` and one `device_status` point per device.
   */
  fleet?: () => DeviceHealthRow[];
}

export interface StatsWriter {
  start(): void;
  stop(): void;
  /** Builds the points for "now" (and advances the rate baseline); exposed for tests. */
  collect(): Promise<string[]>;
}

type Summable = { get(): Promise<{ values: { value: number }[] }> | { values: { value: number }[] } };

async function total(metric: Summable): Promise<number> {
  const { values } = await metric.get();
  let sum = 0;
  for (const v of values) sum += v.value;
  return sum;
}

/** Cumulative bucket counts of a histogram: `le` (upper bound, seconds) → count, ascending. */
type Buckets = [le: number, count: number][];

type HistogramLike = {
  get(): Promise<{ values: { value: number; labels: Record<string, unknown>; metricName?: string }[] }>;
};

async function buckets(h: HistogramLike): Promise<Buckets> {
  const { values } = await h.get();
  const out: Buckets = [];
  for (const v of values) {
    if (!v.metricName?.endsWith('_bucket')) continue;
    const le = v.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(v.labels.le);
    out.push([le, v.value]);
  }
  return out.sort((a, b) => a[0] - b[0]);
}

/**
 * The q-quantile of the observations made between two snapshots of a histogram, interpolated linearly
 * inside its bucket as Prometheus' `histogram_quantile` does; null when nothing was observed. A
 * quantile in the +Inf bucket reports the highest finite bound.
 */
export function quantile(q: number, now: Buckets, before: Buckets): number | null {
  const counts = now.map(([le, c], i) => [le, c - (before[i]?.[1] ?? 0)] as [number, number]);
  const totalCount = counts.at(-1)?.[1] ?? 0;
  if (totalCount <= 0) return null;
  const rank = q * totalCount;
  let lower = 0;
  let below = 0;
  for (const [le, cumulative] of counts) {
    if (cumulative >= rank) {
      if (!Number.isFinite(le)) return lower;
      const inBucket = cumulative - below;
      return inBucket > 0 ? lower + ((le - lower) * (rank - below)) / inBucket : le;
    }
    lower = le;
    below = cumulative;
  }
  return lower;
}

export function createStatsWriter(opts: StatsWriterOptions): StatsWriter {
  const { metrics: m } = opts;
  const now = opts.now ?? Date.now;
  const series = `${STATS_MEASUREMENT},hub=${escapeTag(opts.hubId) || 'hub'}`;
  let timer: NodeJS.Timeout | null = null;
  let last: { atMs: number; frames: number; readings: number; ackBuckets: Buckets } | null = null;

  async function collect(): Promise<string[]> {
    const atMs = now();
    const [frames, readings, ackBuckets] = await Promise.all([
      total(m.framesIn),
      total(m.readingsStored),
      buckets(m.ackLatency),
    ]);
    const fields: [string, number][] = [];
    if (last && atMs > last.atMs) {
      const seconds = (atMs - last.atMs) / 1000;
      fields.push(
        ['frames_per_s', (frames - last.frames) / seconds],
        ['readings_per_s', (readings - last.readings) / seconds],
      );
      const p99 = quantile(0.99, ackBuckets, last.ackBuckets);
      if (p99 !== null) fields.push(['ack_p99_ms', p99 * 1000]);
    }
    last = { atMs, frames, readings, ackBuckets };
    fields.push(
      ['local_log_unforwarded_frames', await total(m.logDepthFrames)],
      ['local_log_bytes', await total(m.logBytes)],
      ['forwarder_lag_s', await total(m.forwarderLagSeconds)],
      ['forwarded_lines', await total(m.forwardedLines)],
      ['write_failures', await total(m.writeFailures)],
      ['dead_lettered', await total(m.deadLettered)],
      ['dead_letter_lines', await total(m.deadLetterLines)],
      ['live_clients', await total(m.liveClients)],
      ['device_sessions', await total(m.deviceSessions)],
    );
    const ts = Math.trunc(atMs);
    const devices = opts.fleet?.() ?? null;
    if (devices) {
      const count = { online: 0, stale: 0, offline: 0 };
      for (const d of devices) count[d.state]++;
      fields.push(['devices_online', count.online], ['devices_stale', count.stale], ['devices_offline', count.offline]);
    }
    // Every field is a float, as in `telemetry`: one type per field key, whatever the source metric.
    const body = fields.map(([k, v]) => `${k}=${Number.isFinite(v) ? v : 0}`).join(',');
    const lines = [`${series} ${body} ${ts}`];
    const hub = escapeTag(opts.hubId) || 'hub';
    for (const d of devices ?? []) lines.push(deviceStatusLine(d, ts, hub));
    return lines;
  }

  return {
    start() {
      if (timer) return;
      // Baseline for the first rates.
      collect().catch(() => {});
      timer = setInterval(() => {
        collect().then(
          (lines) => opts.submit(lines),
          (err: unknown) => opts.logger.warn({ err }, 'hub stats collection failed'),
        );
      }, opts.intervalMs);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = null;
    },
    collect,
  };
}

/**
 * One device's health as a `device_status` point (docs/storage.md). Tagged with the writing hub
 * (`hubTag`, escaped): with several instances each writes its own view and its own counters, which
 * must not interleave in one series (the data-gap rule differences `gaps_total` per device and hub).
 */
export function deviceStatusLine(d: DeviceHealthRow, timeMs: number, hubTag: string): string {
  const firmware = d.firmwareVersion.replace(/["\\]/g, (c) => `\\${c}`);
  return (
    `${DEVICE_STATUS_MEASUREMENT},device=${escapeTag(d.deviceId)},hub=${hubTag} state_code=${STATE_CODE[d.state]},` +
    `gaps_total=${d.gaps},errors_total=${d.errors},dropped_frames=${d.droppedFrames},` +
    `buffered_frames=${d.bufferedFrames},firmware="${firmware}" ${timeMs}`
  );
}
