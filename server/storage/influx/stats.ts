/**
 * Hub statistics as InfluxDB points (`hub_stats`, docs/storage.md), built from the metrics registry
 * every `intervalMs` and handed to the forwarder, which writes them with the next batch. Stats are
 * not durable: while InfluxDB is unreachable only the newest set waits (the forwarder counts the
 * replaced ones), because a gap in a health chart matters less than a bounded queue.
 */
import type { Logger } from '../../log/index.ts';
import type { Metrics } from '../../metrics/index.ts';
import { escapeTag, STATS_MEASUREMENT } from './line-protocol.ts';

export interface StatsWriterOptions {
  metrics: Metrics;
  /** Value of the `hub` tag: the instance id (host name by default). */
  hubId: string;
  intervalMs: number;
  submit: (lines: string[]) => void;
  logger: Logger;
  now?: () => number;
}

export interface StatsWriter {
  start(): void;
  stop(): void;
  /** Builds the point for "now" (and advances the rate baseline); exposed for tests. */
  collect(): Promise<string>;
}

type Summable = { get(): Promise<{ values: { value: number }[] }> | { values: { value: number }[] } };

async function total(metric: Summable): Promise<number> {
  const { values } = await metric.get();
  let sum = 0;
  for (const v of values) sum += v.value;
  return sum;
}

export function createStatsWriter(opts: StatsWriterOptions): StatsWriter {
  const { metrics: m } = opts;
  const now = opts.now ?? Date.now;
  const series = `${STATS_MEASUREMENT},hub=${escapeTag(opts.hubId) || 'hub'}`;
  let timer: NodeJS.Timeout | null = null;
  let last: { atMs: number; frames: number; readings: number } | null = null;

  async function collect(): Promise<string> {
    const atMs = now();
    const [frames, readings] = await Promise.all([total(m.framesIn), total(m.readingsStored)]);
    const fields: [string, number][] = [];
    if (last && atMs > last.atMs) {
      const seconds = (atMs - last.atMs) / 1000;
      fields.push(
        ['frames_per_s', (frames - last.frames) / seconds],
        ['readings_per_s', (readings - last.readings) / seconds],
      );
    }
    last = { atMs, frames, readings };
    fields.push(
      ['local_log_frames', await total(m.logDepthFrames)],
      ['local_log_bytes', await total(m.logBytes)],
      ['forwarder_lag_s', await total(m.forwarderLagSeconds)],
      ['forwarded_lines_total', await total(m.forwardedLines)],
      ['write_failures_total', await total(m.writeFailures)],
      ['dead_lettered_total', await total(m.deadLettered)],
      ['live_clients', await total(m.liveClients)],
      ['device_sessions', await total(m.deviceSessions)],
    );
    // Every field is a float, as in `telemetry`: one type per field key, whatever the source metric.
    const body = fields.map(([k, v]) => `${k}=${Number.isFinite(v) ? v : 0}`).join(',');
    return `${series} ${body} ${Math.trunc(atMs)}`;
  }

  return {
    start() {
      if (timer) return;
      // Baseline for the first rates.
      collect().catch(() => {});
      timer = setInterval(() => {
        collect().then(
          (line) => opts.submit([line]),
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
