/**
 * A simulated ESP32 board speaking protocol v1 (docs/protocol.md) the way the firmware does:
 *
 * - boots with a random boot id and an unsynced uptime clock; frames taken before the first WELCOME
 *   carry the UNSYNCED flag and uptime base [PROTO-3.4.1]; WELCOME's server time sets the clock;
 * - samples its sensors on a timer and seals TELEMETRY frames into a bounded, drop-oldest outbox that
 *   survives reconnects and reboots (a board keeps it in flash) and is freed only by cumulative ACKs
 *   [PROTO-3.5]; after reconnect it replays from WELCOME's last acked (boot, seq);
 * - announces its descriptor set only when WELCOME says the hub lacks it [PROTO-3.3], and again on
 *   ERROR UNKNOWN_DESCRIPTORS [PROTO-5.2] or the `send_descriptors` command;
 * - reconnects with exponential backoff and ±20 % jitter [PROTO-5.6]; pings the hub [PROTO-1.5];
 * - runs commands with ACCEPTED then RESULT, ignoring duplicate ids [PROTO-3.6, 3.7].
 *
 * Deterministic: all time comes from the injected `Clock`, all randomness from streams forked off
 * the seed, and nothing here awaits a promise, so with a fake clock and a loopback link the same seed
 * yields the same bytes.
 */
import { EventEmitter } from 'node:events';
import { crc32 } from 'node:zlib';
import {
  type ChannelDescriptor,
  type Command,
  CommandStatus,
  decodeFrame,
  descriptorHash,
  encodeFrame,
  type Message,
  RECOMMENDED_UPLINK_BYTES,
  ResetReason,
  type Telemetry,
  ValueType,
  type Welcome,
} from '../server/codec/index.ts';
import { type ErrorCode, errorCodeFromWire } from '../server/errors.ts';
import { type Clock, systemClock, type TimerHandle } from './clock.ts';
import type { Connector, Link, LinkCloseInfo } from './link.ts';
import { wsConnector } from './link.ts';
import { Outbox, type OutboxEntry } from './outbox.ts';
import type { SampleRecorder } from './recorder.ts';
import { Rng } from './rng.ts';
import { Channel, channelDescriptors, SensorSuite } from './sensors.ts';
import { bump, DeviceStats, type LatencyHistogram } from './stats.ts';
import { countReadings, countSamples, FrameBuilder, Sampler } from './telemetry.ts';

export type DeviceState =
  | 'off' // constructed, not started
  | 'booting' // powered, Wi-Fi not up yet
  | 'connecting' // WebSocket handshake under way
  | 'handshake' // HELLO sent, waiting for WELCOME
  | 'online' // WELCOME received: streaming
  | 'waiting' // backoff before the next attempt
  | 'offline' // Wi-Fi down (scenario)
  | 'stopped';

/** Deliberately broken frames for the malformed scenario, with the error the hub must answer. */
export const MALFORMED_KINDS = {
  bad_crc: 'BAD_CRC',
  truncated: 'TRUNCATED',
  unknown_channel: 'UNKNOWN_CHANNEL',
  type_mismatch: 'TYPE_MISMATCH',
  bad_magic: 'BAD_MAGIC',
  bad_version: 'BAD_VERSION',
  bad_flags: 'BAD_FLAGS',
  unknown_type: 'UNKNOWN_TYPE',
  too_large: 'TOO_LARGE',
  text: 'TEXT_FRAME',
} as const satisfies Record<string, ErrorCode>;
export type MalformedKind = keyof typeof MALFORMED_KINDS;

export interface BackoffOptions {
  /** First retry delay (default 1000 ms [PROTO-5.6]). */
  initialMs: number;
  /** Cap (default 60 000 ms). */
  maxMs: number;
  /** Relative jitter (default 0.2 = ±20 %). */
  jitter: number;
}

/** A board whose real-time clock is wrong (clock-skew scenario). */
export interface ClockFault {
  /** The RTC's error at boot, ms (positive = ahead). The board boots believing it is synced. */
  rtcOffsetMs?: number;
  /** Oscillator error, parts per million (positive = runs fast). */
  driftPpm?: number;
  /** Whether WELCOME's server time corrects the clock (default true; false = trusts its RTC). */
  syncFromWelcome?: boolean;
}

export interface DeviceOptions {
  /** Device id [PROTO-2.8]; must match the token's device. */
  id: string;
  token: string;
  /** Hub device endpoint, e.g. ws://localhost:8080/v1/device. */
  url: string;
  /** Fleet seed; with `index` it fixes this board's profile, noise, boot ids and jitter. */
  seed: number;
  index: number;
  clock?: Clock;
  connector?: Connector;
  firmwareVersion?: string;
  /** Sample tick period (default 250 ms: 4 ticks per frame → one frame per second). */
  sampleIntervalMs?: number;
  /** Sample ticks per TELEMETRY frame (default 4). */
  ticksPerFrame?: number;
  /** Outbox capacity in frames (default 512). */
  outboxFrames?: number;
  /** Frames sent but not yet acknowledged, at most (default 8, as the firmware): the board's send window. */
  maxInFlight?: number;
  /** Stop sending while the socket holds more than this many unsent bytes (default 64 KiB). */
  highWaterBytes?: number;
  /** Uplink frame size limit (default 1024 [PROTO-1.4]; lowered by WELCOME's maxFrameBytes). */
  maxFrameBytes?: number;
  backoff?: Partial<BackoffOptions>;
  /** Ping period before WELCOME says otherwise (default 15 s). */
  heartbeatIntervalSec?: number;
  /** Send the unacknowledged frames again when none is acknowledged for this long (default 30 s). */
  ackTimeoutMs?: number;
  /** Give up on a handshake without WELCOME after this long (default 10 s). */
  welcomeTimeoutMs?: number;
  /** Time from power-on to the first sample and the first connection attempt (default 300–1200 ms). */
  bootDelayMs?: [min: number, max: number];
  clockFault?: ClockFault;
  recorder?: SampleRecorder;
  /** Shared ack-latency histogram (a fleet passes one for all its devices). */
  latency?: LatencyHistogram;
  /** Reset reason of the first boot (default power-on). */
  resetReason?: number;
  /**
   * Whether the wall clock survives resets other than power-on and brownout (default true: ESP-IDF
   * keeps system time in the RTC across software, panic and watchdog resets and deep sleep).
   */
  clockSurvivesReset?: boolean;
  /** Wait after a non-fatal STORAGE_FULL before replaying (default 5 s, as the firmware). */
  storageFullRetryMs?: number;
}

export interface DeviceEvents {
  state: [state: DeviceState];
  /** WELCOME received. */
  online: [welcome: Welcome];
  /** A TELEMETRY frame went into the outbox. */
  frame: [entry: OutboxEntry];
  /** An ACK freed frames. */
  ack: [bootId: number, seq: number, freed: number];
  /** An ERROR frame arrived from the hub. */
  hubError: [code: string, fatal: boolean, message: string];
  /** The connection ended. */
  close: [info: LinkCloseInfo];
  command: [command: Command];
  reboot: [bootId: number, resetReason: number];
  /** A malformed frame sent on purpose was answered (`code` null: closed without ERROR, or not at all). */
  malformed: [kind: MalformedKind, code: string | null, closeCode: number | null];
}

/** Stored command results, at most this many (oldest forgotten first). */
const COMMAND_MEMORY = 64;
/** A commanded interval outside these bounds is BAD_ARGUMENTS [PROTO-3.6]. */
const MIN_INTERVAL_MS = 100;
const MAX_INTERVAL_MS = 3_600_000;

export class SimDevice extends EventEmitter<DeviceEvents> {
  readonly id: string;
  readonly index: number;
  readonly stats: DeviceStats;
  readonly clock: Clock;
  readonly sensors: SensorSuite;

  private readonly opts: DeviceOptions;
  private readonly connector: Connector;
  private readonly backoff: BackoffOptions;
  /** Boot ids and reconnect jitter. */
  private readonly netRng: Rng;
  private readonly bootRng: Rng;
  private readonly sampler: Sampler;
  private readonly builder = new FrameBuilder();
  readonly outbox: Outbox;

  private _state: DeviceState = 'off';
  private link: Link | null = null;
  /** Incremented per connection and per boot: callbacks of an older epoch are ignored. */
  private epoch = 0;
  /** Next outbox index to send on this connection (rewound to 0 to replay). */
  private sendCursor = 0;
  /**
   * Leading outbox entries sent on this connection. An ACK may cover any of them, also after a
   * rewind (an ACK for frames committed before a STORAGE_FULL arrives after the ERROR).
   */
  private sentHigh = 0;
  private backoffAttempt = 0;
  private sessionsThisBoot = 0;

  private _bootId = 0;
  private nextSeq = 1;
  private bootAtHost = 0;
  private resetReason: number;
  private droppedSinceBoot = 0;
  private synced = false;
  /** Device time = uptime + timeOffsetMs once synced. */
  private timeOffsetMs = 0;
  private readonly driftFactor: number;

  private sampleIntervalMs: number;
  private ticksPerFrame: number;
  private ticksInFrame = 0;
  /** Interval set by `set_sample_interval`: kept across reboots (NVS) and over WELCOME's default. */
  private commandedIntervalMs: number | null = null;
  /** Descriptor sets by hash: the current one and any that outbox frames still refer to. */
  private readonly descriptorSets = new Map<number, ChannelDescriptor[]>();
  private channels: ChannelDescriptor[];
  private hash: number;
  private helloHash = 0;
  private helloSentAt = 0;
  private frameLimit: number;
  private heartbeatMs: number;

  private awaitingPong = false;
  /** After re-sending descriptors, further UNKNOWN_DESCRIPTORS are for frames sent before: ignore. */
  private awaitingDescriptorAck = false;
  private pausedUntil = 0;
  /** Set after a malformed frame: nothing more goes out on this connection. */
  private poisoned = false;
  private malformedPending: { kind: MalformedKind; code: string | null } | null = null;
  private lastAcked: { bootId: number; seq: number } | null = null;
  /** HTTP status of the latest refused handshake, cleared by a WELCOME. */
  private lastRefusal: number | null = null;
  /** Simulated Wi-Fi outage end (host ms): no connection before it. */
  private wifiDownUntil = 0;
  private readonly commandResults = new Map<number, { status: number; message: string } | null>();

  private sampleTimer: TimerHandle | null = null;
  private connectTimer: TimerHandle | null = null;
  private heartbeatTimer: TimerHandle | null = null;
  private ackTimer: TimerHandle | null = null;
  private welcomeTimer: TimerHandle | null = null;
  private pumpTimer: TimerHandle | null = null;
  private ledTimer: TimerHandle | null = null;
  private malformedTimer: TimerHandle | null = null;
  private drainWaiters: (() => void)[] = [];

  constructor(options: DeviceOptions) {
    super();
    this.opts = options;
    this.id = options.id;
    this.index = options.index;
    this.clock = options.clock ?? systemClock;
    this.connector = options.connector ?? wsConnector();
    this.backoff = { initialMs: 1000, maxMs: 60_000, jitter: 0.2, ...options.backoff };
    this.stats = new DeviceStats(options.latency);
    const root = new Rng(options.seed);
    this.netRng = root.fork('net', options.index);
    this.bootRng = root.fork('boot', options.index);
    this.sensors = new SensorSuite(root.fork('sensors', options.index));
    this.sampler = new Sampler(this.sensors);
    this.outbox = new Outbox(options.outboxFrames ?? 512);
    this.sampleIntervalMs = options.sampleIntervalMs ?? 250;
    this.ticksPerFrame = Math.min(255, Math.max(1, options.ticksPerFrame ?? 4));
    this.frameLimit = options.maxFrameBytes ?? RECOMMENDED_UPLINK_BYTES;
    this.heartbeatMs = (options.heartbeatIntervalSec ?? 15) * 1000;
    this.resetReason = options.resetReason ?? ResetReason.POWER_ON;
    this.driftFactor = 1 + (options.clockFault?.driftPpm ?? 0) / 1e6;
    this.channels = channelDescriptors(this.sampleIntervalMs);
    this.hash = descriptorHash(this.channels);
    this.descriptorSets.set(this.hash, this.channels);
  }

  // ───────────────────────────── public API ─────────────────────────────

  get state(): DeviceState {
    return this._state;
  }
  get bootId(): number {
    return this._bootId;
  }
  get currentDescriptorHash(): number {
    return this.hash;
  }
  get currentSampleIntervalMs(): number {
    return this.sampleIntervalMs;
  }
  get currentTicksPerFrame(): number {
    return this.ticksPerFrame;
  }
  get isSynced(): boolean {
    return this.synced;
  }
  /** Frames waiting in the outbox (sent or not). */
  get outboxDepth(): number {
    return this.outbox.length;
  }
  /** Seq the next TELEMETRY frame will get. */
  get seqNext(): number {
    return this.nextSeq;
  }

  /** Powers the board on: first boot, sampling, then the first connection attempt. */
  start(): void {
    if (this._state !== 'off') return;
    this.boot(this.resetReason);
  }

  /**
   * Stops the board: no more samples; the pending samples are sealed into a last frame; with
   * `drainMs` > 0 it first waits (at most that long) until the hub has acknowledged the whole outbox.
   * Resolves once the connection is closed.
   */
  async stop(options: { drainMs?: number } = {}): Promise<void> {
    if (this._state === 'stopped') return;
    this.clearTimer('sampleTimer');
    this.clearTimer('ledTimer');
    this.seal();
    const drainMs = options.drainMs ?? 0;
    // Waiting is pointless when the hub refuses this board's credentials (400/401/403).
    const refused = this.lastRefusal !== null && this.lastRefusal >= 400 && this.lastRefusal < 404;
    if (drainMs > 0 && this.outbox.length > 0 && this._state !== 'off' && !refused) {
      if (this._state === 'waiting' || this._state === 'offline') {
        // Do not sit out a long backoff or a simulated outage while draining.
        this.wifiDownUntil = 0;
        this.clearTimer('connectTimer');
        this.connect();
      }
      await new Promise<void>((resolve) => {
        const t = this.clock.setTimeout(() => finish(), drainMs);
        const finish = () => {
          this.clock.clearTimeout(t);
          this.drainWaiters = this.drainWaiters.filter((w) => w !== finish);
          resolve();
        };
        this.drainWaiters.push(finish);
      });
    }
    this.shutdown();
  }

  /**
   * Wi-Fi goes away for `outageMs`. Loud: the driver reports it, the board drops its socket at once
   * and waits for Wi-Fi. `silent`: the link fades without a word (both directions blackholed); the
   * board keeps sending into the void until its heartbeat notices [PROTO-1.5], and the hub's socket
   * stays half-open until its own heartbeat or the board's next connection replaces it [PROTO-5.4].
   * Connection attempts fail until Wi-Fi is back.
   */
  dropWifi(outageMs: number, silent = false): void {
    if (this._state === 'stopped' || this._state === 'off' || this._state === 'booting') return;
    this.stats.wifiDrops++;
    this.wifiDownUntil = this.clock.now() + outageMs;
    if (silent && this.link) {
      this.link.blackhole();
      return;
    }
    this.clearTimer('connectTimer');
    const link = this.link;
    this.detachLink();
    link?.terminate();
    this.waitForWifi();
  }

  /** Offline until Wi-Fi is back, then a connection attempt (after association, 50–400 ms). */
  private waitForWifi(): void {
    this.setState('offline');
    this.clearTimer('connectTimer');
    this.connectTimer = this.clock.setTimeout(
      () => {
        this.connectTimer = null;
        if (this._state === 'offline') this.connect();
      },
      Math.max(0, this.wifiDownUntil - this.clock.now()) + this.netRng.uniform(50, 400),
    );
  }

  /** Restarts the board: new boot id, seq from 1, unsynced clock. `graceful` seals pending samples first. */
  reboot(resetReason: number = ResetReason.SOFTWARE, graceful = resetReason === ResetReason.SOFTWARE): void {
    if (this._state === 'stopped' || this._state === 'off') return;
    this.stats.reboots++;
    if (graceful) this.seal();
    else this.discardPending();
    const link = this.link;
    this.detachLink();
    if (link) {
      if (graceful) link.close(1001, 'reboot');
      else link.terminate();
    }
    this.clearAllTimers();
    this.boot(resetReason);
  }

  /**
   * Sends one deliberately broken frame of the given kind on the live connection and sends nothing
   * else on it; the hub must answer with the coded ERROR and close [PROTO-5.3]. Returns false when
   * the device is not online.
   */
  sendMalformed(kind: MalformedKind): boolean {
    if (this._state !== 'online' || !this.link || this.poisoned) return false;
    const link = this.link;
    this.poisoned = true;
    this.malformedPending = { kind, code: null };
    this.stats.malformedSent++;
    if (kind === 'text') link.send('{"hello":"I am not a frame"}');
    else link.send(this.malformedBytes(kind));
    // A hub that does not close within 5 s has accepted the frame: record it and move on.
    this.malformedTimer = this.clock.setTimeout(() => {
      this.malformedTimer = null;
      if (this.malformedPending && this.link === link) {
        this.stats.malformedUnanswered++;
        this.finishMalformed(null);
        link.close(1000, 'malformed frame not rejected');
      }
    }, 5000);
    return true;
  }

  /** Changes the sampling (burst scenario); `nominal` also updates the descriptor periods. */
  setSampling(sampleIntervalMs: number, ticksPerFrame: number = this.ticksPerFrame, nominal = false): void {
    this.ticksPerFrame = Math.min(255, Math.max(1, ticksPerFrame));
    if (sampleIntervalMs === this.sampleIntervalMs) return;
    this.sampleIntervalMs = sampleIntervalMs;
    if (nominal) this.updateDescriptors();
    if (this.sampleTimer) {
      this.clearTimer('sampleTimer');
      this.scheduleTick(sampleIntervalMs);
    }
  }

  // ───────────────────────────── boot and time ─────────────────────────────

  private boot(resetReason: number): void {
    // Wall time before the reset, kept by the RTC unless power was lost.
    const keptWall =
      this.synced &&
      this.opts.clockSurvivesReset !== false &&
      resetReason !== ResetReason.POWER_ON &&
      resetReason !== ResetReason.BROWNOUT
        ? this.uptimeExact() + this.timeOffsetMs
        : null;
    this.epoch++;
    this._bootId = this.bootRng.nonZeroU32(this._bootId);
    this.nextSeq = 1;
    this.bootAtHost = this.clock.now();
    this.resetReason = resetReason;
    this.droppedSinceBoot = 0;
    this.sessionsThisBoot = 0;
    this.backoffAttempt = 0;
    this.ticksInFrame = 0;
    this.sampler.reset();
    this.sensors.reboot();
    const fault = this.opts.clockFault;
    if (keptWall !== null) {
      this.synced = true;
      this.timeOffsetMs = keptWall - this.uptimeExact();
    } else if (fault?.rtcOffsetMs !== undefined) {
      // A board with a battery-backed RTC that is simply wrong: it believes it is synced.
      this.synced = true;
      this.timeOffsetMs = this.clock.now() + fault.rtcOffsetMs - this.uptimeExact();
    } else {
      this.synced = false;
      this.timeOffsetMs = 0;
    }
    if (this.commandedIntervalMs !== null) this.sampleIntervalMs = this.commandedIntervalMs;
    this.updateDescriptors();
    this.setState('booting');
    const [min, max] = this.opts.bootDelayMs ?? [300, 1200];
    const delay = this.bootRng.uniform(min, max);
    this.scheduleTick(delay);
    this.connectTimer = this.clock.setTimeout(() => {
      this.connectTimer = null;
      this.connect();
    }, delay + this.bootRng.uniform(50, 400)); // Wi-Fi association after the sensors are up
    this.emit('reboot', this._bootId, resetReason);
  }

  private uptimeExact(): number {
    return (this.clock.now() - this.bootAtHost) * this.driftFactor;
  }

  /** Integer ms since boot, as the board's esp_timer reports it. */
  uptimeMs(): number {
    return Math.floor(this.uptimeExact());
  }

  /** The board's timestamp for a sample: Unix ms once synced, else uptime ms. */
  deviceTimeMs(): number {
    return this.synced ? Math.floor(this.uptimeExact() + this.timeOffsetMs) : this.uptimeMs();
  }

  // ───────────────────────────── sampling and frames ─────────────────────────────

  private scheduleTick(delayMs: number): void {
    this.sampleTimer = this.clock.setTimeout(() => {
      this.sampleTimer = null;
      this.tick();
    }, delayMs);
  }

  private tick(): void {
    if (this._state === 'stopped') return;
    const b = this.builder;
    if (!b.empty && (b.bytes + this.sampler.tickBytesBound > this.frameLimit || b.maxBlockSamples() >= 255)) {
      this.seal();
    }
    this.sampler.tick(b, this.clock.now(), this.deviceTimeMs(), this.uptimeMs(), !this.synced);
    if (++this.ticksInFrame >= this.ticksPerFrame) this.seal();
    this.scheduleTick(this.sampleIntervalMs);
  }

  /** Adds one irregular sample (the LED) at the current time. */
  private addEventSample(channel: number, value: boolean): void {
    const b = this.builder;
    if (!b.empty && (b.bytes + 8 > this.frameLimit || b.maxBlockSamples() >= 255)) this.seal();
    b.add(channel, ValueType.BOOL, this.deviceTimeMs(), value, !this.synced);
  }

  /** Seals the pending samples into a TELEMETRY frame in the outbox. */
  private seal(): void {
    this.ticksInFrame = 0;
    if (this.builder.empty) return;
    const message = this.builder.take(this._bootId, this.nextSeq++, this.hash);
    const bytes = encodeFrame(message);
    const samples = countSamples(message);
    const readings = countReadings(message);
    const entry: OutboxEntry = {
      bootId: message.bootId,
      seq: message.seq,
      bytes,
      samples,
      readings,
      sends: 0,
      lastSentAt: 0,
      message: this.opts.recorder ? message : null,
    };
    const s = this.stats;
    s.framesGenerated++;
    s.samplesGenerated += samples;
    s.readingsGenerated += readings;
    const dropped = this.outbox.push(entry);
    if (dropped) {
      // Drop-oldest: the head goes; if it was in flight on this connection, the window shrinks.
      if (this.sendCursor > 0) this.sendCursor--;
      if (this.sentHigh > 0) this.sentHigh--;
      this.droppedSinceBoot++;
      s.framesDropped++;
      if (dropped.sends === 0) s.framesDroppedUnsent++;
      s.samplesDropped += dropped.samples;
      s.readingsDropped += dropped.readings;
      if (this.opts.recorder && dropped.message) {
        this.opts.recorder.dropped(this.recorded(dropped.message), dropped.sends > 0);
      }
      this.pruneDescriptorSets();
    }
    this.emit('frame', entry);
    this.pump();
  }

  private discardPending(): void {
    if (this.builder.empty) return;
    this.stats.samplesLostOnCrash += this.builder.samples;
    this.builder.take(this._bootId, 1, this.hash);
    this.ticksInFrame = 0;
  }

  private recorded(message: Telemetry) {
    return {
      deviceId: this.id,
      message,
      channels: this.descriptorSets.get(message.descriptorHash) ?? this.channels,
    };
  }

  /** Recomputes the descriptor set (a nominal period changed); announces it when online. */
  private updateDescriptors(): void {
    const channels = channelDescriptors(this.sampleIntervalMs);
    const hash = descriptorHash(channels);
    if (hash === this.hash) return;
    // Samples taken under the old set go out under the old hash.
    this.seal();
    this.channels = channels;
    this.hash = hash;
    this.descriptorSets.set(hash, channels);
    this.pruneDescriptorSets();
    if (this._state === 'online') this.sendDescriptors([hash]);
  }

  /** Forgets descriptor sets no outbox frame refers to any more. */
  private pruneDescriptorSets(): void {
    if (this.descriptorSets.size <= 1) return;
    const used = new Set<number>([this.hash]);
    for (let i = 0; i < this.outbox.length; i++) used.add(this.hashOf(i));
    for (const h of this.descriptorSets.keys()) if (!used.has(h)) this.descriptorSets.delete(h);
  }

  /** Descriptor hash of an outbox entry read from its bytes (TELEMETRY payload offset 8 [PROTO-3.4]). */
  private hashOf(i: number): number {
    const b = this.outbox.at(i).bytes;
    return ((b[16] as number) | ((b[17] as number) << 8) | ((b[18] as number) << 16) | ((b[19] as number) << 24)) >>> 0;
  }

  // ───────────────────────────── connection ─────────────────────────────

  private setState(state: DeviceState): void {
    if (this._state === state) return;
    this._state = state;
    this.emit('state', state);
  }

  private connect(): void {
    if (this._state === 'stopped') return;
    if (this.clock.now() < this.wifiDownUntil) {
      this.waitForWifi();
      return;
    }
    const epoch = ++this.epoch;
    this.stats.connectAttempts++;
    this.setState('connecting');
    this.sendCursor = 0;
    this.sentHigh = 0;
    this.poisoned = false;
    this.awaitingDescriptorAck = false;
    this.pausedUntil = 0;
    const live = () => epoch === this.epoch;
    this.link = this.connector(
      { url: this.opts.url, deviceId: this.id, token: this.opts.token },
      {
        open: () => live() && this.onOpen(),
        message: (data, isBinary) => live() && this.onMessage(data, isBinary),
        pong: () => {
          if (live()) this.awaitingPong = false;
        },
        close: (info) => live() && this.onClose(info),
      },
    );
  }

  private onOpen(): void {
    this.setState('handshake');
    this.sendControl({
      type: 'hello',
      timeSynced: this.synced,
      deviceId: this.id,
      firmwareVersion: this.opts.firmwareVersion ?? 'sim-1.0.0',
      maxProtocolVersion: 1,
      bootId: this._bootId,
      resetReason: this.resetReason,
      uptimeMs: this.uptimeMs(),
      descriptorHash: this.hash,
      bufferedFrames: this.outbox.length,
      droppedFrames: this.droppedSinceBoot,
    });
    this.helloHash = this.hash;
    this.helloSentAt = this.clock.now();
    this.welcomeTimer = this.clock.setTimeout(() => {
      this.welcomeTimer = null;
      this.link?.close(1000, 'no WELCOME');
    }, this.opts.welcomeTimeoutMs ?? 10_000);
    this.startHeartbeat();
  }

  private startHeartbeat(): void {
    this.clearTimer('heartbeatTimer');
    this.awaitingPong = false;
    const beat = () => {
      this.heartbeatTimer = null;
      const link = this.link;
      if (!link) return;
      if (this.awaitingPong) {
        // No pong for a whole period: the connection is dead even if TCP has not noticed.
        this.stats.heartbeatTimeouts++;
        link.terminate();
        return;
      }
      this.awaitingPong = true;
      link.ping();
      this.heartbeatTimer = this.clock.setTimeout(beat, this.heartbeatMs);
    };
    this.heartbeatTimer = this.clock.setTimeout(beat, this.heartbeatMs);
  }

  private onClose(info: LinkCloseInfo): void {
    const s = this.stats;
    if (info.httpStatus !== undefined) {
      this.lastRefusal = info.httpStatus;
      // A drain cannot finish while the hub refuses this board's credentials: stop waiting.
      if (info.httpStatus >= 400 && info.httpStatus < 404) for (const w of [...this.drainWaiters]) w();
      s.handshakeRefusals++;
      bump(s.refusalsByStatus, info.httpStatus);
    } else if (!info.opened) {
      s.connectFailures++;
    }
    if (info.opened) bump(s.closesByCode, info.code);
    if (this.malformedPending) this.finishMalformed(info.code);
    this.detachLink();
    this.emit('close', info);
    if (this._state === 'stopped') return;
    this.setState('waiting');
    const base = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** this.backoffAttempt);
    this.backoffAttempt = Math.min(this.backoffAttempt + 1, 30);
    const delay = base * (1 + this.backoff.jitter * (2 * this.netRng.next() - 1));
    this.connectTimer = this.clock.setTimeout(() => {
      this.connectTimer = null;
      if (this._state === 'waiting') this.connect();
    }, delay);
  }

  /** Forgets the current link (its late callbacks are ignored) and the per-connection timers. */
  private detachLink(): void {
    this.epoch++;
    this.link = null;
    this.sendCursor = 0;
    this.sentHigh = 0;
    this.clearTimer('heartbeatTimer');
    this.clearTimer('ackTimer');
    this.clearTimer('welcomeTimer');
    this.clearTimer('pumpTimer');
    this.clearTimer('malformedTimer');
    this.malformedPending = null;
  }

  private finishMalformed(closeCode: number | null): void {
    const m = this.malformedPending;
    if (!m) return;
    this.malformedPending = null;
    if (m.code !== null) this.stats.malformedRejected++;
    bump(this.stats.malformedByOutcome, `${m.kind}→${m.code ?? 'none'}/${closeCode ?? 'open'}`);
    this.emit('malformed', m.kind, m.code, closeCode);
  }

  private sendControl(message: Message): void {
    this.link?.send(encodeFrame(message));
  }

  // ───────────────────────────── receiving ─────────────────────────────

  private onMessage(data: Uint8Array, isBinary: boolean): void {
    if (!isBinary) return; // the hub never sends text; nothing to do with it
    let m: Message;
    try {
      m = decodeFrame(data);
    } catch {
      // A corrupt downlink frame: a real board would drop the connection and start over.
      this.link?.close(1007, 'bad frame from hub');
      return;
    }
    switch (m.type) {
      case 'welcome':
        this.onWelcome(m);
        break;
      case 'ack':
        this.onAck(m.bootId, m.seq);
        break;
      case 'command':
        this.onCommand(m);
        break;
      case 'error':
        this.onHubError(m.code, m.fatal, m.message);
        break;
      default:
        break; // uplink-only types from the hub: ignored
    }
  }

  private onWelcome(w: Welcome): void {
    if (this._state !== 'handshake') return;
    this.clearTimer('welcomeTimer');
    if (w.acceptedVersion !== 1) {
      this.link?.close(1002, 'unsupported protocol version');
      return;
    }
    const s = this.stats;
    s.sessions++;
    this.lastRefusal = null;
    if (this.sessionsThisBoot++ > 0) s.reconnects++;
    this.backoffAttempt = 0;
    if (!this.synced && this.opts.clockFault?.syncFromWelcome !== false) {
      // Frames taken before the sync keep UNSYNCED and uptime base; the hub maps them [PROTO-3.4.1].
      if (!this.builder.empty) this.seal();
      this.synced = true;
      // NTP-style: the server time is half a round trip old when WELCOME arrives.
      const rttMs = this.clock.now() - this.helloSentAt;
      this.timeOffsetMs = w.serverTimeMs + rttMs / 2 - this.uptimeExact();
    }
    this.heartbeatMs = w.heartbeatIntervalSec * 1000;
    this.startHeartbeat();
    this.frameLimit = Math.min(this.opts.maxFrameBytes ?? RECOMMENDED_UPLINK_BYTES, w.maxFrameBytes);
    if (w.sampleIntervalMs > 0 && this.commandedIntervalMs === null && w.sampleIntervalMs !== this.sampleIntervalMs) {
      this.setSampling(w.sampleIntervalMs, this.ticksPerFrame, true);
    }
    this.setState('online');
    // Free what the hub already holds, then replay the rest from the head [PROTO-5].
    this.applyWelcomeAck(w.lastAck);
    const toSend = new Set<number>();
    if (!w.descriptorsKnown || this.hash !== this.helloHash) toSend.add(this.hash);
    // Older sets still referenced by buffered frames: announce them too, before the replay, so no
    // frame reaches the hub ahead of its descriptors (an UNKNOWN_DESCRIPTORS reject followed by a
    // stored later frame would make the cumulative ACK cover the rejected one).
    for (let i = 0; i < this.outbox.length; i++) {
      const h = this.hashOf(i);
      if (h !== this.hash) toSend.add(h);
    }
    if (toSend.size > 0) this.sendDescriptors([...toSend]);
    this.emit('online', w);
    this.pump();
  }

  private applyWelcomeAck(lastAck: { bootId: number; seq: number } | null): void {
    const prev = this.lastAcked;
    if (prev && (!lastAck || (lastAck.bootId === prev.bootId && lastAck.seq < prev.seq))) {
      // The hub no longer holds what it acknowledged before: its durable store lost data.
      this.stats.ackRegressions++;
    }
    if (!lastAck) return;
    // Only frames that went on the wire at some point can be stored.
    let sent = 0;
    while (sent < this.outbox.length && this.outbox.at(sent).sends > 0) sent++;
    const n = this.outbox.coveredBy(lastAck.bootId, lastAck.seq, sent);
    this.free(n, false);
    if (n > 0) this.lastAcked = { bootId: lastAck.bootId, seq: lastAck.seq };
  }

  private onAck(bootId: number, seq: number): void {
    if (this._state !== 'online') return;
    const n = this.outbox.coveredBy(bootId, seq, this.sentHigh);
    if (n === 0) {
      const prev = this.lastAcked;
      const old = prev && prev.bootId === bootId && seq <= prev.seq;
      if (!old) this.stats.acksUnknown++;
      return;
    }
    this.free(n, true);
    this.sentHigh -= n;
    this.sendCursor = Math.max(0, this.sendCursor - n);
    this.lastAcked = { bootId, seq };
    this.awaitingDescriptorAck = false;
    this.emit('ack', bootId, seq, n);
    this.armAckTimer(true);
    this.pump();
  }

  /** Removes `n` acknowledged frames from the head of the outbox. */
  private free(n: number, measure: boolean): void {
    const s = this.stats;
    const now = this.clock.now();
    const recorder = this.opts.recorder;
    for (let i = 0; i < n; i++) {
      const e = this.outbox.shift() as OutboxEntry;
      s.framesAcked++;
      s.samplesAcked += e.samples;
      s.readingsAcked += e.readings;
      if (measure) s.latency.record(now - e.lastSentAt);
      if (recorder && e.message) recorder.acked(this.recorded(e.message));
    }
    if (n > 0) this.pruneDescriptorSets();
    if (this.outbox.length === 0) for (const w of [...this.drainWaiters]) w();
  }

  private onHubError(wire: number, fatal: boolean, message: string): void {
    const code = errorCodeFromWire(wire) ?? `WIRE_${wire}`;
    bump(this.stats.errorsByCode, code);
    if (this.malformedPending && this.malformedPending.code === null) this.malformedPending.code = code;
    this.emit('hubError', code, fatal, message);
    if (fatal) {
      // The hub closes next [PROTO-3.8]: send nothing more, and close ourselves if it does not.
      this.poisoned = true;
      const link = this.link;
      if (!this.malformedTimer && link) {
        this.malformedTimer = this.clock.setTimeout(() => {
          this.malformedTimer = null;
          if (this.link === link) link.close(1000, 'hub did not close after a fatal error');
        }, 5000);
      }
      return;
    }
    if (code === 'UNKNOWN_DESCRIPTORS') {
      if (this.awaitingDescriptorAck) return;
      // Re-announce every set the outbox refers to, then replay from the first unacked frame [PROTO-5.2].
      const hashes = new Set<number>([this.hash]);
      for (let i = 0; i < this.outbox.length; i++) hashes.add(this.hashOf(i));
      this.sendDescriptors([...hashes]);
      this.awaitingDescriptorAck = true;
      this.sendCursor = 0;
      this.pump();
    } else if (code === 'STORAGE_FULL') {
      // The hub keeps nothing of what it refused: wait, then replay from the first unacked [PROTO-5.5].
      this.pausedUntil = this.clock.now() + (this.opts.storageFullRetryMs ?? 5000);
      this.sendCursor = 0;
      this.schedulePump(this.pausedUntil - this.clock.now());
    }
  }

  private sendDescriptors(hashes: number[]): void {
    for (const h of hashes) {
      const channels = this.descriptorSets.get(h);
      if (!channels) continue;
      this.sendControl({ type: 'descriptors', channels });
      this.stats.descriptorsSent++;
    }
  }

  // ───────────────────────────── sending ─────────────────────────────

  private schedulePump(delayMs: number): void {
    if (this.pumpTimer) return;
    this.pumpTimer = this.clock.setTimeout(() => {
      this.pumpTimer = null;
      this.pump();
    }, delayMs);
  }

  /** Sends outbox frames in order while the window, the socket buffer and the hub allow. */
  private pump(): void {
    const link = this.link;
    if (this._state !== 'online' || !link || this.poisoned) return;
    const now = this.clock.now();
    if (now < this.pausedUntil) return;
    const maxInFlight = this.opts.maxInFlight ?? 8;
    const highWater = this.opts.highWaterBytes ?? 64 * 1024;
    const s = this.stats;
    const wasIdle = this.sendCursor === 0;
    while (this.sendCursor < this.outbox.length && this.sendCursor < maxInFlight) {
      if (link.bufferedAmount >= highWater) {
        s.sendStalls++;
        this.schedulePump(20); // `ws` has no client drain event: look again shortly
        break;
      }
      const e = this.outbox.at(this.sendCursor++);
      if (this.sendCursor > this.sentHigh) this.sentHigh = this.sendCursor;
      if (e.sends > 0) s.framesReplayed++;
      e.sends++;
      e.lastSentAt = now;
      s.framesSent++;
      s.bytesSent += e.bytes.byteLength;
      link.send(e.bytes);
    }
    if ((wasIdle || !this.ackTimer) && this.sendCursor > 0) this.armAckTimer(false);
  }

  /**
   * Frames in flight with no ACK for `ackTimeoutMs`: send them again, as the firmware does (the hub
   * deduplicates [PROTO-3.4.2]); a dead connection is the heartbeat's business.
   */
  private armAckTimer(progress: boolean): void {
    if (progress || this.sendCursor === 0) this.clearTimer('ackTimer');
    if (this.sendCursor === 0 || this.ackTimer) return;
    this.ackTimer = this.clock.setTimeout(() => {
      this.ackTimer = null;
      if (this.sendCursor > 0 && this.link && this._state === 'online') {
        this.stats.ackTimeouts++;
        this.sendCursor = 0;
        this.pump();
      }
    }, this.opts.ackTimeoutMs ?? 30_000);
  }

  // ───────────────────────────── commands ─────────────────────────────

  private onCommand(c: Command): void {
    this.stats.commandsReceived++;
    this.emit('command', c);
    if (this.commandResults.has(c.commandId)) {
      // Seen before: ignore it, but repeat the stored RESULT so the hub can complete [PROTO-3.6].
      this.stats.commandsDuplicate++;
      const stored = this.commandResults.get(c.commandId);
      if (stored) this.sendControl({ type: 'command_result', commandId: c.commandId, ...stored });
      return;
    }
    this.commandResults.set(c.commandId, null);
    if (this.commandResults.size > COMMAND_MEMORY) {
      const oldest = this.commandResults.keys().next().value as number;
      this.commandResults.delete(oldest);
    }
    this.sendControl({ type: 'command_accepted', commandId: c.commandId });
    const result = (status: number, message: string) => {
      this.commandResults.set(c.commandId, { status, message });
      this.sendControl({ type: 'command_result', commandId: c.commandId, status, message });
    };
    const arg = (key: string) => c.args.find((a) => a.key === key)?.value;
    switch (c.name) {
      case 'set_sample_interval': {
        const v = arg('interval_ms');
        if (typeof v !== 'number' || !Number.isInteger(v) || v < MIN_INTERVAL_MS || v > MAX_INTERVAL_MS) {
          result(CommandStatus.BAD_ARGUMENTS, `interval_ms must be an integer ${MIN_INTERVAL_MS}..${MAX_INTERVAL_MS}`);
          return;
        }
        this.commandedIntervalMs = v;
        this.setSampling(v, this.ticksPerFrame, true);
        result(CommandStatus.OK, `sample interval ${v} ms`);
        return;
      }
      case 'identify': {
        const v = arg('duration_ms') ?? 5000;
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 600_000) {
          result(CommandStatus.BAD_ARGUMENTS, 'duration_ms must be an integer 0..600000');
          return;
        }
        this.sensors.setLed(true);
        this.addEventSample(Channel.LED, true);
        this.clearTimer('ledTimer');
        this.ledTimer = this.clock.setTimeout(() => {
          this.ledTimer = null;
          this.sensors.setLed(false);
          if (this._state !== 'stopped') this.addEventSample(Channel.LED, false);
        }, v);
        result(CommandStatus.OK, `blinking for ${v} ms`);
        return;
      }
      case 'reboot': {
        result(CommandStatus.OK, 'rebooting');
        // The RESULT goes out before the restart [PROTO-3.7]; `ws` sends the close after it.
        this.reboot(ResetReason.SOFTWARE, true);
        return;
      }
      case 'send_descriptors': {
        const hashes = new Set<number>([this.hash]);
        for (let i = 0; i < this.outbox.length; i++) hashes.add(this.hashOf(i));
        this.sendDescriptors([...hashes]);
        result(CommandStatus.OK, 'descriptors sent');
        return;
      }
      default:
        result(CommandStatus.UNSUPPORTED, `unknown command ${c.name}`);
    }
  }

  // ───────────────────────────── malformed frames ─────────────────────────────

  /** A broken frame of the given kind, derived from a valid TELEMETRY frame built by the codec. */
  private malformedBytes(kind: Exclude<MalformedKind, 'text'>): Uint8Array {
    const t = this.deviceTimeMs();
    const probe = (channel: number, valueType: Telemetry['blocks'][number]['valueType'], value: number) =>
      encodeFrame({
        type: 'telemetry',
        unsynced: !this.synced,
        bootId: this._bootId,
        // The next seq, not consumed: the hub rejects the frame, and the real frame takes the seq.
        seq: this.nextSeq,
        descriptorHash: this.hash,
        baseTime: t,
        blocks: [{ channel, valueType, deltasMs: [0], values: [value] }],
      });
    const good = probe(Channel.TEMPERATURE, ValueType.I16, 2150);
    const fixCrc = (b: Uint8Array) => {
      new DataView(b.buffer, b.byteOffset).setUint32(b.length - 4, crc32(b.subarray(0, b.length - 4)), true);
      return b;
    };
    switch (kind) {
      case 'bad_crc': {
        const b = good.slice();
        b[b.length - 1] = (b[b.length - 1] as number) ^ 0xff;
        return b;
      }
      case 'truncated':
        return good.slice(0, good.length - 5);
      case 'unknown_channel':
        return probe(120, ValueType.U8, 7);
      case 'type_mismatch':
        return probe(Channel.TEMPERATURE, ValueType.U8, 21); // the descriptor says i16
      case 'bad_magic': {
        const b = good.slice();
        b[0] = 0x58;
        return b;
      }
      case 'bad_version': {
        const b = good.slice();
        b[2] = 2;
        return b;
      }
      case 'bad_flags': {
        const b = good.slice();
        b[5] = 1; // the reserved byte
        return fixCrc(b);
      }
      case 'unknown_type': {
        const b = good.slice();
        b[3] = 0x7e;
        return fixCrc(b);
      }
      case 'too_large': {
        const b = new Uint8Array(5000);
        b.set(good.subarray(0, 8));
        return b;
      }
    }
  }

  // ───────────────────────────── teardown ─────────────────────────────

  private clearTimer(
    name:
      | 'sampleTimer'
      | 'connectTimer'
      | 'heartbeatTimer'
      | 'ackTimer'
      | 'welcomeTimer'
      | 'pumpTimer'
      | 'ledTimer'
      | 'malformedTimer',
  ): void {
    const t = this[name];
    if (t) {
      this.clock.clearTimeout(t);
      this[name] = null;
    }
  }

  private clearAllTimers(): void {
    for (const name of [
      'sampleTimer',
      'connectTimer',
      'heartbeatTimer',
      'ackTimer',
      'welcomeTimer',
      'pumpTimer',
      'ledTimer',
      'malformedTimer',
    ] as const) {
      this.clearTimer(name);
    }
  }

  private shutdown(): void {
    const link = this.link;
    this.detachLink();
    this.clearAllTimers();
    this.setState('stopped');
    link?.close(1000, 'simulator stopped');
    for (const w of [...this.drainWaiters]) w();
  }
}
