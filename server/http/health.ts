/**
 * `/healthz` (the process is up), `/readyz` (the local log is open and the server listens; with
 * InfluxDB configured the forwarder's state is reported but does not make the hub unready: the local
 * log buffers while InfluxDB is away) and `/metrics` (Prometheus text from the hub's registry).
 *
 * With InfluxDB configured `/readyz` also carries a `deadLetters` check ({@link deadLetterCheck}):
 * how many lines InfluxDB rejected permanently in the last 5 minutes, and whether the store is
 * evicting. It reports a warning state and never makes the hub unready: the rejected lines are kept
 * (or, when evicting, lost) whatever instance a load balancer picks, so taking this one out of
 * rotation would not help; an operator has to fix the cause (docs/storage.md §4).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Metrics } from '../metrics/index.ts';
import type { DeadLetterRecent, DeadLetterTotals } from '../storage/dead-letter.ts';

export interface Readiness {
  ready: boolean;
  checks: Record<string, unknown>;
}

export interface HealthOptions {
  metrics: Metrics;
  readiness: () => Readiness;
  /** Runs before `/metrics` is rendered (moves hot-path counts into the registry). */
  beforeScrape?: () => void;
}

/** Returns a request handler that answers the three paths and returns false for anything else. */
export function createHealthRoutes(opts: HealthOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/healthz' && path !== '/readyz' && path !== '/metrics') return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('method not allowed\n');
      return true;
    }
    if (path === '/healthz') {
      json(res, 200, { status: 'ok' });
    } else if (path === '/readyz') {
      const r = opts.readiness();
      json(res, r.ready ? 200 : 503, { status: r.ready ? 'ready' : 'not ready', ...r.checks });
    } else {
      opts.beforeScrape?.();
      opts.metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'Content-Type': opts.metrics.registry.contentType, 'Cache-Control': 'no-store' });
          res.end(text);
        },
        (err: Error) => {
          res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`metrics failed: ${err.message}\n`);
        },
      );
    }
    return true;
  };
}

function json(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  res.end(body);
}

/** Store usage from which the `deadLetters` check warns even without new dead letters. */
export const DEAD_LETTER_FULL_WARN_RATIO = 0.8;

/** The `deadLetters` check of `/readyz`. */
export interface DeadLetterCheck {
  /**
   * `ok`: no new dead letters in the window and the store below 80 % of its cap; `warning`: InfluxDB
   * rejected lines in the window, or the store is 80 % full; `evicting`: dead letters were evicted
   * (lost) in the window because the store is full.
   */
  state: 'ok' | 'warning' | 'evicting';
  windowSeconds: number;
  /** Lines dead-lettered in the window, and the same as a rate. */
  newLines: number;
  perSecond: number;
  evictedLines: number;
  storedLines: number;
  storedBytes: number;
  maxBytes: number;
  /** storedBytes / maxBytes, 0..1. */
  usedRatio: number;
}

export function deadLetterCheck(totals: DeadLetterTotals, recent: DeadLetterRecent): DeadLetterCheck {
  const windowSeconds = recent.windowMs / 1000;
  const usedRatio = totals.maxBytes > 0 ? Math.min(1, totals.bytes / totals.maxBytes) : 0;
  const state =
    recent.evictedLines > 0
      ? 'evicting'
      : recent.lines > 0 || usedRatio >= DEAD_LETTER_FULL_WARN_RATIO
        ? 'warning'
        : 'ok';
  return {
    state,
    windowSeconds,
    newLines: recent.lines,
    perSecond: Math.round((recent.lines / windowSeconds) * 1000) / 1000,
    evictedLines: recent.evictedLines,
    storedLines: totals.lines,
    storedBytes: totals.bytes,
    maxBytes: totals.maxBytes,
    usedRatio: Math.round(usedRatio * 10_000) / 10_000,
  };
}
