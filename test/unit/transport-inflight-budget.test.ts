// The hub-wide in-flight bound (server/transport/inflight-budget.ts): frames handed to the pipeline
// and not yet durable are counted in bytes across every session; over the bound the link a frame came
// on is paused, and paused links resume in turn below half of it. Sessions here are real
// (DeviceSession over a link the test drives); the ingest holds each frame's completion until the
// test commits it, as the local log does until its group is durable.
import { beforeEach, describe, expect, it } from 'vitest';
import { createMetrics, type Metrics } from '../../server/metrics/index.ts';
import { MAX_INFLIGHT_FRAMES } from '../../server/transport/device-session.ts';
import { INFLIGHT_FRAME_OVERHEAD_BYTES, InflightBudget } from '../../server/transport/inflight-budget.ts';
import { FRAME_BYTES, sessionHub, telemetry } from './session-fixture.ts';

let metrics: Metrics;
let order: string[];
let commit: (n?: number) => void;
let pending: unknown[];

function hub(budget: InflightBudget) {
  const h = sessionHub({ metrics, budget });
  order = h.order;
  commit = h.commit;
  pending = h.pending;
  return { ctx: h.ctx, connect: (name: string) => h.connect(name).link };
}

async function pausesCounted(): Promise<number> {
  const m = await metrics.registry.getSingleMetric('hub_device_session_pauses_total')?.get();
  return m?.values[0]?.value ?? 0;
}

const COST = FRAME_BYTES + INFLIGHT_FRAME_OVERHEAD_BYTES;

beforeEach(() => {
  metrics = createMetrics();
});

describe('hub-wide in-flight bound', () => {
  it('bounds the bytes in flight across sessions, not frames per session: many devices cannot add up', async () => {
    // Room for 10 frames hub-wide; 5 devices × 4 frames each would be 20 (far below any per-session cap).
    const budget = new InflightBudget(10 * COST, COST);
    const { connect } = hub(budget);
    const links = ['a', 'b', 'c', 'd', 'e'].map(connect);
    let seq = 0;
    for (let round = 0; round < 4; round++) {
      for (const link of links) if (!link.paused) link.deliver(telemetry(++seq));
    }
    // Every frame that arrived was taken, and the session that crossed the bound paused; the others
    // paused at their next frame: the bytes in flight never exceed the bound by more than one frame
    // per link (a socket read in flight when the bound was crossed).
    expect(budget.frames).toBe(pending.length);
    expect(budget.bytes).toBeLessThanOrEqual(10 * COST + links.length * COST);
    expect(links.every((l) => l.paused)).toBe(true);
    expect(budget.pausedLinks).toBe(5);
    expect(await pausesCounted()).toBe(5);
  });

  it('resumes paused links in the order they were paused, below half the bound, as many as the room allows', () => {
    const budget = new InflightBudget(10 * COST, 2 * COST);
    const { connect } = hub(budget);
    const links = ['a', 'b', 'c', 'd', 'e'].map(connect);
    let seq = 0;
    for (let i = 0; i < 3; i++) for (const link of links) if (!link.paused) link.deliver(telemetry(++seq));
    expect(order.filter((o) => o.startsWith('pause'))).toEqual(['pause a', 'pause b', 'pause c', 'pause d', 'pause e']);
    const inFlight = pending.length;
    // Above half the bound nothing resumes.
    commit(inFlight - 6);
    expect(order.filter((o) => o.startsWith('resume'))).toEqual([]);
    // At half (5 frames): room for 5 frames = two reads of 2 frames each → a, b.
    commit(1);
    expect(order.filter((o) => o.startsWith('resume'))).toEqual(['resume a', 'resume b']);
    // Everything durable: the rest resume, still in order.
    commit();
    expect(order.filter((o) => o.startsWith('resume'))).toEqual([
      'resume a',
      'resume b',
      'resume c',
      'resume d',
      'resume e',
    ]);
    expect(budget.bytes).toBe(0);
    expect(budget.frames).toBe(0);
  });

  it('a closed link is no longer waiting; acknowledgements still go out after a pause', () => {
    const budget = new InflightBudget(2 * COST, COST);
    const { connect } = hub(budget);
    const a = connect('a');
    for (let s = 1; s <= 3; s++) a.deliver(telemetry(s));
    expect(a.paused).toBe(true);
    const acksBefore = a.sent.length;
    commit();
    expect(a.paused).toBe(false);
    return Promise.resolve().then(() => {
      expect(a.sent.length).toBe(acksBefore + 1); // one cumulative ACK for the group
      const b = connect('b');
      for (let s = 1; s <= 3; s++) b.deliver(telemetry(s));
      expect(b.paused).toBe(true);
      expect(budget.pausedLinks).toBe(1);
      b.handlers?.closed(1006);
      expect(budget.pausedLinks).toBe(0); // no longer waiting to be resumed
      commit();
      expect(budget.bytes).toBe(0);
    });
  });

  it('one device alone may hold at most MAX_INFLIGHT_FRAMES: paused, resumed below half (fairness under the budget)', async () => {
    const budget = new InflightBudget(); // 16 MiB: far from reached by one device here
    const { connect } = hub(budget);
    const a = connect('a');
    for (let s = 1; s <= MAX_INFLIGHT_FRAMES; s++) a.deliver(telemetry(s));
    expect(a.paused).toBe(false);
    a.deliver(telemetry(MAX_INFLIGHT_FRAMES + 1));
    expect(a.paused).toBe(true);
    expect(budget.pausedLinks).toBe(0); // the session's own bound, not the hub's
    commit(MAX_INFLIGHT_FRAMES / 2 + 1); // 256 left in flight: not below half yet
    expect(a.paused).toBe(true);
    commit(1);
    expect(a.paused).toBe(false);
    expect(await pausesCounted()).toBe(1);
  });

  it('a link paused for both reasons resumes only when neither holds', () => {
    const budget = new InflightBudget(MAX_INFLIGHT_FRAMES * COST, COST);
    const { connect } = hub(budget);
    const a = connect('a');
    for (let s = 1; s <= MAX_INFLIGHT_FRAMES + 1; s++) a.deliver(telemetry(s));
    expect(a.paused).toBe(true);
    expect(budget.pausedLinks).toBe(1);
    // Below half of the budget (and of the session's bound): both holds end, one resume.
    commit(MAX_INFLIGHT_FRAMES / 2 + 2);
    expect(a.paused).toBe(false);
    expect(order).toEqual(['pause a', 'resume a']);
  });

  it('records the peak between flushes (a scrape every few seconds still sees a burst)', () => {
    const budget = new InflightBudget(100 * COST);
    expect(budget.take(COST)).toBe(false);
    budget.take(COST);
    budget.release(COST);
    expect(budget.takePeak()).toBe(2 * COST);
    expect(budget.takePeak()).toBe(COST);
  });
});
