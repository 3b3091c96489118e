// Self-enrollment [PROTO-8] end to end on real sockets: a real hub (buildHub, its own registry and local
// log in a temp data dir), simulated boards that start without a token (firmware-sim/enroll.ts, and a
// raw client for exact frames), and the real CLI (`npm run hub -- devices …`) as a child process while
// the hub runs. What a user would notice: boards wait as pending, an approval from the CLI reaches a
// connected board and it streams (readings stored); rejected and unapproved boards never get a token
// nor store a reading; the fleet secret auto-approves and a wrong one is refused and counted; the
// pending bound and the handshake rate limit refuse and count; state survives a hub restart; and no
// token, secret or enroll key ever appears in the hub's log.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { SimDevice } from '../../firmware-sim/device.ts';
import { enrollBoard } from '../../firmware-sim/enroll.ts';
import {
  decodeEnrollFrame,
  ENROLL_SUBPROTOCOL,
  type EnrollMessage,
  encodeEnrollFrame,
} from '../../server/codec/index.ts';
import { configFrom, type EnvName } from '../../server/config/index.ts';
import { ENROLL_FILE_NAME } from '../../server/enroll/store.ts';
import { buildHub, type Hub } from '../../server/hub.ts';
import { createLogger } from '../../server/log/index.ts';
import { runCli } from './registry-cli.ts';

const WAIT_MS = 30_000;
const SECRET = 'fleet-secret-for-tests-0123';
const FAST = { minMs: 50, maxMs: 200 };

/** Everything any hub of this file logged (JSON lines). */
const logText: string[] = [];
/** Secrets the log must never contain: tokens handed over, the fleet secret, enroll keys (hex). */
const secrets = new Set<string>([SECRET]);
const dirs: string[] = [];
const hubs: Hub[] = [];
const cleanups: (() => void | Promise<void>)[] = [];

function newDataDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'enroll-hub-'));
  dirs.push(d);
  return d;
}

async function startHub(
  dataDir: string,
  env: Partial<Record<EnvName, string>> = {},
): Promise<{ hub: Hub; port: number; url: string }> {
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logText.push(String(chunk));
      cb();
    },
  });
  const config = configFrom({
    HUB_HOST: '127.0.0.1',
    HUB_PORT: '0',
    HUB_DATA_DIR: dataDir,
    HUB_ADMIN_TOKEN: 'a'.repeat(40),
    ...env,
  });
  const hub = buildHub(config, { logger: createLogger('info', sink) });
  const { port } = await hub.start();
  hubs.push(hub);
  return { hub, port, url: `ws://127.0.0.1:${port}/v1/enroll` };
}

async function waitFor<T>(what: string, probe: () => T | Promise<T>, timeoutMs = WAIT_MS): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function metric(hub: Hub, name: string, labels = ''): Promise<number> {
  const text = await hub.metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

/** A raw enrollment client: sends `frames` after the upgrade; collects decoded frames and the close. */
function rawClient(
  url: string,
  frames: Uint8Array[],
  opts: { headers?: Record<string, string>; protocol?: string } = {},
): Promise<{ status?: number; messages: EnrollMessage[]; close?: number }> {
  return new Promise((resolve) => {
    const out: { status?: number; messages: EnrollMessage[]; close?: number } = { messages: [] };
    const ws = new WebSocket(url, opts.protocol ?? ENROLL_SUBPROTOCOL, { headers: opts.headers ?? {} });
    ws.on('unexpected-response', (_req, res) => {
      out.status = res.statusCode;
      res.resume();
      ws.terminate();
    });
    ws.on('open', () => {
      for (const f of frames) ws.send(f);
    });
    ws.on('message', (d) => out.messages.push(decodeEnrollFrame(d as Buffer)));
    ws.on('error', () => undefined);
    ws.on('close', (code) => {
      out.close = code;
      resolve(out);
    });
  });
}

const key = (byte: number) => new Uint8Array(16).fill(byte);
const enrollFrame = (hardwareId: string, k: Uint8Array, fleetSecret = '') =>
  encodeEnrollFrame({ type: 'enroll', hardwareId, enrollKey: k, fleetSecret, model: 'esp32', firmwareVersion: 't' });

/** Streams as a normal device with the handed-over token until the hub stores a reading. */
async function streamUntilStored(hub: Hub, port: number, deviceId: string, token: string): Promise<void> {
  const device = new SimDevice({ id: deviceId, token, url: `ws://127.0.0.1:${port}/v1/device`, seed: 3, index: 1 });
  device.start();
  cleanups.push(() => device.stop());
  await waitFor(`${deviceId} readings stored`, () => hub.context().log.lastReadings(deviceId));
}

/** A board enrolls, is told it is pending, then goes away (power off); resolves to its outcome. */
async function pendingThenGone(url: string, hardwareId: string, enrollKey: Uint8Array): Promise<string> {
  const controller = new AbortController();
  let saw = false;
  const r = enrollBoard({
    url,
    hardwareId,
    enrollKey,
    backoff: FAST,
    signal: controller.signal,
    onStatus: (s) => {
      if (s === 'pending') saw = true;
    },
  });
  await waitFor(`${hardwareId} pending`, () => saw);
  controller.abort();
  return (await r).outcome;
}

afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

afterAll(async () => {
  for (const h of hubs) await h.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('enrollment with operator approval (CLI)', () => {
  let dataDir: string;
  let hub: Hub;
  let port: number;
  let url: string;
  beforeAll(async () => {
    dataDir = newDataDir();
    ({ hub, port, url } = await startHub(dataDir));
  });

  it('pending boards get their token when the CLI approves them, then stream; a rejected one never does', async () => {
    const pending = new Set<string>();
    const onStatus = (id: string) => (s: string) => s === 'pending' && pending.add(id);
    const a = enrollBoard({ url, hardwareId: 'esp32-aaaaaaaaaaaa', backoff: FAST, onStatus: onStatus('a') });
    const b = enrollBoard({ url, hardwareId: 'esp32-bbbbbbbbbbbb', backoff: FAST, onStatus: onStatus('b') });
    await waitFor('both pending', () => pending.size === 2);

    const list = await runCli(['devices', 'pending', '--json', '--data-dir', dataDir]);
    expect(list.code).toBe(0);
    const requests = (JSON.parse(list.stdout) as { requests: { hardwareId: string; state: string }[] }).requests;
    expect(requests.map((r) => [r.hardwareId, r.state])).toEqual([
      ['esp32-aaaaaaaaaaaa', 'pending'],
      ['esp32-bbbbbbbbbbbb', 'pending'],
    ]);
    expect(await metric(hub, 'hub_enroll_pending')).toBe(2);
    // A pending board has no registry entry, hence no token to stream with.
    expect((await runCli(['devices', 'list', '--json', '--data-dir', dataDir])).stdout).not.toContain('esp32-a');

    const approved = await runCli(['devices', 'approve', 'esp32-aaaaaaaaaaaa', '--data-dir', dataDir]);
    expect(approved.code).toBe(0);
    expect(approved.stdout).toContain('as device esp32-aaaaaaaaaaaa');
    const ra = await a;
    expect(ra.outcome).toBe('approved');
    if (ra.outcome !== 'approved') return;
    secrets.add(ra.token);
    expect(ra.deviceId).toBe('esp32-aaaaaaaaaaaa');
    await streamUntilStored(hub, port, ra.deviceId, ra.token);

    const rejected = await runCli(['devices', 'reject', 'esp32-bbbbbbbbbbbb', '--data-dir', dataDir]);
    expect(rejected.code).toBe(0);
    const rb = await b;
    expect(rb.outcome).toBe('rejected');
    // The CONFIRM made A delivered; B is remembered as rejected; neither is pending.
    await waitFor(
      'confirmed',
      async () => (await metric(hub, 'hub_enroll_requests_total', 'outcome="confirmed"')) === 1,
    );
    expect(await metric(hub, 'hub_enroll_pending')).toBe(0);
    expect(await metric(hub, 'hub_enroll_requests_total', 'outcome="rejected"')).toBe(1);
    expect(await metric(hub, 'hub_enroll_requests_total', 'outcome="approved"')).toBe(1);
    expect(hub.context().registry?.get('esp32-bbbbbbbbbbbb')).toBeUndefined();
    expect(hub.context().log.lastReadings('esp32-bbbbbbbbbbbb')).toBeNull();
    const stored = readFileSync(join(dataDir, ENROLL_FILE_NAME), 'utf8');
    expect(stored).not.toContain(ra.token);
  });

  it('a fleet secret sent to a hub without one is ignored: the board waits for an operator', async () => {
    const sent = await new Promise<EnrollMessage>((resolve) => {
      const ws = new WebSocket(url, ENROLL_SUBPROTOCOL);
      cleanups.push(() => ws.terminate());
      ws.once('message', (d) => resolve(decodeEnrollFrame(d as Buffer)));
      ws.on('open', () => ws.send(enrollFrame('esp32-131313131313', key(0x71), 'some-fleet-secret-0000')));
    });
    expect(sent).toMatchObject({ type: 'enroll_status', status: 0 });
  });

  it('a rejected board asking again is rejected at once (ERROR ENROLL_REJECTED, close 1008)', async () => {
    const k = key(0x11);
    const first = enrollBoard({ url, hardwareId: 'esp32-cccccccccccc', enrollKey: k, backoff: FAST });
    await waitFor('pending', async () =>
      (await runCli(['devices', 'pending', '--json', '--data-dir', dataDir])).stdout.includes('esp32-cccccccccccc'),
    );
    expect((await runCli(['devices', 'reject', 'esp32-cccccccccccc', '--data-dir', dataDir])).code).toBe(0);
    expect((await first).outcome).toBe('rejected');
    const again = await rawClient(url, [enrollFrame('esp32-cccccccccccc', k)]);
    expect(again.messages.map((m) => m.type)).toEqual(['enroll_status', 'error']);
    expect(again.messages[0]).toMatchObject({ status: 2, token: '' });
    expect(again.messages[1]).toMatchObject({ code: 801, fatal: true });
    expect(again.close).toBe(1008);
  });

  it('an unapproved board holds no token: it cannot open a device session', async () => {
    expect(await pendingThenGone(url, 'esp32-dddddddddddd', key(0x55))).toBe('aborted');
    expect(hub.context().registry?.get('esp32-dddddddddddd')).toBeUndefined();
    const probe = new SimDevice({
      id: 'esp32-dddddddddddd',
      token: `esp32hub_${'x'.repeat(43)}`,
      url: `ws://127.0.0.1:${port}/v1/device`,
      seed: 1,
      index: 1,
    });
    const refused = new Promise<number | undefined>((resolve) =>
      probe.once('close', (info) => resolve(info.httpStatus)),
    );
    probe.start();
    cleanups.push(() => probe.stop());
    expect(await refused).toBe(401);
    expect(hub.context().log.lastReadings('esp32-dddddddddddd')).toBeNull();
  });

  it('a token handed over but never confirmed is rotated on the next request; another key is refused', async () => {
    const k = key(0x22);
    const hw = 'esp32-eeeeeeeeeeee';
    const first = enrollBoard({ url, hardwareId: hw, enrollKey: k, backoff: FAST, confirm: false });
    await waitFor('pending', async () =>
      (await runCli(['devices', 'pending', '--json', '--data-dir', dataDir])).stdout.includes(hw),
    );
    expect((await runCli(['devices', 'approve', hw, '--id', 'greenhouse-7', '--data-dir', dataDir])).code).toBe(0);
    const r1 = await first;
    if (r1.outcome !== 'approved') throw new Error(`expected approved, got ${r1.outcome}`);
    secrets.add(r1.token);
    expect(r1.deviceId).toBe('greenhouse-7');

    const other = await rawClient(url, [enrollFrame(hw, key(0x33))]);
    expect(other.messages.at(-1)).toMatchObject({ type: 'error', code: 803, fatal: true });
    expect(other.close).toBe(1008);
    expect(await metric(hub, 'hub_enroll_refused_total', 'reason="ENROLL_KEY_MISMATCH"')).toBe(1);

    const r2 = await enrollBoard({ url, hardwareId: hw, enrollKey: k, backoff: FAST });
    if (r2.outcome !== 'approved') throw new Error(`expected approved, got ${r2.outcome}`);
    secrets.add(r2.token);
    expect(r2.token).not.toBe(r1.token);
    const registry = hub.context().registry;
    await waitFor('registry sees the rotation', () => registry?.get('greenhouse-7')?.rotatedAtMs !== null);
    await streamUntilStored(hub, port, 'greenhouse-7', r2.token);
  });

  it('a pending request from a new key replaces the old one; after CONFIRM a new key needs approval again', async () => {
    const hw = 'esp32-121212121212';
    const older = new WebSocket(url, ENROLL_SUBPROTOCOL);
    const olderClosed = new Promise<number>((resolve) => older.once('close', (code) => resolve(code)));
    const olderPending = new Promise<EnrollMessage>((resolve) =>
      older.once('message', (d) => resolve(decodeEnrollFrame(d as Buffer))),
    );
    older.on('open', () => older.send(enrollFrame(hw, key(0x61))));
    expect(await olderPending).toMatchObject({ type: 'enroll_status', status: 0 });
    const newer = enrollBoard({ url, hardwareId: hw, enrollKey: key(0x62), backoff: FAST });
    expect(await olderClosed).toBe(4001);
    const list = JSON.parse((await runCli(['devices', 'pending', '--json', '--data-dir', dataDir])).stdout) as {
      requests: { hardwareId: string; keyFingerprint: string }[];
    };
    expect(list.requests.filter((r) => r.hardwareId === hw)).toHaveLength(1);
    expect((await runCli(['devices', 'approve', hw, '--data-dir', dataDir])).code).toBe(0);
    const first = await newer;
    if (first.outcome !== 'approved') throw new Error(`expected approved, got ${first.outcome}`);
    secrets.add(first.token);
    await waitFor(
      'delivered',
      async () => !(await runCli(['devices', 'pending', '--json', '--data-dir', dataDir])).stdout.includes(hw),
    );

    // A factory-reset board (new key) asks again: pending, and approving it rotates the same device.
    const again = enrollBoard({ url, hardwareId: hw, enrollKey: key(0x63), backoff: FAST });
    await waitFor('pending again', async () =>
      (await runCli(['devices', 'pending', '--json', '--data-dir', dataDir])).stdout.includes(hw),
    );
    expect((await runCli(['devices', 'approve', hw, '--data-dir', dataDir])).code).toBe(0);
    const second = await again;
    if (second.outcome !== 'approved') throw new Error(`expected approved, got ${second.outcome}`);
    secrets.add(second.token);
    expect(second.deviceId).toBe(hw);
    const registry = hub.context().registry;
    await waitFor('old token invalid', () => registry?.authenticate(first.token) === null);
    expect(registry?.authenticate(second.token)).toBe(hw);
  });

  it('refuses Origin (403), a wrong subprotocol (400) and device frames on /v1/enroll', async () => {
    const origin = await rawClient(url, [], { headers: { Origin: 'http://evil.example' } });
    expect(origin.status).toBe(403);
    const proto = await rawClient(url, [], { protocol: 'esp32hub.v1' });
    expect(proto.status).toBe(400);
    const hello = Buffer.from(
      JSON.parse(readFileSync(new URL('../vectors/enroll-v1.json', import.meta.url), 'utf8')).malformed.find(
        (m: { name: string }) => m.name === 'enroll-hello-on-enroll-endpoint',
      ).hex,
      'hex',
    );
    const unexpected = await rawClient(url, [hello]);
    expect(unexpected.messages.at(-1)).toMatchObject({ type: 'error', code: 201, fatal: true });
    expect(unexpected.close).toBe(1002);
  });

  it('pending requests and approvals survive a hub restart', async () => {
    const dir = newDataDir();
    const first = await startHub(dir);
    const k = key(0x44);
    await pendingThenGone(first.url, 'esp32-ffffffffffff', k);
    await first.hub.stop();
    // Approved while no hub runs: stored, handed over when the board asks the next hub.
    expect((await runCli(['devices', 'approve', 'esp32-ffffffffffff', '--data-dir', dir])).code).toBe(0);
    const second = await startHub(dir);
    const got = await enrollBoard({ url: second.url, hardwareId: 'esp32-ffffffffffff', enrollKey: k, backoff: FAST });
    if (got.outcome !== 'approved') throw new Error(`expected approved, got ${got.outcome}`);
    secrets.add(got.token);
    await streamUntilStored(second.hub, second.port, got.deviceId, got.token);
  });
});

describe('fleet secret, bounds and rate limit', () => {
  let hub: Hub;
  let port: number;
  let url: string;
  beforeAll(async () => {
    ({ hub, port, url } = await startHub(newDataDir(), {
      ENROLL_FLEET_SECRET: SECRET,
      ENROLL_MAX_PENDING: '2',
      ENROLL_HANDSHAKES_PER_MIN_PER_IP: '12',
    }));
  });

  it('the fleet secret auto-approves; a wrong one is refused and counted', async () => {
    const ok = await enrollBoard({ url, hardwareId: 'esp32-010101010101', fleetSecret: SECRET, backoff: FAST });
    if (ok.outcome !== 'approved') throw new Error(`expected approved, got ${ok.outcome}`);
    secrets.add(ok.token);
    expect(await metric(hub, 'hub_enroll_requests_total', 'outcome="auto_approved"')).toBe(1);
    await streamUntilStored(hub, port, ok.deviceId, ok.token);

    const bad = await rawClient(url, [enrollFrame('esp32-020202020202', key(5), 'not-the-secret-at-all')]);
    expect(bad.messages).toEqual([expect.objectContaining({ type: 'error', code: 800, fatal: true })]);
    expect(bad.close).toBe(1008);
    expect(await metric(hub, 'hub_enroll_refused_total', 'reason="ENROLL_SECRET_INVALID"')).toBe(1);
    expect(hub.context().registry?.get('esp32-020202020202')).toBeUndefined();
  });

  it('the pending list is bounded (ERROR ENROLL_PENDING_FULL, close 1013) and counted', async () => {
    const opened: WebSocket[] = [];
    for (const hw of ['esp32-p00000000001', 'esp32-p00000000002']) {
      const ws = new WebSocket(url, ENROLL_SUBPROTOCOL);
      opened.push(ws);
      const got = new Promise<EnrollMessage>((resolve) =>
        ws.once('message', (d) => resolve(decodeEnrollFrame(d as Buffer))),
      );
      ws.on('open', () => ws.send(enrollFrame(hw, key(hw.length))));
      expect(await got).toMatchObject({ type: 'enroll_status', status: 0 });
    }
    cleanups.push(() => {
      for (const ws of opened) ws.terminate();
    });
    const full = await rawClient(url, [enrollFrame('esp32-p00000000003', key(9))]);
    expect(full.messages).toEqual([expect.objectContaining({ type: 'error', code: 802, fatal: false })]);
    expect(full.close).toBe(1013);
    expect(await metric(hub, 'hub_enroll_refused_total', 'reason="ENROLL_PENDING_FULL"')).toBe(1);
    expect(await metric(hub, 'hub_enroll_pending')).toBe(2);
  });

  it('too many handshakes from one address get 429 and are counted', async () => {
    const statuses: (number | undefined)[] = [];
    for (let i = 0; i < 14; i++) statuses.push((await rawClient(url, [], { protocol: 'nope' })).status);
    expect(statuses).toContain(429);
    expect(await metric(hub, 'hub_enroll_refused_total', 'reason="RATE_LIMITED"')).toBeGreaterThan(0);
    expect(await metric(hub, 'hub_handshakes_rejected_total', 'endpoint="enroll",code="RATE_LIMITED"')).toBeGreaterThan(
      0,
    );
  });
});

describe('ENROLL_MODE', () => {
  it('off answers the upgrade 404; secret refuses requests without the secret', async () => {
    const off = await startHub(newDataDir(), { ENROLL_MODE: 'off' });
    expect((await rawClient(off.url, [])).status).toBe(404);
    const strict = await startHub(newDataDir(), { ENROLL_MODE: 'secret', ENROLL_FLEET_SECRET: SECRET });
    const none = await rawClient(strict.url, [enrollFrame('esp32-030303030303', key(7))]);
    expect(none.messages).toEqual([expect.objectContaining({ type: 'error', code: 800 })]);
    expect(await metric(strict.hub, 'hub_enroll_pending')).toBe(0);
  });
});

describe('who may decide, and the first-frame timeout', () => {
  it('the API needs the admin token (or a dashboard operator); the CLI explains bad usage', async () => {
    const dataDir = newDataDir();
    const { port, url } = await startHub(dataDir);
    const api = `http://127.0.0.1:${port}/api/enrollments`;
    expect((await fetch(api)).status).toBe(401);
    expect((await fetch(`${api}/esp32-000000000001/approve`, { method: 'POST' })).status).toBe(401);
    expect(
      (await fetch(`http://127.0.0.1:${port}/api/firmware/x?version=1&chipFamily=ESP32`, { method: 'PUT', body: 'x' }))
        .status,
    ).toBe(401);
    // With the admin token: approve over the API hands the token to the connected board.
    const r = enrollBoard({ url, hardwareId: 'esp32-000000000001', backoff: FAST });
    const auth = { authorization: `Bearer ${'a'.repeat(40)}` };
    await waitFor(
      'listed',
      async () =>
        ((await (await fetch(api, { headers: auth })).json()) as { requests: unknown[] }).requests.length === 1,
    );
    const approved = await fetch(`${api}/esp32-000000000001/approve`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ deviceId: 'api-1' }),
    });
    expect(approved.status).toBe(200);
    const got = await r;
    if (got.outcome !== 'approved') throw new Error(`expected approved, got ${got.outcome}`);
    secrets.add(got.token);
    expect(got.deviceId).toBe('api-1');
    const unknownField = await fetch(`${api}/esp32-000000000001/approve`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'x' }),
    });
    expect(unknownField.status).toBe(400);

    const usage = await runCli(['devices', 'approve', '--data-dir', dataDir]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('approve needs one hardware id');
    const help = await runCli(['devices', '--help']);
    expect(help.stdout).toMatch(/pending[\s\S]*approve <hwid>[\s\S]*reject <hwid>[\s\S]*forget <hwid>/);
  });

  it('a pending board that stops answering pings is dropped by the heartbeat', async () => {
    const { hub, url } = await startHub(newDataDir(), { DEVICE_HEARTBEAT_INTERVAL_SEC: '1' });
    const ws = new WebSocket(url, ENROLL_SUBPROTOCOL);
    cleanups.push(() => ws.terminate());
    const pending = new Promise<EnrollMessage>((resolve) =>
      ws.once('message', (d) => resolve(decodeEnrollFrame(d as Buffer))),
    );
    ws.on('open', () => ws.send(enrollFrame('esp32-141414141414', key(0x72))));
    expect(await pending).toMatchObject({ type: 'enroll_status', status: 0 });
    expect(await metric(hub, 'hub_enroll_connections')).toBe(1);
    ws.pause(); // reads nothing more: the hub's pings go unanswered, as with a board whose Wi-Fi faded
    await waitFor('the hub drops the silent socket', async () => (await metric(hub, 'hub_enroll_connections')) === 0);
  });

  it('a socket that sends no ENROLL within the timeout gets ERROR HELLO_TIMEOUT and close 1002', async () => {
    const { url } = await startHub(newDataDir(), { DEVICE_HELLO_TIMEOUT_MS: '300' });
    const idle = await rawClient(url, []);
    expect(idle.messages).toEqual([expect.objectContaining({ type: 'error', code: 206, fatal: true })]);
    expect(idle.close).toBe(1002);
  });
});

describe('connection cap and firmware image bounds', () => {
  it('ENROLL_MAX_CONNECTIONS: a socket beyond it gets 503 and is counted', async () => {
    const { hub, url } = await startHub(newDataDir(), { ENROLL_MAX_CONNECTIONS: '1' });
    const held = new WebSocket(url, ENROLL_SUBPROTOCOL);
    cleanups.push(() => held.terminate());
    await new Promise((resolve) => held.once('open', resolve));
    expect((await rawClient(url, [])).status).toBe(503);
    expect(await metric(hub, 'hub_enroll_refused_total', 'reason="AT_CAPACITY"')).toBe(1);
  });

  it('npm run hub -- firmware add|list|remove: a running hub serves the image and its manifest', async () => {
    const dataDir = newDataDir();
    const { port } = await startHub(dataDir);
    const file = join(dataDir, 'factory.bin');
    writeFileSync(file, Buffer.alloc(3000, 0x5a));
    const add = await runCli([
      'firmware',
      'add',
      file,
      '--name',
      'fleet',
      '--version',
      '2.0.1',
      '--chip',
      'ESP32-S3',
      '--data-dir',
      dataDir,
    ]);
    expect(add.code, add.stderr).toBe(0);
    const admin = { authorization: `Bearer ${'a'.repeat(40)}` };
    const manifest = await fetch(`http://127.0.0.1:${port}/firmware/fleet/manifest.json`, { headers: admin });
    expect(await manifest.json()).toMatchObject({
      name: 'fleet',
      version: '2.0.1',
      builds: [{ chipFamily: 'ESP32-S3', parts: [{ path: 'image.bin', offset: 0 }] }],
    });
    expect((await runCli(['firmware', 'list', '--data-dir', dataDir])).stdout).toContain('fleet 2.0.1 · ESP32-S3');
    const bad = await runCli([
      'firmware',
      'add',
      file,
      '--name',
      'x',
      '--version',
      '1',
      '--chip',
      'Z80',
      '--data-dir',
      dataDir,
    ]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('chipFamily must be one of');
    expect((await runCli(['firmware', 'remove', 'fleet', '--data-dir', dataDir])).code).toBe(0);
    expect((await fetch(`http://127.0.0.1:${port}/firmware/fleet/manifest.json`, { headers: admin })).status).toBe(404);
  });

  it('an image larger than 8 MiB is refused (413); a bad chip family is 400 naming it', async () => {
    const { port } = await startHub(newDataDir());
    const admin = { authorization: `Bearer ${'a'.repeat(40)}` };
    const big = await fetch(`http://127.0.0.1:${port}/api/firmware/big?version=1&chipFamily=ESP32`, {
      method: 'PUT',
      headers: { ...admin, 'content-type': 'application/octet-stream' },
      body: new Uint8Array(8 * 1024 * 1024 + 1),
    }).catch((err: Error) => err);
    expect(big instanceof Response ? big.status : String(big)).toBe(413);
    const list = (await (await fetch(`http://127.0.0.1:${port}/api/firmware`, { headers: admin })).json()) as {
      images: unknown[];
    };
    expect(list.images).toEqual([]);
    const chip = await fetch(`http://127.0.0.1:${port}/api/firmware/x?version=1&chipFamily=ESP99`, {
      method: 'PUT',
      headers: { ...admin, 'content-type': 'application/octet-stream' },
      body: new Uint8Array(10),
    });
    expect(chip.status).toBe(400);
    expect(await chip.text()).toContain('chipFamily');
  });
});

describe('the hub log', () => {
  it('never contains a token, the fleet secret or an enroll key', () => {
    const all = logText.join('');
    expect(all).toContain('enrollment token handed over');
    expect(all).toContain('enrollment refused: wrong fleet secret');
    expect(secrets.size).toBeGreaterThan(4);
    for (const s of [...secrets, 'some-fleet-secret-0000']) expect(all, 'a secret is in the log').not.toContain(s);
    for (const b of [0x11, 0x22, 0x33, 0x44, 0x55, 0x61, 0x62, 0x63, 0x71, 5, 7, 9]) {
      const hex = Buffer.from(key(b)).toString('hex');
      expect(all).not.toContain(hex);
      expect(all).not.toContain(Buffer.from(key(b)).toString('base64'));
    }
  });
});
