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
import { z } from 'zod';
import type { Metrics } from '../metrics/index.ts';
import type { DeadLetterRecent, DeadLetterTotals } from '../storage/dead-letter.ts';
import { sendJson, sendText } from './respond.ts';
import type { Router } from './router.ts';

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

const headers = { 'cache-control': 'no-store' };

/**
 * Registers `GET /healthz`, `GET /readyz` and `GET /metrics`: public, like any probe endpoint, and a
 * query string is ignored (some probes add one).
 */
export function registerHealthRoutes(router: Router, opts: HealthOptions): void {
  router.get('/healthz', () => ({ status: 'ok' }), {
    summary: 'Liveness: the process is up',
    tags: ['health'],
    headers,
    responses: { 200: z.object({ status: z.literal('ok') }) },
  });
  router.get(
    '/readyz',
    (ctx) => {
      const r = opts.readiness();
      sendJson(ctx.res, r.ready ? 200 : 503, { status: r.ready ? 'ready' : 'not ready', ...r.checks });
    },
    {
      summary:
        'Readiness: the local log is open and can store, the server listens (and MQTT is connected when configured)',
      description: 'Also reports the forwarder, MQTT and dead-letter checks (docs/storage.md).',
      tags: ['health'],
      headers,
      responses: {
        200: z.looseObject({ status: z.literal('ready') }).describe('Ready, with each check'),
        503: z.looseObject({ status: z.literal('not ready') }).describe('Not ready, with each check'),
      },
    },
  );
  router.get(
    '/metrics',
    async (ctx) => {
      opts.beforeScrape?.();
      sendText(ctx.res, 200, opts.metrics.registry.contentType, await opts.metrics.registry.metrics());
    },
    {
      summary: 'Prometheus metrics (text exposition format)',
      tags: ['health'],
      headers,
      responses: { 200: { description: 'Prometheus text', contentType: 'text/plain' } },
    },
  );
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
