// The built-in alerts in a real hub (buildHub + the live extension, real registry, real lmdb log)
// over real sockets: a device that disconnects raises the offline alert on the live socket, in a
// webhook call to a real local HTTP server, in GET /api/alerts and the metrics, and resolves when it
// returns; a threshold rule fires from real device frames (and not for a device it does not target);
// a webhook that is down is retried then delivered, or dropped after its attempts with the drop
// counted and logged. Waits on conditions only.
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { AlertEvent } from '../../server/alerts/types.ts';
import { SIGNATURE_HEADER, signBody } from '../../server/alerts/webhook.ts';
import { configFrom } from '../../server/config/index.ts';
import { liveExtension } from '../../server/live/index.ts';
import { createLogger } from '../../server/log/index.ts';
import { type TempDir, tempDir } from '../harness/index.ts';
import { startTestHub, TEST_CHANNELS, TestDevice, type TestHub, telemetry } from './ingest-device-client.ts';

const ADMIN = 'alerts-admin-token-0123456789abcdef';
const SECRET = 'alerts-webhook-secret-0123456789';

let h: TestHub;
let dir: TempDir;
let hook: Server;
/** Webhook deliveries the receiver answered 2xx to, in arrival order. */
const delivered: AlertEvent[] = [];
/** Every request the receiver saw (answered or not). */
const seen: { body: string; signature: string | undefined }[] = [];
/** Per device: how the receiver answers its next deliveries (then 204). */
const failures = new Map<string, number[]>();
const logLines: string[] = [];

beforeAll(async () => {
  hook = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ body, signature: req.headers[SIGNATURE_HEADER] as string | undefined });
      const event = JSON.parse(body) as AlertEvent;
      const status = failures.get(event.device)?.shift();
      if (status !== undefined) {
        res.writeHead(status).end();
        return;
      }
      delivered.push(event);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
  dir = await tempDir('alerts-hub');
  const rules = join(dir.path, 'rules.yaml');
  writeFileSync(
    rules,
    [
      'rules:',
      '  - name: hot',
      '    device: esp-hot*',
      '    channel: temperature',
      "    op: '>'",
      '    value: 25',
      '',
    ].join('\n'),
  );
  const live = liveExtension(configFrom({}));
  const logger = createLogger(
    'info',
    new Writable({
      write(chunk, _enc, cb) {
        logLines.push(String(chunk));
        cb();
      },
    }),
  );
  h = await startTestHub(
    {
      HUB_ADMIN_TOKEN: ADMIN,
      ALERT_OFFLINE_AFTER_SEC: '1',
      ALERT_RULES_FILE: rules,
      ALERT_WEBHOOK_URL: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/alerts`,
      ALERT_WEBHOOK_SECRET: SECRET,
      ALERT_WEBHOOK_MAX_ATTEMPTS: '3',
    },
    { extensions: [live], logger, alertWebhookRetryMs: { min: 20, max: 200 } },
    await tempDir('alerts-hub-data'),
  );
});

afterAll(async () => {
  await h?.stop();
  await h?.dir.remove();
  await dir?.remove();
  hook?.closeAllConnections();
  await new Promise((resolve) => hook?.close(resolve));
});

interface LiveClient {
  // biome-ignore lint/suspicious/noExplicitAny: JSON messages
  messages: any[];
  ws: WebSocket;
}

/** A live client subscribed to one device that is not the one alerting: alerts reach every client. */
async function liveClient(): Promise<LiveClient> {
  const ws = new WebSocket(`ws://127.0.0.1:${h.port}/v1/live`);
  // biome-ignore lint/suspicious/noExplicitAny: JSON messages
  const messages: any[] = [];
  ws.on('message', (data) => messages.push(JSON.parse(String(data))));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ type: 'subscribe', sub: 'other', device: 'some-other-board' }));
  await until(() => messages.some((m) => m.type === 'subscribed'));
  return { ws, messages };
}

async function until(predicate: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await predicate())) await new Promise((resolve) => setTimeout(resolve, 10));
}

async function apiAlerts(token = ADMIN): Promise<{ status: number; body: { seq: number; alerts: AlertEvent[] } }> {
  const res = await fetch(`${h.http}/api/alerts`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as { seq: number; alerts: AlertEvent[] } };
}

async function connect(id: string, token: string, boot: number): Promise<TestDevice> {
  const device = await TestDevice.connect(h.url, { token });
  const welcome = await device.hello(id, boot, { uptimeMs: 3_600_000 });
  if (!welcome.descriptorsKnown) device.send({ type: 'descriptors', channels: TEST_CHANNELS });
  return device;
}

// biome-ignore lint/suspicious/noExplicitAny: JSON messages
const alertsOf = (messages: any[], device: string) =>
  messages.filter((m) => m.type === 'alert' && m.device === device).map((m) => `${m.rule}:${m.state}`);

describe('built-in alerts in a running hub', () => {
  it('offline: a device gone for longer than ALERT_OFFLINE_AFTER_SEC raises one alert on the live socket, the webhook, the API and the metrics; it resolves when the device returns', async () => {
    const client = await liveClient();
    const id = 'esp-away';
    const token = await h.addDevice(id);
    const device = await connect(id, token, 1);
    await device.close();

    await until(() => alertsOf(client.messages, id).length === 1);
    const firing = client.messages.find((m) => m.type === 'alert' && m.device === id);
    expect(firing).toMatchObject({ rule: 'offline', kind: 'offline', state: 'firing', severity: 'warning' });
    await until(() => delivered.some((e) => e.device === id));
    expect(delivered.find((e) => e.device === id)).toEqual({ ...firing, type: undefined });
    // Signed with the secret over the exact body.
    const raw = seen.find((s) => s.body.includes(`"device":"${id}"`));
    expect(raw?.signature).toBe(signBody(SECRET, raw?.body ?? ''));

    const listed = await apiAlerts();
    expect(listed.status).toBe(200);
    expect(listed.body.alerts.map((a) => `${a.rule}:${a.device}`)).toContain(`offline:${id}`);
    expect(await h.metricValue('hub_alerts_firing', { rule: 'offline' })).toBe(1);
    expect(await h.metricValue('hub_alert_transitions_total', { rule: 'offline', state: 'firing' })).toBe(1);
    expect((await apiAlerts('wrong-token-wrong-token-wrong-token')).status).toBe(401);

    const back = await connect(id, token, 2);
    await until(() => alertsOf(client.messages, id).length === 2);
    expect(alertsOf(client.messages, id)).toEqual(['offline:firing', 'offline:resolved']);
    await until(() => delivered.filter((e) => e.device === id).length === 2);
    expect(delivered.filter((e) => e.device === id).map((e) => [e.state, e.id])).toEqual([
      ['firing', firing.id],
      ['resolved', firing.id],
    ]);
    expect((await apiAlerts()).body.alerts.filter((a) => a.device === id)).toEqual([]);
    expect(await h.metricValue('hub_alerts_firing', { rule: 'offline' })).toBe(0);
    await back.close();
    client.ws.close();
  });

  it('threshold: fires once from real frames above the threshold, resolves on a frame below; a device the rule does not target raises nothing', async () => {
    const client = await liveClient();
    const hot = 'esp-hot-1';
    const cold = 'esp-cold-1';
    const hotDevice = await connect(hot, await h.addDevice(hot), 1);
    const coldDevice = await connect(cold, await h.addDevice(cold), 1);
    const base = Date.now() - 60_000;
    // telemetry(boot, seq, …): temperature = (2000 + 10 × seq + i) / 100 °C, so seq 1 ≈ 20.1, seq 60 ≈ 26.
    for (const d of [hotDevice, coldDevice]) {
      d.send(telemetry(1, 1, base));
      d.send(telemetry(1, 60, base + 10_000));
      d.send(telemetry(1, 61, base + 20_000));
      await d.ackOf(1, 61);
    }
    await until(() => alertsOf(client.messages, hot).length === 1);
    const firing = client.messages.find((m) => m.type === 'alert' && m.device === hot);
    expect(firing).toMatchObject({
      rule: 'hot',
      kind: 'threshold',
      state: 'firing',
      channel: 'temperature',
      op: '>',
      threshold: 25,
      value: 26,
      atMs: base + 10_000,
    });
    // A new boot starts low again: the alert resolves with that sample.
    hotDevice.send(telemetry(2, 1, base + 30_000));
    await hotDevice.ackOf(2, 1);
    await until(() => alertsOf(client.messages, hot).length === 2);
    expect(alertsOf(client.messages, hot)).toEqual(['hot:firing', 'hot:resolved']);
    expect(alertsOf(client.messages, cold)).toEqual([]);
    await until(() => delivered.filter((e) => e.device === hot).length === 2);
    expect(await h.metricValue('hub_alert_transitions_total', { rule: 'hot' })).toBe(2);
    await hotDevice.close();
    await coldDevice.close();
    client.ws.close();
  });

  it('webhook down: retried with backoff then delivered; after ALERT_WEBHOOK_MAX_ATTEMPTS dropped, counted and logged', async () => {
    // Down for two attempts: the third gets through.
    const id = 'esp-webhook-1';
    failures.set(id, [503, 503]);
    const token = await h.addDevice(id);
    await (await connect(id, token, 1)).close();
    await until(() => delivered.some((e) => e.device === id && e.state === 'firing'));
    expect(seen.filter((s) => s.body.includes(`"device":"${id}"`))).toHaveLength(3);
    expect(await h.metricValue('hub_alert_webhook_deliveries_total', { outcome: 'retry' })).toBeGreaterThanOrEqual(2);
    // Every delivery the receiver accepted is counted as delivered (other devices' alerts included).
    await until(
      async () =>
        (await h.metricValue('hub_alert_webhook_deliveries_total', { outcome: 'delivered' })) === delivered.length,
    );

    // Down for all three attempts of the resolved event: dropped.
    failures.set(id, [500, 500, 500]);
    const back = await connect(id, token, 2);
    await until(async () => (await h.metricValue('hub_alert_webhook_deliveries_total', { outcome: 'gave_up' })) === 1);
    expect(delivered.filter((e) => e.device === id).map((e) => e.state)).toEqual(['firing']);
    const dropLine = logLines.find((l) => l.includes('alert webhook: event dropped') && l.includes(id));
    expect(dropLine).toContain('gave_up');
    expect(logLines.join('')).not.toContain(SECRET);
    await back.close();
  });
});
