/**
 * The simulated board's flash and power (docs/simulator.md, "Power, flash and boot identity"): boot
 * ids that never repeat, power cuts that keep only the store, a state directory that outlives the
 * process, and the deep-sleep profile — on the fake hub and fake clock.
 */
import { spawnSync } from 'node:child_process';
import { appendFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileBoardStore, MemoryBoardStore, stateToken } from '../../firmware-sim/board-store.ts';
import { drawBootId, seededEntropy } from '../../firmware-sim/boot-id.ts';
import { FakeClock } from '../../firmware-sim/clock.ts';
import { FakeHub } from '../../firmware-sim/fake-hub.ts';
import { Fleet, fleetDeviceIds } from '../../firmware-sim/fleet.ts';
import type { Connector } from '../../firmware-sim/link.ts';
import { MemoryRecorder, type RecordedFrame, readingsOf } from '../../firmware-sim/recorder.ts';
import { Rng } from '../../firmware-sim/rng.ts';
import { decodeFrame, encodeFrame, ResetReason } from '../../server/codec/index.ts';
import { type TempDir, tempDir } from '../harness/index.ts';
import { board, expectExactlyOnce, expectedKey, ID, ofType, received, rig, storedKeys } from './sim-helpers.ts';

/** A recorder that also keeps what was sampled (sealed into flash) and lost in RAM. */
class SamplingRecorder extends MemoryRecorder {
  readonly sampledFrames: RecordedFrame[] = [];
  readonly lostFrames: RecordedFrame[] = [];
  sampled(frame: RecordedFrame): void {
    this.sampledFrames.push(frame);
  }
  lost(frame: RecordedFrame): void {
    this.lostFrames.push(frame);
  }
}

let dir: TempDir;
beforeEach(async () => {
  dir = await tempDir('sim-power');
});
afterEach(async () => {
  await dir.remove();
});

describe('boot identity', () => {
  it('mixes the boot counter with randomness: either alone gives distinct ids', () => {
    const fixed = () => new Uint8Array(8); // a random source stuck at zero (an ESP32 before its radio)
    const byCounter = new Set(Array.from({ length: 1000 }, (_, i) => drawBootId('sim-0001', i + 1, fixed)));
    expect(byCounter.size).toBe(1000);
    const rng = seededEntropy(new Rng(1));
    const byRandom = new Set(Array.from({ length: 1000 }, () => drawBootId('sim-0001', 1, rng))); // NVS lost every time
    expect(byRandom.size).toBe(1000);
    const seven = drawBootId('sim-0001', 7, fixed);
    expect(drawBootId('sim-0001', 7, rng, (id) => id === seven)).not.toBe(seven); // a taken id is drawn again
  });

  it('persists the boot counter before each boot: across reboots, power cuts and new processes', () => {
    const clock = new FakeClock();
    const hub = new FakeHub({ clock });
    const boots: number[] = [];
    const device = (store: FileBoardStore, token = 'tok-1') => board(clock, hub, { token, store });
    const a = device(new FileBoardStore(dir.path, ID));
    a.on('reboot', (id) => boots.push(id));
    a.start();
    clock.advance(3000);
    a.reboot(ResetReason.SOFTWARE);
    clock.advance(3000);
    a.powerCut(500);
    clock.advance(3000);
    void a.stop();
    const nvs = JSON.parse(readFileSync(join(dir.path, ID, 'nvs.json'), 'utf8')) as { bootCounter: number };
    expect(nvs.bootCounter).toBe(3);
    expect(stateToken(dir.path, ID)).toBe('tok-1');
    expect(statSync(join(dir.path, ID, 'nvs.json')).mode & 0o777).toBe(0o600); // it holds the token
    // A new process (a new device object) on the same state continues the count; a token given to
    // it (rotated) replaces the kept one.
    const b = device(new FileBoardStore(dir.path, ID), 'tok-2');
    b.on('reboot', (id) => boots.push(id));
    b.start();
    clock.advance(3000);
    void b.stop();
    expect(
      (JSON.parse(readFileSync(join(dir.path, ID, 'nvs.json'), 'utf8')) as { bootCounter: number }).bootCounter,
    ).toBe(4);
    expect(stateToken(dir.path, ID)).toBe('tok-2');
    expect(new Set(boots).size).toBe(4);
    expect(ofType(received(hub), 'hello').map((h) => h.bootId)).toEqual(boots);
  });

  it('refuses a state directory another live process is using', () => {
    const first = new FileBoardStore(dir.path, ID);
    expect(() => new FileBoardStore(dir.path, ID)).toThrow(/in use by process/);
    first.close();
    expect(() => new FileBoardStore(dir.path, ID).close()).not.toThrow();
    // A lock left by a simulator that is gone (killed) is taken over.
    const gone = spawnSync('true').pid as number;
    writeFileSync(join(dir.path, ID, 'lock'), String(gone));
    expect(() => new FileBoardStore(dir.path, ID).close()).not.toThrow();
  });

  it("never lets the hub's ACKs for another boot's frames count as acked: a reused id is detected and replaced", () => {
    // Two "runs" of one board whose NVS was lost and whose random source repeats: same boot id.
    const clock = new FakeClock();
    const hub = new FakeHub({ clock });
    const recorder = new MemoryRecorder();
    const run = () => {
      const d = board(clock, hub, { recorder, entropy: seededEntropy(new Rng(99)) });
      d.start();
      clock.advance(20_000);
      void d.stop({ drainMs: 5000 });
      clock.advance(6000);
      return d;
    };
    const first = run();
    const firstBoot = first.bootId;
    const second = run();
    expect(second.stats.framesAcked).toBeGreaterThan(10);
    // Everything either run reports acked is stored, once.
    expectExactlyOnce(hub, recorder);
    expect(hub.device(ID).duplicates).toBe(0);
    expect(second.stats.bootIdReused).toBe(1);
    expect(second.bootId).not.toBe(firstBoot);
  });
});

describe('power cut', () => {
  it('drops RAM, keeps the flash outbox: a new boot replays the old boot’s frames, all stored once', () => {
    const recorder = new SamplingRecorder();
    const { clock, hub, device } = rig({ recorder, sampleIntervalMs: 250, ticksPerFrame: 4 });
    device.start();
    clock.advance(5000);
    const before = device.bootId;
    device.dropWifi(60_000); // the hub is out of reach: frames pile up in flash
    clock.advance(10_000);
    clock.advance(100); // mid-frame: some samples are in RAM only
    const buffered = device.outboxDepth;
    expect(buffered).toBeGreaterThan(5);
    device.powerCut(800);
    expect(device.state).toBe('unpowered');
    expect(device.outbox.length).toBe(0); // the RAM copy is gone…
    expect(device.outboxDepth).toBe(buffered); // …the flash holds them…
    clock.advance(1000);
    expect(device.outbox.length).toBe(buffered); // …and power-on reloads them
    expect(device.stats.framesRestored).toBe(buffered);
    expect(device.bootId).not.toBe(before);
    expect(hub.device(ID).stored.length).toBeLessThan(buffered); // not sent yet: nothing else holds them
    void device.stop();
    expect(recorder.lostFrames.length).toBe(1);
    expect(device.stats.readingsLostOnCrash).toBe(readingsOf(recorder.lostFrames[0] as RecordedFrame).length);
  });

  it('replays after power-on: the new HELLO says power-on, the old boot’s frames go first, nothing is lost or doubled', async () => {
    const recorder = new SamplingRecorder();
    const { clock, hub, device } = rig({ recorder, sampleIntervalMs: 250, ticksPerFrame: 4 });
    device.start();
    clock.advance(5000);
    const oldBoot = device.bootId;
    hub.withholdAcks = true; // stored, but the ACKs do not come: the frames stay in flash
    clock.advance(4000);
    device.dropWifi(3000); // and then some are never sent at all
    clock.advance(2000);
    device.powerCut(500);
    hub.withholdAcks = false;
    clock.advance(30_000);
    const stopping = device.stop({ drainMs: 5000 });
    clock.advance(6000);
    await stopping;
    const hellos = ofType(received(hub), 'hello');
    const last = hellos.at(-1);
    expect(last?.resetReason).toBe(ResetReason.POWER_ON);
    expect(last?.bootId).not.toBe(oldBoot);
    expect(last?.timeSynced).toBe(false); // the clock went with the power
    expect(device.stats.framesRestored).toBeGreaterThan(4);
    expect(device.outboxDepth).toBe(0);
    expectExactlyOnce(hub, recorder);
    // Sampled (sealed into flash) = acked = stored; only the samples in RAM at the cut are lost.
    const key = (f: RecordedFrame) => `${f.message.bootId}/${f.message.seq}`;
    expect(recorder.sampledFrames.map(key).sort()).toEqual((recorder.ackedFrames.get(ID) ?? []).map(key).sort());
    const lost = recorder.lostFrames.flatMap(readingsOf).map((r) => `${r.channel}|${r.deviceTimeMs}`);
    const stored = new Set(storedKeys(hub));
    for (const r of recorder.lostFrames.flatMap(readingsOf)) expect(stored.has(expectedKey(hub, r))).toBe(false);
    expect(device.stats.readingsLostOnCrash).toBe(lost.length);
  });

  it('power-cut scenario over two fleets on one state directory: every sampled reading stored once', async () => {
    const clock = new FakeClock();
    const hub = new FakeHub({ clock });
    const recorder = new SamplingRecorder();
    const ids = fleetDeviceIds(4);
    const fleet = () =>
      new Fleet({
        url: 'ws://fake/v1/device',
        devices: 4,
        tokens: new Map(ids.map((id) => [id, id])),
        rate: 2,
        scenario: 'power-cut',
        scenarioParams: { powerCutMeanMs: 4000, powerOffMs: [100, 1500] },
        stateDir: dir.path,
        clock,
        connector: hub.loopback(3),
        recorder,
      });
    const one = fleet();
    one.start();
    clock.advance(60_000);
    const first = await one.stop({ drainMs: 0 }); // frames in flight stay in the state directory
    expect(first.totals.powerCuts).toBeGreaterThan(20);
    expect(first.outboxDepth).toBeGreaterThan(0);
    const two = fleet();
    two.start();
    clock.advance(60_000);
    const stopping = two.stop({ drainMs: 20_000 });
    clock.advance(25_000);
    const second = await stopping;
    expect(second.totals.framesRestored).toBeGreaterThanOrEqual(first.outboxDepth);
    expect(second.outboxDepth).toBe(0);
    for (const id of ids) {
      expectExactlyOnce(hub, recorder, id);
      const sampled = recorder.sampledFrames.filter((f) => f.deviceId === id).flatMap(readingsOf);
      expect(storedKeys(hub, id).sort()).toEqual(sampled.map((r) => expectedKey(hub, r)).sort());
    }
  });
});

describe('FileBoardStore', () => {
  const frame = (seq: number) =>
    encodeFrame({
      type: 'telemetry',
      unsynced: false,
      bootId: 7,
      seq,
      descriptorHash: 1,
      baseTime: 1_700_000_000_000 + seq,
      blocks: [{ channel: 0, valueType: 2, deltasMs: [0], values: [seq % 256] }],
    });
  const seqs = (frames: Uint8Array[]) => frames.map((f) => (decodeFrame(f) as { seq: number }).seq);

  it('reloads frames and drops in order, and cuts a torn last record', () => {
    const s = new FileBoardStore(dir.path, ID);
    for (let i = 1; i <= 5; i++) s.appendFrame(frame(i));
    s.dropFrames(2);
    s.appendFrame(frame(6));
    s.close();
    const log = join(dir.path, ID, 'outbox.log');
    const whole = frame(7);
    appendFileSync(log, Buffer.concat([Buffer.from([0x46, whole.length, 0, 0, 0]), whole.subarray(0, 9)]));
    const t = new FileBoardStore(dir.path, ID);
    expect(seqs(t.readOutbox())).toEqual([3, 4, 5, 6]);
    t.appendFrame(frame(8)); // follows the last good record
    t.close();
    const u = new FileBoardStore(dir.path, ID);
    expect(seqs(u.readOutbox())).toEqual([3, 4, 5, 6, 8]);
    u.close();
  });

  it('compacts: a long run of appends and acks keeps the log near its live size', () => {
    const s = new FileBoardStore(dir.path, ID);
    for (let i = 1; i <= 20_000; i++) {
      s.appendFrame(frame(i));
      if (i % 4 === 0) s.dropFrames(4);
    }
    s.appendFrame(frame(20_001));
    s.close();
    expect(statSync(join(dir.path, ID, 'outbox.log')).size).toBeLessThan(600 * 1024);
    const t = new FileBoardStore(dir.path, ID);
    expect(seqs(t.readOutbox())).toEqual([20_001]);
    t.close();
  });

  it('the memory store behaves the same for the device', () => {
    const m = new MemoryBoardStore();
    for (let i = 1; i <= 3; i++) m.appendFrame(frame(i));
    m.dropFrames(1);
    expect(seqs(m.readOutbox())).toEqual([2, 3]);
  });
});

describe('deep sleep', () => {
  it('samples on every wake into flash, connects only to flush every N samples, sleeps in between', async () => {
    const recorder = new SamplingRecorder();
    const { clock, hub, device } = rig({
      recorder,
      sampleIntervalMs: 2000,
      deepSleep: { flushEverySamples: 15, flushIntervalMs: 3_600_000, awakeGraceMs: 500 },
    });
    const states: string[] = [];
    device.on('state', (s) => states.push(s));
    device.start();
    clock.advance(10 * 60_000);
    // 300 wakes, a flush at the first wake and then every 15: 20 sessions, each ending in sleep.
    const hellos = ofType(received(hub), 'hello');
    expect(hellos.length).toBeGreaterThanOrEqual(19);
    expect(hellos.length).toBeLessThanOrEqual(21);
    expect(new Set(hellos.map((h) => h.bootId)).size).toBe(1); // sleep keeps the boot (RTC memory)
    expect(device.stats.flushes).toBe(hellos.length);
    expect(device.stats.awakeMs).toBeLessThan(0.05 * 10 * 60_000);
    expect(device.state).toBe('sleeping');
    // Samples taken asleep carry the synced wall clock (kept by the RTC): the hub stores them at their
    // sampling times, not at the flush.
    const tel = ofType(received(hub), 'telemetry');
    expect(tel.filter((t) => !t.unsynced).length).toBeGreaterThan(250);
    expect(device.stats.reconnects).toBe(0);
    await Promise.resolve();
    const stopping = device.stop({ drainMs: 10_000 });
    clock.advance(11_000);
    await stopping;
    expectExactlyOnce(hub, recorder);
    expect(recorder.sampledFrames.flatMap(readingsOf).length).toBe(storedKeys(hub).length);
    expect(states.filter((s) => s === 'sleeping').length).toBeGreaterThanOrEqual(hellos.length);
  });

  it('flushes after M minutes when fewer than N samples came, and loses nothing to a power cut while asleep', async () => {
    const recorder = new SamplingRecorder();
    const { clock, hub, device } = rig({
      recorder,
      sampleIntervalMs: 30_000,
      deepSleep: { flushEverySamples: 1000, flushIntervalMs: 5 * 60_000 },
    });
    device.start();
    clock.advance(31 * 60_000);
    const hellos = ofType(received(hub), 'hello');
    expect(hellos.length).toBeGreaterThanOrEqual(6); // the first wake, then every 5 min
    expect(hellos.length).toBeLessThanOrEqual(8);
    expect(device.state).toBe('sleeping');
    clock.advance(60_000); // two more wakes asleep
    device.powerCut(1000);
    clock.advance(10 * 60_000);
    expect(device.stats.readingsLostOnCrash).toBe(0); // each wake's samples were already in flash
    expect(device.stats.powerCuts).toBe(1);
    const stopping = device.stop({ drainMs: 10_000 });
    clock.advance(11_000);
    await stopping;
    expect(device.outboxDepth).toBe(0);
    expectExactlyOnce(hub, recorder);
    const sampled = recorder.sampledFrames.flatMap(readingsOf).map((r) => expectedKey(hub, r));
    expect(storedKeys(hub).sort()).toEqual(sampled.sort());
  });

  it('gives up a flush after 30 s awake, or at once when it cannot connect: the frames wait in flash', () => {
    const { clock, hub, device } = rig({
      sampleIntervalMs: 5000,
      deepSleep: { flushEverySamples: 3, flushIntervalMs: 3_600_000 },
    });
    hub.withholdAcks = true; // a hub that takes frames but never acknowledges them
    device.start();
    clock.advance(2000); // the first wake flushes
    expect(device.state).toBe('online');
    clock.advance(29_000);
    expect(device.state).not.toBe('sleeping');
    clock.advance(2000);
    expect(device.state).toBe('sleeping');
    expect(device.stats.flushesIncomplete).toBe(1);
    expect(device.stats.flushes).toBe(0);
    expect(device.outboxDepth).toBeGreaterThan(0);
    hub.withholdAcks = false;
    clock.advance(16_000); // the flush after three more wakes delivers them
    expect(device.stats.flushes).toBe(1);
    expect(hub.device(ID).stored.length).toBe(device.stats.framesGenerated - device.outboxDepth);

    // A hub that cannot be reached: one attempt per due flush, then straight back to sleep.
    const attempts: number[] = [];
    const refusing: Connector = (_req, handlers) => {
      attempts.push(clock.now());
      clock.setTimeout(() => handlers.close({ code: 1006, reason: '', opened: false, error: 'ECONNREFUSED' }), 1);
      return { send() {}, bufferedAmount: 0, ping() {}, close() {}, terminate() {}, blackhole() {} };
    };
    const offline = board(clock, hub, {
      connector: refusing,
      sampleIntervalMs: 5000,
      deepSleep: { flushEverySamples: 3, flushIntervalMs: 3_600_000 },
    });
    offline.start();
    clock.advance(61_000); // 12 wakes: the first, then every third
    expect(attempts.length).toBe(4);
    expect(offline.state).toBe('sleeping');
    expect(offline.stats.flushesIncomplete).toBe(4);
    expect(offline.outboxDepth).toBe(12);
  });
});
