// OTA campaign edges on a real hub: a board offline when its wave starts stays pending and gets the
// command when it comes back (then succeeds, a late HELLO with the new version counting even after its
// timeout); a board that takes the command and never reports an outcome is timed_out after
// OTA_RESULT_TIMEOUT_SEC; operator pause holds pending boards, resume sends.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimDevice } from '../../firmware-sim/device.ts';
import { generateSigningKey } from '../../server/ota/signing.ts';
import { tempDir, untilValue } from '../harness/index.ts';
import { request } from '../unit/http-helpers.ts';
import { startTestHub, TestDevice, type TestHub } from './ingest-device-client.ts';
import { uploadSigned } from './ota-helpers.ts';

const ADMIN = 'ota-edge-admin-token-0123456789abcdef0123';
const keys = generateSigningKey();
const IMAGE = Buffer.alloc(8 * 1024, 7);
const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };

let t: TestHub;
let imageId: string;
const sims: SimDevice[] = [];

beforeAll(async () => {
  const dir = await tempDir('ota-edge');
  writeFileSync(join(dir.path, 'pub.pem'), keys.publicPem);
  t = await startTestHub(
    { HUB_ADMIN_TOKEN: ADMIN, OTA_PUBLIC_KEY_FILE: join(dir.path, 'pub.pem'), OTA_RESULT_TIMEOUT_SEC: '1' },
    {},
    dir,
  );
  imageId = await uploadSigned(t.port, ADMIN, IMAGE, 'sim-4.0.0', keys.privatePem);
});
afterAll(async () => {
  await Promise.all(sims.map((s) => s.stop()));
  await t?.stop();
});

interface View {
  id: string;
  state: string;
  counts: Record<string, number>;
  boards: Record<string, { state: string; detail?: string }>;
}
const get = async (id: string) =>
  (await request(t.port, 'GET', `/api/ota/campaigns/${id}`, { headers: admin })).json as View;
const post = async (path: string, body: object) =>
  request(t.port, 'POST', path, { headers: admin, body: JSON.stringify(body) });

const sim = async (id: string) => {
  const d = new SimDevice({ id, index: 1, seed: 9, token: await t.addDevice(id), url: t.url });
  sims.push(d);
  return d;
};

describe('OTA campaign edges', () => {
  it('an offline board gets the command when it returns; a silent one is timed_out', async () => {
    const later = await sim('edge-later');
    const silentToken = await t.addDevice('edge-silent');
    const silent = await TestDevice.connect(t.url, { token: silentToken });
    await silent.hello('edge-silent', 1);
    const res = await post('/api/ota/campaigns', {
      imageId,
      devices: ['edge-later', 'edge-silent'],
      waves: '100%',
      maxFailures: '100%',
    });
    expect(res.status, res.text).toBe(201);
    const id = (res.json as View).id;
    // The silent board got the command (and ignores it); the offline one is pending.
    await silent.next('command');
    const timedOut = await untilValue(
      () => get(id),
      (c) => c.boards['edge-silent']?.state === 'timed_out',
      'the silent board to time out',
    );
    expect(timedOut.boards['edge-later']?.state).toBe('pending');
    expect(timedOut.state).toBe('running');
    later.start();
    // (With a 1 s result timeout it may be timed_out first: its HELLO with the new version still counts.)
    const done = await untilValue(
      () => get(id),
      (c) => c.boards['edge-later']?.state === 'succeeded',
      'the returning board to succeed',
    );
    expect(done.state).toBe('completed');
    expect(later.firmwareVersion).toBe('sim-4.0.0');
    await silent.close();
  });

  it('an operator pause holds pending boards; resume sends them; each change is an ota:campaign event', async () => {
    const events: { what: string; state: string; boardState?: string | undefined }[] = [];
    t.hub.bus.on('ota:campaign', (e) => events.push({ what: e.what, state: e.state, boardState: e.boardState }));
    const d = await sim('edge-paused');
    const res = await post('/api/ota/campaigns', {
      imageId,
      devices: ['edge-paused'],
      waves: '100%',
      maxFailures: '100%',
    });
    const id = (res.json as View).id;
    expect((await post(`/api/ota/campaigns/${id}/actions`, { action: 'pause' })).status).toBe(200);
    d.start();
    await untilValue(
      async () => d.state,
      (s) => s === 'online',
      'the board online',
    );
    const held = await get(id);
    expect([held.state, held.boards['edge-paused']?.state]).toEqual(['paused', 'pending']);
    expect((await post(`/api/ota/campaigns/${id}/actions`, { action: 'resume' })).status).toBe(200);
    await untilValue(
      () => get(id),
      (c) => c.boards['edge-paused']?.state === 'succeeded',
      'the resumed board to succeed',
    );
    expect(d.firmwareVersion).toBe('sim-4.0.0');
    const whats = events.map((e) => e.what);
    expect(whats.slice(0, 2)).toEqual(['started', 'paused']);
    expect(whats).toContain('resumed');
    expect(events.filter((e) => e.what === 'board').map((e) => e.boardState)).toEqual(
      expect.arrayContaining(['sent', 'succeeded']),
    );
    // (With the 1 s result timeout the board may be timed_out, completing the campaign, before its HELLO.)
    await untilValue(
      async () => events.map((e) => e.what),
      (w) => w.includes('completed'),
      'the completed event',
    );
  });
});
