/**
 * The time-index backlog (entries written behind the frames, a batch per device): what is due when,
 * where a restart re-reads from, and what queries see while entries wait or are being written.
 */
import { describe, expect, it } from 'vitest';
import { IndexBacklog } from '../../server/storage/index-backlog.ts';

const BATCH = 4;
const DELAY = 1_000;

function backlog(): IndexBacklog {
  return new IndexBacklog({ batchPerDevice: BATCH, maxDelayMs: DELAY });
}

/** Offsets of a batch per device. */
function offsets(batch: Map<string, number[]> | null): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const [id, t] of batch ?? []) out[id] = t.filter((_, i) => i % 3 === 2);
  return out;
}

describe('index backlog', () => {
  it('holds a device’s entries until it has a batch, then takes them together', () => {
    const b = backlog();
    let off = 0;
    for (let i = 0; i < 3; i++) b.add('a', 100 + i, 100 + i, ++off, 0);
    b.add('b', 50, 60, ++off, 0);
    expect(b.take(10, 1000)).toBeNull();
    b.add('a', 103, 103, ++off, 10);
    expect(offsets(b.take(10, 1000))).toEqual({ a: [1, 2, 3, 5] });
    expect(b.size).toBe(5); // taken entries count until written
    b.settleTaken(true, 20);
    expect(b.size).toBe(1);
  });

  it('takes a device whose oldest entry waited the delay, oldest first', () => {
    const b = backlog();
    b.add('a', 1, 1, 1, 0);
    b.add('b', 1, 1, 2, 500);
    expect(b.take(DELAY - 1, 1000)).toBeNull();
    expect(offsets(b.take(DELAY, 1000))).toEqual({ a: [1] });
    b.settleTaken(true, DELAY);
    expect(offsets(b.take(DELAY + 500, 1000))).toEqual({ b: [2] });
  });

  it('caps a batch near maxEntries (a device’s entries stay together) and leaves the rest for later', () => {
    const b = backlog();
    let off = 0;
    for (const id of ['a', 'b', 'c']) for (let i = 0; i < BATCH; i++) b.add(id, i, i, ++off, 0);
    const first = offsets(b.take(0, BATCH + 1));
    expect(Object.keys(first)).toHaveLength(2);
    b.settleTaken(true, 0);
    expect(Object.keys(offsets(b.take(0, 100)))).toHaveLength(1);
  });

  it('lowestOffset: the first offset still waiting; the batch being written does not count', () => {
    const b = backlog();
    expect(b.lowestOffset()).toBeUndefined();
    for (let i = 1; i <= BATCH; i++) b.add('a', i, i, i, 0);
    b.add('b', 9, 9, BATCH + 1, 0);
    expect(b.lowestOffset()).toBe(1);
    b.take(0, 100);
    expect(b.lowestOffset()).toBe(BATCH + 1);
  });

  it('a failed write puts the batch back: waiting again, in offset order, and lowestOffset covers it', () => {
    const b = backlog();
    for (let i = 1; i <= BATCH; i++) b.add('a', i, i, i, 0);
    b.take(0, 100);
    b.add('a', 10, 10, 10, 1); // a later commit's entry while the batch was out
    b.settleTaken(false, 2);
    expect(b.size).toBe(BATCH + 1);
    expect(b.lowestOffset()).toBe(1);
    expect(b.entriesFor('a', 0, 100).map((e) => e.offset)).toEqual([1, 2, 3, 4, 10]);
    expect(offsets(b.take(2, 100))).toEqual({ a: [1, 2, 3, 4, 10] });
  });

  it('entriesFor: waiting and taken entries in a time range, sorted by (first sample time, offset)', () => {
    const b = backlog();
    b.add('a', 300, 310, 1, 0);
    b.add('a', 100, 110, 2, 0);
    b.add('a', 100, 105, 3, 0);
    b.add('a', 200, 210, 4, 0);
    b.take(0, 100); // all four out
    b.add('a', 150, 160, 5, 0);
    b.add('b', 150, 160, 6, 0);
    expect(b.entriesFor('a', 100, 250)).toEqual([
      { minTimeMs: 100, maxTimeMs: 110, offset: 2 },
      { minTimeMs: 100, maxTimeMs: 105, offset: 3 },
      { minTimeMs: 150, maxTimeMs: 160, offset: 5 },
      { minTimeMs: 200, maxTimeMs: 210, offset: 4 },
    ]);
    b.settleTaken(true, 0);
    expect(b.entriesFor('a', 0, 1000).map((e) => e.offset)).toEqual([5]);
  });

  it('dropThrough: evicted frames’ entries go; the rest keep waiting', () => {
    const b = backlog();
    b.add('a', 1, 1, 1, 0);
    b.add('b', 2, 2, 2, 0);
    b.add('a', 3, 3, 3, 0);
    b.dropThrough(2);
    expect(b.size).toBe(1);
    expect(b.lowestOffset()).toBe(3);
    expect(b.entriesFor('b', 0, 10)).toEqual([]);
    expect(offsets(b.take(DELAY, 100))).toEqual({ a: [3] });
  });
});
