/**
 * The simulator against the real hub (`buildHub`, real sockets, lmdb local log, the InfluxDB forwarder)
 * and a real InfluxDB (the harness's 1.x engine behind nginx serving `/api/v2/write`, read back with
 * InfluxQL; see docs/testing.md). Device tokens come from the hub's own CLI
 * (`npm run hub -- devices add … --tokens-file`), the documented route.
 *
 * What the simulator saw acknowledged is compared, reading by reading, with what InfluxDB holds:
 * - flaky Wi-Fi with a hub restart in the middle: every acked reading exactly once, nothing dropped
 *   claimed as stored, and the summary's numbers equal the database's;
 * - a reboot command: a new boot id, both boots complete and apart;
 * - the malformed scenario: each broken frame rejected with its coded error and close code, while the
 *   good data around it is stored.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MALFORMED_KINDS, type MalformedKind } from '../../firmware-sim/device.ts';
import { Fleet, fleetDeviceIds } from '../../firmware-sim/fleet.ts';
import { MemoryRecorder, type RecordedReading, readingsOf } from '../../firmware-sim/recorder.ts';
import { readTokensFile } from '../../firmware-sim/tokens.ts';
import { configFrom } from '../../server/config/index.ts';
import { ERRORS, type ErrorCode } from '../../server/errors.ts';
import { buildHub, type Hub } from '../../server/hub.ts';
import { createLogger } from '../../server/log/index.ts';
import {
  type InfluxServer,
  influxEnv,
  startInflux,
  type TempDir,
  tempDir,
  until as waitUntil,
} from '../harness/index.ts';
import { runScript } from './run-script.ts';

const ADMIN = 'sim-it-admin-token-0123456789abcdef0123';

let influx: InfluxServer;
let dir: TempDir;
let hub: Hub;
let port = 0;
let tokens: Map<string, string>;

/** The shared wait with this file's bound: its phases take up to a minute on a loaded machine. */
const until = (what: string, probe: () => unknown, timeoutMs = 60_000) => waitUntil(what, probe, timeoutMs);

/** `node --import tsx server/cli.ts …`: what `npm run hub -- …` runs. */
const hubCli = (args: string[]) => runScript('server/cli.ts', args);

async function startHub(): Promise<void> {
  const config = configFrom({
    HUB_HOST: '127.0.0.1',
    HUB_PORT: String(port),
    HUB_DATA_DIR: dir.path,
    HUB_LOG_LEVEL: process.env.TEST_HUB_LOG_LEVEL ?? 'silent',
    HUB_ADMIN_TOKEN: ADMIN,
    DEVICE_HEARTBEAT_INTERVAL_SEC: '2',
    ...influxEnv(influx),
    INFLUX_FLUSH_INTERVAL_MS: '100',
    INFLUX_MAX_RETRY_DELAY_MS: '1000',
    INFLUX_STATS_INTERVAL_MS: '0',
  });
  hub = buildHub(config, { logger: createLogger(config.log.level) });
  port = (await hub.start()).port;
}

const deviceUrl = () => `ws://127.0.0.1:${port}/v1/device`;

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) total += Number(line.split(' ').at(-1));
  }
  return total;
}

interface DbPoint {
  device: string;
  channel: string;
  timeMs: number;
  value: number | boolean;
}

async function dbPoints(devicePrefix: string): Promise<DbPoint[]> {
  const r = await influx.influxQL(`SELECT * FROM telemetry WHERE device =~ /^${devicePrefix}/`);
  return r.rows.map((row) => ({
    device: row.device as string,
    channel: row.channel as string,
    timeMs: row.time as number,
    value: (row.state ?? row.value) as number | boolean,
  }));
}

/** (device, boot, seq) → the offset the hub stored with the frame: its own record of the time mapping. */
function hubFrames(): Map<string, { timeOffsetMs: number }> {
  const out = new Map<string, { timeOffsetMs: number }>();
  for (const e of hub.context().log.readAfter(0, 10_000_000)) {
    out.set(`${e.deviceId}|${e.bootId}|${e.seq}`, { timeOffsetMs: e.timeOffsetMs });
  }
  return out;
}

const pointKey = (device: string, channel: string, timeMs: number) => `${device}|${channel}|${timeMs}`;

/**
 * The acked readings as the hub must have stored them: synced frames at the device's own times (the
 * hub clamps nothing plausible), unsynced ones shifted by the offset the hub persisted for their boot
 * (one offset per boot [PROTO-3.4.1]).
 */
function expectedPoints(acked: RecordedReading[], frames: Map<string, { timeOffsetMs: number }>) {
  const points = new Map<string, number | boolean>();
  const collisions: string[] = [];
  const notInLog: string[] = [];
  const bootOffsets = new Map<string, Set<number>>();
  for (const r of acked) {
    const frame = frames.get(`${r.deviceId}|${r.bootId}|${r.seq}`);
    if (!frame) {
      notInLog.push(`${r.deviceId} boot ${r.bootId} seq ${r.seq}`);
      continue;
    }
    if (r.unsynced) {
      const set = bootOffsets.get(`${r.deviceId}|${r.bootId}`) ?? new Set();
      set.add(frame.timeOffsetMs);
      bootOffsets.set(`${r.deviceId}|${r.bootId}`, set);
    } else {
      expect(frame.timeOffsetMs, `synced frame ${r.deviceId}/${r.bootId}/${r.seq} shifted`).toBe(0);
    }
    const key = pointKey(r.deviceId, r.channel, r.deviceTimeMs + frame.timeOffsetMs);
    if (points.has(key)) collisions.push(key);
    points.set(key, r.value);
  }
  for (const [boot, offsets] of bootOffsets) expect(offsets.size, `offsets of boot ${boot}`).toBe(1);
  return { points, collisions, notInLog };
}

/** Waits until the forwarder has written everything the local log holds. */
async function forwarded(): Promise<void> {
  await until('the forwarder to catch up', async () => (await metric('hub_local_log_unforwarded_frames')) === 0);
}

beforeAll(async () => {
  influx = await startInflux({ bucket: 'sim' });
  dir = await tempDir('sim-it');
  const ids = [...fleetDeviceIds(20, 'sim-'), 'rb-0001', ...fleetDeviceIds(3, 'mf-')];
  const file = `${dir.path}/devices.tokens`;
  const res = await hubCli(['devices', 'add', ...ids, '--data-dir', dir.path, '--tokens-file', file, '--json']);
  expect(res.code, res.stderr).toBe(0);
  tokens = readTokensFile(file);
  expect(tokens.size).toBe(ids.length);
  await startHub();
}, 180_000);

afterAll(async () => {
  await hub?.stop();
  await influx?.stop();
  await dir?.remove();
});

describe('20 devices, flaky Wi-Fi, one hub restart', () => {
  it('stores every acked reading in InfluxDB exactly once and nothing dropped; the summary matches', async () => {
    const recorder = new MemoryRecorder();
    const fleet = new Fleet({
      url: deviceUrl(),
      devices: 20,
      idPrefix: 'sim-',
      tokens,
      seed: 42,
      rate: 1,
      scenario: 'flaky-wifi',
      scenarioParams: { flakyMeanUpMs: 6000, flakyOutageMs: [300, 3000], flakySilentShare: 0.3 },
      recorder,
      // A small outbox, so the hub's downtime makes boards drop their oldest frames.
      device: { outboxFrames: 6, backoff: { initialMs: 500, maxMs: 4000 } },
    });
    fleet.start();
    // Conditions, not durations: each phase runs until it has done what the assertions below rely on.
    await until('200 frames acked through flaky Wi-Fi', () => {
      const t = fleet.totals();
      return t.framesAcked > 200 && t.wifiDrops >= 10;
    });
    const before = fleet.totals();

    await hub.stop(); // the restart: sessions close with 1001, boards back off and buffer
    // Down until the boards' small outboxes have overflowed: several boards lose their oldest frames.
    await until(
      'outboxes overflowing while the hub is down',
      () => fleet.totals().framesDropped >= before.framesDropped + 20,
    );
    await startHub();
    await until('boards back online', () => fleet.snapshot().connected >= 15, 60_000);
    const restarted = fleet.totals();
    await until(
      'replays and another 200 acked frames after the restart',
      () => {
        const t = fleet.totals();
        return (
          t.framesAcked >= restarted.framesAcked + 200 && t.framesReplayed > 0 && t.reconnects > 40 && t.wifiDrops > 20
        );
      },
      120_000,
    );
    const summary = await fleet.stop({ drainMs: 30_000 });
    await forwarded();

    const t = summary.totals;
    // The run really exercised what it claims to.
    expect(summary.outboxDepth).toBe(0);
    expect(t.wifiDrops).toBeGreaterThan(20);
    expect(t.reconnects).toBeGreaterThan(40);
    expect(t.framesReplayed).toBeGreaterThan(0);
    expect(t.framesDropped).toBeGreaterThan(0);
    expect(summary.closesByCode['1001']).toBeGreaterThanOrEqual(10); // the hub's shutdown close
    expect(t.ackRegressions).toBe(0);

    const frames = hubFrames();
    const acked = recorder.ackedReadings().filter((r) => r.deviceId.startsWith('sim-'));
    const { points, collisions, notInLog } = expectedPoints(acked, frames);
    expect(notInLog).toEqual([]); // acked ⇒ in the hub's durable log
    expect(collisions).toEqual([]);
    expect(points.size).toBe(t.readingsAcked);

    // Frames dropped before they were ever sent never reach the hub; those dropped after a send may.
    const droppedUnsent = [...recorder.droppedFrames.values()].flat().filter((d) => !d.wasSent);
    const droppedSent = [...recorder.droppedFrames.values()].flat().filter((d) => d.wasSent);
    expect(droppedUnsent.length).toBe(t.framesDroppedUnsent);
    for (const d of droppedUnsent) {
      expect(frames.has(`${d.frame.deviceId}|${d.frame.message.bootId}|${d.frame.message.seq}`)).toBe(false);
    }
    const mayBeStored = new Set<string>();
    for (const d of droppedSent) {
      const f = frames.get(`${d.frame.deviceId}|${d.frame.message.bootId}|${d.frame.message.seq}`);
      if (f)
        for (const r of readingsOf(d.frame))
          mayBeStored.add(pointKey(r.deviceId, r.channel, r.deviceTimeMs + f.timeOffsetMs));
    }

    const db = await dbPoints('sim-');
    const dbMap = new Map(db.map((p) => [pointKey(p.device, p.channel, p.timeMs), p.value]));
    expect(dbMap.size).toBe(db.length);
    const missing = [...points].filter(([k, v]) => dbMap.get(k) !== v).map(([k]) => k);
    expect(missing).toEqual([]); // every acked reading is there, with its value
    const extra = [...dbMap.keys()].filter((k) => !points.has(k) && !mayBeStored.has(k));
    expect(extra).toEqual([]); // and nothing else (InfluxDB holds a point once per key: exactly once)
    // The summary's numbers are the database's numbers.
    expect(db.length - [...dbMap.keys()].filter((k) => mayBeStored.has(k) && !points.has(k)).length).toBe(
      t.readingsAcked,
    );
    if (process.env.SIM_IT_VERBOSE) {
      console.log(
        JSON.stringify({ ...summary, perDevice: undefined, dbPoints: db.length, droppedSent: droppedSent.length }),
      );
    }
  }, 300_000);
});

describe('reboot command', () => {
  it('gives the board a new boot id; the hub keeps both boots apart and complete', async () => {
    const recorder = new MemoryRecorder();
    const fleet = new Fleet({ url: deviceUrl(), devices: 1, idPrefix: 'rb-', tokens, seed: 7, rate: 2, recorder });
    const device = fleet.devices[0];
    if (!device) throw new Error('no device');
    fleet.start();
    await until('first acks', () => device.stats.framesAcked >= 6);
    const firstBoot = device.bootId;

    const res = await fetch(`http://127.0.0.1:${port}/api/devices/rb-0001/commands`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'reboot' }),
    });
    expect(res.status).toBe(202);
    const { commandId } = (await res.json()) as { commandId: number };
    await until('the reboot', () => device.bootId !== firstBoot && device.state === 'online');
    await until('the RESULT at the hub', async () => {
      const r = await fetch(`http://127.0.0.1:${port}/api/devices/rb-0001/commands/${commandId}`, {
        headers: { Authorization: `Bearer ${ADMIN}` },
      });
      const body = (await r.json()) as { state?: string; status?: number };
      return body.state === 'done' && body.status === 0;
    });
    const ackedAtReboot = device.stats.framesAcked;
    await until('acks of the new boot', () => device.stats.framesAcked >= ackedAtReboot + 6);
    const secondBoot = device.bootId;
    const summary = await fleet.stop({ drainMs: 10_000 });
    expect(summary.outboxDepth).toBe(0);
    expect(device.stats.reboots).toBe(1);
    await forwarded();

    // The local log: two boots, each with seq 1..n and nothing missing.
    const entries = hub
      .context()
      .log.readAfter(0, 10_000_000)
      .filter((e) => e.deviceId === 'rb-0001');
    const seqs = (boot: number) => entries.filter((e) => e.bootId === boot).map((e) => e.seq);
    expect(new Set(entries.map((e) => e.bootId))).toEqual(new Set([firstBoot, secondBoot]));
    const ackedRefs = recorder.ackedRefs('rb-0001');
    for (const boot of [firstBoot, secondBoot]) {
      const s = seqs(boot);
      expect(s).toEqual(s.map((_, i) => i + 1));
      expect(s).toEqual(ackedRefs.filter((r) => r.bootId === boot).map((r) => r.seq));
    }

    // InfluxDB: every reading of both boots, once; the second boot's after the first's.
    const { points, collisions } = expectedPoints(recorder.ackedReadings('rb-0001'), hubFrames());
    expect(collisions).toEqual([]);
    const db = await dbPoints('rb-');
    expect(db).toHaveLength(points.size);
    for (const p of db) expect(points.get(pointKey(p.device, p.channel, p.timeMs))).toBe(p.value);
    const acked = recorder.ackedReadings('rb-0001');
    const lastOfFirst = Math.max(...acked.filter((r) => r.bootId === firstBoot).map((r) => r.deviceTimeMs));
    const firstOfSecond = Math.min(...acked.filter((r) => r.bootId === secondBoot).map((r) => r.deviceTimeMs));
    expect(firstOfSecond).toBeGreaterThan(lastOfFirst);
    expect(acked.filter((r) => r.bootId === firstBoot).length).toBeGreaterThan(50);
    expect(acked.filter((r) => r.bootId === secondBoot).length).toBeGreaterThan(50);
  }, 120_000);
});

describe('malformed scenario', () => {
  it('is rejected with coded errors and close codes while the good data is stored', async () => {
    const errorsBefore = new Map<string, number>();
    for (const code of Object.values(MALFORMED_KINDS))
      errorsBefore.set(code, await metric('hub_frame_errors_total', { code }));
    const recorder = new MemoryRecorder();
    const fleet = new Fleet({
      url: deviceUrl(),
      devices: 3,
      idPrefix: 'mf-',
      tokens,
      seed: 11,
      rate: 2,
      scenario: 'malformed',
      scenarioParams: { malformedDelayMs: [500, 1500] },
      recorder,
      device: { backoff: { initialMs: 300, maxMs: 1000 } },
    });
    fleet.start();
    await until('every kind sent', () => {
      const outcomes = Object.keys(fleet.totals().malformedByOutcome);
      return Object.keys(MALFORMED_KINDS).every((k) => outcomes.some((o) => o.startsWith(`${k}→`)));
    });
    const summary = await fleet.stop({ drainMs: 10_000 });
    await forwarded();

    const t = summary.totals;
    expect(t.malformedUnanswered).toBe(0);
    expect(t.malformedRejected).toBe(t.malformedSent);
    // Each kind got exactly its catalogue code and close code [PROTO-5.3].
    for (const [outcome, n] of Object.entries(summary.malformedByOutcome)) {
      const [kind, answer] = outcome.split('→') as [MalformedKind, string];
      const code = MALFORMED_KINDS[kind];
      expect(answer, outcome).toBe(`${code}/${ERRORS[code as ErrorCode].close}`);
      expect(n).toBeGreaterThan(0);
    }
    // The hub counted them by code.
    for (const code of Object.values(MALFORMED_KINDS)) {
      const sent = Object.entries(summary.malformedByOutcome)
        .filter(([o]) => o.includes(`→${code}/`))
        .reduce((a, [, n]) => a + n, 0);
      expect(await metric('hub_frame_errors_total', { code }), code).toBe((errorsBefore.get(code) ?? 0) + sent);
    }
    // The good data survived: every acked reading is in InfluxDB, once, and nothing else is.
    expect(summary.outboxDepth).toBe(0);
    expect(t.framesAcked).toBe(t.framesGenerated);
    const { points, collisions, notInLog } = expectedPoints(recorder.ackedReadings(), hubFrames());
    expect(notInLog).toEqual([]);
    expect(collisions).toEqual([]);
    const db = await dbPoints('mf-');
    expect(db).toHaveLength(points.size);
    expect(db.length).toBe(t.readingsAcked);
    for (const p of db) expect(points.get(pointKey(p.device, p.channel, p.timeMs))).toBe(p.value);
  }, 120_000);
});
