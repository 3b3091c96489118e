/**
 * The simulated device against the in-memory fake hub on a fake clock: protocol behaviour
 * (docs/protocol.md) checked frame by frame, deterministically, without sockets or real time.
 */
import { describe, expect, it } from 'vitest';
import { type Entropy, seededEntropy } from '../../firmware-sim/boot-id.ts';
import { FakeClock } from '../../firmware-sim/clock.ts';
import { MALFORMED_KINDS, type MalformedKind, SimDevice } from '../../firmware-sim/device.ts';
import { FakeHub } from '../../firmware-sim/fake-hub.ts';
import { Fleet, fleetDeviceIds } from '../../firmware-sim/fleet.ts';
import type { Connector } from '../../firmware-sim/link.ts';
import { MemoryRecorder } from '../../firmware-sim/recorder.ts';
import { Rng } from '../../firmware-sim/rng.ts';
import {
  type Command,
  CommandStatus,
  decodeFrame,
  type Hello,
  type Message,
  ResetReason,
  type Telemetry,
  ValueType,
} from '../../server/codec/index.ts';
import { ERRORS } from '../../server/errors.ts';
import { expectExactlyOnce, ID, ofType, received, rig } from './sim-helpers.ts';

describe('determinism', () => {
  /** `entropy`: boot ids draw on the OS CSPRNG unless a test injects a seeded stream. */
  function run(seed: number, entropy: Entropy | null = seededEntropy(new Rng(seed))): string[] {
    const clock = new FakeClock();
    const hub = new FakeHub({ clock });
    const ids = fleetDeviceIds(3);
    const fleet = new Fleet({
      url: 'ws://fake/v1/device',
      devices: 3,
      tokens: new Map(ids.map((id) => [id, id])),
      seed,
      rate: 2,
      scenario: 'flaky-wifi',
      scenarioParams: { flakyMeanUpMs: 8000, flakyOutageMs: [200, 3000] },
      clock,
      connector: hub.loopback(4),
      device: { backoff: { initialMs: 200, maxMs: 2000 }, ...(entropy ? { entropy } : {}) },
    });
    fleet.start();
    clock.advance(60_000);
    hub.sendCommand('sim-0002', 'reboot');
    clock.advance(60_000);
    return hub.received.map((r) => `${r.deviceId} ${Buffer.from(r.bytes).toString('hex')}`);
  }

  it('gives the same frames, byte for byte, for the same seed and clock', () => {
    const a = run(42);
    const b = run(42);
    expect(b).toEqual(a);
    // Not hollow: the run covers boots, unsynced and synced telemetry, reconnects and a reboot.
    const messages = a.map((line) => decodeFrame(Buffer.from(line.split(' ')[1] as string, 'hex')));
    const tel = ofType(messages, 'telemetry');
    expect(tel.length).toBeGreaterThan(500);
    expect(tel.some((t) => t.unsynced)).toBe(true);
    expect(tel.some((t) => !t.unsynced)).toBe(true);
    const hellos = ofType(messages, 'hello');
    expect(hellos.length).toBeGreaterThan(6); // reconnects after Wi-Fi drops
    expect(new Set(hellos.map((h) => h.bootId)).size).toBe(4); // 3 boards + one reboot
  });

  it('gives different frames for a different seed', () => {
    const a = run(42);
    const b = run(43);
    expect(b).not.toEqual(a);
  });

  it('never repeats a boot id for the same seed: the seed drives sensor values, not boots', () => {
    const decode = (lines: string[]) =>
      lines.map((line) => decodeFrame(Buffer.from(line.split(' ')[1] as string, 'hex')));
    const a = decode(run(42, null));
    const b = decode(run(42, null));
    const boots = (ms: Message[]) => new Set(ofType(ms, 'hello').map((h) => h.bootId));
    expect(boots(a).size).toBe(4);
    expect(boots(b).size).toBe(4);
    for (const id of boots(b)) expect(boots(a).has(id)).toBe(false);
    // Same values at the same times: only the boot ids differ.
    const strip = (ms: Message[]) => ofType(ms, 'telemetry').map((t) => JSON.stringify({ ...t, bootId: 0 }));
    expect(strip(b)).toEqual(strip(a));
  });
});

describe('time sync', () => {
  it('sends UNSYNCED uptime-based frames until WELCOME gives the time, then Unix time', () => {
    const tokens = new Map<string, string>(); // the hub refuses the board at first (401)
    const { clock, hub, recorder, device } = rig({ backoff: { initialMs: 1000, maxMs: 2000 } }, tokens);
    device.start();
    clock.advance(10_000);
    expect(device.stats.handshakeRefusals).toBeGreaterThan(0);
    expect(device.stats.refusalsByStatus['401']).toBe(device.stats.handshakeRefusals);
    expect(device.isSynced).toBe(false);
    tokens.set(ID, 'token-1');
    clock.advance(10_000);
    expect(device.isSynced).toBe(true);

    const tel = ofType(received(hub), 'telemetry');
    const unsynced = tel.filter((t) => t.unsynced);
    const synced = tel.filter((t) => !t.unsynced);
    expect(unsynced.length).toBeGreaterThanOrEqual(8);
    expect(synced.length).toBeGreaterThan(3);
    // Uptime base: small numbers, growing; synced base: the wall clock.
    for (const t of unsynced) expect(t.baseTime).toBeLessThan(20_000);
    for (const t of synced) expect(Math.abs(t.baseTime - clock.now())).toBeLessThan(20_000);
    // The sync happens between frames: all unsynced frames come first within the boot.
    expect(tel.findIndex((t) => !t.unsynced)).toBe(unsynced.length);

    const hello = ofType(received(hub), 'hello')[0] as Hello;
    expect(hello.timeSynced).toBe(false);
    // Everything buffered at HELLO was unsynced; the samples pending at WELCOME make one more frame.
    expect(hello.bufferedFrames).toBeGreaterThanOrEqual(unsynced.length - 1);
    expect(hello.bufferedFrames).toBeLessThanOrEqual(unsynced.length);
    // The hub mapped the unsynced samples to wall time; together with the synced ones: exactly once.
    expectExactlyOnce(hub, recorder);
  });
});

describe('descriptors', () => {
  it('are sent once, skipped when WELCOME says known, and re-sent on UNKNOWN_DESCRIPTORS', () => {
    const { clock, hub, recorder, device } = rig();
    device.start();
    clock.advance(5000);
    const count = () => ofType(received(hub), 'descriptors').length;
    expect(count()).toBe(1);

    device.dropWifi(1000); // reconnect: the hub knows the set
    clock.advance(5000);
    expect(ofType(received(hub), 'hello')).toHaveLength(2);
    expect(count()).toBe(1);

    hub.forgetDescriptors(); // the hub lost them: the next TELEMETRY gets UNKNOWN_DESCRIPTORS
    clock.advance(5000);
    expect(device.stats.errorsByCode.UNKNOWN_DESCRIPTORS).toBe(1);
    expect(count()).toBe(2);
    expect(device.stats.framesReplayed).toBeGreaterThan(0);

    hub.forgetDescriptors();
    device.dropWifi(500); // WELCOME says unknown: sent before the replay
    clock.advance(5000);
    expect(count()).toBe(3);

    const id = hub.sendCommand(ID, 'send_descriptors');
    clock.advance(1000);
    expect(count()).toBe(4);
    expect(hub.device(ID).commandResults.get(id as number)?.status).toBe(CommandStatus.OK);

    const p = device.stop({ drainMs: 5000 });
    clock.advance(6000);
    return p.then(() => {
      expect(device.outboxDepth).toBe(0);
      expect(hub.device(ID).gaps).toBe(0);
      expectExactlyOnce(hub, recorder);
    });
  });
});

describe('outbox', () => {
  it('is bounded: drops the oldest, counts it, reports it in HELLO, and never claims it stored', async () => {
    const tokens = new Map<string, string>();
    const { clock, hub, recorder, device } = rig(
      { outboxFrames: 10, backoff: { initialMs: 1000, maxMs: 1000 }, bootDelayMs: [500, 500] },
      tokens,
    );
    device.start();
    clock.advance(30_000); // ~30 frames at 1 frame/s, no connection
    expect(device.outboxDepth).toBe(10);
    const dropped = device.stats.framesDropped;
    expect(dropped).toBeGreaterThanOrEqual(18);
    expect(device.stats.framesDroppedUnsent).toBe(dropped);

    tokens.set(ID, 'token-1');
    clock.advance(3000);
    const hello = ofType(received(hub), 'hello')[0] as Hello;
    expect(hello.droppedFrames).toBeGreaterThanOrEqual(dropped);
    expect(hello.droppedFrames).toBeLessThanOrEqual(device.stats.framesDropped);
    expect(hello.bufferedFrames).toBeGreaterThanOrEqual(10);

    const p = device.stop({ drainMs: 5000 });
    clock.advance(6000);
    await p;
    // The oldest frames (seq 1..dropped) never reached the hub: it saw a gap, stored the rest.
    const seqs = hub.device(ID).stored.map((r) => r.seq);
    expect(Math.min(...seqs)).toBe(device.stats.framesDropped + 1);
    expect(hub.device(ID).gaps).toBe(device.stats.framesDropped);
    const droppedKeys = new Set(
      recorder.droppedReadings({ unsentOnly: true }).map((r) => `${r.channel}|${r.deviceTimeMs}`),
    );
    expect(droppedKeys.size).toBeGreaterThan(0);
    expect(recorder.droppedReadings()).toHaveLength(device.stats.readingsDropped);
    expectExactlyOnce(hub, recorder);
  });

  it('is freed only by ACKs: without them it grows; WELCOME last-ack or an ACK after a resend frees it', async () => {
    const { clock, hub, recorder, device } = rig({ ackTimeoutMs: 5000, backoff: { initialMs: 500, maxMs: 500 } });
    device.start();
    clock.advance(3000);
    hub.withholdAcks = true;
    clock.advance(4000);
    const withheld = device.outboxDepth;
    expect(withheld).toBeGreaterThanOrEqual(3); // stored by the hub, but not acknowledged: kept
    expect(device.stats.framesSent).toBe(device.stats.framesGenerated);

    device.dropWifi(300); // on reconnect, WELCOME's last ack covers what the hub stored
    clock.advance(1500);
    expect(device.state).toBe('online');
    expect(device.stats.framesAcked).toBeGreaterThanOrEqual(withheld);
    expect(hub.device(ID).duplicates).toBe(0); // freed without sending them again

    clock.advance(6000); // still no ACK: after 5 s the frames in flight are sent again
    expect(device.stats.ackTimeouts).toBeGreaterThanOrEqual(1);
    expect(device.stats.framesReplayed).toBeGreaterThan(0);
    expect(hub.device(ID).duplicates).toBeGreaterThan(0); // the hub deduplicates [PROTO-3.4.2]
    hub.withholdAcks = false;
    const p = device.stop({ drainMs: 3000 });
    clock.advance(4000);
    await p;
    expect(device.stats.framesAcked).toBe(device.stats.framesGenerated);
    expectExactlyOnce(hub, recorder);
  });

  it('on STORAGE_FULL waits, replays from the refused frame, and still takes ACKs that arrive after the ERROR', async () => {
    const clock = new FakeClock();
    const hub = new FakeHub({ clock, ackDelayMs: 40 }); // commits take 40 ms; errors are immediate
    const recorder = new MemoryRecorder();
    const device = new SimDevice({
      id: ID,
      token: 't',
      url: 'ws://x',
      seed: 3,
      index: 1,
      clock,
      connector: hub.loopback(2),
      recorder,
      sampleIntervalMs: 10,
      ticksPerFrame: 1, // 100 frames/s: several in flight when the hub refuses one
      storageFullRetryMs: 2000,
    });
    device.start();
    clock.advance(3000);
    hub.refuseNext = 1;
    clock.advance(500);
    expect(device.stats.errorsByCode.STORAGE_FULL).toBe(1);
    expect(hub.errors.map((e) => e.code)).toEqual(['STORAGE_FULL']);
    // The ACKs of frames committed before the refusal came after the ERROR: they still count.
    expect(device.stats.acksUnknown).toBe(0);
    const during = device.stats.framesSent;
    clock.advance(1000);
    expect(device.stats.framesSent).toBe(during); // paused
    clock.advance(3000);
    const p = device.stop({ drainMs: 3000 });
    clock.advance(4000);
    await p;
    expect(device.outboxDepth).toBe(0);
    expect(hub.device(ID).duplicates).toBe(0); // the replay started at the refused frame
    expect(hub.device(ID).gaps).toBe(0);
    expectExactlyOnce(hub, recorder);
  });

  it('replays unacknowledged frames after a reconnect, each stored exactly once', async () => {
    const clock = new FakeClock();
    const hub = new FakeHub({ clock });
    const recorder = new MemoryRecorder();
    // A 120 ms link: frames are in flight when Wi-Fi drops, some stored, their ACKs lost.
    const device = new SimDevice({
      id: ID,
      token: 't',
      url: 'ws://fake/v1/device',
      seed: 7,
      index: 1,
      clock,
      connector: hub.loopback(120),
      recorder,
      sampleIntervalMs: 50,
      ticksPerFrame: 2,
      backoff: { initialMs: 300, maxMs: 300 },
    });
    device.start();
    for (let i = 0; i < 10; i++) {
      clock.advance(2000 + 37 * i);
      device.dropWifi(700);
    }
    const p = device.stop({ drainMs: 5000 });
    clock.advance(6000);
    await p;
    expect(device.stats.framesReplayed).toBeGreaterThan(0);
    expect(device.outboxDepth).toBe(0);
    const seqs = hub.device(ID).stored.map((r) => r.seq);
    expect(seqs).toEqual(seqs.map((_, i) => i + 1)); // 1..n, no gap, no duplicate
    expectExactlyOnce(hub, recorder);
  });

  it('a WELCOME naming an older last ACK than the hub sent (another instance, written behind) frees nothing, re-sends nothing acked, loses nothing', async () => {
    const { clock, hub, recorder, device } = rig({ ackTimeoutMs: 60_000, backoff: { initialMs: 500, maxMs: 500 } });
    device.start();
    clock.advance(5000);
    const acked = device.stats.framesAcked;
    expect(acked).toBeGreaterThanOrEqual(4);
    const boot = device.bootId;
    const ackedSeq = hub.device(ID).lastAck?.seq as number;
    hub.withholdAcks = true; // stored, their ACKs lost with the instance
    clock.advance(3000);
    const unacked = device.outboxDepth;
    expect(unacked).toBeGreaterThanOrEqual(3);
    // The device reconnects to an instance whose shared last ACK is 3 frames behind what it was sent.
    hub.withholdAcks = false;
    hub.device(ID).lastAck = { bootId: boot, seq: ackedSeq - 3 };
    const sentBefore = hub.received.length;
    device.dropWifi(300);
    clock.advance(1500);
    expect(device.state).toBe('online');
    expect(device.stats.ackRegressions).toBe(1);
    const after = hub.received.slice(sentBefore).map((r) => decodeFrame(r.bytes));
    const seqs = ofType(after, 'telemetry').map((t) => t.seq);
    expect(seqs.length).toBeGreaterThanOrEqual(unacked);
    expect(Math.min(...seqs), 'nothing the device had seen acknowledged is sent again').toBe(ackedSeq + 1);
    const p = device.stop({ drainMs: 3000 });
    clock.advance(4000);
    await p;
    expect(device.outboxDepth).toBe(0);
    expect(device.stats.framesAcked).toBe(device.stats.framesGenerated);
    expectExactlyOnce(hub, recorder);
  });
});

describe('commands', () => {
  function commandFrames(hub: FakeHub) {
    return received(hub).filter((m) => m.type === 'command_accepted' || m.type === 'command_result');
  }

  it('reboot: ACCEPTED, RESULT, then a new boot id with seq from 1; both boots stored apart', async () => {
    const { clock, hub, recorder, device } = rig();
    device.start();
    clock.advance(10_000);
    const firstBoot = device.bootId;
    const lastSeqBefore = device.seqNext - 1;
    const id = hub.sendCommand(ID, 'reboot') as number;
    clock.advance(10_000);
    expect(device.bootId).not.toBe(firstBoot);
    expect(device.stats.reboots).toBe(1);

    const messages = received(hub);
    const accepted = messages.findIndex((m) => m.type === 'command_accepted' && m.commandId === id);
    const result = messages.findIndex((m) => m.type === 'command_result' && m.commandId === id);
    const secondHello = messages.findIndex((m, i) => i > result && m.type === 'hello');
    expect(accepted).toBeGreaterThanOrEqual(0);
    expect(result).toBeGreaterThan(accepted);
    expect(secondHello).toBeGreaterThan(result);
    const hello = messages[secondHello] as Hello;
    expect(hello.bootId).toBe(device.bootId);
    expect(hello.resetReason).toBe(ResetReason.SOFTWARE);
    expect(hello.timeSynced).toBe(true); // the RTC keeps time across a software reset
    const newBoot = ofType(messages, 'telemetry').filter((t) => t.bootId === device.bootId);
    expect(newBoot[0]?.seq).toBe(1);
    expect(newBoot[0]?.unsynced).toBe(false);

    // A duplicate command id is not run again; the stored RESULT is repeated.
    hub.sendCommand(ID, 'reboot', [], id);
    clock.advance(2000);
    expect(device.stats.reboots).toBe(1);
    expect(device.stats.commandsDuplicate).toBe(1);
    const results = commandFrames(hub).filter((m) => m.type === 'command_result' && m.commandId === id);
    expect(results).toHaveLength(2);

    const p = device.stop({ drainMs: 3000 });
    clock.advance(4000);
    await p;
    const stored = hub.device(ID).stored;
    const boot1 = stored.filter((r) => r.bootId === firstBoot).map((r) => r.seq);
    expect(boot1.length).toBeGreaterThanOrEqual(lastSeqBefore); // + the frame sealed at the reboot
    expect(boot1).toEqual(boot1.map((_, i) => i + 1));
    expect(stored.filter((r) => r.bootId === device.bootId)[0]?.seq).toBe(1);
    expectExactlyOnce(hub, recorder);
  });

  it('keeps the wall clock across panic/watchdog resets but not across a brownout', () => {
    const { clock, hub, device } = rig();
    device.start();
    clock.advance(5000);
    device.reboot(ResetReason.PANIC, false);
    clock.advance(5000);
    const panicBoot = device.bootId;
    device.reboot(ResetReason.BROWNOUT, false);
    clock.advance(500); // still booting: no WELCOME yet
    expect(device.isSynced).toBe(false);
    clock.advance(5000);
    const hellos = ofType(received(hub), 'hello');
    expect(hellos.map((h) => [h.resetReason, h.timeSynced])).toEqual([
      [ResetReason.POWER_ON, false],
      [ResetReason.PANIC, true],
      [ResetReason.BROWNOUT, false],
    ]);
    const tel = ofType(received(hub), 'telemetry');
    expect(tel.filter((t) => t.bootId === panicBoot).every((t) => !t.unsynced)).toBe(true);
    expect(tel.filter((t) => t.bootId === device.bootId)[0]?.unsynced).toBe(true);
    expect(device.stats.samplesLostOnCrash).toBeGreaterThan(0); // unsealed samples die with a crash
  });

  it('set_sample_interval checks its argument, changes the period and announces new descriptors', () => {
    const { clock, hub, device } = rig();
    device.start();
    clock.advance(5000);
    const bad = hub.sendCommand(ID, 'set_sample_interval', [
      { key: 'interval_ms', valueType: ValueType.U32, value: 5 },
    ]);
    const missing = hub.sendCommand(ID, 'set_sample_interval');
    const good = hub.sendCommand(ID, 'set_sample_interval', [
      { key: 'interval_ms', valueType: ValueType.U32, value: 500 },
    ]);
    clock.advance(10_000);
    const results = hub.device(ID).commandResults;
    expect(results.get(bad as number)?.status).toBe(CommandStatus.BAD_ARGUMENTS);
    expect(results.get(missing as number)?.status).toBe(CommandStatus.BAD_ARGUMENTS);
    expect(results.get(good as number)?.status).toBe(CommandStatus.OK);
    expect(device.currentSampleIntervalMs).toBe(500);
    const descriptors = ofType(received(hub), 'descriptors');
    expect(descriptors).toHaveLength(2);
    expect(descriptors[1]?.channels.find((c) => c.key === 'temperature')?.periodMs).toBe(500);
    const last = ofType(received(hub), 'telemetry').at(-1) as Telemetry;
    expect(last.descriptorHash).toBe(device.currentDescriptorHash);
    const temp = last.blocks.find((b) => b.channel === 0);
    expect(temp?.deltasMs.slice(0, 2)).toEqual([0, 500]);
    expect(hub.errors).toEqual([]);
  });

  it('identify blinks the LED (bool samples on and off); unknown commands are unsupported', () => {
    const { clock, hub, device } = rig();
    device.start();
    clock.advance(3000);
    const id = hub.sendCommand(ID, 'identify', [{ key: 'duration_ms', valueType: ValueType.U32, value: 2000 }]);
    const unknown = hub.sendCommand(ID, 'self_destruct');
    clock.advance(5000);
    expect(hub.device(ID).commandResults.get(id as number)?.status).toBe(CommandStatus.OK);
    expect(hub.device(ID).commandResults.get(unknown as number)?.status).toBe(CommandStatus.UNSUPPORTED);
    expect(hub.device(ID).commandsAccepted).toEqual([id, unknown]);
    const led = hub.device(ID).readings.filter((r) => r.channel === 'led');
    expect(led.map((r) => r.value)).toEqual([true, false]);
    expect((led[1]?.timeMs ?? 0) - (led[0]?.timeMs ?? 0)).toBe(2000);
  });
});

describe('connection handling', () => {
  it('backs off exponentially from 1 s to 60 s with ±20 % jitter [PROTO-5.6]', () => {
    const clock = new FakeClock();
    const attempts: number[] = [];
    const refusing: Connector = (_req, handlers) => {
      attempts.push(clock.now());
      clock.setTimeout(() => handlers.close({ code: 1006, reason: '', opened: false, error: 'ECONNREFUSED' }), 1);
      return {
        send() {},
        bufferedAmount: 0,
        ping() {},
        close() {},
        terminate() {},
        blackhole() {},
      };
    };
    const device = new SimDevice({ id: ID, token: 't', url: 'ws://x', seed: 1, index: 1, clock, connector: refusing });
    device.start();
    clock.advance(15 * 60_000);
    expect(device.stats.connectFailures).toBe(attempts.length);
    const gaps = attempts.slice(1).map((t, i) => t - (attempts[i] as number) - 1);
    expect(gaps.length).toBeGreaterThan(12);
    gaps.forEach((gap, n) => {
      const base = Math.min(60_000, 1000 * 2 ** n);
      expect(gap).toBeGreaterThanOrEqual(base * 0.8);
      expect(gap).toBeLessThanOrEqual(base * 1.2);
    });
    // Jitter really varies (devices do not reconnect in lockstep).
    const capped = gaps.filter((_, n) => 1000 * 2 ** n >= 60_000);
    expect(new Set(capped.map((g) => Math.round(g))).size).toBeGreaterThan(1);
  });

  it('pings the hub and drops a connection whose pongs stop [PROTO-1.5]', () => {
    const clock = new FakeClock();
    const hub = new FakeHub({ clock, heartbeatIntervalSec: 5 });
    let deaf = false;
    const base = hub.loopback(3);
    const deafening: Connector = (req, handlers) =>
      base(req, { ...handlers, pong: () => (deaf ? undefined : handlers.pong()) });
    const device = new SimDevice({ id: ID, token: 't', url: 'ws://x', seed: 1, index: 1, clock, connector: deafening });
    device.start();
    clock.advance(30_000);
    expect(device.stats.heartbeatTimeouts).toBe(0);
    deaf = true;
    clock.advance(11_000);
    expect(device.stats.heartbeatTimeouts).toBe(1);
    deaf = false;
    clock.advance(5000);
    expect(device.state).toBe('online');
    expect(device.stats.sessions).toBe(2);
  });

  it('keeps sending into a silently dead Wi-Fi link until its heartbeat notices, then replays', async () => {
    const clock = new FakeClock();
    const hub = new FakeHub({ clock, heartbeatIntervalSec: 3 });
    const recorder = new MemoryRecorder();
    const device = new SimDevice({
      id: ID,
      token: 't',
      url: 'ws://x',
      seed: 1,
      index: 1,
      clock,
      connector: hub.loopback(3),
      recorder,
      backoff: { initialMs: 500, maxMs: 500 },
    });
    device.start();
    clock.advance(5000);
    const sentBefore = device.stats.framesSent;
    device.dropWifi(4000, true);
    clock.advance(2900);
    expect(device.state).toBe('online'); // it cannot tell yet
    expect(device.stats.framesSent).toBeGreaterThan(sentBefore); // frames into the void
    clock.advance(10_000);
    expect(device.stats.heartbeatTimeouts).toBe(1);
    expect(device.stats.sessions).toBe(2);
    expect(device.stats.framesReplayed).toBeGreaterThan(0);
    expect(device.stats.connectAttempts).toBe(2); // no attempt while Wi-Fi was down
    const p = device.stop({ drainMs: 3000 });
    clock.advance(4000);
    await p;
    expect(hub.device(ID).gaps).toBe(0);
    expectExactlyOnce(hub, recorder);
  });

  it('sends every malformed kind once per connection and records the coded rejection', async () => {
    const { clock, hub, recorder, device } = rig({ backoff: { initialMs: 300, maxMs: 300 } });
    device.start();
    clock.advance(3000);
    for (const kind of Object.keys(MALFORMED_KINDS) as MalformedKind[]) {
      expect(device.sendMalformed(kind)).toBe(true);
      expect(device.sendMalformed(kind)).toBe(false); // nothing more on a poisoned connection
      clock.advance(3000);
      const code = MALFORMED_KINDS[kind];
      expect(hub.errors.at(-1)?.code).toBe(code);
      expect(device.stats.malformedByOutcome[`${kind}→${code}/${ERRORS[code].close}`]).toBe(1);
      expect(device.state).toBe('online'); // reconnected
    }
    expect(device.stats.malformedRejected).toBe(Object.keys(MALFORMED_KINDS).length);
    const p = device.stop({ drainMs: 3000 });
    clock.advance(4000);
    await p;
    expect(hub.device(ID).gaps).toBe(0);
    expectExactlyOnce(hub, recorder);
  });

  it('a stop while a malformed frame awaits its answer waits for it: the totals add up', async () => {
    const { clock, device } = rig({ backoff: { initialMs: 300, maxMs: 300 } });
    device.start();
    clock.advance(3000);
    expect(device.sendMalformed('bad_crc')).toBe(true);
    const p = device.stop({ drainMs: 0 }); // the hub has not answered yet
    clock.advance(3000);
    await p;
    expect(device.stats.malformedSent).toBe(1);
    expect(device.stats.malformedRejected).toBe(1);
    expect(device.stats.malformedUnanswered).toBe(0);
    expect(device.stats.malformedByOutcome[`bad_crc→BAD_CRC/${ERRORS.BAD_CRC.close}`]).toBe(1);
  });
});

describe('fleet on the fake clock', () => {
  it('runs every scenario with acked readings stored exactly once', async () => {
    for (const scenario of ['steady', 'burst', 'flaky-wifi', 'slow-link', 'reboot-storm', 'malformed'] as const) {
      const clock = new FakeClock();
      const hub = new FakeHub({ clock });
      const recorder = new MemoryRecorder();
      const ids = fleetDeviceIds(4);
      const fleet = new Fleet({
        url: 'ws://fake/v1/device',
        devices: 4,
        tokens: new Map(ids.map((id) => [id, id])),
        seed: 5,
        scenario,
        scenarioParams: {
          flakyMeanUpMs: 5000,
          rebootMeanMs: 8000,
          burstEveryMs: 10_000,
          burstLengthMs: 2000,
          malformedDelayMs: [500, 1500],
        },
        clock,
        connector: hub.loopback(3),
        recorder,
        device: { backoff: { initialMs: 200, maxMs: 2000 } },
      });
      fleet.start();
      clock.advance(60_000);
      const done = fleet.stop({ drainMs: 20_000 });
      clock.advance(21_000);
      const summary = await done;
      expect(summary.outboxDepth, scenario).toBe(0);
      expect(summary.totals.framesAcked, scenario).toBeGreaterThan(100);
      for (const id of ids) expectExactlyOnce(hub, recorder, id);
      if (scenario === 'burst') {
        const big = ofType(received(hub, 'sim-0001'), 'telemetry').map((t) => t.blocks[0]?.values.length ?? 0);
        expect(Math.max(...big)).toBeGreaterThan(20);
      }
      if (scenario === 'reboot-storm') expect(summary.totals.reboots).toBeGreaterThan(4);
      if (scenario === 'malformed') expect(summary.totals.malformedRejected).toBeGreaterThan(10);
      if (scenario === 'flaky-wifi') expect(summary.totals.wifiDrops).toBeGreaterThan(10);
    }
  });

  it('clock-skew boards keep their wrong clocks (RTC ahead / behind) or drift after sync', () => {
    const clock = new FakeClock();
    const hub = new FakeHub({ clock });
    const ids = fleetDeviceIds(3);
    const fleet = new Fleet({
      url: 'ws://fake/v1/device',
      devices: 3,
      tokens: new Map(ids.map((id) => [id, id])),
      seed: 9,
      scenario: 'clock-skew',
      clock,
      connector: hub.loopback(3),
    });
    fleet.start();
    clock.advance(60_000);
    const drifting = fleet.devices[1] as SimDevice;
    const error1 = drifting.deviceTimeMs() - clock.now();
    clock.advance(60_000);
    const error2 = drifting.deviceTimeMs() - clock.now();
    const now = clock.now();
    const lastBase = (id: string) => (ofType(received(hub, id), 'telemetry').at(-1) as Telemetry).baseTime;
    const hellos = (id: string) => ofType(received(hub, id), 'hello');
    // Index 1 (sim-0001): RTC behind by hours, synced from boot; index 2: drifting; index 3: RTC ahead.
    expect(hellos('sim-0001')[0]?.timeSynced).toBe(true);
    expect(now - lastBase('sim-0001')).toBeGreaterThan(3_000_000);
    expect(hellos('sim-0003')[0]?.timeSynced).toBe(true);
    expect(lastBase('sim-0003') - now).toBeGreaterThan(500_000);
    expect(hellos('sim-0002')[0]?.timeSynced).toBe(false);
    // Synced from WELCOME, then its oscillator drifts: the error grows with time.
    expect(Math.abs(error1)).toBeGreaterThan(10);
    expect(Math.abs(error2)).toBeGreaterThan(Math.abs(error1));
    expect(Math.abs(error2)).toBeLessThan(5000);
  });
});

describe('commands reach the device in order', () => {
  it('answers ACCEPTED before RESULT for each command', () => {
    const { clock, hub, device } = rig();
    const seen: Command[] = [];
    device.on('command', (c) => seen.push(c));
    device.start();
    clock.advance(3000);
    const ids = [
      hub.sendCommand(ID, 'identify'),
      hub.sendCommand(ID, 'send_descriptors'),
      hub.sendCommand(ID, 'set_sample_interval', [{ key: 'interval_ms', valueType: ValueType.U32, value: 1000 }]),
    ];
    clock.advance(7000);
    expect(seen.map((c) => c.commandId)).toEqual(ids);
    const order = received(hub)
      .filter((m) => m.type === 'command_accepted' || m.type === 'command_result')
      .map((m) => `${m.type}:${(m as { commandId: number }).commandId}`);
    for (const id of ids) {
      expect(order.indexOf(`command_accepted:${id}`)).toBeLessThan(order.indexOf(`command_result:${id}`));
    }
  });
});
