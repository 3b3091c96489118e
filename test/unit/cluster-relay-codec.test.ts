// The relay's batch codec (server/cluster/relay-codec.ts): every record kind survives a round trip,
// a full batch refuses the record that does not fit (and stays valid), and every cut or corrupted
// batch is refused with RelayCodecError rather than read past its end.
import { describe, expect, it } from 'vitest';
import { BatchWriter, decodeBatch, RelayCodecError } from '../../server/cluster/relay-codec.ts';
import { encodeFrame } from '../../server/codec/index.ts';
import { TEST_CHANNELS, telemetry } from '../integration/ingest-device-client.ts';

const frame = encodeFrame(telemetry(7, 42, 1_716_200_000_000));
const descriptors = encodeFrame({ type: 'descriptors', channels: TEST_CHANNELS });

function fullBatch(): Buffer {
  const w = new BatchWriter(16 * 1024);
  w.begin('hub-a', 9);
  expect(w.addDescriptors('esp-1', descriptors)).toBe(true);
  expect(w.addFrame('esp-1', 1_716_200_000_123.5, -42_000, 12, frame)).toBe(true);
  expect(w.addOnline('esp-2', 1_716_200_000_200, 0xdeadbeef, true, 'fw-1.2.0 ✓')).toBe(true);
  expect(w.addOffline('esp-3', 1_716_200_000_300, 'heartbeat')).toBe(true);
  expect(
    w.addCommand({
      deviceId: 'esp-2',
      commandId: 0xfffffff0,
      name: 'identify',
      state: 'done',
      status: 0,
      message: 'blinking',
      atMs: 1_716_200_000_400,
    }),
  ).toBe(true);
  expect(w.addCommand({ deviceId: 'esp-2', commandId: 5, name: 'reboot', state: 'sent', atMs: 1 })).toBe(true);
  expect(w.addAlert('{"rule":"offline","device":"esp-3","seq":4}')).toBe(true);
  expect(w.records).toBe(7);
  return w.take();
}

describe('relay batch codec', () => {
  it('round-trips every record kind, frames byte for byte', () => {
    const batch = decodeBatch(fullBatch());
    expect(batch.instanceId).toBe('hub-a');
    expect(batch.seq).toBe(9);
    const [d, f, on, off, cmd, cmd2, alert] = batch.records;
    expect(d).toMatchObject({ kind: 'descriptors', deviceId: 'esp-1' });
    expect(Buffer.from((d as { frame: Uint8Array }).frame).equals(Buffer.from(descriptors))).toBe(true);
    expect(f).toMatchObject({
      kind: 'frame',
      deviceId: 'esp-1',
      receivedAtMs: 1_716_200_000_123.5,
      timeOffsetMs: -42_000,
      samples: 12,
    });
    expect(Buffer.from((f as { frame: Uint8Array }).frame).equals(Buffer.from(frame))).toBe(true);
    expect(on).toEqual({
      kind: 'online',
      deviceId: 'esp-2',
      atMs: 1_716_200_000_200,
      bootId: 0xdeadbeef,
      timeSynced: true,
      firmwareVersion: 'fw-1.2.0 ✓',
    });
    expect(off).toEqual({ kind: 'offline', deviceId: 'esp-3', atMs: 1_716_200_000_300, reason: 'heartbeat' });
    expect(cmd).toEqual({
      kind: 'command',
      update: {
        deviceId: 'esp-2',
        commandId: 0xfffffff0,
        name: 'identify',
        state: 'done',
        status: 0,
        message: 'blinking',
        atMs: 1_716_200_000_400,
      },
    });
    // No status and no message stay absent (not 0, not "").
    expect(cmd2).toEqual({
      kind: 'command',
      update: { deviceId: 'esp-2', commandId: 5, name: 'reboot', state: 'sent', atMs: 1 },
    });
    expect(alert).toEqual({ kind: 'alert', json: '{"rule":"offline","device":"esp-3","seq":4}' });
  });

  it('a full batch refuses the record that does not fit and stays a valid batch', () => {
    const w = new BatchWriter(600);
    w.begin('hub-a', 1);
    let added = 0;
    while (w.addFrame('esp-1', 1, 0, 12, frame)) added++;
    expect(added).toBeGreaterThan(0);
    const bytes = w.bytes;
    expect(bytes).toBeLessThanOrEqual(600);
    // A smaller record may still fit; whatever was refused left no partial bytes behind.
    const batch = decodeBatch(w.take());
    expect(batch.records).toHaveLength(added);
    expect(w.addAlert('x'.repeat(1000))).toBe(false);
    expect(w.bytes).toBe(bytes);
    // begin() starts over in the same buffer.
    w.begin('hub-a', 2);
    expect(decodeBatch(w.take()).records).toEqual([]);
  });

  it('long strings are cut at 255 bytes without splitting a character', () => {
    const w = new BatchWriter(4096);
    w.begin('hub-a', 1);
    w.addOffline('esp-1', 1, 'é'.repeat(200)); // 400 bytes of UTF-8
    const r = decodeBatch(w.take()).records[0] as { reason: string };
    expect(r.reason).toBe('é'.repeat(127));
  });

  it('refuses every truncation of a valid batch, and foreign bytes', () => {
    const good = fullBatch();
    for (let n = 0; n < good.length; n++) {
      const cut = good.subarray(0, n);
      let outcome: string;
      try {
        const b = decodeBatch(cut);
        // A cut exactly between records is a shorter valid batch: it must then hold fewer records.
        outcome = b.records.length < 7 ? 'shorter' : 'whole';
      } catch (err) {
        expect(err).toBeInstanceOf(RelayCodecError);
        outcome = 'refused';
      }
      expect(outcome).not.toBe('whole');
    }
    expect(() => decodeBatch(Buffer.from('{"json":true}'))).toThrow(RelayCodecError);
    const badVersion = Buffer.from(good);
    badVersion[2] = 2;
    expect(() => decodeBatch(badVersion)).toThrow(/version 2/);
    const badKind = Buffer.concat([good, Buffer.from([99])]);
    expect(() => decodeBatch(badKind)).toThrow(/unknown record kind 99/);
  });

  it('refuses non-finite times and unknown command states', () => {
    const w = new BatchWriter(4096);
    w.begin('hub-a', 1);
    w.addOffline('esp-1', Number.NaN, 'closed');
    expect(() => decodeBatch(w.take())).toThrow(/finite/);
    w.begin('hub-a', 1);
    w.addCommand({ deviceId: 'd', commandId: 1, name: 'n', state: 'done', atMs: 1 });
    const b = w.take();
    // header ("CR", version, reserved, str8 "hub-a", u32 seq), then kind, str8 "d", u32 id, str8 "n": the state byte
    const stateAt = 4 + 6 + 4 + 1 + 2 + 4 + 2;
    b[stateAt] = 9;
    expect(() => decodeBatch(b)).toThrow(/command state/);
  });
});
