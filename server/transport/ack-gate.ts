/**
 * `ACK_DURABILITY=influx`: a device's ACK waits for InfluxDB's confirmation of its frames, besides the
 * local commit [PROTO-3.5]. Users who cannot accept losing an instance's disk choose it: an ACKed
 * reading is then in InfluxDB (or, for lines InfluxDB refused as bad, in the dead-letter store).
 *
 * How: a frame whose local commit is durable enters this gate with its log offset (a duplicate with
 * the log head at the time it was queued, which covers its original). The forwarder reports one
 * monotone number, the offset up to which InfluxDB confirmed the log in order (`ConfirmationSource`);
 * at each step the gate releases the frames at the front of its queue that the step covers, in log
 * order, and each released frame goes back to its session, which queues its cumulative ACK as after a
 * local commit: one ACK per session per confirmation step. No promise, timer or closure per frame:
 * the queue is parallel arrays (a ring).
 *
 * Bounded: a frame in the gate keeps its cost in the hub-wide in-flight budget (inflight-budget.ts)
 * until it is released, so an InfluxDB outage fills the budget and pauses the links (backpressure into
 * the kernel's buffers and the devices' outboxes) instead of growing memory. Visible: the gauges below,
 * `/readyz` `checks.forwarder` (the forwarder's retrying state), and a warning at the default level
 * when the oldest frame has waited longer than {@link ACK_HOLD_WARN_MS} (at most one per
 * {@link ACK_HOLD_LOG_INTERVAL_MS}; an info line when ACKs flow again).
 *
 * WELCOME's last ACK frees the device's outbox too, so it must not run ahead of InfluxDB either
 * (`welcomeAck`): for a device with frames still in the gate it is the last frame of the device the gate
 * released (or the last ACK its session had sent when they started waiting); while frames stored by an earlier process (after a restart) are not all confirmed, it is
 * none (the device replays its outbox; the hub takes the stored ones for duplicates and ACKs them once
 * confirmed).
 */
import { Gauge } from 'prom-client';
import type { FrameRef } from '../codec/index.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import { metricsPerRegistry } from '../metrics/per-registry.ts';

/** The oldest frame waiting longer than this is logged (warn). */
export const ACK_HOLD_WARN_MS = 10_000;
/** Shortest spacing between two "ACKs held" warnings. */
export const ACK_HOLD_LOG_INTERVAL_MS = 30_000;
/** How often the gauges are refreshed and the hold checked. */
const CHECK_INTERVAL_MS = 1000;

/** What the InfluxDB forwarder offers (server/storage/influx/forwarder.ts `ConfirmedPosition`). */
export interface ConfirmationSource {
  /** Every frame at or below this log offset is in InfluxDB or in the dead-letter store. Monotone. */
  confirmedOffset(): number;
  onConfirmed(listener: (offset: number) => void): () => void;
}

/** A frame's owner (a device session): called once per frame, in log order, when InfluxDB confirmed it. */
export interface AckWaiter {
  readonly deviceId: string;
  /** The latest ACK it sent (a confirmed position), if any: seeds the device's WELCOME answer. */
  readonly lastAck: FrameRef | null;
  confirmed(bootId: number, seq: number, cost: number, startedMs: number): void;
}

const gateMetrics = metricsPerRegistry((registers) => ({
  frames: new Gauge({
    name: 'hub_ack_awaiting_influx_frames',
    help: 'Frames committed to the local log whose ACK waits for InfluxDB to confirm them (ACK_DURABILITY=influx). Counted in the in-flight budget (hub_ingest_inflight_bytes).',
    registers,
  }),
  bytes: new Gauge({
    name: 'hub_ack_awaiting_influx_bytes',
    help: 'In-flight budget bytes held by frames whose ACK waits for InfluxDB (ACK_DURABILITY=influx).',
    registers,
  }),
  oldest: new Gauge({
    name: 'hub_ack_awaiting_influx_oldest_seconds',
    help: 'How long the oldest frame whose ACK waits for InfluxDB has waited, seconds (0 when none waits).',
    registers,
  }),
}));

/** A device's frames in the gate, and the last of its frames the gate released. */
interface DevicePending {
  count: number;
  last: FrameRef | null;
}

export interface AckGateOptions {
  metrics: Metrics;
  logger: Logger;
  /** Wall clock (ms), for the hold check. */
  now?: () => number;
}

export class InfluxAckGate {
  #source: ConfirmationSource | null = null;
  #unsubscribe: (() => void) | null = null;
  /** Frames up to this offset were stored before the gate attached (an earlier process). */
  #backlogHead = Number.POSITIVE_INFINITY;
  #timer: NodeJS.Timeout | null = null;
  readonly #metrics: ReturnType<typeof gateMetrics>;
  readonly #logger: Logger;
  readonly #now: () => number;

  // The queue, in log order: parallel arrays used as a ring of capacity `#cap` (grown by doubling).
  #cap = 1024;
  #head = 0;
  #size = 0;
  #waiters: (AckWaiter | undefined)[] = new Array(this.#cap);
  #devices: (DevicePending | undefined)[] = new Array(this.#cap);
  #offsets = new Float64Array(this.#cap);
  #boots = new Float64Array(this.#cap);
  #seqs = new Float64Array(this.#cap);
  #costs = new Float64Array(this.#cap);
  #started = new Float64Array(this.#cap);
  #enqueuedAt = new Float64Array(this.#cap);
  readonly #byDevice = new Map<string, DevicePending>();
  #releasedListener: ((deviceId: string, bootId: number, seq: number) => void) | null = null;

  /** Budget bytes held by the frames in the gate. */
  bytes = 0;
  #heldSinceMs: number | null = null;
  #lastWarnAtMs = Number.NEGATIVE_INFINITY;
  #warned = false;

  constructor(opts: AckGateOptions) {
    this.#metrics = gateMetrics(opts.metrics);
    this.#logger = opts.logger.child({ component: 'ack-gate' });
    this.#now = opts.now ?? Date.now;
  }

  /** Frames in the gate now. */
  get frames(): number {
    return this.#size;
  }

  /**
   * Starts taking confirmations from the forwarder. `logHead`: the local log's head offset now; frames
   * up to it were stored by an earlier process, so WELCOME names no last ACK until they are confirmed.
   */
  attach(source: ConfirmationSource, logHead: number): void {
    this.detach();
    this.#source = source;
    this.#backlogHead = logHead;
    this.#unsubscribe = source.onConfirmed((offset) => this.#release(offset));
    this.#timer = setInterval(() => this.#check(), CHECK_INTERVAL_MS);
    this.#timer.unref();
    this.#release(source.confirmedOffset());
  }

  /** Stops taking confirmations (hub stop): frames still in the gate are never acknowledged. */
  detach(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = null;
    this.#source = null;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /**
   * A frame is durable in the local log at `offset`: `waiter.confirmed(...)` runs once InfluxDB has
   * confirmed the log up to it (at once when it already has and nothing waits before it).
   */
  wait(waiter: AckWaiter, offset: number, bootId: number, seq: number, cost: number, startedMs: number): void {
    const source = this.#source;
    if (this.#size === 0 && source !== null && offset <= source.confirmedOffset()) {
      waiter.confirmed(bootId, seq, cost, startedMs);
      return;
    }
    if (this.#size === this.#cap) this.#grow();
    let dev = this.#byDevice.get(waiter.deviceId);
    if (dev === undefined) {
      dev = { count: 0, last: waiter.lastAck };
      this.#byDevice.set(waiter.deviceId, dev);
    }
    dev.count++;
    const i = (this.#head + this.#size) % this.#cap;
    this.#waiters[i] = waiter;
    this.#devices[i] = dev;
    this.#offsets[i] = offset;
    this.#boots[i] = bootId;
    this.#seqs[i] = seq;
    this.#costs[i] = cost;
    this.#started[i] = startedMs;
    this.#enqueuedAt[i] = this.#now();
    this.#size++;
    this.bytes += cost;
  }

  /**
   * One listener told of every frame released (InfluxDB confirmed it), in log order: what the cluster's
   * shared device state (last ACK, highest seq) must follow in this mode instead of the local commit,
   * or another instance would free or dedupe frames only this instance's disk holds.
   */
  onReleased(listener: (deviceId: string, bootId: number, seq: number) => void): () => void {
    this.#releasedListener = listener;
    return () => {
      if (this.#releasedListener === listener) this.#releasedListener = null;
    };
  }

  /**
   * WELCOME's last ACK for a device whose last locally durable frame is `durable`: never a frame
   * InfluxDB has not confirmed (the device frees its outbox up to it).
   */
  welcomeAck(deviceId: string, durable: FrameRef | null): FrameRef | null {
    const source = this.#source;
    if (source === null || source.confirmedOffset() < this.#backlogHead) return null;
    const dev = this.#byDevice.get(deviceId);
    if (dev === undefined) return durable;
    return dev.last ? { ...dev.last } : null;
  }

  /** Releases, in log order, every frame the confirmed `offset` covers. */
  #release(offset: number): void {
    while (this.#size > 0) {
      const i = this.#head;
      if ((this.#offsets[i] as number) > offset) break;
      const waiter = this.#waiters[i] as AckWaiter;
      const dev = this.#devices[i] as DevicePending;
      const bootId = this.#boots[i] as number;
      const seq = this.#seqs[i] as number;
      const cost = this.#costs[i] as number;
      this.#waiters[i] = undefined;
      this.#devices[i] = undefined;
      this.#head = (i + 1) % this.#cap;
      this.#size--;
      this.bytes -= cost;
      // A replay of an older frame (a duplicate) does not move the device's position back.
      const last = dev.last;
      if (last === null) dev.last = { bootId, seq };
      else if (last.bootId !== bootId || seq > last.seq) {
        last.bootId = bootId;
        last.seq = seq;
      }
      if (--dev.count === 0 && this.#byDevice.get(waiter.deviceId) === dev) this.#byDevice.delete(waiter.deviceId);
      try {
        this.#releasedListener?.(waiter.deviceId, bootId, seq);
        waiter.confirmed(bootId, seq, cost, this.#started[i] as number);
      } catch (err) {
        this.#logger.error({ err }, 'ACK release threw');
      }
    }
    if (this.#size === 0 && this.#heldSinceMs !== null) this.#endHold();
  }

  #grow(): void {
    const cap = this.#cap * 2;
    const order = (a: Float64Array) => {
      const out = new Float64Array(cap);
      for (let k = 0; k < this.#size; k++) out[k] = a[(this.#head + k) % this.#cap] as number;
      return out;
    };
    const orderArr = <T>(a: T[]) => {
      const out: T[] = new Array(cap);
      for (let k = 0; k < this.#size; k++) out[k] = a[(this.#head + k) % this.#cap] as T;
      return out;
    };
    this.#waiters = orderArr(this.#waiters);
    this.#devices = orderArr(this.#devices);
    this.#offsets = order(this.#offsets);
    this.#boots = order(this.#boots);
    this.#seqs = order(this.#seqs);
    this.#costs = order(this.#costs);
    this.#started = order(this.#started);
    this.#enqueuedAt = order(this.#enqueuedAt);
    this.#head = 0;
    this.#cap = cap;
  }

  /** Oldest wait in ms (0 when empty). */
  #oldestMs(nowMs: number): number {
    return this.#size === 0 ? 0 : Math.max(0, nowMs - (this.#enqueuedAt[this.#head] as number));
  }

  #check(): void {
    const nowMs = this.#now();
    const oldestMs = this.#oldestMs(nowMs);
    this.#metrics.frames.set(this.#size);
    this.#metrics.bytes.set(this.bytes);
    this.#metrics.oldest.set(oldestMs / 1000);
    if (oldestMs < ACK_HOLD_WARN_MS) return;
    this.#heldSinceMs ??= this.#enqueuedAt[this.#head] as number;
    if (nowMs - this.#lastWarnAtMs < ACK_HOLD_LOG_INTERVAL_MS) return;
    this.#lastWarnAtMs = nowMs;
    this.#warned = true;
    this.#logger.warn(
      {
        frames: this.#size,
        bytes: this.bytes,
        oldestWaitSeconds: Math.round(oldestMs / 1000),
        confirmedOffset: this.#source?.confirmedOffset() ?? null,
      },
      'ACKs held: InfluxDB has not confirmed these frames (ACK_DURABILITY=influx); they are stored locally, the devices keep them, links pause when the in-flight budget is full; see /readyz checks.forwarder',
    );
  }

  #endHold(): void {
    const since = this.#heldSinceMs as number;
    this.#heldSinceMs = null;
    this.#metrics.frames.set(0);
    this.#metrics.bytes.set(0);
    this.#metrics.oldest.set(0);
    if (!this.#warned) return;
    this.#warned = false;
    this.#lastWarnAtMs = Number.NEGATIVE_INFINITY;
    this.#logger.info(
      { heldSeconds: Math.round((this.#now() - since) / 1000) },
      'ACKs flowing again: InfluxDB confirmed every held frame',
    );
  }
}
