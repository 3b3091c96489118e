// Simulated boards update over the air from a real hub: the `ota` command → download with the
// credential → SHA-256 and signature checks → reboot into the new version (new boot id, HELLO with the
// new firmwareVersion, COMMAND_RESULT 0 "rebooting"); a board set to fail its health check boots the
// new version, then rolls back (HELLO with the old version again); a board whose built-in key is
// another one refuses the image (RESULT 1 naming the signature step) and keeps its version.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileBoardStore } from '../../firmware-sim/board-store.ts';
import { SimDevice } from '../../firmware-sim/device.ts';
import type { HubEvents } from '../../server/events.ts';
import { generateSigningKey } from '../../server/ota/signing.ts';
import { tempDir, until } from '../harness/index.ts';
import { request } from '../unit/http-helpers.ts';
import { startTestHub, type TestHub } from './ingest-device-client.ts';
import { uploadSigned } from './ota-helpers.ts';

const ADMIN = 'ota-sim-admin-token-0123456789abcdef0123';
const keys = generateSigningKey();
const other = generateSigningKey();
const IMAGE = Buffer.from(Array.from({ length: 96 * 1024 }, (_, i) => (i * 131 + 17) & 0xff));

let t: TestHub;
let imageId: string;
const hellos: HubEvents['device:online'][0][] = [];
const boards: SimDevice[] = [];
const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };

beforeAll(async () => {
  const dir = await tempDir('ota-sim');
  writeFileSync(join(dir.path, 'pub.pem'), keys.publicPem);
  t = await startTestHub(
    {
      HUB_ADMIN_TOKEN: ADMIN,
      OTA_PUBLIC_KEY_FILE: join(dir.path, 'pub.pem'),
      OTA_MAX_BYTES_PER_SEC: String(1024 * 1024),
    },
    {},
    dir,
  );
  t.hub.bus.on('device:online', (info) => hellos.push(info));
  imageId = await uploadSigned(t.port, ADMIN, IMAGE, 'sim-2.0.0', keys.privatePem);
});
afterAll(async () => {
  await Promise.all(boards.map((b) => b.stop()));
  await t?.stop();
});

const tokens = new Map<string, string>();

async function board(id: string, index: number, extra: Partial<ConstructorParameters<typeof SimDevice>[0]> = {}) {
  if (!tokens.has(id)) tokens.set(id, await t.addDevice(id));
  const d = new SimDevice({
    id,
    index,
    seed: 3,
    token: tokens.get(id) as string,
    url: t.url,
    otaPublicKeyPem: keys.publicPem,
    ...extra,
  });
  boards.push(d);
  d.start();
  await until(`${id} online`, () => hellos.some((h) => h.deviceId === id));
  return d;
}

async function update(id: string) {
  const res = await request(t.port, 'POST', `/api/devices/${id}/ota`, {
    headers: admin,
    body: JSON.stringify({ imageId }),
  });
  expect(res.status).toBe(202);
  return (res.json as { commandId: number }).commandId;
}

const commandState = async (id: string, commandId: number) =>
  (await request(t.port, 'GET', `/api/devices/${id}/commands/${commandId}`, { headers: admin })).json as {
    state: string;
    status: number | null;
    message: string | null;
  };

const hellosOf = (id: string) => hellos.filter((h) => h.deviceId === id);

describe('simulator OTA', () => {
  it('downloads, verifies, reboots into the new version: new boot id, HELLO with sim-2.0.0', async () => {
    const d = await board('ota-good', 1);
    const firstBoot = hellosOf('ota-good')[0];
    expect(firstBoot?.firmwareVersion).toBe('sim-1.0.0');
    const commandId = await update('ota-good');
    const back = await until('ota-good back with the new version', () =>
      hellosOf('ota-good').find((h) => h.firmwareVersion === 'sim-2.0.0'),
    );
    expect(back.bootId).not.toBe(firstBoot?.bootId);
    expect(await commandState('ota-good', commandId)).toMatchObject({ state: 'done', status: 0, message: 'rebooting' });
    expect(d.firmwareVersion).toBe('sim-2.0.0');
    // Telemetry flows on the new boot.
    const stored = await t.metricValue('hub_readings_stored_total');
    await until('readings after the update', async () => (await t.metricValue('hub_readings_stored_total')) > stored);
  });

  it('a failed health check rolls back: the next HELLO carries the old version, from a new boot', async () => {
    const d = await board('ota-sick', 2, { otaFailHealth: true });
    const events: string[] = [];
    d.on('ota', (e) => events.push(e.outcome));
    await update('ota-sick');
    await until('ota-sick back after its rollback', () => hellosOf('ota-sick').length >= 2);
    expect(hellosOf('ota-sick').map((h) => h.firmwareVersion)).toEqual(['sim-1.0.0', 'sim-1.0.0']);
    expect(events).toEqual(['booted', 'rolled_back']);
    expect(new Set(hellosOf('ota-sick').map((h) => h.bootId)).size).toBe(2);
    expect(d.firmwareVersion).toBe('sim-1.0.0');
  });

  it('with a state directory the new version survives the process: the next run boots sim-2.0.0', async () => {
    const stateDir = (await tempDir('ota-sim-state')).path;
    const d = await board('ota-persist', 4, { store: new FileBoardStore(stateDir, 'ota-persist') });
    await update('ota-persist');
    await until('ota-persist updated', () => hellosOf('ota-persist').some((h) => h.firmwareVersion === 'sim-2.0.0'));
    await d.stop();
    boards.splice(boards.indexOf(d), 1);
    const seen = hellosOf('ota-persist').length;
    const next = new SimDevice({
      id: 'ota-persist',
      index: 4,
      seed: 3,
      token: tokens.get('ota-persist') as string,
      url: t.url,
      store: new FileBoardStore(stateDir, 'ota-persist'),
    });
    boards.push(next);
    next.start();
    const hello = await until('the next run online', () => hellosOf('ota-persist')[seen]);
    expect(hello.firmwareVersion).toBe('sim-2.0.0');
    expect(next.firmwareVersion).toBe('sim-2.0.0');
  });

  it('a board with another built-in key refuses the image: RESULT 1 naming the signature step', async () => {
    const d = await board('ota-otherkey', 3, { otaPublicKeyPem: other.publicPem });
    const commandId = await update('ota-otherkey');
    const done = await until('the refusal', async () => {
      const s = await commandState('ota-otherkey', commandId);
      return s.state === 'failed' ? s : undefined;
    });
    expect(done).toMatchObject({ status: 1 });
    expect(done.message).toMatch(/^signature:/);
    expect(d.firmwareVersion).toBe('sim-1.0.0');
    expect(hellosOf('ota-otherkey')).toHaveLength(1);
  });
});
