/**
 * Device sessions end to end in embedded mode, over real sockets, with the real registry and a real
 * lmdb local log: streaming with acks after commit, history, replay/dedupe, gaps, time mapping,
 * coded errors and close codes, replacement, revocation, commands and graceful shutdown [PROTO-5].
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Telemetry, ValueType } from '../../server/codec/index.ts';
import type { Reading } from '../../server/storage/types.ts';
import {
  expectedReadings,
  startTestHub,
  TEST_CHANNELS,
  TEST_HASH,
  TestDevice,
  type TestHub,
  telemetry,
} from './ingest-device-client.ts';

const HOUR = 3_600_000;

function history(h: TestHub, deviceId: string, fromMs = 0, toMs = Date.now() + HOUR): Reading[] {
  return h.hub.context().queryHistory({ deviceId, fromMs, toMs, limit: 1_000_000 }).readings;
}

function simplify(rs: Reading[]) {
  return rs
    .map((r) => ({ timeMs: r.timeMs, channel: r.channel, value: r.value }))
    .sort((a, b) => a.timeMs - b.timeMs || a.channel.localeCompare(b.channel));
}

/** Connects, says HELLO (uptime 1 h, so the first sighting is an hour back) and sends DESCRIPTORS. */
async function online(h: TestHub, token: string, id: string, bootId: number, opts: { timeSynced?: boolean } = {}) {
  const d = await TestDevice.connect(h.url, { token });
  const welcome = await d.hello(id, bootId, { uptimeMs: HOUR, ...opts });
  if (!welcome.descriptorsKnown) d.send({ type: 'descriptors', channels: TEST_CHANNELS });
  return { d, welcome };
}

describe('device sessions (embedded mode)', () => {
  let h: TestHub;
  const tokens = new Map<string, string>();
  const token = async (id: string) => {
    let t = tokens.get(id);
    if (!t) {
      t = await h.addDevice(id);
      tokens.set(id, t);
    }
    return t;
  };

  beforeAll(async () => {
    h = await startTestHub({ HUB_ADMIN_TOKEN: 'a'.repeat(40) });
  });
  afterAll(async () => {
    await h?.stop();
    await h?.dir.remove();
  });

  it('streams N frames: cumulative ACKs after commit, history returns exactly the readings sent', async () => {
    const id = 'esp-stream';
    const events: Reading[] = [];
    h.hub.bus.on('readings', (dev, rs) => {
      if (dev === id) events.push(...rs);
    });
    const { d, welcome } = await online(h, await token(id), id, 11);
    expect(welcome.lastAck).toBeNull();
    expect(welcome.descriptorsKnown).toBe(false);
    expect(welcome.heartbeatIntervalSec).toBe(15);
    expect(Math.abs(welcome.serverTimeMs - Date.now())).toBeLessThan(60_000);
    const base = Date.now() - 30 * 60_000;
    const N = 50;
    const expected = [];
    for (let s = 1; s <= N; s++) {
      d.send(telemetry(11, s, base + s * 10_000));
      expected.push(...expectedReadings(s, base + s * 10_000));
    }
    await d.ackOf(11, N);
    const stored = simplify(history(h, id));
    expect(stored).toEqual(simplify(expected as Reading[]));
    expect(simplify(events)).toEqual(stored);
    expect(await h.metricValue('hub_readings_stored_total')).toBeGreaterThanOrEqual(N * 12);
    // The same readings through the REST history route (embedded store).
    const res = await fetch(
      `${h.http}/api/devices/${id}/history?channel=temperature&from=${base}&to=${base + (N + 1) * 10_000}&limit=10000`,
      { headers: { Authorization: `Bearer ${'a'.repeat(40)}` } },
    );
    expect(res.status).toBe(200);
    const body = (await res.json()) as { readings: { timeMs: number; value: number }[]; truncated: boolean };
    expect(body.truncated).toBe(false);
    expect(body.readings.map((r) => [r.timeMs, r.value])).toEqual(
      stored.filter((r) => r.channel === 'temperature').map((r) => [r.timeMs, r.value]),
    );
    await d.close();
  });

  it('reconnect and replay of acked and unacked frames: no duplicates, no missing readings', async () => {
    const id = 'esp-replay';
    const tok = await token(id);
    const base = Date.now() - 20 * 60_000;
    const frame = (s: number) => telemetry(21, s, base + s * 5000);
    const dupsBefore = await h.metricValue('hub_duplicate_frames_total');

    const a = await online(h, tok, id, 21);
    for (let s = 1; s <= 10; s++) a.d.send(frame(s));
    await a.d.ackOf(21, 10);
    // Frames 11..20 sent, then the connection drops before (some of) their ACKs can arrive.
    for (let s = 11; s <= 20; s++) a.d.send(frame(s));
    a.d.ws.terminate();

    const b = await online(h, tok, id, 21);
    expect(b.welcome.descriptorsKnown).toBe(true);
    const lastAck = b.welcome.lastAck;
    expect(lastAck?.bootId).toBe(21);
    expect(lastAck?.seq).toBeGreaterThanOrEqual(10);
    // The device replays from well before its last ack (it lost the ACKs): acked and unacked frames.
    for (let s = 5; s <= 30; s++) b.d.send(frame(s));
    await b.d.ackOf(21, 30);
    const stored = simplify(history(h, id));
    const expected = simplify(
      Array.from({ length: 30 }, (_, i) => expectedReadings(i + 1, base + (i + 1) * 5000)).flat() as Reading[],
    );
    expect(stored).toEqual(expected);
    expect((await h.metricValue('hub_duplicate_frames_total')) - dupsBefore).toBeGreaterThanOrEqual(16);
    await b.d.close();
  });

  it('counts a deliberate sequence gap in /metrics', async () => {
    const id = 'esp-gap';
    const before = await h.metricValue('hub_sequence_gap_frames_total');
    const { d } = await online(h, await token(id), id, 31);
    const base = Date.now() - 10 * 60_000;
    d.send(telemetry(31, 1, base));
    d.send(telemetry(31, 2, base + 5000));
    d.send(telemetry(31, 7, base + 30_000)); // 3, 4, 5, 6 never arrive
    await d.ackOf(31, 7);
    expect((await h.metricValue('hub_sequence_gap_frames_total')) - before).toBe(4);
    await d.close();
  });

  it('answers a malformed frame with its coded ERROR and close code; readings before it stay stored and acked', async () => {
    const id = 'esp-malformed';
    const { d } = await online(h, await token(id), id, 41);
    const base = Date.now() - 10 * 60_000;
    for (let s = 1; s <= 3; s++) d.send(telemetry(41, s, base + s * 5000));
    const bad = new Uint8Array(
      (await import('../../server/codec/index.ts')).encodeFrame(telemetry(41, 4, base + 20_000)),
    );
    bad[bad.length - 1] = (bad[bad.length - 1] as number) ^ 0xff; // CRC no longer matches
    d.sendRaw(bad);
    await d.ackOf(41, 3);
    const err = await d.next('error');
    expect(err).toMatchObject({ fatal: true, code: 105 }); // BAD_CRC
    expect(await d.closed()).toBe(1007);
    expect(simplify(history(h, id))).toEqual(
      simplify([1, 2, 3].flatMap((s) => expectedReadings(s, base + s * 5000)) as Reading[]),
    );
    expect(await h.metricValue('hub_frame_errors_total', { code: 'BAD_CRC' })).toBe(1);
  });

  it('refuses TELEMETRY with unknown descriptors (non-fatal, no ACK) until DESCRIPTORS arrive and it is replayed', async () => {
    const id = 'esp-nodesc';
    const d = await TestDevice.connect(h.url, { token: await token(id) });
    await d.hello(id, 51, { uptimeMs: HOUR });
    const base = Date.now() - 10 * 60_000;
    d.send(telemetry(51, 1, base));
    d.send(telemetry(51, 2, base + 5000));
    const err = await d.next('error');
    expect(err).toMatchObject({ fatal: false, code: 203 }); // UNKNOWN_DESCRIPTORS
    d.send({ type: 'descriptors', channels: TEST_CHANNELS });
    d.send(telemetry(51, 1, base));
    d.send(telemetry(51, 2, base + 5000));
    await d.ackOf(51, 2);
    expect(d.history.filter((m) => m.type === 'error')).toHaveLength(1);
    expect(history(h, id)).toHaveLength(24);
    await d.close();
  });

  it('maps unsynced time once per boot and persists it: a replay after a hub restart gets identical timestamps', async () => {
    const id = 'esp-unsynced';
    const tok = await token(id);
    const uptime0 = 120_000;
    const d = await TestDevice.connect(h.url, { token: tok });
    await d.hello(id, 61, { uptimeMs: uptime0, timeSynced: false });
    d.send({ type: 'descriptors', channels: TEST_CHANNELS });
    const frames = [1, 2, 3].map((s) => telemetry(61, s, uptime0 - 60_000 + s * 5000, 3, { unsynced: true }));
    for (const f of frames) d.send(f);
    await d.ackOf(61, 3);
    const first = simplify(history(h, id));
    expect(first).toHaveLength(36);
    await d.close();

    // Restart the hub on the same data dir; the device reconnects later (larger uptime) and replays.
    const dir = h.dir;
    await h.stop();
    h = await startTestHub({ HUB_ADMIN_TOKEN: 'a'.repeat(40) }, {}, dir);
    const d2 = await TestDevice.connect(h.url, { token: tok });
    const w = await d2.hello(id, 61, { uptimeMs: uptime0 + 45_000, timeSynced: false });
    expect(w.lastAck).toEqual({ bootId: 61, seq: 3 });
    expect(w.descriptorsKnown).toBe(true);
    for (const f of frames) d2.send(f);
    d2.send(telemetry(61, 4, uptime0 + 30_000, 3, { unsynced: true }));
    await d2.ackOf(61, 4);
    const after = simplify(history(h, id));
    expect(after.slice(0, 36)).toEqual(first);
    expect(after).toHaveLength(48);
    // Frame 4 uses the same boot offset as frames 1..3: 30 s of uptime after frame 1's base + 55 s.
    const offset = (first[0]?.timeMs as number) - (uptime0 - 60_000 + 5000);
    expect(after[36]?.timeMs).toBe(uptime0 + 30_000 + offset);
    await d2.close();
  });

  it('clamps samples far in the future and counts them', async () => {
    const id = 'esp-future';
    const before = await h.metricValue('hub_timestamps_clamped_total', { reason: 'future' });
    const { d } = await online(h, await token(id), id, 71);
    d.send(telemetry(71, 1, Date.now() + 24 * HOUR));
    await d.ackOf(71, 1);
    const rs = history(h, id);
    expect(Math.max(...rs.map((r) => r.timeMs))).toBeLessThanOrEqual(Date.now());
    expect((await h.metricValue('hub_timestamps_clamped_total', { reason: 'future' })) - before).toBe(1);
    await d.close();
  });

  it('a board whose clock is hours behind: one correction for the boot, so no two samples share a timestamp; replays map identically', async () => {
    const id = 'esp-behind';
    const { d } = await online(h, await token(id), id, 72);
    const behind = Date.now() - 5 * HOUR;
    // Frames 3 s apart, three samples 1 s apart each: 30 distinct sample times per channel.
    for (let s = 1; s <= 10; s++) d.send(telemetry(72, s, behind + s * 3000));
    await d.ackOf(72, 10);
    const first = history(h, id);
    expect(first.length).toBe(10 * expectedReadings(1, 0).length);
    const times = [...new Set(first.map((r) => r.timeMs))].sort((a, b) => a - b);
    const spacing = Array.from({ length: 10 }, (_, s) => [0, 1, 2].map((i) => s * 3000 + i * 1000)).flat();
    expect(times.map((t) => t - (times[0] as number))).toEqual(spacing);
    expect(times[0]).toBeGreaterThan(Date.now() - 2 * HOUR); // moved up to the earliest plausible time, not 5 h back
    // A reconnect replaying already-stored frames changes nothing.
    await d.close();
    const again = await online(h, await token(id), id, 72);
    for (let s = 1; s <= 10; s++) again.d.send(telemetry(72, s, behind + s * 3000));
    await again.d.ackOf(72, 10);
    expect(history(h, id)).toEqual(first);
    await again.d.close();
  });

  it('closes with the catalogue codes: type mismatch 1007, unknown channel 1007, mismatch 1008, text 1003, no HELLO first 1002', async () => {
    const id = 'esp-faults';
    const tok = await token(id);
    const base = Date.now() - 60_000;
    const cases: { send: (d: TestDevice) => void; wire: number; close: number; hello?: boolean }[] = [
      {
        send: (d) => {
          const t: Telemetry = telemetry(81, 1, base);
          t.blocks = [{ channel: 0, valueType: ValueType.U16, deltasMs: [0], values: [1] }];
          d.send(t);
        },
        wire: 205,
        close: 1007,
      },
      {
        send: (d) => {
          const t: Telemetry = telemetry(81, 1, base);
          t.blocks = [{ channel: 9, valueType: ValueType.I16, deltasMs: [0], values: [1] }];
          d.send(t);
        },
        wire: 204,
        close: 1007,
      },
      { send: (d) => d.sendRaw('hello?'), wire: 200, close: 1003 },
      { send: (d) => d.send(telemetry(81, 1, base)), wire: 201, close: 1002, hello: false },
    ];
    for (const c of cases) {
      const d = await TestDevice.connect(h.url, { token: tok });
      if (c.hello !== false) {
        await d.hello(id, 81, { uptimeMs: HOUR });
        d.send({ type: 'descriptors', channels: TEST_CHANNELS });
      }
      c.send(d);
      expect(await d.next('error')).toMatchObject({ fatal: true, code: c.wire });
      expect(await d.closed()).toBe(c.close);
    }
    const d = await TestDevice.connect(h.url, { token: tok });
    d.send({ ...helloFor('someone-else', 1) });
    expect(await d.next('error')).toMatchObject({ fatal: true, code: 202 });
    expect(await d.closed()).toBe(1008);
    expect(history(h, id)).toEqual([]);
  });

  it('a new connection of the same device replaces the old one (ERROR REPLACED, close 4001)', async () => {
    const id = 'esp-twice';
    const tok = await token(id);
    const a = await online(h, tok, id, 91);
    const b = await online(h, tok, id, 91);
    expect(await a.d.next('error')).toMatchObject({ code: 207 });
    expect(await a.d.closed()).toBe(4001);
    b.d.send(telemetry(91, 1, Date.now() - 1000));
    await b.d.ackOf(91, 1);
    expect(await h.metricValue('hub_device_sessions')).toBeGreaterThanOrEqual(1);
    await b.d.close();
  });

  it("closes a device's live session when its token is revoked (1008)", async () => {
    const id = 'esp-revoke-live';
    const { d } = await online(h, await token(id), id, 95);
    await h.registry.revoke(id);
    expect(await d.next('error')).toMatchObject({ code: 208 });
    expect(await d.closed()).toBe(1008);
  });

  it('commands: admin token required, 409 offline, COMMAND → ACCEPTED → RESULT tracked', async () => {
    const id = 'esp-cmd';
    const admin = { Authorization: `Bearer ${'a'.repeat(40)}`, 'Content-Type': 'application/json' };
    const post = (headers: Record<string, string>, body: unknown) =>
      fetch(`${h.http}/api/devices/${id}/commands`, { method: 'POST', headers, body: JSON.stringify(body) });
    expect((await post({}, { name: 'identify' })).status).toBe(401);
    const offline = await post(admin, { name: 'identify' });
    expect(offline.status).toBe(409);
    expect(await offline.json()).toMatchObject({ error: { code: 'DEVICE_OFFLINE' } });

    const { d } = await online(h, await token(id), id, 99);
    expect((await post(admin, { name: 'set_sample_interval', args: { interval_ms: 1 } })).status).toBe(400);
    const res = await post(admin, { name: 'identify', args: { duration_ms: 3000 } });
    expect(res.status).toBe(202);
    const { commandId } = (await res.json()) as { commandId: number };
    const cmd = await d.next('command');
    expect(cmd).toEqual({
      type: 'command',
      commandId,
      name: 'identify',
      args: [{ key: 'duration_ms', valueType: ValueType.U32, value: 3000 }],
    });
    d.send({ type: 'command_accepted', commandId });
    d.send({ type: 'command_result', commandId, status: 0, message: 'blinking' });
    d.send({ type: 'command_accepted', commandId: commandId + 1000 }); // never sent by the hub
    expect(await d.next('error')).toMatchObject({ fatal: false, code: 209 });
    const state = await fetch(`${h.http}/api/devices/${id}/commands/${commandId}`, { headers: admin });
    expect(await state.json()).toMatchObject({ commandId, state: 'done', status: 0, message: 'blinking' });
    await d.close();
  });

  it('answers /healthz, /readyz and /metrics', async () => {
    expect((await fetch(`${h.http}/healthz`)).status).toBe(200);
    const ready = await fetch(`${h.http}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', mode: 'embedded', listening: true });
    const metrics = await (await fetch(`${h.http}/metrics`)).text();
    expect(metrics).toContain('hub_local_log_commits_total');
  });
});

describe('graceful shutdown', () => {
  it('commits in-flight frames, ACKs them, then closes device sockets with 1001', async () => {
    const h = await startTestHub();
    const tok = await h.addDevice('esp-stop');
    const d = await TestDevice.connect(h.url, { token: tok });
    await d.hello('esp-stop', 5, { uptimeMs: HOUR });
    d.send({ type: 'descriptors', channels: TEST_CHANNELS });
    const base = Date.now() - 60_000;
    for (let s = 1; s <= 20; s++) d.send(telemetry(5, s, base + s * 100, 1));
    await d.ackOf(5, 1);
    const stopping = h.stop();
    expect(await d.closed()).toBe(1001);
    await stopping;
    const acks = d.history.filter((m) => m.type === 'ack');
    expect(acks[acks.length - 1]).toMatchObject({ bootId: 5, seq: 20 });
    // The ACKs come first, then ERROR SHUTTING_DOWN, then the close.
    expect(d.history[d.history.length - 1]).toMatchObject({ type: 'error', code: 302 });
    await h.dir.remove();
  });
});

function helloFor(deviceId: string, bootId: number) {
  return {
    type: 'hello' as const,
    timeSynced: true,
    deviceId,
    firmwareVersion: 't',
    maxProtocolVersion: 1,
    bootId,
    resetReason: 0,
    uptimeMs: 1,
    descriptorHash: TEST_HASH,
    bufferedFrames: 0,
    droppedFrames: 0,
  };
}

describe('liveness [PROTO-1.5, PROTO-5.1]', () => {
  let h: TestHub;
  beforeAll(async () => {
    h = await startTestHub({ DEVICE_HEARTBEAT_INTERVAL_SEC: '1', DEVICE_HELLO_TIMEOUT_MS: '300' });
  });
  afterAll(async () => {
    await h?.stop();
    await h?.dir.remove();
  });

  it('closes a connection that sends no HELLO in time: ERROR HELLO_TIMEOUT, close 1002', async () => {
    const d = await TestDevice.connect(h.url, { token: await h.addDevice('esp-silent') });
    expect(await d.next('error')).toMatchObject({ fatal: true, code: 206 });
    expect(await d.closed()).toBe(1002);
  });

  it('terminates a peer that stops answering pings; a peer that answers stays', async () => {
    const tokenA = await h.addDevice('esp-deaf');
    const tokenB = await h.addDevice('esp-alive');
    const deaf = await TestDevice.connect(h.url, { token: tokenA, autoPong: false });
    const alive = await TestDevice.connect(h.url, { token: tokenB });
    await deaf.hello('esp-deaf', 1, { uptimeMs: HOUR });
    await alive.hello('esp-alive', 1, { uptimeMs: HOUR });
    expect(await deaf.closed()).toBe(1006); // terminated: no close frame
    expect(alive.closeCode).toBeNull();
    expect(await h.metricValue('hub_device_disconnects_total', { reason: 'heartbeat' })).toBe(1);
    alive.send({ type: 'descriptors', channels: TEST_CHANNELS });
    alive.send(telemetry(1, 1, Date.now() - 1000));
    await alive.ackOf(1, 1);
    await alive.close();
  });
});
