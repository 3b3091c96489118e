import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { type ConfigError, loadConfig } from '../../server/config/index.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics } from '../../server/metrics/index.ts';
import { createHubMqttClient, topicMatches } from '../../server/mqtt/client.ts';
import { topicsFor } from '../../server/mqtt/topics.ts';

const problems = (env: Record<string, string>) => {
  try {
    loadConfig(env);
    return [];
  } catch (err) {
    return (err as ConfigError).problems;
  }
};

/** A loopback port with nothing listening on it. */
function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function metric(metrics: ReturnType<typeof createMetrics>, name: string, labels: Record<string, string> = {}) {
  const m = (await metrics.registry.getSingleMetric(name)?.get())?.values ?? [];
  return m
    .filter((v) => Object.entries(labels).every(([k, x]) => (v.labels as Record<string, string>)[k] === x))
    .reduce((s, v) => s + v.value, 0);
}

describe('MQTT settings', () => {
  it('without MQTT_URL nothing MQTT is needed or used', () => {
    expect(loadConfig({}).mqtt).toBeNull();
    expect(loadConfig({ MQTT_USERNAME: 'x', MQTT_PASSWORD: 'y' }).mqtt).toBeNull();
    expect(problems({ MQTT_DEVICE_ACCESS: 'dynsec' })).toEqual(['MQTT_DEVICE_ACCESS: dynsec needs MQTT_URL']);
  });

  it('with MQTT_URL: defaults, and refusals of URLs and topic prefixes that cannot work', () => {
    expect(loadConfig({ MQTT_URL: 'mqtt://broker:1883' }).mqtt).toMatchObject({
      topicPrefix: 'esp32hub',
      clientId: 'esp32hub-hub',
      deviceAccess: 'none',
      sessionExpirySec: 604_800,
      maxInflight: 1000,
      offlineQueueMax: 10_000,
    });
    expect(problems({ MQTT_URL: 'http://broker:1883' })).toEqual([
      'MQTT_URL: must start with mqtt://, mqtts://, ws:// or wss://',
    ]);
    expect(problems({ MQTT_URL: 'mqtt://b', MQTT_TOPIC_PREFIX: 'a/+/b' })[0]).toMatch(/^MQTT_TOPIC_PREFIX:/);
  });
});

describe('topics', () => {
  it('name one device per up topic and match filters as MQTT does', () => {
    const t = topicsFor('esp32hub');
    expect(t.up('esp-1')).toBe('esp32hub/v1/esp-1/up');
    expect(t.down('esp-1')).toBe('esp32hub/v1/esp-1/down');
    expect(t.deviceOfUp('esp32hub/v1/esp-1/up')).toBe('esp-1');
    expect(t.deviceOfUp('esp32hub/v1/a/b/up')).toBeNull();
    expect(t.deviceOfUp('esp32hub/v1/esp-1/down')).toBeNull();
    expect(t.deviceOfUp('other/v1/esp-1/up')).toBeNull();
    expect(topicMatches(t.allUp, 'esp32hub/v1/esp-1/up')).toBe(true);
    expect(topicMatches(t.allUp, 'esp32hub/v1/esp-1/down')).toBe(false);
    expect(topicMatches('$CONTROL/dynamic-security/#', '$CONTROL/dynamic-security/v1/response')).toBe(true);
    expect(topicMatches('a/+', 'a/b/c')).toBe(false);
  });
});

describe('the hub MQTT client, broker unreachable', () => {
  it('keeps at most MQTT_OFFLINE_QUEUE_MAX messages, drops the oldest and counts them; never throws', async () => {
    const config = loadConfig({ MQTT_URL: `mqtt://127.0.0.1:${await closedPort()}`, MQTT_OFFLINE_QUEUE_MAX: '5' })
      .mqtt as NonNullable<ReturnType<typeof loadConfig>['mqtt']>;
    const metrics = createMetrics();
    const client = createHubMqttClient({
      config,
      metrics,
      logger: createLogger('silent'),
      minRetryMs: 20,
      maxRetryMs: 50,
    });
    client.start();
    for (let i = 0; i < 8; i++) client.publish(`esp32hub/v1/d${i}/down`, new Uint8Array([i]));
    expect(client.status()).toMatchObject({ queued: 5, inflight: 0 });
    expect(await metric(metrics, 'hub_mqtt_queued_messages')).toBe(5);
    expect(await metric(metrics, 'hub_mqtt_messages_total', { direction: 'out', outcome: 'dropped' })).toBe(3);
    const deadline = Date.now() + 10_000;
    while ((await metric(metrics, 'hub_mqtt_connect_failures_total')) < 2 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(client.status()).toMatchObject({ state: 'unreachable', lastError: { code: 'MQTT_UNREACHABLE' } });
    expect(client.isConnected()).toBe(false);
    await client.stop();
    expect(client.status().state).toBe('stopped');
  });
});
