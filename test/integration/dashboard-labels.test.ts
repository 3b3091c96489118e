/**
 * Channel labels (operator-editable display names) over real HTTP on a real hub: set by an operator,
 * refused to a viewer and to a foreign Origin, validated, kept across a hub restart (the data dir);
 * and the Grafana link the page gets from `/api/session` when GRAFANA_URL is set.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { configFrom } from '../../server/config/index.ts';
import { GRAFANA_DEVICE_DASHBOARD_UID } from '../../server/http/dashboard-api.ts';
import { buildHub, type Hub } from '../../server/hub.ts';
import { liveExtension } from '../../server/live/index.ts';
import { createLogger } from '../../server/log/index.ts';

const ADMIN = 'admin-token-for-tests-0123456789abcdef';
let dataDir: string;
let hub: Hub | undefined;
let base = '';

async function startHub(env: Record<string, string> = {}): Promise<void> {
  const config = configFrom({
    HUB_HOST: '127.0.0.1',
    HUB_PORT: '0',
    HUB_DATA_DIR: dataDir,
    HUB_LOG_LEVEL: 'warn',
    ...env,
  });
  const live = liveExtension(config);
  hub = buildHub(config, {
    logger: createLogger('warn'),
    extensions: [live],
    authorizeCommands: live.authorizeCommands,
    readAccess: live.readAccess,
  });
  const { port } = await hub.start();
  base = `http://127.0.0.1:${port}`;
}

function put(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${base}${path}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', origin: base, ...headers },
    body: JSON.stringify(body),
  });
}

beforeAll(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'dashboard-labels-'));
});
afterEach(async () => {
  await hub?.stop();
  hub = undefined;
});
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describe('channel labels', () => {
  it('an operator sets and clears a label; it survives a hub restart', async () => {
    await startHub(); // open mode, no admin token: loopback callers are operators
    const set = await put('/api/devices/esp-1/channels/battery_v/label', { label: '  Battery voltage ' });
    expect(set.status).toBe(200);
    expect(await set.json()).toEqual({ deviceId: 'esp-1', channel: 'battery_v', label: 'Battery voltage' });
    await put('/api/devices/esp-1/channels/temperature/label', { label: 'Kitchen' });
    expect(await (await fetch(`${base}/api/labels`)).json()).toEqual({
      labels: { 'esp-1': { battery_v: 'Battery voltage', temperature: 'Kitchen' } },
    });
    await hub!.stop();
    expect(JSON.parse(readFileSync(join(dataDir, 'channel-labels.json'), 'utf8'))).toEqual({
      'esp-1': { battery_v: 'Battery voltage', temperature: 'Kitchen' },
    });

    await startHub();
    expect(((await (await fetch(`${base}/api/labels`)).json()) as { labels: unknown }).labels).toEqual({
      'esp-1': { battery_v: 'Battery voltage', temperature: 'Kitchen' },
    });
    const cleared = await put('/api/devices/esp-1/channels/temperature/label', { label: '' });
    expect(await cleared.json()).toEqual({ deviceId: 'esp-1', channel: 'temperature', label: null });
    expect(((await (await fetch(`${base}/api/labels`)).json()) as { labels: unknown }).labels).toEqual({
      'esp-1': { battery_v: 'Battery voltage' },
    });
  });

  it.each([
    ['an unknown field', { label: 'x', colour: 'red' }, /colour/],
    ['a number for a label', { label: 5 }, /label/],
    ['a label over 64 characters', { label: 'x'.repeat(65) }, /label/],
  ])('refuses %s with 400 naming the field', async (_name, body, field) => {
    await startHub();
    const res = await put('/api/devices/esp-1/channels/temp/label', body);
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as { error: { code: string; message: string } };
    expect(error.code).toBe('BAD_REQUEST');
    expect(error.message).toMatch(field);
  });

  it('refuses a bad channel key, a viewer and a foreign Origin', async () => {
    await startHub({ HUB_ADMIN_TOKEN: ADMIN }); // open mode with an admin token: loopback callers are viewers
    expect((await put('/api/devices/esp-1/channels/temp/label', { label: 'x' })).status).toBe(401);
    const asAdmin = await put(
      '/api/devices/esp-1/channels/temp/label',
      { label: 'x' },
      { authorization: `Bearer ${ADMIN}` },
    );
    expect(asAdmin.status).toBe(200);
    const badKey = await put(
      '/api/devices/esp-1/channels/Bad-Key/label',
      { label: 'x' },
      { authorization: `Bearer ${ADMIN}` },
    );
    expect(badKey.status).toBe(400);
    await hub!.stop();
    await startHub();
    const foreign = await put(
      '/api/devices/esp-1/channels/temp/label',
      { label: 'y' },
      { origin: 'http://evil.example' },
    );
    expect(foreign.status).toBe(403);
    const { labels } = (await (await fetch(`${base}/api/labels`)).json()) as {
      labels: Record<string, Record<string, string>>;
    };
    expect(labels['esp-1']?.temp).toBe('x');
  });
});

describe('Grafana link', () => {
  it('the session names Grafana and the device dashboard when GRAFANA_URL is set, nothing otherwise', async () => {
    await startHub();
    expect(((await (await fetch(`${base}/api/session`)).json()) as { grafana: unknown }).grafana).toBeNull();
    await hub!.stop();
    await startHub({ GRAFANA_URL: 'http://grafana.local:3000/' });
    expect(((await (await fetch(`${base}/api/session`)).json()) as { grafana: unknown }).grafana).toEqual({
      url: 'http://grafana.local:3000',
      deviceDashboardUid: GRAFANA_DEVICE_DASHBOARD_UID,
    });
  });

  it("the uid is the provisioned device dashboard's", () => {
    const json = JSON.parse(readFileSync('dashboards/grafana/dashboards/device-detail.json', 'utf8')) as {
      uid: string;
      templating: { list: { name: string }[] };
    };
    expect(json.uid).toBe(GRAFANA_DEVICE_DASHBOARD_UID);
    // The page links with var-device=<id>.
    expect(json.templating.list.map((v) => v.name)).toContain('device');
  });
});
