/**
 * The alert webhook (`ALERT_WEBHOOK_URL`): each alert event as a JSON POST, in order, one at a time.
 *
 * - Bounded: at most `queueMax` events wait (the one being attempted included); a new event when
 *   the queue is full drops the oldest waiting one (the newest state matters most), counted
 *   (`outcome="queue_full"`) and logged (rate-limited).
 * - Retries: a network error, a timeout (`timeoutMs`), a 408, 429 or 5xx is retried after
 *   `min × 2^(n-1)` ms (capped at `max`, ±20 % jitter; a `Retry-After` in seconds is honoured up to
 *   `max`), up to `maxAttempts` attempts; then dropped (`gave_up`). Any other 3xx or 4xx is the
 *   receiver refusing the event (redirects are not followed: a moved webhook is a configuration to
 *   fix): dropped at once (`rejected`). Each drop is logged with the alert id.
 * - Signed: with a secret, `X-Esp32hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
 * - Never logged: the secret, and the URL beyond its origin (webhook URLs often hold a token).
 * - `stop(graceMs)`: waits that long for the queue to empty (no new backoff waits), then drops
 *   what is left (`shutdown`, logged).
 */
import { createHmac } from 'node:crypto';
import type { Logger } from '../log/index.ts';
import { createLogLimiter } from '../log/rate-limit.ts';
import type { AlertMetrics } from './metrics.ts';
import type { AlertEvent, WebhookConfig } from './types.ts';

export const SIGNATURE_HEADER = 'x-esp32hub-signature-256';

export interface WebhookSinkOptions {
  config: WebhookConfig;
  metrics: AlertMetrics;
  logger: Logger;
  /** Backoff bounds, ms (default 1000 doubling to 60 000). */
  retryMs?: { min: number; max: number };
}

export interface WebhookSink {
  enqueue(event: AlertEvent): void;
  /** Events waiting (the one in flight included). */
  queued(): number;
  stop(graceMs?: number): Promise<void>;
}

/** The body of a delivery: the event as JSON (docs/alerts.md §4). */
export function webhookBody(event: AlertEvent): string {
  return JSON.stringify(event);
}

/** `sha256=<hex>` of the body under `secret`, as the signature header carries it. */
export function signBody(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

type Attempt = { ok: true } | { ok: false; retry: boolean; detail: string; retryAfterMs: number | null };

export function createWebhookSink(opts: WebhookSinkOptions): WebhookSink {
  const { config, metrics } = opts;
  const logger = opts.logger;
  const minMs = opts.retryMs?.min ?? 1000;
  const maxMs = opts.retryMs?.max ?? 60_000;
  const target = new URL(config.url).origin;
  const limiter = createLogLimiter({ logger });
  const queue: AlertEvent[] = [];
  let running = false;
  let stopping = false;
  /** Set when `stop` ran out of grace: no new attempt starts. */
  let abandoned = false;
  let wake: (() => void) | null = null;
  let waitTimer: NodeJS.Timeout | null = null;
  let idle: Promise<void> = Promise.resolve();
  let inflight: AbortController | null = null;

  const gauge = () => metrics.webhookQueued.set(queue.length);

  const drop = (event: AlertEvent, outcome: string, detail: string): void => {
    metrics.webhook.inc({ outcome });
    limiter.hit('alert-webhook', outcome, {
      level: 'warn',
      msg: 'alert webhook: event dropped',
      fields: { outcome, alert: event.id, state: event.state, target, detail },
    });
  };

  const attempt = async (body: string): Promise<Attempt> => {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': 'esp32hub-alerts/1',
    };
    if (config.secret) headers[SIGNATURE_HEADER] = signBody(config.secret, body);
    const ctrl = new AbortController();
    inflight = ctrl;
    const timer = setTimeout(() => ctrl.abort(new Error(`no answer within ${config.timeoutMs} ms`)), config.timeoutMs);
    try {
      const res = await fetch(config.url, { method: 'POST', headers, body, signal: ctrl.signal, redirect: 'manual' });
      // The answer's body is not needed (and not read: a receiver could send anything).
      await res.body?.cancel().catch(() => undefined);
      if (res.ok) return { ok: true };
      const retry = res.status === 408 || res.status === 429 || res.status >= 500;
      const after = Number(res.headers.get('retry-after'));
      return {
        ok: false,
        retry,
        detail: `HTTP ${res.status}`,
        retryAfterMs: Number.isFinite(after) && after >= 0 ? after * 1000 : null,
      };
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } };
      const detail = ctrl.signal.aborted
        ? String((ctrl.signal.reason as Error)?.message)
        : (e.cause?.code ?? e.message);
      return { ok: false, retry: true, detail, retryAfterMs: null };
    } finally {
      clearTimeout(timer);
      inflight = null;
    }
  };

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      wake = resolve;
      waitTimer = setTimeout(resolve, ms);
    }).finally(() => {
      wake = null;
      if (waitTimer) clearTimeout(waitTimer);
      waitTimer = null;
    });

  const run = async (): Promise<void> => {
    running = true;
    try {
      while (queue.length > 0 && !abandoned) {
        const event = queue[0] as AlertEvent;
        const body = webhookBody(event);
        let n = 0;
        for (;;) {
          n++;
          const result = await attempt(body);
          if (result.ok) {
            metrics.webhook.inc({ outcome: 'delivered' });
            break;
          }
          if (!result.retry) {
            drop(event, 'rejected', result.detail);
            break;
          }
          if (n >= config.maxAttempts || stopping) {
            drop(event, stopping ? 'shutdown' : 'gave_up', `${result.detail} (attempt ${n} of ${config.maxAttempts})`);
            break;
          }
          metrics.webhook.inc({ outcome: 'retry' });
          limiter.hit('alert-webhook', 'retry', {
            level: 'warn',
            msg: 'alert webhook: attempt failed, retrying',
            fields: { target, alert: event.id, attempt: n, detail: result.detail },
          });
          const backoff = Math.min(maxMs, minMs * 2 ** (n - 1)) * (0.8 + Math.random() * 0.4);
          await sleep(Math.min(maxMs, result.retryAfterMs ?? backoff));
          if (queue[0] !== event) break; // dropped meanwhile (queue full or stop)
        }
        if (queue[0] === event) queue.shift();
        gauge();
      }
    } finally {
      running = false;
    }
  };

  return {
    enqueue(event) {
      if (stopping) {
        drop(event, 'shutdown', 'the hub is stopping');
        return;
      }
      queue.push(event);
      if (queue.length > config.queueMax) {
        // The oldest one not being attempted right now (index 1 while a delivery runs).
        const at = running && queue.length > 1 ? 1 : 0;
        const [old] = queue.splice(at, 1);
        if (old) drop(old, 'queue_full', `more than ${config.queueMax} events waiting (ALERT_WEBHOOK_QUEUE_MAX)`);
      }
      gauge();
      if (!running) idle = run();
    },
    queued: () => queue.length,
    async stop(graceMs = 2000) {
      stopping = true;
      wake?.(); // a backoff wait ends now: its event is dropped as `shutdown`
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        idle.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), graceMs);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        abandoned = true;
        inflight?.abort(new Error('the hub is stopping'));
        await idle;
      }
      for (const event of queue.splice(0)) drop(event, 'shutdown', 'the hub stopped');
      gauge();
      limiter.close();
    },
  };
}
