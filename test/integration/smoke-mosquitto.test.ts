// Smoke test of the real MQTT broker used by integration tests (Debian's mosquitto 2.0, docs/testing.md).
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MosquittoServer, ServerStartError, startMosquitto } from '../harness/index.ts';

describe('real Mosquitto broker', () => {
  let broker: MosquittoServer;
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    broker = await startMosquitto();
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await broker?.stop();
  });

  async function connect(clientId: string): Promise<MqttClient> {
    // reconnectPeriod 0: a broken broker must fail the test, not be retried forever.
    const client = await mqtt.connectAsync(broker.url, { clientId, reconnectPeriod: 0, connectTimeout: 5_000 });
    clients.push(client);
    return client;
  }

  it('delivers a binary message from a publisher to a subscriber', async () => {
    const subscriber = await connect('smoke-sub');
    const publisher = await connect('smoke-pub');
    const topic = 'esp32hub/v1/esp-01/up';
    const payload = Buffer.from([0x45, 0x53, 0x01, 0x04, 0x00, 0x00, 0xff, 0x10]);

    const received = new Promise<{ topic: string; payload: Buffer }>((resolve) => {
      subscriber.on('message', (t, p) => resolve({ topic: t, payload: p }));
    });
    await subscriber.subscribeAsync(topic, { qos: 1 });
    await publisher.publishAsync(topic, payload, { qos: 1 });

    const message = await received;
    expect(message.topic).toBe(topic);
    expect(Buffer.compare(message.payload, payload)).toBe(0);
    expect(broker.logs()).toMatch(/New client connected .* as smoke-pub/);
  });

  it('fails fast with the broker log when a server cannot start', async () => {
    const failure = await startMosquitto({ extraConfig: ['no_such_option 1'] }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(ServerStartError);
    expect((failure as ServerStartError).message).toMatch(/mosquitto exited while starting/);
    expect((failure as ServerStartError).message).toMatch(/no_such_option/);
  });
});
