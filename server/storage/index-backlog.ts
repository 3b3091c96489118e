/**
 * The `time-index` entries of committed frames that are not in the index yet: the local log writes
 * its (device, time) index behind the frames, a batch per device (docs/architecture.md §5).
 *
 * Why: an index entry per frame per commit lands on that device's index leaf page. With many devices
 * (one or two frames per device per commit) every commit copied and wrote one 4 KiB leaf per device
 * for a ~250-byte frame: 18 KB written to disk per frame with 1,000 devices, and the copies' CPU. Held
 * here until its device has `batchPerDevice` entries (or its oldest has waited `maxDelayMs`), a leaf
 * page carries a batch instead of one entry.
 *
 * Pure bookkeeping, no I/O: the log takes batches into its group transactions, persists
 * {@link IndexBacklog.lowestOffset} with them (where a restart re-reads frames from) and merges
 * {@link IndexBacklog.entriesFor} into history queries.
 */

/** One index entry: the frame's first and last sample time and its offset. */
export interface IndexEntry {
  minTimeMs: number;
  maxTimeMs: number;
  offset: number;
}

/** A batch taken for a transaction: per device, flat `[minTimeMs, maxTimeMs, offset]` triplets. */
export type IndexBatch = Map<string, number[]>;

interface Waiting {
  /** Flat triplets `[minTimeMs, maxTimeMs, offset, …]` in offset order. */
  entries: number[];
  /** When the oldest waiting entry was added (clock ms). */
  sinceMs: number;
}

export interface IndexBacklogOptions {
  /** A device's entries go out once this many wait. */
  batchPerDevice: number;
  /** …or once its oldest has waited this long (ms): bounds the frames a restart re-reads. */
  maxDelayMs: number;
}

export class IndexBacklog {
  private readonly waiting = new Map<string, Waiting>();
  /** The batch in the transaction in flight: still visible to queries until it is settled. */
  private taken: IndexBatch | null = null;
  /** When the taken devices' oldest entries began to wait (kept should the batch come back). */
  private takenSince = new Map<string, number>();
  /** Devices in the order their waiting began (so, by offset); entries go stale when a device is taken. */
  private order: { deviceId: string; firstOffset: number }[] = [];
  private orderHead = 0;
  /** Devices that reached `batchPerDevice` (may name devices already taken). */
  private full: string[] = [];
  private count = 0;

  constructor(private readonly opts: IndexBacklogOptions) {}

  /** Entries waiting or in flight. */
  get size(): number {
    return this.count;
  }

  /** A committed frame's entry (offsets grow from call to call). */
  add(deviceId: string, minTimeMs: number, maxTimeMs: number, offset: number, nowMs: number): void {
    let w = this.waiting.get(deviceId);
    if (!w) {
      w = { entries: [], sinceMs: nowMs };
      this.waiting.set(deviceId, w);
      this.order.push({ deviceId, firstOffset: offset });
    }
    w.entries.push(minTimeMs, maxTimeMs, offset);
    this.count++;
    if (w.entries.length === this.opts.batchPerDevice * 3) this.full.push(deviceId);
  }

  /**
   * Takes what is due into a batch for the next transaction: devices with a full batch, then devices
   * whose oldest entry waited `maxDelayMs`, up to about `maxEntries` (a device's entries go together).
   * Null when nothing is due. At most one batch is out at a time.
   */
  take(nowMs: number, maxEntries: number): IndexBatch | null {
    if (this.taken !== null) return null;
    const batch: IndexBatch = new Map();
    let n = 0;
    const takeDevice = (deviceId: string) => {
      const w = this.waiting.get(deviceId);
      if (!w) return;
      this.waiting.delete(deviceId);
      batch.set(deviceId, w.entries);
      this.takenSince.set(deviceId, w.sinceMs);
      n += w.entries.length / 3;
    };
    while (n < maxEntries && this.full.length > 0) takeDevice(this.full.pop() as string);
    while (n < maxEntries && this.orderHead < this.order.length) {
      const o = this.order[this.orderHead] as { deviceId: string; firstOffset: number };
      const w = this.waiting.get(o.deviceId);
      if (w && w.entries[2] === o.firstOffset) {
        if (nowMs - w.sinceMs < this.opts.maxDelayMs) break;
        takeDevice(o.deviceId);
      }
      this.orderHead++;
    }
    this.compactOrder();
    if (batch.size === 0) return null;
    this.taken = batch;
    return batch;
  }

  /** The taken batch's transaction ended: written (gone from here), or failed (waiting again, due as before). */
  settleTaken(written: boolean, nowMs: number): void {
    const batch = this.taken;
    const since = this.takenSince;
    this.taken = null;
    this.takenSince = new Map();
    if (batch === null) return;
    if (written) {
      for (const entries of batch.values()) this.count -= entries.length / 3;
      return;
    }
    for (const [deviceId, entries] of batch) {
      const w = this.waiting.get(deviceId);
      if (w) w.entries = entries.concat(w.entries);
      else this.waiting.set(deviceId, { entries, sinceMs: since.get(deviceId) ?? nowMs });
    }
    this.rebuildOrder();
  }

  /** Frames up to `offset` were evicted: their entries go (they have none in the index to remove). */
  dropThrough(offset: number): void {
    const lowest = this.lowestOffset();
    if (lowest === undefined || lowest > offset) return;
    for (const [deviceId, w] of this.waiting) {
      let i = 0;
      while (i < w.entries.length && (w.entries[i + 2] as number) <= offset) i += 3;
      if (i === 0) continue;
      this.count -= i / 3;
      if (i === w.entries.length) this.waiting.delete(deviceId);
      else w.entries = w.entries.slice(i);
    }
    this.rebuildOrder();
  }

  /**
   * The lowest offset whose entry is waiting (not counting the batch taken: its transaction writes it);
   * undefined when none. A restart re-reads the frames from there.
   */
  lowestOffset(): number | undefined {
    for (let i = this.orderHead; i < this.order.length; i++) {
      const o = this.order[i] as { deviceId: string; firstOffset: number };
      const w = this.waiting.get(o.deviceId);
      if (w && w.entries[2] === o.firstOffset) return o.firstOffset;
    }
    return undefined;
  }

  /**
   * A device's entries not in the index whose first sample time is within [fromMinMs, toMinMs], sorted
   * by (first sample time, offset): the order of the index's keys.
   */
  entriesFor(deviceId: string, fromMinMs: number, toMinMs: number): IndexEntry[] {
    const out: IndexEntry[] = [];
    for (const entries of [this.taken?.get(deviceId), this.waiting.get(deviceId)?.entries]) {
      if (!entries) continue;
      for (let i = 0; i < entries.length; i += 3) {
        const minTimeMs = entries[i] as number;
        if (minTimeMs < fromMinMs || minTimeMs > toMinMs) continue;
        out.push({ minTimeMs, maxTimeMs: entries[i + 1] as number, offset: entries[i + 2] as number });
      }
    }
    return out.sort(compareEntries);
  }

  private compactOrder(): void {
    if (this.orderHead > 1024 && this.orderHead * 2 > this.order.length) {
      this.order = this.order.slice(this.orderHead);
      this.orderHead = 0;
    }
  }

  /** After entries were put back or dropped: the order of the waiting devices by their first offset. */
  private rebuildOrder(): void {
    this.order = [...this.waiting]
      .map(([deviceId, w]) => ({ deviceId, firstOffset: w.entries[2] as number }))
      .sort((a, b) => a.firstOffset - b.firstOffset);
    this.orderHead = 0;
    this.full = [...this.waiting]
      .filter(([, w]) => w.entries.length >= this.opts.batchPerDevice * 3)
      .map(([deviceId]) => deviceId);
  }
}

export function compareEntries(a: IndexEntry, b: IndexEntry): number {
  return a.minTimeMs - b.minTimeMs || a.offset - b.offset;
}
