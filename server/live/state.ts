/**
 * The live view of the fleet: per device its presence, identity and the latest value of every
 * channel, plus a short downsampled trail for sparklines. Read by snapshots and by `GET /api/devices`.
 * Bounded: devices, channels per device and trail length.
 *
 * Fed lazily, so that a frame nobody watches costs no decode: the fan-out records each accepted frame's
 * arrival (`noteData`, presence and gap statistics: a few numbers per frame) and
 * - for a device some live client covers, applies the tick's values at the tick (`applyValues`), so
 *   the state is "as of the last tick" and the deltas after a snapshot never repeat it;
 * - for a device nobody covers, only keeps a reference to its newest frame (`defer`), decoded when the
 *   state is read (`view`), by the presence sweep (every 250 ms, at most once per trail step: that
 *   keeps the sparkline trail), or when a client starts covering it. Its snapshot holds everything accepted so far and the deltas
 *   after it only later frames.
 *
 * Presence [docs/live-api.md §4]: `online` after HELLO → WELCOME; `stale` when a connected device has
 * sent no data for ~3 of its sample periods; `offline` when its session ends (with the session's
 * reason: 'closed', 'heartbeat', 'replaced', an error code...).
 */
import type { AcceptedFrame, PresenceState, SampleSink } from '../events.ts';
import type { Reading } from '../storage/types.ts';

/** A sample as live clients see it: `[timeMs, value]`. */
export type Sample = [timeMs: number, value: number | boolean];

export interface ChannelMeta {
  key: string;
  unit: string;
  /** Nominal sample period from the descriptor set [PROTO-3.3]; 0 = irregular or unknown. */
  periodMs: number;
}

/** One channel's samples of one tick, as the fan-out groups them. Samples are shared, never mutated. */
export interface TickSamples {
  unit: string;
  /** Arrival order. */
  samples: Sample[];
  /** The sample with the greatest time. */
  latest: Sample;
}

export interface ChannelState extends ChannelMeta {
  /** Latest sample, null until the first reading. */
  last: Sample | null;
  /** Downsampled trail (one point per `trailStepMs`, latest value of each step), oldest first. */
  trail: Sample[];
}

export interface DeviceState {
  deviceId: string;
  state: PresenceState;
  /** Why the device is in `state`: 'connected', 'data_resumed', 'no_data', or the session's end reason. */
  reason: string;
  /** Hub time (Unix ms) the device entered `state`. */
  sinceMs: number;
  /** Hub time of the last sign of life (connect or data); null when never seen. */
  lastSeenMs: number | null;
  /** Hub time the last data arrived; null when none since the hub started. */
  lastDataMs: number | null;
  firmwareVersion: string | null;
  bootId: number | null;
  timeSynced: boolean | null;
  channels: Map<string, ChannelState>;
  /** Recent gaps between data arrivals (ms), newest last; the stale threshold follows their median. */
  gaps: number[];
  /** The newest frame not yet applied to `channels` (nobody covered the device when it came). */
  deferred: AcceptedFrame | null;
  /**
   * Several instances (docs/scaling.md): the instance holding the device's session as last announced
   * (`remote:online`), or null for this one. Only the holder's offline counts: a device that moved to
   * another instance is not made offline by the end of its old session here.
   */
  instance: string | null;
  /** Arrival time of the last deferred frame applied (the sweep decodes at most one per trail step). */
  materializedAtMs: number;
}

/** A device as the REST API and snapshots present it (plain JSON). */
export interface DeviceView {
  id: string;
  state: PresenceState;
  reason: string;
  sinceMs: number;
  lastSeenMs: number | null;
  firmwareVersion: string | null;
  bootId: number | null;
  timeSynced: boolean | null;
  /** The hub's current stale threshold for this device, or null when it cannot go stale (irregular). */
  staleAfterMs: number | null;
  channels: ChannelView[];
}

export interface ChannelView extends ChannelMeta {
  last: Sample | null;
  trail?: Sample[];
}

export interface PresenceChange {
  deviceId: string;
  state: PresenceState;
  reason: string;
  sinceMs: number;
  lastSeenMs: number | null;
  firmwareVersion: string | null;
  bootId: number | null;
}

export interface LiveStateOptions {
  /** Devices tracked at most; further devices are ignored (and counted by the caller). */
  maxDevices?: number;
  /** Channels per device at most [PROTO-3.3 allows 64 per set; keys can change across firmware]. */
  maxChannelsPerDevice?: number;
  /** Trail points kept per channel. */
  trailPoints?: number;
  /** Spacing of trail points (ms). */
  trailStepMs?: number;
  /** A device is stale after this many expected gaps without data. */
  stalePeriods?: number;
  /** Lower bound of the stale threshold (ms), so fast channels do not flap on scheduling jitter. */
  minStaleMs?: number;
  /** Lower bound while fewer than 3 gaps between data arrivals are known (ms). */
  startupStaleMs?: number;
}

const GAP_SAMPLES = 9;
/** Gaps observed before the stale threshold follows them alone. */
const MIN_GAPS = 3;

export class LiveState {
  readonly devices = new Map<string, DeviceState>();
  readonly #maxDevices: number;
  readonly #maxChannels: number;
  readonly #trailPoints: number;
  readonly #trailStepMs: number;
  readonly #stalePeriods: number;
  readonly #minStaleMs: number;
  readonly #startupStaleMs: number;
  /** Readings dropped because a device or channel cap was hit. */
  overflow = 0;

  constructor(options: LiveStateOptions = {}) {
    this.#maxDevices = options.maxDevices ?? 100_000;
    this.#maxChannels = options.maxChannelsPerDevice ?? 128;
    this.#trailPoints = options.trailPoints ?? 60;
    this.#trailStepMs = options.trailStepMs ?? 1000;
    this.#stalePeriods = options.stalePeriods ?? 3;
    this.#minStaleMs = options.minStaleMs ?? 1000;
    this.#startupStaleMs = options.startupStaleMs ?? 5000;
  }

  /** The device's state, created (offline, never seen) when the caps allow; undefined otherwise. */
  device(deviceId: string): DeviceState | undefined {
    let d = this.devices.get(deviceId);
    if (d === undefined) {
      if (this.devices.size >= this.#maxDevices) return undefined;
      d = {
        deviceId,
        state: 'offline',
        reason: 'never_seen',
        sinceMs: 0,
        lastSeenMs: null,
        lastDataMs: null,
        firmwareVersion: null,
        bootId: null,
        timeSynced: null,
        channels: new Map(),
        gaps: [],
        deferred: null,
        materializedAtMs: Number.NEGATIVE_INFINITY,
        instance: null,
      };
      this.devices.set(deviceId, d);
    }
    return d;
  }

  /**
   * Brings back what the store kept of a device after a hub restart (its newest stored readings and
   * when they arrived), so the fleet view shows last values and "seen … ago" before the board
   * reconnects. Never overrides newer live state; the device stays offline (`never_seen`: not seen
   * since the hub started) until a session brings it online.
   */
  restore(deviceId: string, lastSeenMs: number, readings: readonly Reading[]): void {
    const d = this.device(deviceId);
    if (!d) return;
    if (d.lastSeenMs === null || lastSeenMs > d.lastSeenMs) d.lastSeenMs = lastSeenMs;
    for (const r of readings) {
      const ch = this.#channel(d, r.channel, r.unit);
      if (!ch) continue;
      if (ch.last === null || r.timeMs > ch.last[0]) ch.last = [r.timeMs, r.value];
    }
  }

  /**
   * A session completed HELLO → WELCOME, here (`instance` null) or on another instance. Returns the
   * presence change.
   */
  online(
    info: { deviceId: string; firmwareVersion: string; bootId: number; timeSynced: boolean },
    atMs: number,
    instance: string | null = null,
  ): PresenceChange | null {
    const d = this.device(info.deviceId);
    if (!d) return null;
    d.instance = instance;
    d.firmwareVersion = info.firmwareVersion;
    d.bootId = info.bootId;
    d.timeSynced = info.timeSynced;
    d.lastSeenMs = atMs;
    // A fresh session: gaps measured across the disconnect say nothing about the sample period.
    d.lastDataMs = null;
    d.gaps.length = 0;
    // Forced: a reconnect or reboot while shown online still tells clients the new boot and firmware.
    return this.#transition(d, 'online', 'connected', atMs, true);
  }

  /** A session ended, here (`instance` null) or on another instance. */
  offline(deviceId: string, reason: string, atMs: number, instance: string | null = null): PresenceChange | null {
    // A replaced session [PROTO-5.4] is followed (or preceded) by the replacing session's online
    // event; whichever order the hub emits them in, the device is connected.
    if (reason === 'replaced' || reason === 'REPLACED') return null;
    const d = this.devices.get(deviceId);
    if (!d) return null;
    // The device connected elsewhere since (it moved): the end of a session it left is not news.
    if (d.instance !== instance) return null;
    return this.#transition(d, 'offline', reason, atMs);
  }

  /**
   * This instance cannot hear the instance holding the device (its broker link is down): shown
   * stale (`cluster_unreachable`) until data or a new announcement arrives.
   */
  unknown(deviceId: string, instance: string, atMs: number): PresenceChange | null {
    const d = this.devices.get(deviceId);
    if (!d || d.instance !== instance || d.state !== 'online') return null;
    return this.#transition(d, 'stale', 'cluster_unreachable', atMs);
  }

  /** Replaces the channel metadata from the device's descriptor set (keeps latest values). */
  setChannels(deviceId: string, channels: readonly ChannelMeta[]): boolean {
    const d = this.device(deviceId);
    if (!d) return false;
    for (const meta of channels) {
      const ch = this.#channel(d, meta.key, meta.unit);
      if (ch) {
        ch.unit = meta.unit;
        ch.periodMs = meta.periodMs;
      }
    }
    return true;
  }

  /**
   * Applies one tick's readings of a device (already in arrival order). Returns a presence change
   * when the data brought a stale device back.
   */
  applyReadings(deviceId: string, readings: readonly Reading[], atMs: number): PresenceChange | null {
    const channels = new Map<string, TickSamples>();
    for (const r of readings) {
      const sample: Sample = [r.timeMs, r.value];
      const ch = channels.get(r.channel);
      if (!ch) channels.set(r.channel, { unit: r.unit, samples: [sample], latest: sample });
      else {
        ch.samples.push(sample);
        if (sample[0] >= ch.latest[0]) ch.latest = sample;
      }
    }
    return this.applyTick(deviceId, channels, atMs);
  }

  /**
   * Applies one tick of a device grouped by channel (what the fan-out builds anyway): per channel the
   * latest sample and the trail, without copying samples. Returns a presence change when the data
   * brought a stale device back.
   */
  applyTick(deviceId: string, channels: ReadonlyMap<string, TickSamples>, atMs: number): PresenceChange | null {
    const d = this.device(deviceId);
    if (!d) {
      for (const ch of channels.values()) this.overflow += ch.samples.length;
      return null;
    }
    this.applyValues(d, channels);
    return this.noteData(d, atMs);
  }

  /**
   * Keeps a reference to the device's newest frame instead of decoding it (nobody covers the device);
   * applied when the state is read, swept, or the device gets covered (`materialize`).
   */
  defer(d: DeviceState, frame: AcceptedFrame): void {
    d.deferred = frame;
  }

  /** Applies the device's deferred frame, if any: latest value per channel, one trail point each. */
  materialize(d: DeviceState): void {
    const frame = d.deferred;
    if (frame === null) return;
    d.deferred = null;
    d.materializedAtMs = frame.receivedAtMs;
    const collector = new TickCollector(null, Number.POSITIVE_INFINITY);
    frame.forEachSample(collector);
    this.applyValues(d, collector.finish());
  }

  /** Applies one tick's values of a device (latest value, trail); `noteData` records the arrival. */
  applyValues(d: DeviceState, channels: ReadonlyMap<string, TickSamples>): void {
    const step = this.#trailStepMs;
    for (const [key, tick] of channels) {
      const ch = this.#channel(d, key, tick.unit);
      if (!ch) {
        this.overflow += tick.samples.length;
        continue;
      }
      if (ch.last === null || tick.latest[0] >= ch.last[0]) ch.last = tick.latest;
      const trail = ch.trail;
      let tail = trail[trail.length - 1];
      let tailStep = tail === undefined ? -1 : Math.floor(tail[0] / step);
      for (const sample of tick.samples) {
        const t = sample[0];
        const sampleStep = Math.floor(t / step);
        if (tail !== undefined && sampleStep === tailStep) {
          if (t >= tail[0]) {
            trail[trail.length - 1] = sample;
            tail = sample;
          }
        } else if (tail === undefined || t > tail[0]) {
          trail.push(sample);
          if (trail.length > this.#trailPoints) trail.shift();
          tail = sample;
          tailStep = sampleStep;
        }
      }
    }
  }

  /** Records that data arrived now (gap statistics, last seen); stale → online. */
  noteData(d: DeviceState, atMs: number): PresenceChange | null {
    if (d.lastDataMs !== null) {
      const gap = atMs - d.lastDataMs;
      // Several frames accepted in one tick arrive together: a 0 gap carries no period information.
      if (gap > 0) {
        d.gaps.push(gap);
        if (d.gaps.length > GAP_SAMPLES) d.gaps.shift();
      }
    }
    d.lastDataMs = atMs;
    d.lastSeenMs = atMs;
    // Data arriving after the session ended (the last frames of a closing socket) must not revive it:
    // only a new session brings an offline device back.
    if (d.state === 'stale') return this.#transition(d, 'online', 'data_resumed', atMs);
    return null;
  }

  /**
   * The stale threshold: `stalePeriods` × the expected gap, where the expected gap is the larger of
   * the shortest nominal channel period and the median observed gap between data arrivals (devices
   * batch several samples per frame, and `set_sample_interval` changes the rate without new
   * descriptors). Null when neither is known (irregular channels): such a device is never stale.
   */
  staleAfterMs(d: DeviceState): number | null {
    let period = 0;
    for (const ch of d.channels.values()) {
      if (ch.periodMs > 0 && (period === 0 || ch.periodMs < period)) period = ch.periodMs;
    }
    const observed = median(d.gaps);
    const expected = Math.max(period, observed);
    if (expected <= 0) return null;
    // Until a few gaps are known the sample period says little about how often frames come (a board
    // batching four 250 ms samples per frame sends every second): allow a grace period.
    const floor = d.gaps.length >= MIN_GAPS ? this.#minStaleMs : Math.max(this.#minStaleMs, this.#startupStaleMs);
    return Math.max(floor, this.#stalePeriods * expected);
  }

  /** Marks online devices without recent data as stale. Called periodically by the fan-out. */
  sweep(nowMs: number): PresenceChange[] {
    const changes: PresenceChange[] = [];
    for (const d of this.devices.values()) {
      // The sparkline trail of a device nobody watches: at most one decode per trail step (see the top).
      if (d.deferred !== null && d.deferred.receivedAtMs - d.materializedAtMs >= this.#trailStepMs) {
        this.materialize(d);
      }
      if (d.state !== 'online') continue;
      const since = d.lastDataMs ?? d.sinceMs;
      // No threshold is below the floor: a device with data since then needs no median (with 1,000
      // streaming devices the sweep would otherwise sort 1,000 gap lists four times a second).
      if (nowMs - since <= this.#minStaleMs) continue;
      const limit = this.staleAfterMs(d);
      if (limit !== null && nowMs - since > limit) {
        const change = this.#transition(d, 'stale', 'no_data', nowMs);
        if (change) changes.push(change);
      }
    }
    return changes;
  }

  view(d: DeviceState, withTrail: boolean, channelFilter?: ReadonlySet<string>): DeviceView {
    this.materialize(d);
    const channels: ChannelView[] = [];
    for (const ch of d.channels.values()) {
      if (channelFilter && !channelFilter.has(ch.key)) continue;
      const v: ChannelView = { key: ch.key, unit: ch.unit, periodMs: ch.periodMs, last: ch.last };
      if (withTrail) v.trail = ch.trail.slice();
      channels.push(v);
    }
    return {
      id: d.deviceId,
      state: d.state,
      reason: d.reason,
      sinceMs: d.sinceMs,
      lastSeenMs: d.lastSeenMs,
      firmwareVersion: d.firmwareVersion,
      bootId: d.bootId,
      timeSynced: d.timeSynced,
      staleAfterMs: this.staleAfterMs(d),
      channels,
    };
  }

  #channel(d: DeviceState, key: string, unit: string): ChannelState | undefined {
    let ch = d.channels.get(key);
    if (ch === undefined) {
      if (d.channels.size >= this.#maxChannels) return undefined;
      ch = { key, unit, periodMs: 0, last: null, trail: [] };
      d.channels.set(key, ch);
    }
    return ch;
  }

  #transition(
    d: DeviceState,
    state: PresenceState,
    reason: string,
    atMs: number,
    force = false,
  ): PresenceChange | null {
    if (!force && d.state === state && d.reason === reason) return null;
    d.state = state;
    d.reason = reason;
    d.sinceMs = atMs;
    return {
      deviceId: d.deviceId,
      state,
      reason,
      sinceMs: atMs,
      lastSeenMs: d.lastSeenMs,
      firmwareVersion: d.firmwareVersion,
      bootId: d.bootId,
    };
  }
}

interface Gathered {
  unit: string;
  /** Every sample (arrival order), or null when only the latest is kept. */
  samples: Sample[] | null;
  t: number;
  v: number | boolean;
  /** The latest sample's object when `samples` holds it. */
  s: Sample | null;
}

/**
 * Gathers frames' samples by channel into what a tick applies and sends (`TickSamples`): every sample
 * of the channels `every` names (`true`: all channels), only the latest (greatest time) of the others,
 * kept as numbers until `finish` so a channel nobody wants in full costs no object per sample. At most
 * `cap` samples per channel: beyond it the newest replaces the last kept one (`folded` counts them).
 */
export class TickCollector implements SampleSink {
  readonly #gathered = new Map<string, Gathered>();
  folded = 0;
  constructor(
    private readonly every: ReadonlySet<string> | true | null,
    private readonly cap: number,
  ) {}

  /** Channels seen so far. */
  get size(): number {
    return this.#gathered.size;
  }

  sample(channel: string, unit: string, timeMs: number, value: number | boolean): void {
    let g = this.#gathered.get(channel);
    if (g === undefined) {
      const every = this.every;
      const all = every === true || every?.has(channel) === true;
      g = { unit, samples: all ? [] : null, t: Number.NEGATIVE_INFINITY, v: 0, s: null };
      this.#gathered.set(channel, g);
    }
    const list = g.samples;
    if (list !== null) {
      const s: Sample = [timeMs, value];
      if (list.length < this.cap) list.push(s);
      else {
        list[this.cap - 1] = s;
        this.folded++;
      }
      if (timeMs >= g.t) {
        g.t = timeMs;
        g.v = value;
        g.s = s;
      }
    } else if (timeMs >= g.t) {
      g.t = timeMs;
      g.v = value;
    }
  }

  finish(): Map<string, TickSamples> {
    const out = new Map<string, TickSamples>();
    for (const [key, g] of this.#gathered) {
      const latest: Sample = g.s ?? [g.t, g.v];
      out.set(key, { unit: g.unit, samples: g.samples ?? [latest], latest });
    }
    return out;
  }
}

function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1] as number;
}
