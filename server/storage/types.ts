/** Contracts between the ingest path, the durable local log and its readers (forwarder, history). */
import type { ChannelDescriptor, FrameRef } from '../codec/index.ts';

/** One accepted TELEMETRY frame as the local log keeps it: the raw frame plus what the hub decided. */
export interface LogEntry {
  deviceId: string;
  bootId: number;
  seq: number;
  /** Hub wall clock when the frame arrived (Unix ms). */
  receivedAtMs: number;
  /**
   * Added to `baseTime + deltaMs` of every sample: the uptime→wall-clock offset persisted for the
   * (device, boot) of an unsynced frame [PROTO-3.4.1], plus any clamp shift; 0 for a plausible synced frame.
   */
  timeOffsetMs: number;
  /** The raw TELEMETRY frame as received (CRC-checked), decoded again by readers. */
  frame: Uint8Array;
}

/** A log entry with its position; offsets grow strictly and are never reused. */
export interface StoredEntry extends LogEntry {
  offset: number;
}

/** One reading after descriptor lookup, scaling and time mapping: what storage and dashboards see. */
export interface Reading {
  deviceId: string;
  /** Channel key [PROTO-2.8]. */
  channel: string;
  unit: string;
  /** Unix ms. */
  timeMs: number;
  /** Engineering value (fixed-point already scaled), or boolean for bool channels. */
  value: number | boolean;
}

/** One history query (embedded store, InfluxDB, and the history API all take this shape). */
export interface HistoryQuery {
  deviceId: string;
  /** Channel key; all channels when omitted. */
  channel?: string | undefined;
  /** Inclusive, Unix ms. */
  fromMs: number;
  /** Inclusive, Unix ms. */
  toMs: number;
  /** Most readings to return: the earliest ones in the range. */
  limit: number;
}

/** Looks up a device's persisted descriptor set by hash [PROTO-3.3]. */
export type DescriptorLookup = (deviceId: string, hash: number) => ChannelDescriptor[] | undefined;

export type { FrameRef };

/** What the InfluxDB forwarder (and history queries) read from the local log. */
export interface LogReader {
  /** Entries with offset > `afterOffset`, in offset order, at most `max`. Synchronous (memory-mapped store). */
  readAfter(afterOffset: number, max: number): StoredEntry[];
  /** Highest offset InfluxDB has confirmed (0 when none); survives restarts. */
  forwardedOffset(): number;
  /** Records that InfluxDB confirmed everything up to `offset`; resolves after the durable commit. */
  commitForwarded(offset: number): Promise<void>;
  /** Highest offset appended so far (0 when empty). */
  headOffset(): number;
  /** Calls `listener` after each commit that appended entries; returns an unsubscribe function. */
  onAppend(listener: () => void): () => void;
  lookupDescriptors: DescriptorLookup;
}

/** Lines InfluxDB rejected permanently, kept with the reason for inspection and manual replay. */
export interface DeadLetterStore {
  /** Keeps `lines` with the reason; resolves once committed (visible), not yet flushed. */
  put(lines: string[], reason: string, status: number): Promise<void>;
  /**
   * Resolves once everything put so far is flushed to disk. A reader of the local log must await it
   * before moving its cursor past lines it dead-lettered (docs/storage.md §4).
   */
  flushed(): Promise<void>;
  /** Number of dead-lettered lines. */
  count(): number;
  list(limit: number): { atMs: number; status: number; reason: string; line: string }[];
}
