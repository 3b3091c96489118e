/**
 * Metrics of the readings bridge and Home Assistant discovery, registered on the hub's registry (one
 * set per registry, however many parts ask for them).
 */
import { Counter, Gauge } from 'prom-client';
import { metricsPerRegistry } from '../metrics/per-registry.ts';

export const bridgeMetrics = metricsPerRegistry((registers) => ({
  readings: new Counter({
    name: 'hub_mqtt_bridge_readings_total',
    help: 'Stored readings seen by the MQTT readings bridge, by outcome: published (in a state message), coalesced (superseded by a newer value of its channel within the interval, or older than the last value: never published) or held_elsewhere (pending when the session ended here and the device is held by another instance, which publishes its own newer values).',
    labelNames: ['outcome'] as const,
    registers,
  }),
  messages: new Counter({
    name: 'hub_mqtt_bridge_messages_total',
    help: 'Messages handed to the MQTT client by the bridge and Home Assistant discovery, by kind (state, status, discovery, discovery_clear).',
    labelNames: ['kind'] as const,
    registers,
  }),
  flushes: new Counter({
    name: 'hub_mqtt_bridge_flushes_total',
    help: 'Bridge flush ticks with something pending, by outcome: published, or deferred (broker unreachable or MQTT queue busy; values keep coalescing).',
    labelNames: ['outcome'] as const,
    registers,
  }),
  pendingDevices: new Gauge({
    name: 'hub_mqtt_bridge_pending_devices',
    help: 'Devices with a state or status the bridge has not published yet (at most one message each).',
    registers,
  }),
  statusSkipped: new Counter({
    name: 'hub_mqtt_bridge_status_skipped_total',
    help: "Offline statuses the bridge did not publish, by reason: held_elsewhere (with several instances, the device's session is on another instance, which published online).",
    labelNames: ['reason'] as const,
    registers,
  }),
  haCommands: new Counter({
    name: 'hub_mqtt_ha_commands_total',
    help: 'Commands received on the Home Assistant command topics, by command and outcome (sent, offline, invalid; elsewhere: with several instances, another instance holds the device and sends it).',
    labelNames: ['command', 'outcome'] as const,
    registers,
  }),
}));

export type BridgeMetrics = ReturnType<typeof bridgeMetrics>;
