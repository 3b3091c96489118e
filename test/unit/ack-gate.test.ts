/**
 * ACK_DURABILITY=influx (server/transport/ack-gate.ts): the gate releases a frame for its ACK only
 * once the forwarder's confirmed offset covers it. Driven through the real forwarder and the real
 * influxdb-client against the fake write endpoint of forwarder-fakes.ts (an HTTP server on loopback),
 * so confirmations come from real answers arriving out of order; the gate's other rules (WELCOME's
 * last ACK, the budget bytes it holds) against a scripted confirmation source.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics, type Metrics } from '../../server/metrics/index.ts';
import { type OpenDeadLetterStore, openDeadLetterStore } from '../../server/storage/dead-letter.ts';
import type { Sleep } from '../../server/storage/influx/delivery.ts';
import { createInfluxForwarder, type InfluxForwarder } from '../../server/storage/influx/forwarder.ts';
import { appendEntryLines } from '../../server/storage/influx/line-protocol.ts';
import { type AckWaiter, type ConfirmationSource, InfluxAckGate } from '../../server/transport/ack-gate.ts';
import { FakeInflux, influxConfig, MemoryLog, telemetryFrame, until } from './forwarder-fakes.ts';

const T0 = Date.UTC(2024, 0, 3, 12);

/** A session stand-in: records what the gate released, in order, and the budget it gave back. */
class Waiter implements AckWaiter {
  released: { bootId: number; seq: number }[] = [];
  returnedCost = 0;
  constructor(readonly deviceId: string) {}
  confirmed(bootId: number, seq: number, cost: number): void {
    this.released.push({ bootId, seq });
    this.returnedCost += cost;
  }
  /** The cumulative ACK the session would send now. */
  get ack() {
    return this.released.at(-1) ?? null;
  }
  get lastAck() {
    return this.ack;
  }
}

/** A confirmation source the test moves by hand. */
class Scripted implements ConfirmationSource {
  offset = 0;
  #listeners = new Set<(o: number) => void>();
  confirmedOffset = () => this.offset;
  onConfirmed(l: (o: number) => void) {
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }
  confirm(o: number) {
    this.offset = o;
    for (const l of this.#listeners) l(o);
  }
}

let metrics: Metrics;
let gate: InfluxAckGate;

beforeEach(() => {
  metrics = createMetrics();
  gate = new InfluxAckGate({ metrics, logger: createLogger('silent') });
});
afterEach(() => gate.detach());

describe('the ACK gate with the real forwarder', () => {
  let influx: FakeInflux;
  let dir: string;
  let log: MemoryLog;
  let deadLetters: OpenDeadLetterStore;
  let forwarder: InfluxForwarder | null = null;

  beforeEach(async () => {
    influx = new FakeInflux();
    dir = mkdtempSync(join(tmpdir(), 'ack-gate-test-'));
    log = new MemoryLog(['dev-1']);
    deadLetters = openDeadLetterStore({ dataDir: dir, metrics });
  });
  afterEach(async () => {
    await forwarder?.stop();
    await deadLetters.close();
    await influx.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('never releases a frame InfluxDB has not confirmed: two writes in flight, the first fails after the second succeeded', async () => {
    const url = await influx.listen();
    const waiter = new Waiter('dev-1');
    // 20 frames of 8 lines; batches of 80 lines: frames 1–10, then 11–20. Each frame is locally
    // durable, so it waits in the gate with its log offset (offset = seq here).
    for (let seq = 1; seq <= 20; seq++) {
      const offset = log.appendFrame('dev-1', telemetryFrame({ seq, baseTime: T0 + seq * 1000 }), { seq });
      gate.wait(waiter, offset, 7, seq, 100, 0);
    }
    const lines: string[] = [];
    for (const e of log.entries) appendEntryLines(e, log.lookupDescriptors, lines);
    const firstBatchLine = lines[0] as string;
    let secondAnswered!: () => void;
    const second = new Promise<void>((r) => {
      secondAnswered = r;
    });
    let firstAttempts = 0;
    influx.reply = async (req) => {
      if (!req.lines.includes(firstBatchLine)) {
        setImmediate(secondAnswered);
        return { status: 204 };
      }
      if (firstAttempts++ > 0) return { status: 204 };
      await second; // still in flight when the second batch is confirmed, then fails
      return { status: 503, body: '{"code":"unavailable","message":"engine overloaded"}' };
    };
    let retry!: () => void;
    let waits = 0;
    const retryWait: Sleep = (_ms, signal) =>
      new Promise<void>((resolve) => {
        waits++;
        retry = resolve;
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
    forwarder = createInfluxForwarder({
      config: influxConfig(url, { batchLines: 80, maxInFlightWrites: 2 }),
      log,
      deadLetters,
      metrics,
      logger: createLogger('silent'),
      sleep: retryWait,
      random: () => 0.5,
    });
    forwarder.start();
    gate.attach(forwarder, 0);

    // Batch 2 (frames 11–20) is in InfluxDB, batch 1 waits for its retry: nothing may be ACKed, since
    // an ACK for frame 11 or later is cumulative and would cover frames 1–10.
    await until(() => waits === 1 && forwarder!.status().lastSuccessAtMs !== null);
    expect(influx.requests).toHaveLength(2);
    expect(forwarder.confirmedOffset()).toBe(0);
    expect(waiter.released).toEqual([]);
    expect(gate.frames).toBe(20);
    expect(gate.bytes).toBe(2000);
    expect(gate.welcomeAck('dev-1', { bootId: 7, seq: 20 })).toBeNull();

    retry();
    await until(() => waiter.released.length === 20);
    // Released in log order, in one confirmation step (one ACK: frame 20), budget given back.
    expect(waiter.released.map((r) => r.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(waiter.ack).toEqual({ bootId: 7, seq: 20 });
    expect(forwarder.confirmedOffset()).toBe(20);
    expect(waiter.returnedCost).toBe(2000);
    expect(gate.frames).toBe(0);
    expect(gate.bytes).toBe(0);
    expect(influx.stored.size).toBe(160);
  });
});

describe('the ACK gate', () => {
  it('releases in log order up to each confirmed step, and at once what is already confirmed', () => {
    const src = new Scripted();
    gate.attach(src, 0);
    const a = new Waiter('dev-a');
    const b = new Waiter('dev-b');
    gate.wait(a, 1, 1, 1, 10, 0);
    gate.wait(b, 2, 5, 1, 10, 0);
    gate.wait(a, 3, 1, 2, 10, 0);
    src.confirm(2);
    expect(a.released).toEqual([{ bootId: 1, seq: 1 }]);
    expect(b.released).toEqual([{ bootId: 5, seq: 1 }]);
    // Not before offset 3 is confirmed, even when a later frame's offset seems covered (a duplicate
    // waits on the head at its time, which is never below the frames queued before it).
    gate.wait(b, 2, 5, 1, 10, 0);
    expect(b.released).toHaveLength(1);
    src.confirm(3);
    expect(a.released.at(-1)).toEqual({ bootId: 1, seq: 2 });
    expect(b.released).toHaveLength(2);
    // Nothing waits and the frame is covered: released at once.
    gate.wait(a, 3, 1, 3, 10, 0);
    expect(a.released.at(-1)).toEqual({ bootId: 1, seq: 3 });
    expect(gate.frames).toBe(0);
  });

  it('tells its one listener of every frame it releases, in log order (the cluster write-behind in this mode)', () => {
    const src = new Scripted();
    gate.attach(src, 0);
    const seen: string[] = [];
    const off = gate.onReleased((deviceId, bootId, seq) => seen.push(`${deviceId}:${bootId}:${seq}`));
    gate.wait(new Waiter('a'), 1, 1, 1, 1, 0);
    gate.wait(new Waiter('b'), 2, 2, 7, 1, 0);
    expect(seen).toEqual([]);
    src.confirm(2);
    expect(seen).toEqual(['a:1:1', 'b:2:7']);
    off();
    gate.wait(new Waiter('a'), 3, 1, 2, 1, 0);
    src.confirm(3);
    expect(seen).toHaveLength(2);
  });

  it('holds thousands of frames (the ring grows) and releases them all, in order', () => {
    const src = new Scripted();
    gate.attach(src, 0);
    const w = new Waiter('dev');
    for (let i = 1; i <= 5000; i++) {
      gate.wait(w, i, 1, i, 1, 0);
      if (i % 700 === 0) src.confirm(i - 350); // release part of the queue while it grows (wraps)
    }
    src.confirm(5000);
    expect(w.released.map((r) => r.seq)).toEqual(Array.from({ length: 5000 }, (_, i) => i + 1));
    expect(gate.bytes).toBe(0);
  });

  it("WELCOME's last ACK never names a frame InfluxDB has not confirmed", () => {
    const src = new Scripted();
    // Frames up to offset 50 were stored by an earlier process and are not confirmed yet: no device
    // gets a last ACK (it replays; the hub dedupes and ACKs once confirmed).
    gate.attach(src, 50);
    expect(gate.welcomeAck('dev', { bootId: 1, seq: 9 })).toBeNull();
    src.confirm(50);
    // Everything of this device is confirmed: its durable position.
    expect(gate.welcomeAck('dev', { bootId: 1, seq: 9 })).toEqual({ bootId: 1, seq: 9 });
    // Frames of this process wait: the last one released, none while none was.
    const w = new Waiter('dev');
    gate.wait(w, 51, 1, 10, 1, 0);
    gate.wait(w, 52, 1, 11, 1, 0);
    expect(gate.welcomeAck('dev', { bootId: 1, seq: 11 })).toBeNull();
    src.confirm(51);
    expect(gate.welcomeAck('dev', { bootId: 1, seq: 11 })).toEqual({ bootId: 1, seq: 10 });
    // A replayed older frame (duplicate) does not move it back.
    gate.wait(w, 52, 1, 4, 1, 0);
    gate.wait(w, 53, 1, 12, 1, 0);
    src.confirm(52);
    expect(gate.welcomeAck('dev', { bootId: 1, seq: 12 })).toEqual({ bootId: 1, seq: 11 });
    src.confirm(53);
    expect(gate.welcomeAck('dev', { bootId: 1, seq: 12 })).toEqual({ bootId: 1, seq: 12 });
    // Another device is not held by this one's frames.
    gate.wait(w, 54, 1, 13, 1, 0);
    expect(gate.welcomeAck('other', { bootId: 3, seq: 3 })).toEqual({ bootId: 3, seq: 3 });
  });

  it('before it is attached (no forwarder yet) it releases nothing and names no last ACK', () => {
    const w = new Waiter('dev');
    gate.wait(w, 0, 1, 1, 1, 0);
    expect(w.released).toEqual([]);
    expect(gate.welcomeAck('dev', { bootId: 1, seq: 1 })).toBeNull();
    const src = new Scripted();
    gate.attach(src, 0);
    expect(w.released).toEqual([{ bootId: 1, seq: 1 }]);
  });
});

describe('ACKs held too long', () => {
  it('warns at the default level once the oldest frame waited 10 s, at most every 30 s, and says when ACKs flow again', () => {
    vi.useFakeTimers();
    try {
      let text = '';
      const sink = new Writable({
        write(chunk, _enc, cb) {
          text += chunk.toString();
          cb();
        },
      });
      const held = new InfluxAckGate({ metrics, logger: createLogger('info', sink), now: () => Date.now() });
      const src = new Scripted();
      held.attach(src, 0);
      held.wait(new Waiter('dev'), 1, 1, 1, 700, 0);
      const warnings = () => text.split('\n').filter((l) => l.includes('ACKs held')).length;
      vi.advanceTimersByTime(9000);
      expect(warnings()).toBe(0);
      vi.advanceTimersByTime(2000);
      expect(warnings()).toBe(1);
      expect(JSON.parse(text.split('\n').find((l) => l.includes('ACKs held')) as string)).toMatchObject({
        level: 40,
        frames: 1,
        bytes: 700,
      });
      vi.advanceTimersByTime(20_000);
      expect(warnings()).toBe(1); // rate-limited
      vi.advanceTimersByTime(11_000);
      expect(warnings()).toBe(2);
      src.confirm(1);
      expect(text).toContain('ACKs flowing again');
      held.detach();
    } finally {
      vi.useRealTimers();
    }
  });
});
