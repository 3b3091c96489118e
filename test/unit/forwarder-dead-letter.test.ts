import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createMetrics, type Metrics } from '../../server/metrics/index.ts';
import { openDeadLetterStore } from '../../server/storage/dead-letter.ts';

let dir: string;
let metrics: Metrics;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'dead-letter-test-'));
  metrics = createMetrics();
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function evicted(): Promise<number> {
  return (await metrics.deadLetterEvicted.get()).values[0]?.value ?? 0;
}

describe('dead-letter store (lmdb)', () => {
  it('keeps lines with their reason and status, lists newest first, and survives a reopen', async () => {
    let t = 1000;
    const store = openDeadLetterStore({ dataDir: dir, metrics, now: () => t++ });
    expect(store.path).toBe(join(dir, 'dead-letters'));
    await store.put(['a 1', 'b 2'], 'field type conflict', 400);
    await store.put(['c 3'], 'unprocessable', 422);
    expect(store.count()).toBe(3);
    expect(store.list(10)).toEqual([
      { atMs: 1001, status: 422, reason: 'unprocessable', line: 'c 3' },
      { atMs: 1000, status: 400, reason: 'field type conflict', line: 'b 2' },
      { atMs: 1000, status: 400, reason: 'field type conflict', line: 'a 1' },
    ]);
    expect(store.list(2).map((e) => e.line)).toEqual(['c 3', 'b 2']);
    expect(store.list(0)).toEqual([]);
    await store.close();

    const again = openDeadLetterStore({ dataDir: dir, metrics });
    expect(again.count()).toBe(3);
    expect(again.list(1)).toEqual([{ atMs: 1001, status: 422, reason: 'unprocessable', line: 'c 3' }]);
    await again.put(['d 4'], 'x', 400);
    expect(again.list(1)[0]?.line).toBe('d 4');
    await again.close();
  });

  it('is bounded: over maxLines the oldest records go, counted', async () => {
    const store = openDeadLetterStore({ dataDir: dir, metrics, maxLines: 5 });
    await store.put(['1', '2'], 'r1', 400);
    await store.put(['3', '4'], 'r2', 400);
    await store.put(['5'], 'r3', 400);
    expect(await evicted()).toBe(0);
    await store.put(['6', '7'], 'r4', 400);
    // Whole records go, oldest first: r1 (2 lines) makes room.
    expect(store.count()).toBe(5);
    expect(store.list(100).map((e) => e.line)).toEqual(['7', '6', '5', '4', '3']);
    expect(await evicted()).toBe(2);
    // One put larger than the cap keeps its newest lines.
    await store.put(['a', 'b', 'c', 'd', 'e', 'f', 'g'], 'big', 400);
    expect(store.list(100).map((e) => e.line)).toEqual(['g', 'f', 'e', 'd', 'c']);
    expect(store.count()).toBe(5);
    expect(await evicted()).toBe(2 + 5 + 2);
    await store.close();
  });

  it('ignores an empty put and rejects a nonsensical cap', async () => {
    const store = openDeadLetterStore({ dataDir: dir, metrics });
    await store.put([], 'nothing', 400);
    expect(store.count()).toBe(0);
    await store.close();
    expect(() => openDeadLetterStore({ dataDir: dir, metrics, maxLines: 0 })).toThrow(RangeError);
  });
});
