/**
 * The chaos reconciliation (scripts/chaos/reconcile.ts) against a store whose contents the test
 * writes: each kind of damage is reported, and a store that lost nothing reports nothing. The
 * integration tests (ingest-crash, chaos-*) run the same code against the real InfluxDB and hub.
 */
import { describe, expect, it } from 'vitest';
import { CHAOS_CHANNELS, DeviceLedger, rawValue } from '../../scripts/chaos/ledger.ts';
import { reconcile, type StoredReading, type StoreReader } from '../../scripts/chaos/reconcile.ts';

const T0 = 1_733_000_000_000;

/** A device that sampled 6 times (10 ms apart) into 3 frames, the first 2 frames acknowledged. */
function ledger(): DeviceLedger {
  const l = new DeviceLedger('dev-1', 7);
  for (let k = 0; k < 6; k++) {
    l.addSample(
      T0 + k * 10,
      CHAOS_CHANNELS.map((_, c) => rawValue(0, c, k)),
    );
    if (k % 2 === 1) l.closeFrame(l.lastSeq + 1);
  }
  expect(l.ack(2)).toBe(true);
  return l;
}

/** A store holding exactly the given readings per channel key. */
function store(readings: Record<string, StoredReading[]>, count = true): StoreReader {
  return {
    name: 'test store',
    read: async (_d, ch, from, to) => (readings[ch.key] ?? []).filter((r) => r.timeMs >= from && r.timeMs <= to),
    ...(count ? { count: async (_d: string, ch: { key: string }) => (readings[ch.key] ?? []).length } : {}),
  };
}

/** What a faithful store holds for the first `n` samples. */
function faithful(l: DeviceLedger, n: number): Record<string, StoredReading[]> {
  return Object.fromEntries(
    CHAOS_CHANNELS.map((ch, c) => [
      ch.key,
      Array.from({ length: n }, (_, i) => ({ timeMs: l.times.at(i), value: l.expected(c, i) })),
    ]),
  );
}

describe('chaos reconciliation', () => {
  it('a store holding every acknowledged reading (and some unacknowledged ones) is clean', async () => {
    const l = ledger();
    const r = await reconcile([l], store(faithful(l, 5)));
    expect(r).toMatchObject({ ackedReadings: 16, lost: 0, duplicated: 0, changed: 0, unexpected: 0 });
    expect(r).toMatchObject({ unackedReadings: 8, unackedStored: 4 });
    expect(r.examples).toEqual([]);
  });

  it('scales fixed-point values as the protocol says and gives f32 as its shortest float32 decimal', () => {
    const l = ledger();
    expect(l.expected(0, 0)).toBe((rawValue(0, 0, 0) as number) / 100);
    expect(l.expected(1, 0)).toBe((rawValue(0, 1, 0) as number) / 10);
    const f32 = rawValue(0, 3, 1) as number; // Math.fround(3.029): 3.0290000438690186 as a float64
    expect(l.expected(3, 1)).toBe(3.029);
    expect(Math.fround(3.029)).toBe(f32);
    expect(typeof l.expected(2, 0)).toBe('boolean');
  });

  it('reports an acknowledged reading that is missing as lost', async () => {
    const l = ledger();
    const s = faithful(l, 4);
    s.humidity = s.humidity!.filter((_, i) => i !== 2);
    const r = await reconcile([l], store(s));
    expect(r).toMatchObject({ lost: 1, duplicated: 0, changed: 0, unexpected: 0 });
    expect(r.examples).toEqual([
      { kind: 'lost', deviceId: 'dev-1', channel: 'humidity', timeMs: T0 + 20, expected: l.expected(1, 2) },
    ]);
  });

  it('reports a stored value that differs from the value sent as changed (an overwrite)', async () => {
    const l = ledger();
    const s = faithful(l, 4);
    s.voltage![1] = { timeMs: T0 + 10, value: (l.expected(3, 1) as number) + 0.5 };
    s.door![3] = { timeMs: T0 + 30, value: !l.expected(2, 3) };
    const r = await reconcile([l], store(s));
    expect(r).toMatchObject({ lost: 0, duplicated: 0, changed: 2, unexpected: 0 });
  });

  it('reports two points at one device/channel/time as duplicated', async () => {
    const l = ledger();
    const s = faithful(l, 4);
    s.temperature!.push({ timeMs: T0, value: l.expected(0, 0) });
    const r = await reconcile([l], store(s));
    expect(r).toMatchObject({ lost: 0, duplicated: 1, changed: 0, unexpected: 0 });
  });

  it('reports points at times never sampled as unexpected, also outside the windows when the store counts', async () => {
    const l = ledger();
    const s = faithful(l, 4);
    s.temperature!.push({ timeMs: T0 + 5, value: 20 }); // between two samples
    s.temperature!.push({ timeMs: T0 - 86_400_000, value: 20 }); // a day before: only the count sees it
    expect(await reconcile([l], store(s))).toMatchObject({ lost: 0, duplicated: 0, changed: 0, unexpected: 2 });
    expect(await reconcile([l], store(s, false))).toMatchObject({ unexpected: 1 });
  });

  it('an ACK beyond the frames sent is refused by the ledger', () => {
    const l = ledger();
    expect(l.ack(4)).toBe(false);
    expect(l.ackedSeq).toBe(2);
  });
});
