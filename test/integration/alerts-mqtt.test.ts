// Alerts on MQTT through a real Mosquitto with dynamic security (the hub's broker role allows only the
// device topics until the alert sink adds `<prefix>/v1/+/alert`): a device that stays offline gives
// one `firing` message on `esp32hub/v1/<id>/alert`, its return one `resolved`, with the same JSON as
// the other sinks. Waits on conditions only.
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AlertEvent } from '../../server/alerts/types.ts';
import { type MosquittoServer, startMosquitto } from '../harness/index.ts';
import { startTestHub, TEST_CHANNELS, TestDevice, type TestHub } from './ingest-device-client.ts';

const ADMIN = 'b'.repeat(40);
const HUB_USER = 'hub';
const HUB_PASSWORD = 'hub-broker-password-2';

async function until(predicate: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await predicate())) await new Promise((resolve) => setTimeout(resolve, 20));
}

describe('alerts on MQTT (real Mosquitto, dynamic security)', () => {
  let broker: MosquittoServer;
  let h: TestHub;
  let sub: mqtt.MqttClient;
  const received: { topic: string; event: AlertEvent; retain: boolean }[] = [];

  beforeAll(async () => {
    broker = await startMosquitto({ dynsec: { adminUser: HUB_USER, adminPassword: HUB_PASSWORD } });
    h = await startTestHub(
      {
        HUB_ADMIN_TOKEN: ADMIN,
        MQTT_URL: broker.url,
        MQTT_USERNAME: HUB_USER,
        MQTT_PASSWORD: HUB_PASSWORD,
        MQTT_DEVICE_ACCESS: 'dynsec',
        MQTT_CLIENT_ID: 'hub-alerts-test',
        ALERT_OFFLINE_AFTER_SEC: '1',
      },
      { mqttRetryMs: { min: 100, max: 1000 } },
    );
    await until(async () => (await fetch(`${h.http}/readyz`)).status === 200);
    // The hub's login may read every topic (dynsec admin): a separate client id watches the alerts.
    sub = await mqtt.connectAsync(broker.url, {
      username: HUB_USER,
      password: HUB_PASSWORD,
      clientId: 'alerts-watcher',
      protocolVersion: 5,
    });
    sub.on('message', (topic, payload, packet) =>
      received.push({ topic, event: JSON.parse(payload.toString('utf8')) as AlertEvent, retain: packet.retain }),
    );
    await sub.subscribeAsync('esp32hub/v1/+/alert', { qos: 1 });
  });

  afterAll(async () => {
    await sub?.endAsync();
    await h?.stop();
    await broker?.stop();
  });

  it('publishes firing when a device stays offline and resolved when it returns, on <prefix>/v1/<id>/alert', async () => {
    const id = 'esp-mqtt-alert';
    const { token } = await h.registry.add(id);
    const connect = async (boot: number) => {
      const d = await TestDevice.connect(h.url, { token });
      const welcome = await d.hello(id, boot, { uptimeMs: 3_600_000 });
      if (!welcome.descriptorsKnown) d.send({ type: 'descriptors', channels: TEST_CHANNELS });
      return d;
    };
    await (await connect(1)).close();
    await until(() => received.length === 1);
    const firing = received[0];
    expect(firing?.topic).toBe(`esp32hub/v1/${id}/alert`);
    expect(firing?.retain).toBe(false);
    expect(firing?.event).toMatchObject({ rule: 'offline', device: id, state: 'firing', reason: 'closed' });
    // The same event the API lists.
    const api = await fetch(`${h.http}/api/alerts`, { headers: { authorization: `Bearer ${ADMIN}` } });
    expect(((await api.json()) as { alerts: AlertEvent[] }).alerts).toEqual([firing?.event]);

    const back = await connect(2);
    await until(() => received.length === 2);
    expect(received[1]?.event).toMatchObject({ id: firing?.event.id, state: 'resolved', reason: 'online' });
    expect(received.map((r) => r.event.state)).toEqual(['firing', 'resolved']);
    await back.close();
  });
});
