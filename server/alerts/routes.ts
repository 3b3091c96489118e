/**
 * `GET /api/alerts`: what is firing now, the configured rules and sinks (docs/alerts.md §5). Read
 * with the admin token, or with dashboard access (the built-in page loads it, then follows the live
 * `alert` messages).
 */
import { z } from 'zod';
import type { Guard, Router } from '../http/router.ts';
import type { Alerts } from './index.ts';

const severity = z.enum(['info', 'warning', 'critical']);
const op = z.enum(['>', '>=', '<', '<=', '==', '!=']);

/** One alert transition (the live message, webhook body and MQTT payload have the same fields). */
export const alertEventSchema = z.object({
  id: z.string().describe('<rule>/<device>/<firingSinceMs>: the same in the firing and resolved events'),
  rule: z.string(),
  kind: z.enum(['offline', 'threshold']),
  device: z.string(),
  state: z.enum(['firing', 'resolved']),
  severity,
  summary: z.string(),
  firingSinceMs: z.number(),
  atMs: z.number(),
  seq: z.number().int(),
  channel: z.string().optional(),
  op: op.optional(),
  threshold: z.number().optional(),
  value: z.union([z.number(), z.boolean()]).optional(),
  reason: z.string().optional(),
  offlineSinceMs: z.number().optional(),
});

const snapshotSchema = z.object({
  seq: z.number().int(),
  alerts: z.array(alertEventSchema),
  rules: z.object({
    offline: z.object({ name: z.literal('offline'), afterSec: z.number(), severity }).nullable(),
    thresholds: z.array(
      z.object({
        name: z.string(),
        device: z.string(),
        channel: z.string(),
        op,
        value: z.number(),
        clear: z.number(),
        forSec: z.number(),
        severity,
      }),
    ),
  }),
  sinks: z.object({ live: z.boolean(), webhook: z.boolean(), mqtt: z.boolean() }),
});

export interface AlertRoutesDeps {
  alerts: Pick<Alerts, 'snapshot'>;
  guard: Guard;
}

export function registerAlertRoutes(router: Router, deps: AlertRoutesDeps): void {
  router.get('/api/alerts', () => deps.alerts.snapshot(), {
    summary: 'Firing alerts, rules and sinks',
    description:
      'The alerts firing now (offline rule and threshold rules), oldest first, with `seq`, the number of the latest transition: a live `alert` message with a higher `seq` is newer. See docs/alerts.md.',
    tags: ['alerts'],
    query: z.strictObject({}),
    guard: deps.guard,
    headers: { 'cache-control': 'no-store' },
    responses: { 200: snapshotSchema },
  });
}
