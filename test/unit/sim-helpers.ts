/**
 * Shared by the simulator's unit tests: a device on the fake hub and fake clock, the hub's view of
 * what it received, and the exactly-once check of acked readings against stored ones.
 */
import { expect } from 'vitest';
import { FakeClock } from '../../firmware-sim/clock.ts';
import { type DeviceOptions, SimDevice } from '../../firmware-sim/device.ts';
import { FakeHub } from '../../firmware-sim/fake-hub.ts';
import { MemoryRecorder, type RecordedReading } from '../../firmware-sim/recorder.ts';
import { decodeFrame, type Message } from '../../server/codec/index.ts';

export const ID = 'sim-0001';

export interface Rig {
  clock: FakeClock;
  hub: FakeHub;
  recorder: MemoryRecorder;
  device: SimDevice;
}

export function rig(options: Partial<DeviceOptions> = {}, hubTokens?: Map<string, string>): Rig {
  const clock = new FakeClock();
  const hub = new FakeHub({ clock, ...(hubTokens ? { tokens: hubTokens } : {}) });
  const recorder = new MemoryRecorder();
  const device = board(clock, hub, { recorder, ...options });
  return { clock, hub, recorder, device };
}

/** Board `ID` on an existing fake hub and clock (e.g. a second "run" of the same board). */
export function board(clock: FakeClock, hub: FakeHub, options: Partial<DeviceOptions> = {}): SimDevice {
  return new SimDevice({
    id: ID,
    token: 'token-1',
    url: 'ws://fake/v1/device',
    seed: 42,
    index: 1,
    clock,
    connector: hub.loopback(3),
    ...options,
  });
}

/** Messages the hub received from the device, decoded (malformed ones skipped). */
export function received(hub: FakeHub, deviceId = ID): Message[] {
  const out: Message[] = [];
  for (const r of hub.received) {
    if (r.deviceId !== deviceId) continue;
    try {
      out.push(decodeFrame(r.bytes));
    } catch {
      // deliberately broken frames
    }
  }
  return out;
}

export const ofType = <T extends Message['type']>(ms: Message[], type: T) =>
  ms.filter((m): m is Extract<Message, { type: T }> => m.type === type);

/** An acked reading as the hub must have stored it: unsynced times mapped with the hub's boot offset. */
export function expectedKey(hub: FakeHub, r: RecordedReading): string {
  let t = r.deviceTimeMs;
  if (r.unsynced) {
    const offset = hub.device(r.deviceId).boots.get(r.bootId)?.offsetMs;
    if (offset === null || offset === undefined) throw new Error(`no offset for boot ${r.bootId}`);
    t += offset;
  }
  return `${r.deviceId}|${r.channel}|${t}|${r.value}`;
}

export function storedKeys(hub: FakeHub, deviceId = ID): string[] {
  return hub.device(deviceId).readings.map((r) => `${r.deviceId}|${r.channel}|${r.timeMs}|${r.value}`);
}

/** Every acked reading is stored exactly once, and the hub stores nothing else. */
export function expectExactlyOnce(hub: FakeHub, recorder: MemoryRecorder, deviceId = ID): void {
  const stored = storedKeys(hub, deviceId).sort();
  const acked = recorder.ackedReadings(deviceId).map((r) => expectedKey(hub, r));
  expect(new Set(stored).size).toBe(stored.length);
  expect(stored).toEqual(acked.sort());
}
