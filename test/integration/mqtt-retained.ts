/**
 * Test helpers for retained MQTT messages on a real broker. `readRetained` subscribes with a fresh
 * client and returns what the broker holds retained under a filter: Mosquitto queues a
 * subscription's retained messages while handling the SUBSCRIBE, so once the SUBACK of a second,
 * later subscription (the same filter again) has arrived, every retained message of the first one has too (one TCP stream,
 * packets handled in order). No sleeps.
 */
import mqtt from 'mqtt';
import type { MqttPublisher } from '../../server/mqtt/bridge.ts';
import type { HaPublisher } from '../../server/mqtt/ha-discovery.ts';

export async function readRetained(
  url: string,
  filter: string,
  login: { username: string; password: string } | Record<string, never> = {},
): Promise<Map<string, string>> {
  const c = await mqtt.connectAsync(url, { clean: true, reconnectPeriod: 0, ...login });
  const got = new Map<string, string>();
  c.on('message', (topic, payload, packet) => {
    if (packet.retain) got.set(topic, payload.toString('utf8'));
  });
  try {
    // QoS 0: each message is emitted as its packet is parsed, before the next packet (the SUBACK).
    await c.subscribeAsync(filter, { qos: 0 });
    // The same filter again (a login may be allowed no other): its SUBACK follows the first's messages.
    await c.subscribeAsync(filter, { qos: 0 });
    // Messages of the first subscription arrived before the second SUBACK; let their handlers run.
    await new Promise((r) => setImmediate(r));
    return got;
  } finally {
    await c.endAsync();
  }
}

/** Re-exported for the MQTT tests that import it from here. */
export { until } from '../harness/until.ts';

/**
 * A plain mqtt.js connection as the publisher the bridge and discovery take (the hub passes its own
 * client; these tests exercise the parts alone against the real broker). `sent()` and `acked()`
 * count the messages handed over and the broker's PUBACKs; `subscribed()` resolves once the broker
 * answered every subscription.
 */
export async function rawPublisher(url: string): Promise<
  HaPublisher &
    MqttPublisher & {
      acked(): number;
      sent(): number;
      subscribed(): Promise<unknown>;
      /** Runs the connect hooks, as the hub's client does after each (re)connect. */
      reconnected(): Promise<void>;
      close(): Promise<void>;
    }
> {
  const c = await mqtt.connectAsync(url, { clean: true, reconnectPeriod: 0, protocolVersion: 5 });
  const handlers: [string, (t: string, p: Buffer) => void][] = [];
  let sent = 0;
  let acked = 0;
  const subscriptions: Promise<unknown>[] = [];
  const hooks: ((sessionPresent: boolean) => Promise<void> | void)[] = [];
  c.on('message', (topic, payload) => {
    for (const [filter, h] of handlers) if (matches(filter, topic)) h(topic, payload);
  });
  return {
    publish(topic, payload, o = {}) {
      sent++;
      c.publish(topic, Buffer.from(payload), { qos: o.qos ?? 1, retain: o.retain ?? false }, () => {
        acked++;
      });
    },
    isConnected: () => c.connected,
    subscribe(filter, handler) {
      handlers.push([filter, handler]);
      subscriptions.push(c.subscribeAsync(filter, { qos: 1 }));
    },
    onConnect(hook) {
      hooks.push(hook);
    },
    async reconnected() {
      for (const hook of hooks) await hook(false);
    },
    acked: () => acked,
    subscribed: () => Promise.all(subscriptions),
    sent: () => sent,
    close: () => c.endAsync(),
  };
}

function matches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}
