// ACK pacing (server/transport/device-session.ts): while the hub streams (≥ ACK_HOLD_MIN_RATE frames/s
// made durable), a session's cumulative ACK waits until it covers ACK_HOLD_FRAMES frames or its oldest
// frame has been durable for ACK_HOLD_MAX_MS; below that rate every commit's ACK goes out at once.
// Real sessions; the test commits frames (durable) and moves the sessions' clock.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { decodeFrame } from '../../server/codec/index.ts';
import { createMetrics } from '../../server/metrics/index.ts';
import { ACK_HOLD_FRAMES, ACK_HOLD_MAX_MS, ACK_HOLD_MIN_RATE } from '../../server/transport/device-session.ts';
import { sessionHub, type TestLink, telemetry } from './session-fixture.ts';

let clock: number;
let hub: ReturnType<typeof sessionHub>;

/** The (boot, seq) of every ACK a link was sent, in order. */
function acks(link: TestLink): number[] {
  return link.sent.flatMap((bytes) => {
    const m = decodeFrame(bytes);
    return m.type === 'ack' ? [m.seq] : [];
  });
}

/** One commit's callbacks run together; the ACK flush follows in a microtask. */
async function commitAll(): Promise<void> {
  hub.commit();
  await Promise.resolve();
}

/** Makes the hub stream: 1.5 × ACK_HOLD_MIN_RATE frames made durable within one second. */
async function stream(): Promise<void> {
  const { link } = hub.connect('busy');
  let seq = 0;
  await commitAll(); // opens the rate window
  const frames = Math.ceil(1.5 * ACK_HOLD_MIN_RATE);
  for (let batch = 0; batch < frames; batch += 250) {
    for (let i = 0; i < 250; i++) link.deliver(telemetry(++seq));
    await commitAll();
  }
  clock += 1000;
  link.deliver(telemetry(++seq));
  await commitAll();
}

beforeEach(() => {
  clock = 1_000_000;
  hub = sessionHub({ metrics: createMetrics(), now: () => clock });
});

afterEach(() => {
  vi.useRealTimers();
});

describe('ACK pacing', () => {
  it('below the streaming rate, every commit is acknowledged at once', async () => {
    const { link } = hub.connect('slow');
    for (let seq = 1; seq <= 3; seq++) {
      link.deliver(telemetry(seq));
      await commitAll();
    }
    expect(acks(link)).toEqual([1, 2, 3]);
  });

  it('while streaming, one ACK covers ACK_HOLD_FRAMES frames that became durable one commit at a time', async () => {
    await stream();
    const { link } = hub.connect('steady');
    for (let seq = 1; seq <= 2 * ACK_HOLD_FRAMES; seq++) {
      link.deliver(telemetry(seq));
      clock += 10;
      await commitAll();
    }
    expect(acks(link)).toEqual([ACK_HOLD_FRAMES, 2 * ACK_HOLD_FRAMES]);
  });

  it('while streaming, a device that stops sending gets its ACK within ACK_HOLD_MAX_MS (+ one sweep)', async () => {
    vi.useFakeTimers(); // the hub's sweep timer, armed at its first held ACK, is then a fake one
    await stream();
    const { link } = hub.connect('last');
    link.deliver(telemetry(1));
    await commitAll();
    expect(acks(link)).toEqual([]); // held: it covers one frame
    clock += ACK_HOLD_MAX_MS - 1;
    await vi.advanceTimersByTimeAsync(ACK_HOLD_MAX_MS - 1);
    expect(acks(link)).toEqual([]);
    clock += 1;
    await vi.advanceTimersByTimeAsync(100); // the next sweep
    expect(acks(link)).toEqual([1]);
  });

  it('a replaying device (its window full) is acknowledged at the commit that makes its frames durable', async () => {
    await stream();
    const { link } = hub.connect('replay');
    for (let seq = 1; seq <= 8; seq++) link.deliver(telemetry(seq));
    await commitAll();
    expect(acks(link)).toEqual([8]);
  });

  it("a held ACK goes out before the session's close (nothing the device could free is left unacknowledged)", async () => {
    await stream();
    const { link, session } = hub.connect('closing');
    link.deliver(telemetry(1));
    link.deliver(telemetry(2));
    await commitAll();
    expect(acks(link)).toEqual([]);
    session.end('SHUTTING_DOWN', 'hub stopping');
    expect(acks(link)).toEqual([2]);
    expect(hub.order).toContain('close closing');
  });

  it('the hub stops holding once the rate falls (measured over the next second)', async () => {
    await stream();
    const { link } = hub.connect('after');
    clock += 5000; // a quiet period: the next frame closes a window with almost no frames
    link.deliver(telemetry(1));
    await commitAll();
    link.deliver(telemetry(2));
    await commitAll();
    expect(acks(link)).toEqual([1, 2]);
  });
});
