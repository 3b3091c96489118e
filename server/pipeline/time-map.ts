/**
 * Sample times → hub wall clock [PROTO-3.4.1]. Pure: the caller passes the clock and the persisted
 * per-boot offset, and persists `newBootOffsetMs` with the frame so a replay maps identically.
 */

export type ClampReason = 'future' | 'before_first_seen';

export interface TimeMapInput {
  /** TELEMETRY baseTime: Unix ms, or uptime ms when `unsynced`. */
  baseTime: number;
  unsynced: boolean;
  /** Smallest and largest sample delta in the frame (ms). */
  minDeltaMs: number;
  maxDeltaMs: number;
  /** The offset already persisted for this (device, boot), or null when none is. */
  bootOffsetMs: number | null;
  /**
   * The clock correction persisted for SYNCED frames of this boot (set by its first implausible
   * synced frame), or null when none is.
   */
  bootCorrectionMs: number | null;
  /**
   * Estimate from this session's HELLO when it announced the same boot: arrival time − uptimeMs.
   * Null when the frame belongs to another boot (a replay from flash after a reboot).
   */
  helloOffsetMs: number | null;
  receivedAtMs: number;
  nowMs: number;
  /** Earliest plausible time for this device (see device-state.ts). */
  firstSeenMs: number;
  maxFutureSkewMs: number;
}

export interface TimeMapResult {
  /** Added to baseTime + deltaMs of every sample (boot offset plus any clamp shift). */
  timeOffsetMs: number;
  /** A boot offset to persist now (the first unsynced frame of the boot), else null. */
  newBootOffsetMs: number | null;
  /** A clock correction to persist now (the first implausible synced frame of the boot), else null. */
  newBootCorrectionMs: number | null;
  /** Set when the frame was shifted because its times were implausible. */
  clamp: ClampReason | null;
  /**
   * True when an unsynced frame of an unknown boot had no HELLO to anchor it and its last sample was
   * assumed to be "now" (the best the hub can do; counted by the caller).
   */
  estimated: boolean;
  minTimeMs: number;
  maxTimeMs: number;
}

/**
 * Clamping shifts a whole boot, not each frame: a device whose clock is hours off gets ONE correction
 * for the boot (persisted), so its frames keep their spacing and never land on the same timestamps —
 * InfluxDB keeps one point per (series, time) and would silently drop the overlap — and a replay maps
 * identically. A boot's correction is dropped when the device's clock becomes plausible without it.
 */
export function mapFrameTime(i: TimeMapInput): TimeMapResult {
  let offset = 0;
  let newBootOffsetMs: number | null = null;
  let newBootCorrectionMs: number | null = null;
  let estimated = false;
  const plausible = (o: number) =>
    i.baseTime + i.maxDeltaMs + o <= i.nowMs + i.maxFutureSkewMs && i.baseTime + i.minDeltaMs + o >= i.firstSeenMs;
  if (i.unsynced) {
    if (i.bootOffsetMs !== null) offset = i.bootOffsetMs;
    else {
      if (i.helloOffsetMs !== null) offset = i.helloOffsetMs;
      else {
        offset = i.receivedAtMs - (i.baseTime + i.maxDeltaMs);
        estimated = true;
      }
      newBootOffsetMs = offset;
    }
  } else if (i.bootCorrectionMs !== null && plausible(i.bootCorrectionMs)) {
    offset = i.bootCorrectionMs;
  }
  let minTimeMs = i.baseTime + i.minDeltaMs + offset;
  let maxTimeMs = i.baseTime + i.maxDeltaMs + offset;
  let clamp: ClampReason | null = null;
  if (maxTimeMs > i.nowMs + i.maxFutureSkewMs) {
    // Shift the whole frame so its last sample is "now": keeps the samples' spacing.
    const shift = i.nowMs - maxTimeMs;
    offset += shift;
    minTimeMs += shift;
    maxTimeMs += shift;
    clamp = 'future';
  } else if (minTimeMs < i.firstSeenMs) {
    const shift = i.firstSeenMs - minTimeMs;
    offset += shift;
    minTimeMs += shift;
    maxTimeMs += shift;
    clamp = 'before_first_seen';
  }
  if (clamp) {
    // Make the shift the boot's, the first time only: later frames then follow the same timeline.
    if (newBootOffsetMs !== null) newBootOffsetMs = offset;
    else if (!i.unsynced && i.bootCorrectionMs === null) newBootCorrectionMs = offset;
  }
  return { timeOffsetMs: offset, newBootOffsetMs, newBootCorrectionMs, clamp, estimated, minTimeMs, maxTimeMs };
}
