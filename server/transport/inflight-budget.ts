/**
 * The hub-wide bound on TELEMETRY frames handed to the pipeline and not yet durable, in bytes.
 *
 * A frame is in flight from the moment its session hands it to the ingest until its commit callback
 * ran (or it was refused): the frame's buffer, the log's group entry and the session's callback live
 * that long. Bounding them per session (the earlier 512 frames per session) let memory grow with the
 * number of devices — 1,000 devices × 512 frames is half a million frames. This bound is hub-wide:
 *
 * - When the bytes in flight exceed `maxBytes`, the link a frame arrived on is paused (a WebSocket
 *   stops reading its socket, so the device's frames wait in the kernel's buffers and then on the
 *   device: TCP backpressure; an MQTT link withholds PUBACKs). Counted in
 *   `hub_device_session_pauses_total`; the level is `hub_ingest_inflight_bytes`.
 * - Paused links resume in the order they were paused, once the bytes in flight are at or below the
 *   low-water mark (half of `maxBytes`), and only as many as the room below `maxBytes` allows for one
 *   socket read each (`resumeReadBytes`): a resumed link reads at most one chunk before the next frame
 *   checks the bound again, so resuming never overshoots by more than what it admitted.
 *
 * What may still exceed `maxBytes`: the chunk each link that was not paused yet is reading when the
 * bound is crossed (one socket read, ≤ 64 KiB, per link). That is the kernel's and ws's buffering,
 * bounded per connection by the connection cap.
 */

/** What the budget pauses and resumes (a device session's link). */
export interface Pausable {
  pause(): void;
  resume(): void;
}

/** Bytes in flight hub-wide above which links are paused. */
export const INFLIGHT_MAX_BYTES = 16 * 1024 * 1024;
/**
 * Counted per frame on top of its length: its Buffer object, the log group's entry and offsets, the
 * session's completion closure (an estimate of what a 200-byte frame really holds while in flight).
 */
export const INFLIGHT_FRAME_OVERHEAD_BYTES = 512;
/** Room left per link resumed: one socket read (libuv reads up to 64 KiB at a time). */
export const RESUME_READ_BYTES = 64 * 1024;

export class InflightBudget {
  /** Bytes counted in flight now (frame lengths plus the per-frame overhead). */
  bytes = 0;
  /** Frames in flight now. */
  frames = 0;
  /** Highest `bytes` since the last `takePeak()`. */
  peakBytes = 0;
  /** Links paused because of this bound, in the order they were paused (a Set keeps insertion order). */
  readonly #paused = new Set<Pausable>();
  readonly #lowWater: number;

  constructor(
    readonly maxBytes = INFLIGHT_MAX_BYTES,
    readonly resumeReadBytes = RESUME_READ_BYTES,
  ) {
    this.#lowWater = maxBytes / 2;
  }

  /** The cost of a frame of `length` bytes. */
  static cost(length: number): number {
    return length + INFLIGHT_FRAME_OVERHEAD_BYTES;
  }

  /** Links paused by the bound now. */
  get pausedLinks(): number {
    return this.#paused.size;
  }

  /**
   * A frame entered the pipeline. Returns true when the hub is now over its bound: the caller pauses
   * the frame's link (`pause`).
   */
  take(cost: number): boolean {
    this.bytes += cost;
    this.frames++;
    if (this.bytes > this.peakBytes) this.peakBytes = this.bytes;
    return this.bytes > this.maxBytes;
  }

  /** Pauses `link` until the budget resumes it; returns false when it was already paused. */
  pause(link: Pausable): boolean {
    if (this.#paused.has(link)) return false;
    this.#paused.add(link);
    link.pause();
    return true;
  }

  /** True while `link` waits for the budget to resume it. */
  isPaused(link: Pausable): boolean {
    return this.#paused.has(link);
  }

  /** A frame left the pipeline (durable, failed or refused): may resume paused links. */
  release(cost: number): void {
    this.bytes -= cost;
    this.frames--;
    if (this.#paused.size > 0 && this.bytes <= this.#lowWater) this.#resumeSome();
  }

  /** The link closed: it no longer waits to be resumed. */
  forget(link: Pausable): void {
    this.#paused.delete(link);
  }

  /** Returns the peak since the previous call and starts a new period at the current level. */
  takePeak(): number {
    const peak = this.peakBytes;
    this.peakBytes = this.bytes;
    return peak;
  }

  #resumeSome(): void {
    let room = this.maxBytes - this.bytes;
    let resumed = 0;
    for (const link of this.#paused) {
      // At least one per call, so a budget smaller than two socket reads still moves.
      if (room < this.resumeReadBytes && resumed > 0) break;
      resumed++;
      room -= this.resumeReadBytes;
      this.#paused.delete(link);
      link.resume();
    }
  }
}
