/**
 * Metrics of the built-in alerts, registered on the hub's registry (one set per registry, however
 * many parts ask for them). Rule names come from the configuration, so the `rule` label is bounded.
 */
import { Counter, Gauge } from 'prom-client';
import { metricsPerRegistry } from '../metrics/per-registry.ts';

export const alertMetrics = metricsPerRegistry((registers) => ({
  firing: new Gauge({
    name: 'hub_alerts_firing',
    help: 'Alerts firing now (devices for which the rule holds), by rule (offline or a threshold rule of ALERT_RULES_FILE).',
    labelNames: ['rule'] as const,
    registers,
  }),
  transitions: new Counter({
    name: 'hub_alert_transitions_total',
    help: 'Alert transitions, by rule and state (firing, resolved): one per transition, never one per reading.',
    labelNames: ['rule', 'state'] as const,
    registers,
  }),
  webhook: new Counter({
    name: 'hub_alert_webhook_deliveries_total',
    help: 'Alert webhook outcomes, by outcome: delivered; retry (an attempt failed, another follows); and the drops: queue_full (oldest waiting event dropped), gave_up (ALERT_WEBHOOK_MAX_ATTEMPTS failed), rejected (4xx other than 408/429), shutdown (still queued when the hub stopped).',
    labelNames: ['outcome'] as const,
    registers,
  }),
  webhookQueued: new Gauge({
    name: 'hub_alert_webhook_queued',
    help: 'Alert events waiting for webhook delivery, the one being attempted included (bounded by ALERT_WEBHOOK_QUEUE_MAX).',
    registers,
  }),
}));

export type AlertMetrics = ReturnType<typeof alertMetrics>;
