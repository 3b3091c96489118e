// Metrics kept next to their part (alerts, MQTT bridge) but registered on the hub's registry: every part
// that asks gets the same set for a hub (one series on /metrics, counted once), and each hub its own.
import { describe, expect, it } from 'vitest';
import { alertMetrics } from '../../server/alerts/metrics.ts';
import { createMetrics } from '../../server/metrics/index.ts';
import { metricsPerRegistry } from '../../server/metrics/per-registry.ts';
import { bridgeMetrics } from '../../server/mqtt/bridge-metrics.ts';
import { otaMetrics } from '../../server/ota/metrics.ts';

describe('metricsPerRegistry', () => {
  it('gives every part of one hub the same set, registered once on its registry', async () => {
    const hub = createMetrics();
    const bridge = bridgeMetrics(hub);
    const discovery = bridgeMetrics(hub); // the bridge and HA discovery both ask
    expect(discovery).toBe(bridge);
    bridge.messages.inc({ kind: 'state' });
    discovery.messages.inc({ kind: 'state' });
    alertMetrics(hub).transitions.inc({ rule: 'offline', state: 'firing' });
    const text = await hub.registry.metrics();
    expect(text).toContain('hub_mqtt_bridge_messages_total{kind="state"} 2');
    expect(text).toContain('hub_alert_transitions_total{rule="offline",state="firing"} 1');
    expect(text.match(/^# TYPE hub_mqtt_bridge_messages_total /gm)).toHaveLength(1);
  });

  it('gives each hub its own set: one hub counting does not show on the other', async () => {
    const a = createMetrics();
    const b = createMetrics();
    expect(alertMetrics(a)).not.toBe(alertMetrics(b));
    alertMetrics(a).webhook.inc({ outcome: 'delivered' });
    expect(await a.registry.metrics()).toContain('hub_alert_webhook_deliveries_total{outcome="delivered"} 1');
    expect(await b.registry.metrics()).not.toContain('hub_alert_webhook_deliveries_total{outcome="delivered"}');
  });

  it('gives the OTA parts (service, routes, campaigns) one set per hub like the other parts', async () => {
    const a = createMetrics();
    const b = createMetrics();
    expect(otaMetrics(a)).toBe(otaMetrics(a));
    expect(otaMetrics(b)).not.toBe(otaMetrics(a));
    otaMetrics(a).refusals.inc({ reason: 'busy' });
    otaMetrics(a).refusals.inc({ reason: 'busy' });
    const text = await a.registry.metrics();
    expect(text).toContain('hub_ota_download_refusals_total{reason="busy"} 2');
    expect(text.match(/^# TYPE hub_ota_download_refusals_total /gm)).toHaveLength(1);
    expect(await b.registry.metrics()).not.toContain('hub_ota_download_refusals_total{reason="busy"}');
  });

  it('creates a set at the first request for a registry only', () => {
    let created = 0;
    const lookup = metricsPerRegistry((registers) => ({ created: ++created, registers }));
    const hub = createMetrics();
    expect(lookup(hub)).toEqual({ created: 1, registers: [hub.registry] });
    expect(lookup(hub).created).toBe(1);
    expect(lookup(createMetrics()).created).toBe(2);
  });
});
