// OTA campaigns on a real hub with simulated boards (real sockets): 50 boards in waves 1,10%,100%
// reach 100 % succeeded while their telemetry keeps being stored; with every fifth board failing its
// health check (20 %) and --max-failures 10 %, the campaign pauses by itself in the first wave where a
// board rolled back, and no board of a later wave gets the command; the paused campaign, with each
// board's state, survives a hub restart; the CLI shows it and aborts it.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimDevice } from '../../firmware-sim/device.ts';
import { runOtaCli } from '../../server/ota/cli.ts';
import { generateSigningKey } from '../../server/ota/signing.ts';
import { type TempDir, tempDir, untilValue } from '../harness/index.ts';
import { request } from '../unit/http-helpers.ts';
import { startTestHub, type TestHub } from './ingest-device-client.ts';
import { uploadSigned } from './ota-helpers.ts';

const ADMIN = 'ota-campaign-admin-token-0123456789abcdef';
const keys = generateSigningKey();
const IMAGE = Buffer.from(Array.from({ length: 16 * 1024 }, (_, i) => (i * 37 + 11) & 0xff));
const N = 50;
const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };

let dir: TempDir;
let t: TestHub;
let imageId: string;
const settings = () => ({
  HUB_ADMIN_TOKEN: ADMIN,
  OTA_PUBLIC_KEY_FILE: join(dir.path, 'pub.pem'),
  OTA_MAX_CONCURRENT_DOWNLOADS: '16',
  OTA_MAX_BYTES_PER_SEC: String(4 * 1024 * 1024),
});

beforeAll(async () => {
  dir = await tempDir('ota-campaign');
  writeFileSync(join(dir.path, 'pub.pem'), keys.publicPem);
  t = await startTestHub(settings(), {}, dir);
  imageId = await uploadSigned(t.port, ADMIN, IMAGE, 'sim-3.0.0', keys.privatePem);
});
afterAll(async () => {
  await t?.stop();
});

async function fleet(prefix: string, failing: (i: number) => boolean) {
  const boards: SimDevice[] = [];
  for (let i = 1; i <= N; i++) {
    const id = `${prefix}${String(i).padStart(4, '0')}`;
    boards.push(
      new SimDevice({
        id,
        index: i,
        seed: 5,
        token: await t.addDevice(id),
        url: t.url,
        otaPublicKeyPem: keys.publicPem,
        otaFailHealth: failing(i),
        otaRetryMs: 200,
      }),
    );
  }
  for (const b of boards) b.start();
  await untilValue(
    async () => boards.filter((b) => b.state === 'online').length,
    (n) => n === N,
    `${prefix} boards online`,
  );
  return boards;
}

interface View {
  id: string;
  state: string;
  wave: number;
  waveEnds: number[];
  reason: string | null;
  counts: Record<string, number>;
  boards: Record<string, { state: string; wave: number; version?: string }>;
}
const campaign = async (id: string) =>
  (await request(t.port, 'GET', `/api/ota/campaigns/${id}`, { headers: admin })).json as View;
const start = async (body: object) => {
  const res = await request(t.port, 'POST', '/api/ota/campaigns', { headers: admin, body: JSON.stringify(body) });
  expect(res.status, res.text).toBe(201);
  return (res.json as View).id;
};

describe('OTA campaigns', () => {
  it('50 boards in waves 1,10%,100% reach 100 % succeeded; telemetry keeps being stored during the rollout', async () => {
    const boards = await fleet('ok-', () => false);
    try {
      const storedBefore = await t.metricValue('hub_readings_stored_total');
      const id = await start({ imageId, group: 'ok-*', waves: '1,10%,100%', maxFailures: '10%' });
      const first = await campaign(id);
      expect(first.waveEnds).toEqual([1, 5, 50]);
      const done = await untilValue(
        () => campaign(id),
        (c) => c.state === 'completed',
        'the campaign to complete',
        120_000,
      );
      expect(done.counts).toMatchObject({ succeeded: N, failed: 0, rolled_back: 0, timed_out: 0, pending: 0 });
      expect(boards.every((b) => b.firmwareVersion === 'sim-3.0.0')).toBe(true);
      const storedDuring = (await t.metricValue('hub_readings_stored_total')) - storedBefore;
      // Every board kept streaming: at least one frame of readings per board during the rollout.
      expect(storedDuring).toBeGreaterThan(N);
      expect(await t.metricValue('hub_ota_boards', { state: 'succeeded' })).toBe(N);
    } finally {
      await Promise.all(boards.map((b) => b.stop()));
    }
  });

  it('with 20 % of boards failing their health check it pauses itself in the first wave past 10 %, and stays paused across a restart', async () => {
    // Boards 5, 10, …, 50 fail: the canary (1) is healthy, wave 2 (boards 2–5) holds one failure.
    const boards = await fleet('bad-', (i) => i % 5 === 0);
    let id: string;
    try {
      id = await start({ imageId, group: 'bad-*', waves: '1,10%,100%', maxFailures: '10%' });
      const paused = await untilValue(
        () => campaign(id),
        (c) => c.state === 'paused',
        'the campaign to pause',
        120_000,
      );
      expect(paused.wave).toBe(1);
      expect(paused.reason).toMatch(/exceed 10%/);
      expect(paused.boards['bad-0005']?.state).toBe('rolled_back');
      // No board of the last wave got the command.
      const later = Object.entries(paused.boards).filter(([, b]) => b.wave === 2);
      expect(later).toHaveLength(45);
      expect(later.every(([, b]) => b.state === 'pending')).toBe(true);
      expect(boards.slice(5).every((b) => b.firmwareVersion === 'sim-1.0.0')).toBe(true);
    } finally {
      await Promise.all(boards.map((b) => b.stop()));
    }
    const before = await campaign(id);
    await t.stop();
    t = await startTestHub(settings(), {}, dir);
    const after = await campaign(id);
    expect([after.state, after.wave, after.reason]).toEqual([before.state, before.wave, before.reason]);
    expect(after.boards).toEqual(before.boards);

    // The CLI talks to the running hub: status, then abort.
    let out = '';
    const io = {
      env: { HUB_ADMIN_TOKEN: ADMIN },
      stdout: {
        write: (s: string) => {
          out += s;
          return true;
        },
      },
      stderr: { write: () => true },
    } as unknown as Parameters<typeof runOtaCli>[1];
    expect(await runOtaCli(['rollout', 'status', '--hub', t.http], io)).toBe(0);
    expect(out).toContain(`${id} paused`);
    expect(await runOtaCli(['rollout', 'abort', id, '--hub', t.http], io)).toBe(0);
    expect((await campaign(id)).state).toBe('aborted');
  });
});
