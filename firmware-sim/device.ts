/**
 * A simulated ESP32 board speaking protocol v1 (docs/protocol.md) the way the firmware does:
 *
 * - boots with a boot id that never repeats (NVS boot counter mixed with OS randomness, see
 *   boot-id.ts) and an unsynced uptime clock; frames taken before the first WELCOME
 *   carry the UNSYNCED flag and uptime base [PROTO-3.4.1]; WELCOME's server time sets the clock;
 * - samples its sensors on a timer and seals TELEMETRY frames into a bounded, drop-oldest outbox that
 *   survives reconnects, reboots and power cuts (written through a `BoardStore`, the board's flash)
 *   and is freed only by cumulative ACKs [PROTO-3.5]; after reconnect it replays from WELCOME's last
 *   acked (boot, seq);
 * - always on, or in deep sleep: wakes to sample into the outbox, connects and flushes every N
 *   samples or M minutes, then sleeps;
 * - announces its descriptor set only when WELCOME says the hub lacks it [PROTO-3.3], and again on
 *   ERROR UNKNOWN_DESCRIPTORS [PROTO-5.2] or the `send_descriptors` command;
 * - reconnects with exponential backoff and ±20 % jitter [PROTO-5.6]; pings the hub [PROTO-1.5];
 * - runs commands with ACCEPTED then RESULT, ignoring duplicate ids [PROTO-3.6, 3.7].
 *
 * Deterministic: all time comes from the injected `Clock`, all randomness but the boot ids' from
 * streams forked off the seed, and nothing here awaits a promise, so with a fake clock, a loopback
 * link and a seeded `entropy` the same seed yields the same bytes.
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
import { type BoardNvs, type BoardStore, emptyNvs, MemoryBoardStore } from './board-store.ts';
import { cryptoEntropy, drawBootId, type Entropy } from './boot-id.ts';
import { type Clock, systemClock, type TimerHandle } from './clock.ts';
import type { Connector, Link, LinkCloseInfo } from './link.ts';
import { wsConnector } from './link.ts';
import { downloadAndVerify, emptyOtaNvs, type OtaNvs, otaPublicKey, parseOtaArgs } from './ota.ts';
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
  | 'sleeping' // deep sleep between wakes (deep-sleep profile)
  | 'unpowered' // power cut: RAM gone, back after the outage
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

/** The deep-sleep profile: sample on timer wakes into the flash outbox, connect and flush now and then. */
export interface DeepSleepOptions {
  /** Connect and flush after this many wakes (samples) since the last flush (default 60). */
  flushEverySamples?: number;
  /** …or once this long has passed since the last flush (default 5 min). */
  flushIntervalMs?: number;
  /** Stay connected this long after the outbox is empty, for commands (default 1 s). */
  awakeGraceMs?: number;
  /** Give up a flush after this long awake (default 30 s): back to sleep, the frames wait in flash. */
  maxAwakeMs?: number;
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
  /**
   * The board's flash and NVS: outbox, boot counter, token, command memory (default: a
   * `MemoryBoardStore`, which lasts as long as the process; `FileBoardStore` for a state directory).
   */
  store?: BoardStore;
  /** Randomness mixed into boot ids (default: the OS CSPRNG). Tests inject a seeded stream. */
  entropy?: Entropy;
  /** Deep-sleep profile; absent or null: always on. */
  deepSleep?: DeepSleepOptions | null;
  /**
   * The OTA signing public key (PEM) built into the board: `ota` images are checked against it. Null or
   * absent: the board checks the SHA-256 only (docs/simulator.md).
   */
  otaPublicKeyPem?: string | null;
  /** The health check after an OTA update fails: the board rolls back to the old image (default false). */
  otaFailHealth?: boolean;
  /** How long a new image that fails its health check runs before it rolls back, ms (default 2000). */
  otaHealthDeadlineMs?: number;
  /** Accept a self-signed certificate for OTA downloads over https. */
  otaInsecure?: boolean;
  /** Retry wait of an OTA download without Retry-After, ms (default 500). */
  otaRetryMs?: number;
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
  /** Power lost: RAM gone, back after `offMs`. */
  powerCut: [offMs: number];
  /** The hub holds frames of this boot id that this boot never sent: the id had been used before. */
  bootIdReused: [oldBootId: number, newBootId: number];
  /** An OTA update ended on this board: `booted` the new version (pending its health check), `valid`, `rolled_back`, or `failed` (step). */
  ota: [event: { outcome: 'booted' | 'valid' | 'rolled_back' | 'failed'; version: string; detail?: string }];
  /** Deep sleep: the radio went off (`flushed`: the outbox was empty). */
  sleep: [flushed: boolean];
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
  /** Reconnect jitter. */
  private readonly netRng: Rng;
  /** Boot delays (boot ids come from `drawBootId`, never from the seed). */
  private readonly bootRng: Rng;
  private readonly sampler: Sampler;
  private readonly builder = new FrameBuilder();
  private readonly store: BoardStore;
  private readonly entropy: Entropy;
  /** The RAM copy of the NVS. */
  private nvs: BoardNvs;
  /** The RAM copy of the flash outbox (rebuilt from the store at power-on). */
  private _outbox: Outbox;

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
  /** Highest seq of this boot that went on the wire (a WELCOME naming a higher one reveals a reused id). */
  private sentSeqThisBoot = 0;
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
  private commandResults = new Map<number, { status: number; message: string } | null>();
  /** Deep sleep: wakes since the last flush, when it ended, and when the radio came on. */
  private samplesSinceFlush = 0;
  private lastFlushAt = 0;
  private awakeSince = 0;
  /** Set when the board closes its own session to start a new one at once (boot id reused). */
  private reconnectSoon = false;

  private sampleTimer: TimerHandle | null = null;
  private connectTimer: TimerHandle | null = null;
  private heartbeatTimer: TimerHandle | null = null;
  private ackTimer: TimerHandle | null = null;
  private welcomeTimer: TimerHandle | null = null;
  private pumpTimer: TimerHandle | null = null;
  private ledTimer: TimerHandle | null = null;
  private malformedTimer: TimerHandle | null = null;
  private powerTimer: TimerHandle | null = null;
  private sleepTimer: TimerHandle | null = null;
  private awakeTimer: TimerHandle | null = null;
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
    this.store = options.store ?? new MemoryBoardStore();
    this.entropy = options.entropy ?? cryptoEntropy;
    this.nvs = emptyNvs();
    this._outbox = new Outbox(options.outboxFrames ?? 512);
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
  /** The RAM copy of the outbox (a new one after each power-on). */
  get outbox(): Outbox {
    return this._outbox;
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
  /** Frames waiting in the outbox (sent or not); while the power is off, those in flash. */
  get outboxDepth(): number {
    return this._state === 'unpowered' ? this.store.depth() : this._outbox.length;
  }
  /** Seq the next TELEMETRY frame will get. */
  get seqNext(): number {
    return this.nextSeq;
  }

  /** Powers the board on: first boot, sampling, then the first connection attempt. */
  start(): void {
    if (this._state !== 'off') return;
    this.powerOn();
    this.boot(this.resetReason);
  }

  /**
   * Stops the board: no more samples; the pending samples are sealed into a last frame; with
   * `drainMs` > 0 it first waits (at most that long) until the hub has acknowledged the whole outbox.
   * Resolves once the connection is closed.
   */
  async stop(options: { drainMs?: number } = {}): Promise<void> {
    if (this._state === 'stopped') return;
    const drainMs = options.drainMs ?? 0;
    if (this._state === 'unpowered' && drainMs > 0 && this.store.depth() > 0) {
      // Power comes back now, so the outbox can drain.
      this.clearTimer('powerTimer');
      this.powerOn();
      this.boot(ResetReason.POWER_ON);
    }
    this.clearTimer('sampleTimer');
    this.clearTimer('ledTimer');
    this.otaDownload?.abort();
    if (this.otaRollbackTimer !== null) this.clock.clearTimeout(this.otaRollbackTimer);
    this.otaRollbackTimer = null;
    if (this._state !== 'unpowered') this.seal();
    // Waiting is pointless when the hub refuses this board's credentials (400/401/403).
    const refused = this.lastRefusal !== null && this.lastRefusal >= 400 && this.lastRefusal < 404;
    if (drainMs > 0 && this.outbox.length > 0 && this._state !== 'off' && this._state !== 'unpowered' && !refused) {
      if (this._state === 'waiting' || this._state === 'offline' || this._state === 'sleeping') {
        // Do not sit out a long backoff, a simulated outage or a deep sleep while draining.
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
    if (this.malformedPending && this.link) {
      // A malformed frame is on its way: its answer (the hub's coded ERROR and close, or the 5 s
      // "not rejected" timeout) belongs to the run's totals, so wait for it rather than drop it.
      await new Promise<void>((resolve) => {
        // Bounded: the link may also be dropped without a close event (Wi-Fi loss detaches it).
        const t = this.clock.setTimeout(() => done(), 6000);
        const done = () => {
          this.clock.clearTimeout(t);
          this.off('malformed', done);
          this.off('close', done);
          resolve();
        };
        this.on('malformed', done);
        this.on('close', done);
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
    if (this._state === 'unpowered' || this._state === 'sleeping') return;
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
    if (this.opts.deepSleep) {
      // On battery: no waiting with the radio on; the frames wait in flash for the next flush.
      this.goToSleep();
      return;
    }
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
    if (this._state === 'stopped' || this._state === 'off' || this._state === 'unpowered') return;
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
   * Power is lost for `offMs`: everything in RAM goes — samples not yet sealed into a frame (counted
   * in `samplesLostOnCrash`), the connection (reset, as a board that vanishes), the clock, the RAM
   * copy of the outbox, command memory — and only the store (flash, NVS) remains. Power-on then
   * reloads the outbox and NVS from the store and boots with a new boot id (reset reason power-on).
   */
  powerCut(offMs: number): void {
    if (this._state === 'stopped' || this._state === 'off' || this._state === 'unpowered') return;
    this.stats.powerCuts++;
    this.discardPending();
    const link = this.link;
    this.detachLink();
    link?.terminate();
    this.clearAllTimers();
    this.synced = false;
    this.timeOffsetMs = 0;
    this.lastAcked = null;
    this.awaitingDescriptorAck = false;
    this.poisoned = false;
    this.sensors.setLed(false);
    this.endAwake();
    this.reconnectSoon = false;
    this._outbox = new Outbox(this._outbox.capacity);
    this.commandResults = new Map();
    this.setState('unpowered');
    this.emit('powerCut', offMs);
    this.powerTimer = this.clock.setTimeout(() => {
      this.powerTimer = null;
      this.powerOn();
      this.boot(ResetReason.POWER_ON);
    }, offMs);
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

  /** Power-on: RAM state from the store — NVS settings, descriptor sets, the outbox. */
  private powerOn(): void {
    const nvs = this.store.readNvs();
    this.nvs = nvs;
    if (this.opts.token && nvs.token !== this.opts.token) {
      nvs.token = this.opts.token;
      this.store.writeNvs(nvs);
    }
    this.commandedIntervalMs = nvs.commandedIntervalMs;
    this.commandResults = new Map(nvs.commandResults);
    this.sampleIntervalMs = this.opts.sampleIntervalMs ?? 250;
    this.ticksPerFrame = Math.min(255, Math.max(1, this.opts.ticksPerFrame ?? 4));
    this.descriptorSets.clear();
    for (const [hash, channels] of nvs.descriptorSets) this.descriptorSets.set(hash, channels);
    this.channels = channelDescriptors(this.sampleIntervalMs);
    this.hash = descriptorHash(this.channels);
    this.descriptorSets.set(this.hash, this.channels);
    this.samplesSinceFlush = 0;
    this.lastFlushAt = this.clock.now();
    const outbox = new Outbox(this._outbox.capacity);
    this._outbox = outbox;
    for (const bytes of this.store.readOutbox()) {
      const m = decodeFrame(bytes);
      if (m.type !== 'telemetry') continue; // the store holds TELEMETRY frames only
      this.stats.framesRestored++;
      const dropped = outbox.push({
        bootId: m.bootId,
        seq: m.seq,
        bytes,
        samples: countSamples(m),
        readings: countReadings(m),
        sends: 0,
        restored: true,
        lastSentAt: 0,
        message: this.opts.recorder ? m : null,
      });
      if (dropped) this.dropOldest(dropped); // a smaller --outbox than the state was written with
    }
    this.saveDescriptorSets();
  }

  /** Writes the RAM copy of the NVS settings (boot counter, commands, descriptor sets) to the store. */
  private saveNvs(): void {
    this.nvs.commandedIntervalMs = this.commandedIntervalMs;
    this.nvs.commandResults = [...this.commandResults];
    this.nvs.descriptorSets = [...this.descriptorSets];
    this.store.writeNvs(this.nvs);
  }

  /** Persists the descriptor sets when the NVS lacks one the board uses. */
  private saveDescriptorSets(): void {
    const saved = new Set(this.nvs.descriptorSets.map(([h]) => h));
    for (const h of this.descriptorSets.keys()) {
      if (!saved.has(h)) {
        this.saveNvs();
        return;
      }
    }
  }

  /** A boot id never used before: counter written first, then mixed with fresh randomness (boot-id.ts). */
  private newBootId(avoid: number[]): number {
    this.nvs.bootCounter++;
    this.saveNvs();
    const inOutbox = new Set<number>(avoid);
    for (let i = 0; i < this._outbox.length; i++) inOutbox.add(this._outbox.at(i).bootId);
    return drawBootId(this.id, this.nvs.bootCounter, this.entropy, (id) => inOutbox.has(id));
  }

  private boot(resetReason: number): void {
    this.otaOnBoot();
    // Wall time before the reset, kept by the RTC unless power was lost.
    const keptWall =
      this.synced &&
      this.opts.clockSurvivesReset !== false &&
      resetReason !== ResetReason.POWER_ON &&
      resetReason !== ResetReason.BROWNOUT
        ? this.uptimeExact() + this.timeOffsetMs
        : null;
    this.epoch++;
    this._bootId = this.newBootId([this._bootId]);
    this.nextSeq = 1;
    this.sentSeqThisBoot = 0;
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
    const [min, max] = this.opts.bootDelayMs ?? [300, 1200];
    const delay = this.bootRng.uniform(min, max);
    const wifiDelay = this.bootRng.uniform(50, 400);
    this.scheduleTick(delay);
    if (this.opts.deepSleep) {
      // Asleep between wakes; the first wake after a boot flushes (clock sync, config), later ones
      // every N samples or M minutes.
      this.samplesSinceFlush = Number.POSITIVE_INFINITY;
      this.setState('sleeping');
    } else {
      this.setState('booting');
      this.connectTimer = this.clock.setTimeout(() => {
        this.connectTimer = null;
        this.connect();
      }, delay + wifiDelay); // Wi-Fi association after the sensors are up
    }
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
    this.scheduleTick(this.sampleIntervalMs);
    if (this.opts.deepSleep) {
      // A wake: its samples go to flash before the board sleeps again (RAM does not survive it).
      this.seal();
      this.samplesSinceFlush++;
      if (this._state === 'sleeping' && this.flushDue()) this.connect();
      return;
    }
    if (++this.ticksInFrame >= this.ticksPerFrame) this.seal();
  }

  /** Adds one irregular sample (the LED) at the current time. */
  private addEventSample(channel: number, value: boolean): void {
    const b = this.builder;
    if (!b.empty && (b.bytes + 8 > this.frameLimit || b.maxBlockSamples() >= 255)) this.seal();
    b.add(channel, ValueType.BOOL, this.deviceTimeMs(), value, !this.synced);
  }

  /** Seals the pending samples into a TELEMETRY frame, written to flash (the store), then the outbox. */
  private seal(): void {
    this.ticksInFrame = 0;
    if (this.builder.empty) return;
    const message = this.builder.take(this._bootId, this.nextSeq++, this.hash);
    const bytes = encodeFrame(message);
    // Buffered once written [PROTO-3.5]: flash first, then the RAM copy.
    this.store.appendFrame(bytes);
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
    this.opts.recorder?.sampled?.(this.recorded(message));
    const dropped = this._outbox.push(entry);
    if (dropped) this.dropOldest(dropped);
    this.emit('frame', entry);
    this.pump();
  }

  /** The full outbox dropped its head (drop-oldest), in flash too. */
  private dropOldest(dropped: OutboxEntry): void {
    this.store.dropFrames(1);
    // If the head was in flight on this connection, the window shrinks.
    if (this.sendCursor > 0) this.sendCursor--;
    if (this.sentHigh > 0) this.sentHigh--;
    this.droppedSinceBoot++;
    const s = this.stats;
    s.framesDropped++;
    const sent = dropped.sends > 0 || dropped.restored === true;
    if (!sent) s.framesDroppedUnsent++;
    s.samplesDropped += dropped.samples;
    s.readingsDropped += dropped.readings;
    if (this.opts.recorder && dropped.message) this.opts.recorder.dropped(this.recorded(dropped.message), sent);
    this.pruneDescriptorSets();
  }

  /** Samples in RAM that never made it into a frame (a crash or a power cut): lost, counted. */
  private discardPending(): void {
    if (this.builder.empty) return;
    this.stats.samplesLostOnCrash += this.builder.samples;
    const lost = this.builder.take(this._bootId, 0, this.hash);
    this.stats.readingsLostOnCrash += countReadings(lost);
    this.opts.recorder?.lost?.(this.recorded(lost));
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
    this.saveDescriptorSets();
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

  // ───────────────────────────── deep sleep ─────────────────────────────

  private flushDue(): boolean {
    const p = this.opts.deepSleep;
    if (!p) return false;
    return (
      this.samplesSinceFlush >= (p.flushEverySamples ?? 60) ||
      this.clock.now() - this.lastFlushAt >= (p.flushIntervalMs ?? 300_000)
    );
  }

  /** Deep sleep, online with an empty outbox: sleep after the grace period (commands may come). */
  private maybeSleep(): void {
    const p = this.opts.deepSleep;
    if (!p || this._state !== 'online' || this._outbox.length > 0 || this.sleepTimer) return;
    if (this.drainWaiters.length > 0) return;
    this.sleepTimer = this.clock.setTimeout(() => {
      this.sleepTimer = null;
      if (this._state === 'online' && this._outbox.length === 0) this.goToSleep();
    }, p.awakeGraceMs ?? 1000);
  }

  /** Radio off until the next flush; the outbox waits in flash. */
  private goToSleep(): void {
    const flushed = this._outbox.length === 0;
    const link = this.link;
    this.detachLink();
    link?.close(1000, 'deep sleep');
    this.clearTimer('connectTimer');
    this.clearTimer('sleepTimer');
    this.clearTimer('awakeTimer');
    this.endAwake();
    if (flushed) this.stats.flushes++;
    else this.stats.flushesIncomplete++;
    this.samplesSinceFlush = 0;
    this.lastFlushAt = this.clock.now();
    this.setState('sleeping');
    this.emit('sleep', flushed);
  }

  private endAwake(): void {
    if (this.awakeSince === 0) return;
    this.stats.awakeMs += this.clock.now() - this.awakeSince;
    this.awakeSince = 0;
  }

  // ───────────────────────────── connection ─────────────────────────────

  private setState(state: DeviceState): void {
    if (this._state === state) return;
    this._state = state;
    this.emit('state', state);
  }

  private connect(): void {
    if (this._state === 'stopped') return;
    if (this.otaHealthFails()) return;
    if (this.clock.now() < this.wifiDownUntil) {
      this.waitForWifi();
      return;
    }
    const epoch = ++this.epoch;
    this.stats.connectAttempts++;
    if (this.opts.deepSleep && this.awakeSince === 0) {
      // The radio is on: a flush, bounded in time so a missing hub cannot drain the battery.
      this.awakeSince = this.clock.now();
      this.clearTimer('awakeTimer');
      this.awakeTimer = this.clock.setTimeout(() => {
        this.awakeTimer = null;
        if (this.drainWaiters.length === 0) this.goToSleep();
      }, this.opts.deepSleep.maxAwakeMs ?? 30_000);
    }
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
      firmwareVersion: this.firmwareVersion,
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
    if (this.opts.deepSleep && !this.drainWaiters.length && !this.reconnectSoon) {
      // On battery a failed flush is not retried with the radio on: the frames wait for the next one.
      this.goToSleep();
      return;
    }
    this.reconnectSoon = false;
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
    const last = w.lastAck;
    if (last && last.bootId === this._bootId && last.seq > this.sentSeqThisBoot) {
      // The hub holds a seq of this boot id that this boot never sent: the id was used before (a
      // board that lost its NVS and drew the same randomness). Its ACKs would answer the old frames,
      // not ours. Take a new id, restamp this boot's frames (all unsent or unacked), start over.
      this.onBootIdReused();
      return;
    }
    // A deep-sleep board's planned connections are flushes, not reconnects.
    if (this.sessionsThisBoot++ > 0 && !this.opts.deepSleep) s.reconnects++;
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
    if (this.otaHealthCheck()) return;
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
    this.maybeSleep();
  }

  private applyWelcomeAck(lastAck: { bootId: number; seq: number } | null): void {
    const prev = this.lastAcked;
    if (prev && (!lastAck || (lastAck.bootId === prev.bootId && lastAck.seq < prev.seq))) {
      // The hub no longer holds what it acknowledged before: its durable store lost data.
      this.stats.ackRegressions++;
    }
    if (!lastAck) return;
    // Only frames that went on the wire at some point (in this power-on, or before: restored) can be stored.
    let sent = 0;
    while (sent < this.outbox.length && (this.outbox.at(sent).sends > 0 || this.outbox.at(sent).restored)) sent++;
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
    this.maybeSleep();
  }

  /** See onWelcome: a new boot id for the frames of this boot, then a new session under it. */
  private onBootIdReused(): void {
    const old = this._bootId;
    this.stats.bootIdReused++;
    this._bootId = this.newBootId([old]);
    const frames: Uint8Array[] = [];
    for (let i = 0; i < this._outbox.length; i++) {
      const e = this._outbox.at(i);
      if (e.bootId === old) {
        const m = decodeFrame(e.bytes) as Telemetry;
        m.bootId = this._bootId;
        e.bootId = this._bootId;
        e.bytes = encodeFrame(m);
        if (e.message) e.message = m;
      }
      frames.push(e.bytes);
    }
    this.store.rewriteOutbox(frames);
    this.emit('bootIdReused', old, this._bootId);
    this.reconnectSoon = true;
    this.link?.close(1000, 'boot id reused: new session');
  }

  /** Removes `n` acknowledged frames from the head of the outbox. */
  private free(n: number, measure: boolean): void {
    const s = this.stats;
    const now = this.clock.now();
    const recorder = this.opts.recorder;
    this.store.dropFrames(n);
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
      if (e.sends > 0 || e.restored) s.framesReplayed++;
      e.sends++;
      if (e.bootId === this._bootId && e.seq > this.sentSeqThisBoot) this.sentSeqThisBoot = e.seq;
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
    this.saveNvs(); // the id is remembered (NVS) before the command runs
    this.sendControl({ type: 'command_accepted', commandId: c.commandId });
    const result = (status: number, message: string) => {
      this.commandResults.set(c.commandId, { status, message });
      this.saveNvs();
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
        this.saveNvs();
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
      case 'ota': {
        this.runOta(c, result);
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

  // ───────────────────────────── OTA (ota.ts, docs/ota.md) ─────────────────────────────

  private otaDownload: AbortController | null = null;
  private otaRollbackTimer: TimerHandle | null = null;

  /** Whether this board fails its health check after an OTA update (`otaFailHealth`). */
  get otaFailsHealth(): boolean {
    return this.opts.otaFailHealth === true;
  }

  /** The version this board runs: its OTA slot's, else the factory image's. */
  get firmwareVersion(): string {
    const ota = this.nvs.ota;
    return ota?.slots[ota.running]?.version ?? this.opts.firmwareVersion ?? 'sim-1.0.0';
  }

  /** The OTA state in NVS (created on first use). */
  private otaNvs(): OtaNvs {
    this.nvs.ota ??= emptyOtaNvs();
    return this.nvs.ota;
  }

  /** At boot: a running download is gone (RAM); a verified image in the other slot boots now. */
  private otaOnBoot(): void {
    this.otaDownload?.abort();
    this.otaDownload = null;
    const ota = this.nvs.ota;
    if (ota?.nextBoot === undefined || ota.nextBoot === null) return;
    ota.running = ota.nextBoot;
    ota.nextBoot = null;
    ota.pendingVerify = true;
    this.saveNvs();
    this.emit('ota', { outcome: 'booted', version: this.firmwareVersion });
  }

  /** After WELCOME: a new image pending verification has passed its health check and is marked valid. */
  private otaHealthCheck(): boolean {
    const ota = this.nvs.ota;
    if (!ota?.pendingVerify) return false;
    ota.pendingVerify = false;
    this.saveNvs();
    this.emit('ota', { outcome: 'valid', version: this.firmwareVersion });
    return false;
  }

  /**
   * A new image set to fail its health check never reaches the hub (as firmware whose network start
   * is broken): it does not connect, and after the health deadline it marks itself invalid and
   * resets into the old slot — the bootloader's rollback. True while that is under way.
   */
  private otaHealthFails(): boolean {
    const ota = this.nvs.ota;
    if (!ota?.pendingVerify || !this.opts.otaFailHealth) return false;
    if (this.otaRollbackTimer !== null) return true;
    this.otaRollbackTimer = this.clock.setTimeout(() => {
      this.otaRollbackTimer = null;
      if (this._state === 'stopped') return;
      const failed = this.firmwareVersion;
      ota.pendingVerify = false;
      ota.running = ota.running === 0 ? 1 : 0;
      this.saveNvs();
      this.emit('ota', { outcome: 'rolled_back', version: failed, detail: `back to ${this.firmwareVersion}` });
      this.reboot(ResetReason.SOFTWARE, false);
    }, this.opts.otaHealthDeadlineMs ?? 2000);
    return true;
  }

  private runOta(c: Command, result: (status: number, message: string) => void): void {
    const req = parseOtaArgs(new Map(c.args.map((a) => [a.key, a.value])));
    if (typeof req === 'string') {
      result(CommandStatus.BAD_ARGUMENTS, req);
      return;
    }
    if (this.otaDownload !== null) {
      result(CommandStatus.BUSY, 'an update is already running');
      return;
    }
    const abort = new AbortController();
    this.otaDownload = abort;
    const key = this.opts.otaPublicKeyPem ? otaPublicKey(this.opts.otaPublicKeyPem) : null;
    void downloadAndVerify(req, key, {
      signal: abort.signal,
      insecure: this.opts.otaInsecure === true,
      ...(this.opts.otaRetryMs !== undefined ? { retryMs: this.opts.otaRetryMs } : {}),
    }).then((outcome) => {
      if (abort.signal.aborted || this.otaDownload !== abort) return; // rebooted or stopped meanwhile
      this.otaDownload = null;
      if (!outcome.ok) {
        this.emit('ota', { outcome: 'failed', version: req.version, detail: `${outcome.step}: ${outcome.detail}` });
        result(CommandStatus.FAILED, `${outcome.step}: ${outcome.detail}`);
        return;
      }
      // Written to the inactive slot, verified: switch the boot partition, then reboot into it.
      const ota = this.otaNvs();
      const target = ota.running === 0 ? 1 : 0;
      ota.slots[target] = { version: req.version, sha256: req.sha256, size: req.size };
      ota.nextBoot = target;
      // Slot 0 without a record holds the factory image: name it, so a rollback reports it.
      ota.slots[ota.running] ??= { version: this.firmwareVersion, sha256: '', size: 0 };
      this.saveNvs();
      result(CommandStatus.OK, 'rebooting');
      this.reboot(ResetReason.SOFTWARE, true);
    });
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
      | 'malformedTimer'
      | 'powerTimer'
      | 'sleepTimer'
      | 'awakeTimer',
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
      'powerTimer',
      'sleepTimer',
      'awakeTimer',
    ] as const) {
      this.clearTimer(name);
    }
  }

  private shutdown(): void {
    this.endAwake();
    const link = this.link;
    this.detachLink();
    this.clearAllTimers();
    this.setState('stopped');
    link?.close(1000, 'simulator stopped');
    this.store.close();
    for (const w of [...this.drainWaiters]) w();
  }
}
