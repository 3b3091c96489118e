import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics } from '../../server/metrics/index.ts';
import type { HubMqttClient } from '../../server/mqtt/client.ts';
import { CONTROL_TOPIC, createDynsecAccess, RESPONSE_TOPIC } from '../../server/mqtt/dynsec.ts';
import { topicsFor } from '../../server/mqtt/topics.ts';

type Command = { command: string; correlationData: string; [k: string]: unknown };

/**
 * The hub's broker client at the module boundary: answers dynamic-security commands like Mosquitto,
 * except where `answer` returns undefined (the response is lost, as when the broker disconnects the
 * hub right after a role change: the plugin's responses are published at QoS 0).
 */
function fakeBroker(answer: (c: Command) => Record<string, unknown> | undefined) {
  let onResponse: ((topic: string, payload: Buffer) => void) | undefined;
  const client = {
    subscribe(filter: string, handler: (topic: string, payload: Buffer) => void) {
      if (filter === RESPONSE_TOPIC) onResponse = handler;
    },
    publish(topic: string, payload: string) {
      if (topic !== CONTROL_TOPIC) return;
      for (const c of (JSON.parse(payload) as { commands: Command[] }).commands) {
        const r = answer(c);
        if (r === undefined) continue;
        queueMicrotask(() =>
          onResponse?.(
            RESPONSE_TOPIC,
            Buffer.from(
              JSON.stringify({ responses: [{ command: c.command, correlationData: c.correlationData, ...r }] }),
            ),
          ),
        );
      }
    },
  } as unknown as HubMqttClient;
  return client;
}

async function failedCount(metrics: ReturnType<typeof createMetrics>): Promise<number> {
  const values = (await metrics.registry.getSingleMetric('hub_mqtt_broker_access_total')?.get())?.values ?? [];
  return values.filter((v) => v.labels.outcome === 'failed').reduce((s, v) => s + v.value, 0);
}

afterEach(() => {
  vi.useRealTimers();
});

/** Runs the hub's broker setup against `answer` (fake timers: a lost answer times out at once). */
async function runSetup(answer: (c: Command) => Record<string, unknown> | undefined) {
  vi.useFakeTimers();
  const metrics = createMetrics();
  const access = createDynsecAccess({
    client: fakeBroker(answer),
    topics: topicsFor('esp32hub'),
    hubUsername: 'hub',
    metrics,
    logger: createLogger('silent'),
  });
  const setup = access.setup().then(
    () => 'resolved',
    (err: { code?: string }) => err.code,
  );
  await vi.advanceTimersByTimeAsync(10_000);
  return { outcome: await setup, failed: await failedCount(metrics) };
}

describe('broker access setup (dynamic security)', () => {
  it('giving the hub its role is not a failure when the broker drops the hub before answering', async () => {
    const commands: string[] = [];
    const result = await runSetup((c) => {
      commands.push(c.command);
      if (c.command === 'createRole') return { error: 'Role already exists' };
      if (c.command === 'getClient') return { data: { client: { username: 'hub', roles: [] } } };
      return undefined; // addClientRole: Mosquitto kicks the hub; the response is lost with the connection.
    });
    expect(result).toEqual({ outcome: 'resolved', failed: 0 });
    expect(commands).toEqual(['createRole', 'getClient', 'addClientRole']);
  });

  it('a refused role change or an unanswered role lookup is still a counted failure', async () => {
    const refused = await runSetup((c) =>
      c.command === 'createRole'
        ? {}
        : c.command === 'getClient'
          ? { data: { client: { roles: [] } } }
          : { error: 'Client not found' },
    );
    expect(refused).toEqual({ outcome: 'MQTT_BROKER_ACCESS', failed: 1 });
    const unanswered = await runSetup((c) => (c.command === 'createRole' ? {} : undefined));
    expect(unanswered).toEqual({ outcome: 'MQTT_BROKER_ACCESS', failed: 1 });
  });
});
