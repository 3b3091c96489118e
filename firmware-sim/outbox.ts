/**
 * The device's outbox: TELEMETRY frames waiting for the hub's ACK, as a real board keeps them in flash.
 * Bounded (capacity in frames) with a drop-oldest policy, counted and reported in HELLO
 * `droppedFrames` [PROTO-3.1]; entries leave only when an ACK covers them [PROTO-3.5] or when they are
 * dropped. A ring buffer: push, drop and free are O(1) per frame.
 */
import type { Telemetry } from '../server/codec/index.ts';

export interface OutboxEntry {
  bootId: number;
  seq: number;
  /** The encoded frame, sent byte-identical on every replay. */
  bytes: Uint8Array;
  /** Samples and readings (non-missing samples) in the frame. */
  samples: number;
  readings: number;
  /** How often the frame went on the wire since power-on; > 1 means replayed. */
  sends: number;
  /** Reloaded from flash at power-on: it may have been sent (and stored) before the power went. */
  restored?: boolean;
  /** Clock time of the latest send (ack latency is measured from it). */
  lastSentAt: number;
  /** Kept only when a recorder wants the acked samples. */
  message: Telemetry | null;
}

export class Outbox {
  readonly capacity: number;
  private ring: (OutboxEntry | undefined)[];
  private head = 0;
  private size = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('outbox capacity must be a positive integer');
    this.capacity = capacity;
    this.ring = new Array(capacity);
  }

  get length(): number {
    return this.size;
  }

  at(i: number): OutboxEntry {
    const e = this.ring[(this.head + i) % this.capacity];
    if (i < 0 || i >= this.size || !e) throw new RangeError(`outbox index ${i} out of range`);
    return e;
  }

  /** Appends; when full, first removes and returns the oldest entry (drop-oldest). */
  push(entry: OutboxEntry): OutboxEntry | null {
    let dropped: OutboxEntry | null = null;
    if (this.size === this.capacity) dropped = this.shift();
    this.ring[(this.head + this.size) % this.capacity] = entry;
    this.size++;
    return dropped;
  }

  shift(): OutboxEntry | null {
    if (this.size === 0) return null;
    const e = this.ring[this.head] as OutboxEntry;
    this.ring[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.size--;
    return e;
  }

  /**
   * How many leading entries a cumulative ACK of (bootId, seq) covers [PROTO-3.5]: every entry up to
   * the last one of that boot with seq ≤ `seq`, together with the earlier boots' entries before it.
   * Only the first `limit` entries are considered (what was sent on this connection).
   */
  coveredBy(bootId: number, seq: number, limit = this.size): number {
    let covered = 0;
    let inBoot = false;
    const n = Math.min(limit, this.size);
    for (let i = 0; i < n; i++) {
      const e = this.ring[(this.head + i) % this.capacity] as OutboxEntry;
      if (e.bootId === bootId) {
        inBoot = true;
        if (e.seq > seq) break;
        covered = i + 1;
      } else if (inBoot) {
        break; // a later boot: not covered by an ACK of an earlier one
      }
    }
    return covered;
  }

  /** Highest (bootId, seq) in the outbox for a boot, or 0. */
  lastSeqOf(bootId: number): number {
    for (let i = this.size - 1; i >= 0; i--) {
      const e = this.ring[(this.head + i) % this.capacity] as OutboxEntry;
      if (e.bootId === bootId) return e.seq;
    }
    return 0;
  }
}
