/**
 * What the hub remembers about each device between sessions, persisted in the local log's environment
 * and written in the SAME transaction as the frames it describes, so the acknowledged position can
 * never run ahead of the stored data [PROTO-3.5].
 */
import type { FrameRef } from '../codec/index.ts';

/** Per (device, bootId) state [PROTO-3.4.1, PROTO-3.4.2]. */
export interface BootState {
  /** Highest seq stored for this boot (0 when none yet). Frames at or below it are duplicates. */
  highestSeq: number;
  /**
   * uptime → wall-clock offset (ms) used for every UNSYNCED frame of this boot; null until the first
   * unsynced frame of the boot is stored. Persisted so a replay maps to identical timestamps.
   */
  timeOffsetMs: number | null;
  /**
   * Correction (ms) added to every SYNCED frame of this boot whose clock is implausible (hours behind or
   * ahead); set once by the first such frame, so the boot's samples stay on one timeline. Absent in
   * records written before it existed.
   */
  clockCorrectionMs?: number | null;
  /** Hub wall clock when this boot was first seen (Unix ms); used to trim old boots. */
  firstSeenMs: number;
}

/** Per-device state. */
export interface DeviceRecord {
  /** Hub wall clock when the device was first seen (Unix ms): times before it are implausible. */
  firstSeenMs: number;
  /** The last (bootId, seq) acknowledged durable, reported in WELCOME [PROTO-3.2]; null when none. */
  lastAck: FrameRef | null;
  /**
   * Largest time span (ms) of one stored frame (last sample − first sample). History queries start
   * their index scan this far before `from` so no overlapping frame is missed.
   */
  maxSpanMs: number;
  /** Hash of the device's current descriptor set (last DESCRIPTORS, or the HELLO's when known); 0 when none. */
  descriptorHash?: number;
}

/** How many boots per device the hub remembers; older boots' frames would no longer be deduplicated. */
export const MAX_BOOTS_PER_DEVICE = 32;

export function newDeviceRecord(nowMs: number): DeviceRecord {
  return { firstSeenMs: nowMs, lastAck: null, maxSpanMs: 0 };
}
