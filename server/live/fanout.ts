/**
 * Live fan-out: turns hub events into per-tick messages for browser subscribers.
 *
 * - Broadcast once: per tick, one `data` message per distinct subscription set (every fleet viewer
 *   shares one), serialized once into a Buffer and sent as-is to each of those clients.
 * - Bounded everything: readings wait at most one tick (capped per channel); a client whose
 *   `bufferedAmount` is above the high-water mark gets nothing more: its updates are folded into the
 *   latest value per (device, channel), its events into the latest per key; when it drains it gets a
 *   `skipped` marker and the latest values; if it stays above the mark for `drainTimeoutMs` it is
 *   evicted. Counted in `hub_live_*`.
 * - Ordering: within a tick, `data` precedes events (presence, channels, command). State (for
 *   snapshots and `GET /api/devices`) is updated at the tick too, so a snapshot never overlaps the
 *   deltas that follow it.
 * - Off the ingest hot path: an accepted frame arrives as a reference (`AcceptedFrame`, not decoded).
 *   Per frame the fan-out notes the arrival (presence) and keeps the reference: in the tick's list
 *   when some client covers the device, else as the device's newest frame in the state (decoded only
 *   when read, see state.ts). At the tick it decodes only the covered devices' frames, and keeps one
 *   object per sample only for channels some client takes in `all` mode; for the others the newest
 *   frames suffice (latest value per channel).
 */
import type { AcceptedFrame, SampleSink } from '../events.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import type { Reading } from '../storage/types.ts';
import {
  type AlertMessage,
  type ChannelsMessage,
  type CommandMessage,
  type DataUpdates,
  encode,
  LIVE_API_VERSION,
  MAX_CHANNELS_PER_SUBSCRIPTION,
  MAX_INBOUND_BYTES,
  type PresenceMessage,
  parseClientMessage,
  type ServerMessage,
  type Subscription,
  type SubscriptionMode,
} from './messages.ts';
import {
  type ChannelMeta,
  type LiveState,
  type PresenceChange,
  type Sample,
  TickCollector,
  type TickSamples,
} from './state.ts';

/**
 * Adaptive tick: the gap between tick starts is this many times the previous tick's work (within
 * [minTickMs, tickMs]), so ticks take at most about 1 / TICK_COST_FACTOR of the event loop while the
 * gap is below `tickMs`. 4 measured best of 2, 3 and 4 in bench/fanout.bench.ts (p99 and its spread).
 */
export const TICK_COST_FACTOR = 4;

/** What the fan-out needs from a socket; `ws`'s WebSocket satisfies it. */
export interface LiveSocket {
  readonly bufferedAmount: number;
  send(data: Buffer, options: { binary: boolean }, cb?: (err?: Error) => void): void;
  terminate(): void;
  close(code?: number, reason?: string): void;
}

export type LiveRole = 'viewer' | 'operator';

export interface FanoutOptions {
  state: LiveState;
  metrics: Pick<Metrics, 'liveClients' | 'liveMessages' | 'liveCoalesced' | 'liveEvictions'>;
  logger: Logger;
  /**
   * Longest time between two ticks under load (ms): updates wait at most about this long. A tick runs
   * on the next event-loop turn when the previous one started at least the current gap ago (leading
   * edge: a lone update after a quiet spell goes out at once); otherwise updates gather until then.
   */
  tickMs: number;
  /**
   * Shortest gap between two tick starts (ms). Between it and `tickMs` the gap adapts to the cost of
   * the ticks: `TICK_COST_FACTOR` × the previous tick's work, so cheap ticks run often (low latency)
   * and expensive ones (many clients, big messages) coalesce more and keep the fan-out's share of the
   * event loop bounded. Default `tickMs` (a fixed cadence); the live extension uses 1.
   */
  minTickMs?: number;
  /** Clock that times a tick's work (ms, sub-ms precision). Default `performance.now`. */
  workClock?: () => number;
  /** Per-client `bufferedAmount` above which updates are coalesced instead of sent (bytes). */
  highWaterBytes: number;
  /** A client above the high-water mark this long is evicted (ms). */
  drainTimeoutMs: number;
  maxSubscriptions: number;
  /** Samples kept per (device, channel) per tick; more are folded into the latest and counted. */
  maxSamplesPerChannelPerTick?: number;
  /** Samples waiting for the next tick at most (frames kept by reference); reaching it flushes at once. */
  maxPendingReadings?: number;
  /** Inbound messages per second per client (token bucket, burst 2×); beyond it the client is closed. */
  inboundPerSec?: number;
  /** Pending events a behind client may accumulate (after coalescing by key) before eviction. */
  maxPendingEvents?: number;
  /** How often presence is swept for stale devices (ms). */
  sweepIntervalMs?: number;
  now?: () => number;
  /** Called when the number of connected clients changed (the cluster relay's interest). */
  onClients?: (count: number) => void;
}

interface Behind {
  sinceMs: number;
  fromTick: number;
  /** Samples folded (not delivered). */
  samples: number;
  latest: Map<string, Map<string, Sample>>;
  /** Events coalesced by key (presence per device, channels per device, command per id). */
  events: Map<string, Buffer>;
  /** Subscriptions whose snapshot is owed. */
  snapshots: Set<string>;
}

export interface LiveClient {
  readonly id: number;
  readonly socket: LiveSocket;
  readonly role: LiveRole;
  readonly subs: Map<string, Subscription>;
  /** Canonical signature of `subs`: clients with equal keys get the same data message. */
  key: string;
  fleet: Subscription[];
  byDevice: Map<string, Subscription[]>;
  behind: Behind | null;
  tokens: number;
  tokensAtMs: number;
  closed: boolean;
}

interface TickEvent {
  device: string;
  /** Coalescing key for behind clients. */
  key: string;
  buffer: Buffer;
}

type TickChannel = TickSamples;

/** Which devices some client covers, and which channels someone takes in full (`all` mode). */
interface Coverage {
  fleet: boolean;
  /** Channels fleet subscriptions take in `all` mode (`true`: every channel). */
  fleetAll: Set<string> | true | null;
  /** Per device covered by a device subscription: the channels taken in `all` mode. */
  devices: Map<string, Set<string> | true | null>;
}

/** An accepted frame given as readings (producers other than the ingest, tests). */
class ReadingsFrame implements AcceptedFrame {
  constructor(
    readonly deviceId: string,
    readonly receivedAtMs: number,
    private readonly list: Reading[],
  ) {}
  get samples(): number {
    return this.list.length;
  }
  get channelCount(): number {
    return new Set(this.list.map((r) => r.channel)).size;
  }
  readings(): Reading[] {
    return this.list;
  }
  forEachSample(sink: SampleSink): void {
    for (const r of this.list) sink.sample(r.channel, r.unit, r.timeMs, r.value);
  }
}

/** Wraps readings already decoded as an `AcceptedFrame` (for `readings:accepted` from other producers). */
export function readingsFrame(deviceId: string, readings: Reading[], receivedAtMs = Date.now()): AcceptedFrame {
  return new ReadingsFrame(deviceId, receivedAtMs, readings);
}

export class LiveFanout {
  readonly #o: Required<Omit<FanoutOptions, 'now'>> & { now: () => number };
  readonly #clients = new Set<LiveClient>();
  #nextId = 1;
  #tick = 0;
  #lastFlushMs = 0;
  /** Current gap between tick starts (ms), within [minTickMs, tickMs]. */
  #gapMs: number;
  #timer: NodeJS.Timeout | null = null;
  #immediate: NodeJS.Immediate | null = null;
  #drainTimer: NodeJS.Timeout | null = null;
  #sweepTimer: NodeJS.Timeout | null = null;
  /** Per covered device, the frames accepted since the last tick (references, not decoded). */
  #pendingReadings = new Map<string, AcceptedFrame[]>();
  /** Rebuilt lazily after a subscription change (null: stale). */
  #coverage: Coverage | null = null;
  #pendingReadingCount = 0;
  #pendingEvents: TickEvent[] = [];
  #stopped = false;

  constructor(options: FanoutOptions) {
    this.#o = {
      maxSamplesPerChannelPerTick: 2000,
      maxPendingReadings: 200_000,
      inboundPerSec: 20,
      maxPendingEvents: 10_000,
      sweepIntervalMs: 250,
      now: Date.now,
      minTickMs: options.tickMs,
      workClock: () => performance.now(),
      onClients: () => undefined,
      ...options,
    };
    this.#gapMs = this.#o.minTickMs;
  }

  get clientCount(): number {
    return this.#clients.size;
  }

  get tick(): number {
    return this.#tick;
  }

  start(): void {
    this.#stopped = false;
    this.#sweepTimer = setInterval(() => this.#sweep(), this.#o.sweepIntervalMs);
    this.#sweepTimer.unref();
  }

  /**
   * Stops timers and closes every client with 1001 (going away); a client that is not draining could
   * not take the close frame (ws would wait 30 s for the handshake), so it is cut at once.
   */
  stop(): void {
    this.#stopped = true;
    for (const t of [this.#timer, this.#drainTimer]) if (t) clearTimeout(t);
    if (this.#immediate) clearImmediate(this.#immediate);
    this.#immediate = null;
    if (this.#sweepTimer) clearInterval(this.#sweepTimer);
    this.#timer = this.#drainTimer = this.#sweepTimer = null;
    for (const c of this.#clients) {
      c.closed = true;
      if (c.behind !== null || c.socket.bufferedAmount > this.#o.highWaterBytes) c.socket.terminate();
      else c.socket.close(1001, 'hub shutting down');
    }
    this.#clients.clear();
    this.#o.metrics.liveClients.set(0);
    this.#o.onClients(0);
  }

  // ───────────── inputs from the hub event bus ─────────────

  /**
   * One accepted frame [events.ts `readings:accepted`], by reference. Per frame: the arrival is noted
   * (presence, gaps) and the reference kept — for the next tick when a client covers the device, else
   * as the device's newest frame in the state. Nothing is decoded here.
   */
  accepted(deviceId: string, frame: AcceptedFrame): void {
    if (this.#stopped || frame.samples === 0) return;
    const state = this.#o.state;
    const d = state.device(deviceId);
    if (d === undefined) {
      state.overflow += frame.samples;
      return;
    }
    const change = state.noteData(d, frame.receivedAtMs);
    if (change) this.#presence(change);
    const coverage = this.#coverage ?? this.#buildCoverage();
    if (!coverage.fleet && !coverage.devices.has(deviceId)) {
      state.defer(d, frame);
      return;
    }
    const list = this.#pendingReadings.get(deviceId);
    if (list) list.push(frame);
    else this.#pendingReadings.set(deviceId, [frame]);
    this.#pendingReadingCount += frame.samples;
    // Bounded even when the event loop is too busy for the tick timer: flush early.
    if (this.#pendingReadingCount >= this.#o.maxPendingReadings) this.flush();
    else this.#schedule();
  }

  /** Readings of one accepted frame, already decoded (see `readingsFrame`). */
  readings(deviceId: string, readings: Reading[]): void {
    if (readings.length > 0) this.accepted(deviceId, readingsFrame(deviceId, readings, this.#o.now()));
  }

  /** A session started; `instanceId` when on another instance (relayed, server/cluster/relay.ts). */
  online(info: {
    deviceId: string;
    firmwareVersion: string;
    bootId: number;
    timeSynced: boolean;
    atMs: number;
    instanceId?: string;
  }): void {
    this.#presence(this.#o.state.online(info, info.atMs, info.instanceId ?? null));
  }

  offline(info: { deviceId: string; reason: string; atMs: number; instanceId?: string }): void {
    this.#presence(this.#o.state.offline(info.deviceId, info.reason, info.atMs, info.instanceId ?? null));
  }

  /** The instance holding the device cannot be heard (relay.ts): the device shows stale. */
  unknown(info: { deviceId: string; atMs: number; instanceId: string }): void {
    this.#presence(this.#o.state.unknown(info.deviceId, info.instanceId, info.atMs));
  }

  channels(deviceId: string, channels: readonly ChannelMeta[]): void {
    if (!this.#o.state.setChannels(deviceId, channels)) return;
    const message: ChannelsMessage = {
      type: 'channels',
      device: deviceId,
      channels: channels.map((c) => ({ key: c.key, unit: c.unit, periodMs: c.periodMs })),
    };
    this.#event(deviceId, `c:${deviceId}`, message);
  }

  command(update: CommandMessage): void {
    this.#event(update.device, `k:${update.device}:${update.commandId}`, update);
  }

  /** An alert transition: to every client with a subscription (coalesced per alert when behind). */
  alert(message: AlertMessage): void {
    this.#event(EVERY_CLIENT, `a:${message.rule}:${message.device}`, message);
  }

  // ───────────── clients ─────────────

  /** Registers a connected socket; the caller forwards its text messages to `receive`. */
  addClient(socket: LiveSocket, role: LiveRole): LiveClient {
    const client: LiveClient = {
      id: this.#nextId++,
      socket,
      role,
      subs: new Map(),
      key: '',
      fleet: [],
      byDevice: new Map(),
      behind: null,
      tokens: this.#o.inboundPerSec * 2,
      tokensAtMs: this.#o.now(),
      closed: false,
    };
    this.#clients.add(client);
    this.#o.metrics.liveClients.set(this.#clients.size);
    this.#o.onClients(this.#clients.size);
    this.#send(client, {
      type: 'hello',
      version: LIVE_API_VERSION,
      serverTimeMs: this.#o.now(),
      tickMs: this.#o.tickMs,
      role,
      limits: {
        maxSubscriptions: this.#o.maxSubscriptions,
        maxInboundBytes: MAX_INBOUND_BYTES,
        maxChannelsPerSubscription: MAX_CHANNELS_PER_SUBSCRIPTION,
      },
    });
    return client;
  }

  removeClient(client: LiveClient): void {
    client.closed = true;
    if (this.#clients.delete(client)) {
      this.#o.metrics.liveClients.set(this.#clients.size);
      this.#o.onClients(this.#clients.size);
    }
    this.#coverage = null;
  }

  /** Handles one inbound text message of a client. */
  receive(client: LiveClient, text: string): void {
    if (client.closed) return;
    const now = this.#o.now();
    const rate = this.#o.inboundPerSec;
    client.tokens = Math.min(rate * 2, client.tokens + ((now - client.tokensAtMs) * rate) / 1000);
    client.tokensAtMs = now;
    if (client.tokens < 1) {
      this.evict(client, 'inbound_rate', 1008, 'too many messages');
      return;
    }
    client.tokens -= 1;
    const parsed = parseClientMessage(text);
    if (!parsed.ok) {
      this.#send(client, { type: 'error', code: 'BAD_REQUEST', message: parsed.message, sub: parsed.sub });
      return;
    }
    const m = parsed.message;
    switch (m.type) {
      case 'ping':
        this.#send(client, { type: 'pong', id: m.id, serverTimeMs: now });
        return;
      case 'unsubscribe':
        if (!client.subs.delete(m.sub)) {
          this.#send(client, { type: 'error', code: 'NOT_FOUND', message: 'no such subscription', sub: m.sub });
          return;
        }
        client.behind?.snapshots.delete(m.sub);
        this.#reindex(client);
        this.#send(client, { type: 'unsubscribed', sub: m.sub });
        return;
      case 'subscribe': {
        const s = m.subscription;
        if (!client.subs.has(s.sub) && client.subs.size >= this.#o.maxSubscriptions) {
          this.#send(client, {
            type: 'error',
            code: 'BAD_REQUEST',
            message: `subscription limit reached (${this.#o.maxSubscriptions} per connection)`,
            sub: s.sub,
          });
          return;
        }
        client.subs.set(s.sub, s);
        this.#reindex(client);
        this.#send(client, { type: 'subscribed', sub: s.sub });
        if (client.behind) client.behind.snapshots.add(s.sub);
        else this.#sendSnapshot(client, s);
        return;
      }
    }
  }

  /** Disconnects a client and counts why. */
  evict(client: LiveClient, reason: string, code?: number, text?: string): void {
    if (client.closed) return;
    this.#o.metrics.liveEvictions.inc({ reason });
    this.#o.logger.info(
      { client: client.id, reason, bufferedBytes: client.socket.bufferedAmount },
      'live client evicted',
    );
    this.removeClient(client);
    // A client that does not drain cannot receive a close frame either: cut the connection.
    if (code === undefined) client.socket.terminate();
    else client.socket.close(code, text);
  }

  // ───────────── internals ─────────────

  #presence(change: PresenceChange | null): void {
    if (!change) return;
    const message: PresenceMessage = {
      type: 'presence',
      device: change.deviceId,
      state: change.state,
      reason: change.reason,
      sinceMs: change.sinceMs,
      lastSeenMs: change.lastSeenMs,
      firmwareVersion: change.firmwareVersion,
      bootId: change.bootId,
    };
    this.#event(change.deviceId, `p:${change.deviceId}`, message);
  }

  #event(device: string, key: string, message: ServerMessage): void {
    if (this.#stopped) return;
    this.#pendingEvents.push({ device, key, buffer: encode(message) });
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer !== null || this.#immediate !== null || this.#stopped) return;
    const wait = this.#lastFlushMs + this.#gapMs - this.#o.now();
    // Idle: on the next turn (everything read from the sockets in this turn still joins the tick).
    if (wait <= 0) this.#immediate = setImmediate(this.#onTimer);
    else this.#timer = setTimeout(this.#onTimer, wait);
  }

  readonly #onTimer = (): void => {
    this.#timer = null;
    this.#immediate = null;
    this.flush();
  };

  #cancelTimer(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    if (this.#immediate !== null) {
      clearImmediate(this.#immediate);
      this.#immediate = null;
    }
  }

  #sweep(): void {
    for (const change of this.#o.state.sweep(this.#o.now())) this.#presence(change);
  }

  /** Runs one tick now: applies pending input to the state and sends to every client. */
  flush(): void {
    this.#cancelTimer();
    const now = this.#o.now();
    this.#lastFlushMs = now;
    if (this.#pendingReadings.size === 0 && this.#pendingEvents.length === 0) return;
    const started = this.#o.workClock();
    this.#tickNow(now);
    const work = this.#o.workClock() - started;
    this.#gapMs = Math.min(this.#o.tickMs, Math.max(this.#o.minTickMs, TICK_COST_FACTOR * work));
  }

  #tickNow(now: number): void {
    const pendingReadings = this.#pendingReadings;
    this.#pendingReadings = new Map();
    this.#pendingReadingCount = 0;
    const tick = ++this.#tick;

    // Group once per tick: device → channel → samples (arrival order) and the latest sample, decoding
    // only the frames of covered devices, and keeping every sample only where a client wants them all.
    const data = new Map<string, Map<string, TickChannel>>();
    const cap = this.#o.maxSamplesPerChannelPerTick;
    const coverage = this.#coverage ?? this.#buildCoverage();
    const state = this.#o.state;
    let folded = 0;
    for (const [deviceId, frames] of pendingReadings) {
      const every = allChannels(coverage, deviceId);
      const collector = new TickCollector(every, cap);
      if (every !== null) for (const f of frames) f.forEachSample(collector);
      else {
        // Latest values only: the newest frames hold them (a frame usually carries every channel).
        const wanted = (frames[frames.length - 1] as AcceptedFrame).channelCount;
        for (let i = frames.length - 1; i >= 0 && collector.size < wanted; i--) {
          (frames[i] as AcceptedFrame).forEachSample(collector);
        }
      }
      folded += collector.folded;
      const channels = collector.finish();
      data.set(deviceId, channels);
      // The state takes each channel's samples once per tick (latest value, sparkline trail), after
      // the frame it kept while nobody covered the device.
      const d = state.device(deviceId);
      if (d === undefined) continue;
      state.materialize(d);
      state.applyValues(d, channels);
    }
    if (folded > 0) this.#o.metrics.liveCoalesced.inc(folded);
    // Presence changes raised while applying readings join this tick's events (after the data).
    const events = this.#pendingEvents;
    this.#pendingEvents = [];
    this.#cancelTimer();

    const built = new Map<string, Buffer | null>();
    for (const client of this.#clients) {
      if (client.subs.size === 0) continue;
      if (client.behind === null && client.socket.bufferedAmount > this.#o.highWaterBytes) {
        client.behind = {
          sinceMs: now,
          fromTick: tick,
          samples: 0,
          latest: new Map(),
          events: new Map(),
          snapshots: new Set(),
        };
        this.#armDrainCheck();
      }
      if (client.behind !== null) {
        this.#fold(client, data, events);
        continue;
      }
      let buffer = built.get(client.key);
      if (buffer === undefined) {
        buffer = this.#buildData(client, data, tick);
        built.set(client.key, buffer);
      }
      if (buffer !== null) this.#sendRaw(client, buffer);
      for (const e of events) if (covers(client, e.device)) this.#sendRaw(client, e.buffer);
    }
  }

  #buildData(client: LiveClient, data: Map<string, Map<string, TickChannel>>, tick: number): Buffer | null {
    const updates: DataUpdates = {};
    let any = false;
    for (const [deviceId, channels] of data) {
      const subs = subsFor(client, deviceId);
      if (subs === null) continue;
      let out: Record<string, Sample[]> | undefined;
      for (const [key, ch] of channels) {
        const mode = modeFor(subs, key);
        if (mode === null) continue;
        if (out === undefined) out = updates[deviceId] = {};
        out[key] = mode === 'all' ? ch.samples : [ch.latest];
        any = true;
      }
    }
    return any ? encode({ type: 'data', tick, updates }) : null;
  }

  #fold(client: LiveClient, data: Map<string, Map<string, TickChannel>>, events: TickEvent[]): void {
    const behind = client.behind as Behind;
    let folded = 0;
    for (const [deviceId, channels] of data) {
      const subs = subsFor(client, deviceId);
      if (subs === null) continue;
      let latest = behind.latest.get(deviceId);
      for (const [key, ch] of channels) {
        const mode = modeFor(subs, key);
        if (mode === null) continue;
        if (latest === undefined) {
          latest = new Map();
          behind.latest.set(deviceId, latest);
        }
        if (mode === 'all') folded += ch.samples.length - 1;
        if (latest.has(key)) folded++;
        latest.set(key, ch.latest);
      }
    }
    behind.samples += folded;
    if (folded > 0) this.#o.metrics.liveCoalesced.inc(folded);
    for (const e of events) {
      if (!covers(client, e.device)) continue;
      behind.events.delete(e.key); // re-insert: keeps the coalesced events in order of their latest update
      behind.events.set(e.key, e.buffer);
    }
    if (behind.events.size > this.#o.maxPendingEvents) this.evict(client, 'overflow');
  }

  #armDrainCheck(): void {
    if (this.#drainTimer !== null || this.#stopped) return;
    const every = Math.max(10, Math.min(this.#o.tickMs, this.#o.drainTimeoutMs / 4));
    this.#drainTimer = setTimeout(() => {
      this.#drainTimer = null;
      this.#checkBehind();
    }, every);
  }

  /** Catches up clients that drained below the high-water mark; evicts those that did not in time. */
  #checkBehind(): void {
    const now = this.#o.now();
    let stillBehind = false;
    for (const client of this.#clients) {
      const behind = client.behind;
      if (behind === null) continue;
      if (client.socket.bufferedAmount <= this.#o.highWaterBytes) {
        this.#catchUp(client, behind);
      } else if (now - behind.sinceMs >= this.#o.drainTimeoutMs) {
        this.evict(client, 'drain_timeout');
      } else stillBehind = true;
    }
    if (stillBehind) this.#armDrainCheck();
  }

  #catchUp(client: LiveClient, behind: Behind): void {
    client.behind = null;
    const toTick = this.#tick;
    // The marker only when something was actually dropped (behind for one tick with one sample per
    // channel loses nothing: the latest values below are all there was).
    if (behind.samples > 0) {
      this.#send(client, { type: 'skipped', fromTick: behind.fromTick, toTick, samples: behind.samples });
    }
    if (behind.latest.size > 0) {
      const updates: DataUpdates = {};
      let any = false;
      for (const [deviceId, channels] of behind.latest) {
        const subs = subsFor(client, deviceId); // subscriptions may have changed while behind
        if (subs === null) continue;
        let out: Record<string, Sample[]> | undefined;
        for (const [key, sample] of channels) {
          if (modeFor(subs, key) === null) continue;
          if (out === undefined) out = updates[deviceId] = {};
          out[key] = [sample];
          any = true;
        }
      }
      if (any) this.#send(client, { type: 'data', tick: toTick, updates });
    }
    for (const buffer of behind.events.values()) this.#sendRaw(client, buffer);
    for (const sub of behind.snapshots) {
      const s = client.subs.get(sub);
      if (s) this.#sendSnapshot(client, s);
    }
  }

  #sendSnapshot(client: LiveClient, s: Subscription): void {
    const state = this.#o.state;
    const devices = [];
    if (s.device === null) {
      for (const d of state.devices.values()) devices.push(state.view(d, false, s.channels ?? undefined));
    } else {
      const d = state.devices.get(s.device);
      if (d) devices.push(state.view(d, false, s.channels ?? undefined));
    }
    this.#send(client, { type: 'snapshot', sub: s.sub, tick: this.#tick, devices });
  }

  #send(client: LiveClient, message: ServerMessage): void {
    this.#sendRaw(client, encode(message));
  }

  #sendRaw(client: LiveClient, buffer: Buffer): void {
    if (client.closed) return;
    client.socket.send(buffer, { binary: false });
    this.#o.metrics.liveMessages.inc();
  }

  #reindex(client: LiveClient): void {
    client.fleet = [];
    client.byDevice = new Map();
    const parts: string[] = [];
    for (const s of client.subs.values()) {
      if (s.device === null) client.fleet.push(s);
      else {
        const list = client.byDevice.get(s.device);
        if (list) list.push(s);
        else client.byDevice.set(s.device, [s]);
      }
      const channels = s.channels ? [...s.channels].sort().join(',') : '*';
      parts.push(`${s.device ?? '*'}|${channels}|${s.mode}`);
    }
    // Sorted and de-duplicated: two clients with the same subscriptions (ids aside) share messages.
    client.key = [...new Set(parts)].sort().join(';');
    this.#coverage = null;
  }

  /** Which devices the clients cover and which channels they take in full (after any change). */
  #buildCoverage(): Coverage {
    const coverage: Coverage = { fleet: false, fleetAll: null, devices: new Map() };
    for (const client of this.#clients) {
      for (const s of client.subs.values()) {
        if (s.device === null) {
          coverage.fleet = true;
          if (s.mode === 'all') coverage.fleetAll = addChannels(coverage.fleetAll, s.channels);
        } else {
          const all = coverage.devices.get(s.device) ?? null;
          coverage.devices.set(s.device, s.mode === 'all' ? addChannels(all, s.channels) : all);
        }
      }
    }
    this.#coverage = coverage;
    return coverage;
  }
}

function addChannels(set: Set<string> | true | null, channels: ReadonlySet<string> | null): Set<string> | true {
  if (set === true || channels === null) return true;
  const out = set ?? new Set<string>();
  for (const c of channels) out.add(c);
  return out;
}

/** The channels of a device some client takes in `all` mode (`true`: all of them), or null. */
function allChannels(coverage: Coverage, deviceId: string): ReadonlySet<string> | true | null {
  const own = coverage.devices.get(deviceId) ?? null;
  const fleet = coverage.fleetAll;
  if (own === null) return fleet;
  if (fleet === null) return own;
  if (own === true || fleet === true) return true;
  return new Set([...own, ...fleet]);
}

/** The client's subscriptions that cover a device, or null. */
function subsFor(client: LiveClient, deviceId: string): Subscription[] | null {
  const own = client.byDevice.get(deviceId);
  if (client.fleet.length === 0) return own ?? null;
  return own ? [...client.fleet, ...own] : client.fleet;
}

/** The `device` of events for every client (no device id is empty). */
const EVERY_CLIENT = '';

function covers(client: LiveClient, deviceId: string): boolean {
  return deviceId === EVERY_CLIENT || client.fleet.length > 0 || client.byDevice.has(deviceId);
}

/** 'all' when any covering subscription wants every sample of the channel. */
function modeFor(subs: readonly Subscription[], channel: string): SubscriptionMode | null {
  let mode: SubscriptionMode | null = null;
  for (const s of subs) {
    if (s.channels !== null && !s.channels.has(channel)) continue;
    if (s.mode === 'all') return 'all';
    mode = 'latest';
  }
  return mode;
}
