/**
 * One device connection's session state machine [PROTO-5]:
 *
 *   awaiting-hello ──HELLO──▶ [joining] ──▶ ready ──(fault | replaced | revoked | shutdown)──▶ closing ──▶ closed
 *        │ timeout / other frame                                                                 ▲
 *        └──────────────────────────── ERROR + close ────────────────────────────────────────────┘
 *
 * `joining` exists only with several instances (`ctx.cluster`, server/cluster/sessions.ts): the HELLO
 * waits (bounded) for the device's claim and shared state before WELCOME; any frame meanwhile is refused
 * as before HELLO. With one instance HELLO goes straight to ready, as always.
 *
 * Frames are decoded as they arrive and handed to the pipeline without waiting for earlier commits
 * (pipelining); ACKs go out in order as group commits complete, coalesced per commit into one
 * cumulative ACK [PROTO-3.5], and while the hub streams, paced to cover several frames (ACK_HOLD_*). In-flight frames are bounded hub-wide by bytes (inflight-budget.ts):
 * above the bound the link a frame arrived on is paused (backpressure to the device), and paused links
 * resume in turn below half of it. A session also holds at most MAX_INFLIGHT_FRAMES itself (resumed
 * below half), so one busy device cannot take the whole hub's budget.
 *
 * The session talks to a transport-neutral {@link DeviceLink} (link.ts): the WebSocket link
 * (gateway.ts) and the MQTT link (server/mqtt/device-transport.ts) share this one state machine.
 */
import { crc32 } from 'node:zlib';
import type { FrameRef, Hello, TelemetryScan } from '../codec/index.ts';
import {
  type ChannelDescriptor,
  type CommandArg,
  decodeFrame,
  encodeFrame,
  HEADER_BYTES,
  MAX_FRAME_BYTES,
  type Message,
  MessageType,
  PROTOCOL_VERSION,
} from '../codec/index.ts';
import type { HubConfig } from '../config/index.ts';
import { ERRORS, type ErrorCode, errorCodeFromWire, HubError } from '../errors.ts';
import type { HubEventBus } from '../events.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import type { CommandTracker } from '../pipeline/commands.ts';
import type { Ingest } from '../pipeline/ingest.ts';
import type { AckWaiter, InfluxAckGate } from './ack-gate.ts';
import { InflightBudget, type Pausable } from './inflight-budget.ts';
import type { DeviceLink } from './link.ts';
import { encodeAck, encodeError } from './outbound.ts';

/**
 * Frames one session may have in flight before its link is paused (resumed below half): a fairness
 * bound under the hub-wide byte bound (inflight-budget.ts), which is what bounds memory.
 */
export const MAX_INFLIGHT_FRAMES = 512;
/** Why a link is paused: its own session's bound, the hub-wide budget (a bit each). */
const HOLD_SESSION = 1;
const HOLD_BUDGET = 2;
/** Several instances: joining (HELLO waits for the cluster), or a frame's boot offset being agreed. */
const HOLD_CLUSTER = 4;
/** Bytes queued for sending to a device beyond which it is disconnected (it is not reading). */
export const SEND_HIGH_WATER_BYTES = 256 * 1024;
/** How long a closing session waits for its in-flight commits so their ACKs go out first. */
const CLOSE_DRAIN_MS = 1000;

/**
 * Hot-path counts kept as plain numbers and moved into the prom-client metrics in bulk by
 * `flushSessionCounts` (every second and before each /metrics scrape): no metric lookups per frame.
 */
export interface SessionCounts {
  telemetryFrames: number;
  bytes: number;
  /** ACKs sent (`hub_acks_sent_total`). */
  acks: number;
  /**
   * TELEMETRY frames handed to the pipeline and not yet durable, hub-wide, and the bound on their
   * bytes that pauses links (a level, not a delta).
   */
  inflight: InflightBudget;
  /** The hub's sessions with an ACK to send, and whether it streams (ACK pacing, below). */
  ackQueue: AckQueue;
}

/** `budget`: the hub-wide in-flight bound (default {@link InflightBudget}'s, 16 MiB). */
export function newSessionCounts(budget: InflightBudget = new InflightBudget()): SessionCounts {
  return {
    telemetryFrames: 0,
    bytes: 0,
    acks: 0,
    inflight: budget,
    ackQueue: new AckQueue(),
  };
}

export function flushSessionCounts(counts: SessionCounts, metrics: Metrics): void {
  if (counts.telemetryFrames > 0) metrics.framesIn.inc({ type: 'telemetry' }, counts.telemetryFrames);
  if (counts.bytes > 0) metrics.bytesIn.inc(counts.bytes);
  if (counts.acks > 0) metrics.acksSent.inc(counts.acks);
  metrics.ingestInflightFrames.set(counts.inflight.frames);
  // The peak since the last flush: a gauge read every few seconds would miss short bursts.
  metrics.ingestInflightBytes.set(counts.inflight.takePeak());
  counts.telemetryFrames = 0;
  counts.bytes = 0;
  counts.acks = 0;
}

/**
 * ACK pacing. With many devices each sending a frame every few tens of ms, a commit holds about one
 * frame per device, and an ACK per commit is an ACK per frame: a socket write on the hub and a read on
 * the device, each costing about as much as the frame's own processing (docs/performance.md). While
 * the hub streams (at least ACK_HOLD_MIN_RATE frames/s made durable, measured over ACK_PACING_WINDOW_MS),
 * a session's cumulative ACK therefore waits until it covers ACK_HOLD_FRAMES frames, or until the
 * oldest frame it covers has been durable for ACK_HOLD_MAX_MS. Nothing waits longer to be durable:
 * only the ACK is later, and the device keeps the frames until it comes [PROTO-3.5]. Four frames is half
 * the firmware's in-flight window (8), so a device replaying its outbox is never held up by its own
 * window. Below the rate (a lone device, a small fleet) every commit's ACK goes out at once.
 */
export const ACK_HOLD_FRAMES = 4;
export const ACK_HOLD_MAX_MS = 250;
export const ACK_HOLD_MIN_RATE = 1000;
const ACK_PACING_WINDOW_MS = 1000;
/** How often held ACKs are looked at when no commit does it (commits do, every few ms, while streaming). */
const ACK_HOLD_SWEEP_MS = 50;

/**
 * Sessions with an ACK to send, hub-wide: a group commit's callbacks (local-log.ts `settle`) all run
 * in one go, and one microtask after them sends each session's one cumulative ACK that is due, instead
 * of a microtask and a closure per session per commit. A held ACK stays queued for the next flush, and
 * a sweep timer flushes again while any is held.
 */
export class AckQueue {
  /** Whether the hub streams (ACK pacing engaged), from the frames made durable per window. */
  streaming = false;
  /** Frames made durable since `windowStartMs`. */
  private frames = 0;
  private windowStartMs = 0;
  private readonly sessions: DeviceSession[] = [];
  private flushScheduled = false;
  private sweep: NodeJS.Timeout | null = null;
  private readonly flush = (): void => {
    this.flushScheduled = false;
    // Index loop: a flush may end a session (slow consumer), which never queues another ACK.
    const sessions = this.sessions;
    // The clock read once per flush, and only while streaming (else no ACK is held). The queued
    // sessions share one context (this queue is its counts'), hence one clock.
    const nowMs = this.streaming && sessions.length > 0 ? (sessions[0] as DeviceSession).now() : 0;
    let kept = 0;
    for (let i = 0; i < sessions.length; i++) {
      const session = sessions[i] as DeviceSession;
      if (!session.flushAckIfDue(nowMs)) sessions[kept++] = session;
    }
    sessions.length = kept;
    if (kept > 0 && this.sweep === null) {
      this.sweep = setTimeout(() => {
        this.sweep = null;
        this.flush();
      }, ACK_HOLD_SWEEP_MS);
      // Sockets keep a live hub running; a stopped one has flushed or dropped its sessions' ACKs.
      this.sweep.unref();
    }
  };

  /** A frame of `session` became durable at `nowMs`; `first`: its ACK was not queued yet. */
  add(session: DeviceSession, first: boolean, nowMs: number): void {
    this.frames++;
    if (nowMs - this.windowStartMs >= ACK_PACING_WINDOW_MS) {
      this.streaming = (this.frames * 1000) / (nowMs - this.windowStartMs) >= ACK_HOLD_MIN_RATE;
      this.frames = 0;
      this.windowStartMs = nowMs;
    }
    if (first) this.sessions.push(session);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(this.flush);
    }
  }
}

export interface SessionContext {
  counts: SessionCounts;
  ingest: Ingest;
  sessions: SessionTable;
  commands: CommandTracker;
  config: Readonly<HubConfig>;
  metrics: Metrics;
  bus: HubEventBus;
  logger: Logger;
  now: () => number;
  /** ACK_DURABILITY=influx: ACKs (and WELCOME's last ACK) also wait for InfluxDB (ack-gate.ts). */
  ackGate?: InfluxAckGate | null;
  /** Several instances (server/cluster/sessions.ts); absent with one: no await, nothing per frame. */
  cluster?: SessionCluster | null;
}

/** What a session asks the cluster (server/cluster/sessions.ts implements it). */
export interface SessionCluster {
  /**
   * Claims the device (newest wins), merges its shared state into the ingest; resolves with the HELLO
   * boot's offset every instance uses, or null (database unreachable or too slow: the session goes on
   * locally; or the session ended meanwhile). Bounded; never rejects.
   */
  beforeHello(session: DeviceSession, hello: Hello, atMs: number): Promise<number | null>;
  /** Seeds (device, boot)'s agreed offset into the ingest. */
  seedBootOffset(deviceId: string, bootId: number, offsetMs: number): void;
  /** The offset this frame would set for a boot with no HELLO anchor and none known; else null. */
  unanchoredBootOffset(deviceId: string, scan: Readonly<TelemetryScan>, receivedAtMs: number): number | null;
  /** The offset every instance uses for (device, boot), given ours. Bounded; never rejects. */
  agreeBootOffset(deviceId: string, bootId: number, offsetMs: number): Promise<number>;
  /** A session that started joining closed (its claim is released, its state written behind). */
  ended(session: DeviceSession): void;
}

/** The live sessions, one per device id [PROTO-5.4]. */
export interface SessionTable {
  /** Registers a session after HELLO; an older session of the same device is replaced (4001). */
  register(session: DeviceSession): void;
  unregister(session: DeviceSession): void;
  get(deviceId: string): DeviceSession | undefined;
  size(): number;
  values(): IterableIterator<DeviceSession>;
}

export function createSessionTable(): SessionTable {
  const map = new Map<string, DeviceSession>();
  return {
    register(session) {
      const old = map.get(session.deviceId);
      map.set(session.deviceId, session);
      if (old && old !== session) old.end('REPLACED', 'a newer connection of this device replaced this one');
    },
    unregister(session) {
      if (map.get(session.deviceId) === session) map.delete(session.deviceId);
    },
    get: (id) => map.get(id),
    size: () => map.size,
    values: () => map.values(),
  };
}

type State = 'awaiting-hello' | 'joining' | 'ready' | 'closing' | 'closed';

const TYPE_LABELS: Record<Message['type'], string> = {
  hello: 'hello',
  welcome: 'welcome',
  descriptors: 'descriptors',
  telemetry: 'telemetry',
  ack: 'ack',
  command: 'command',
  command_accepted: 'command_accepted',
  command_result: 'command_result',
  error: 'error',
};

export class DeviceSession implements AckWaiter {
  readonly deviceId: string;
  private state: State = 'awaiting-hello';
  private readonly log: Logger;
  private helloTimer: NodeJS.Timeout | null;
  /** Set by the heartbeat sweep, cleared by a pong [PROTO-1.5]. */
  private awaitingPong = false;
  private registered = false;
  /** The ingest's hello ran (device:online emitted): release and device:offline are due at close. */
  private helloed = false;
  private readonly cluster: SessionCluster | null;
  /** Frames held (in order) while the boot offset of the first of them is agreed cluster-wide. */
  private held: { data: Buffer; atMs: number }[] | null = null;
  private inflight = 0;
  /** HOLD_* bits: the link is paused while any is set. */
  private holds = 0;
  /** What the hub-wide budget pauses and resumes: this session's budget hold. */
  private readonly budgetHold: Pausable = {
    pause: () => this.hold(HOLD_BUDGET, true),
    resume: () => this.hold(HOLD_BUDGET, false),
  };
  private onDrained: (() => void) | null = null;
  /** A refused frame (UNKNOWN_DESCRIPTORS / STORAGE_FULL): later frames are refused until it is replayed. */
  private refusal: { bootId: number; seq: number; code: ErrorCode } | null = null;
  private ackBoot = 0;
  private ackSeq = 0;
  private ackScheduled = false;
  /** Frames the queued ACK covers beyond the last one sent, and when the first of them was durable. */
  private ackFrames = 0;
  private ackHeldSinceMs = 0;
  /** An ACK was queued on this session (`ackBoot`/`ackSeq` hold the latest). */
  private acked = false;
  /** A frame of this session failed to commit: no ACK may follow, since it would cover that frame. */
  private storeFailed = false;
  private closeReason: string = 'closed';
  private closedCallbacks: (() => void)[] = [];

  constructor(
    private readonly link: DeviceLink,
    deviceId: string,
    private readonly ctx: SessionContext,
  ) {
    this.deviceId = deviceId;
    this.cluster = ctx.cluster ?? null;
    this.log = ctx.logger.child({ deviceId });
    this.helloTimer = setTimeout(
      () => this.end('HELLO_TIMEOUT', `no HELLO within ${ctx.config.devices.helloTimeoutMs} ms`),
      ctx.config.devices.helloTimeoutMs,
    );
    link.attach({
      message: (data, isBinary) => this.onMessage(data, isBinary),
      pong: () => {
        this.awaitingPong = false;
      },
      closed: (code) => this.onClose(code),
    });
  }

  /** Heartbeat sweep step: terminate when the last ping got no pong, else ping again [PROTO-1.5]. */
  heartbeat(): void {
    if (this.state === 'closed') return;
    if (this.awaitingPong) {
      this.closeReason = 'heartbeat';
      this.link.terminate();
      return;
    }
    this.awaitingPong = true;
    this.link.ping();
  }

  /**
   * Ends the session with a coded reason: in-flight frames are given up to 1 s to commit (their ACKs go
   * out first), then ERROR (FATAL) and a close with the catalogue's close code. `reason` replaces the
   * one counted and reported in `device:offline` (e.g. `moved`: an MQTT device another instance handles).
   */
  end(code: ErrorCode, message: string, opts: { count?: boolean; reason?: string } = {}): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    const closeCode = ERRORS[code].close ?? 1011;
    this.state = 'closing';
    this.closeReason = opts.reason ?? (code === 'REPLACED' ? 'replaced' : code === 'SHUTTING_DOWN' ? 'shutdown' : code);
    if (opts.count ?? (code !== 'REPLACED' && code !== 'SHUTTING_DOWN' && code !== 'REVOKED')) {
      this.ctx.metrics.frameErrors.inc({ code });
      this.ctx.bus.emit('device:rejected', this.deviceId, code, message);
    }
    if (this.helloTimer) {
      clearTimeout(this.helloTimer);
      this.helloTimer = null;
    }
    // Read again so the close handshake completes (frames read now are ignored: the session is closing).
    if ((this.holds & HOLD_CLUSTER) !== 0) this.hold(HOLD_CLUSTER, false);
    // At info the operator sees this rate-limited (server/log/device-activity.ts): the rejection with
    // `message` as detail, and the disconnect with its close code. One line per session here would let
    // a reconnect loop, or a shutdown with 10,000 devices, flood the log.
    this.log.debug({ code, closeCode }, `closing device session: ${message}`);
    const finish = () => {
      this.onDrained = null;
      if (!this.link.isOpen()) return;
      this.flushAck();
      this.link.close(closeCode, code, encodeError(code, message));
    };
    if (this.inflight === 0) finish();
    else {
      const timer = setTimeout(finish, CLOSE_DRAIN_MS);
      this.onDrained = () => {
        clearTimeout(timer);
        finish();
      };
    }
  }

  /** Sends a COMMAND [PROTO-3.6]; throws BAD_REQUEST when the command cannot be encoded. */
  sendCommand(commandId: number, name: string, args: CommandArg[]): void {
    let frame: Uint8Array;
    try {
      frame = encodeFrame({ type: 'command', commandId, name, args });
    } catch (err) {
      throw new HubError('BAD_REQUEST', `command cannot be encoded: ${(err as Error).message}`);
    }
    if (!this.isReady()) throw new HubError('DEVICE_OFFLINE');
    this.send(frame);
  }

  isReady(): boolean {
    return this.state === 'ready';
  }

  /** Runs `cb` once the link has closed (at once when it already has). */
  onceClosed(cb: () => void): void {
    if (this.state === 'closed') cb();
    else this.closedCallbacks.push(cb);
  }

  /** Drops the connection without a close handshake (hub stop, after the graceful attempt). */
  terminate(): void {
    if (this.state !== 'closed') this.link.terminate();
  }

  /** The link this session talks through (its transport, address). */
  get transport(): DeviceLink['transport'] {
    return this.link.transport;
  }

  private send(frame: Uint8Array): void {
    if (this.dropSlowConsumer()) return;
    this.link.send(frame);
  }

  /** The device is not reading (too much queued to it): everything it would get next is stale. */
  private dropSlowConsumer(): boolean {
    if (this.link.bufferedAmount <= SEND_HIGH_WATER_BYTES) return false;
    this.closeReason = 'slow_consumer';
    this.link.terminate();
    return true;
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    const receivedAtMs = this.ctx.now();
    const counts = this.ctx.counts;
    counts.bytes += data.length;
    if (!isBinary) {
      this.end('TEXT_FRAME', 'devices send binary frames only [PROTO-1.3]');
      return;
    }
    // Hot path: TELEMETRY in a ready session is scanned, not decoded into objects (telemetry-scan.ts).
    if (this.state === 'ready' && data.length > 3 && data[3] === MessageType.TELEMETRY) {
      counts.telemetryFrames++;
      this.telemetry(data, receivedAtMs);
      return;
    }
    const m = this.ctx.metrics;
    let msg: Message;
    try {
      msg = decodeFrame(data);
    } catch (err) {
      if (err instanceof HubError) this.end(err.code, err.message);
      else this.end('INTERNAL', 'decoder failure');
      return;
    }
    m.framesIn.inc({ type: TYPE_LABELS[msg.type] });
    try {
      if (this.state === 'joining') throw new HubError('UNEXPECTED_MESSAGE', `${msg.type} before WELCOME`);
      if (this.state === 'awaiting-hello') {
        if (msg.type !== 'hello') throw new HubError('UNEXPECTED_MESSAGE', `expected HELLO, got ${msg.type}`);
        this.onHello(msg, receivedAtMs);
        return;
      }
      switch (msg.type) {
        case 'telemetry':
          // Only reached when the type byte said otherwise than the decoded frame (cannot happen).
          throw new HubError('UNEXPECTED_MESSAGE', 'TELEMETRY outside the fast path');
        case 'descriptors':
          this.onDescriptors(data, msg.channels);
          return;
        case 'command_accepted':
          if (!this.ctx.commands.accepted(this.deviceId, msg.commandId)) this.notice('COMMAND_UNKNOWN', msg.commandId);
          return;
        case 'command_result':
          if (!this.ctx.commands.result(this.deviceId, msg.commandId, msg.status, msg.message)) {
            this.notice('COMMAND_UNKNOWN', msg.commandId);
          }
          return;
        case 'error':
          this.log.warn(
            { wire: msg.code, code: errorCodeFromWire(msg.code) ?? 'unknown', fatal: msg.fatal, text: msg.message },
            'device reported an error',
          );
          if (msg.fatal) {
            // [PROTO-3.8] FATAL: the device closes after this frame (over MQTT this is its last will,
            // published by the broker when the device's connection died): the session ends at once.
            this.closeReason = 'device_closed';
            this.state = 'closing';
            this.link.close(1000, 'DEVICE_CLOSED');
          }
          return;
        default:
          throw new HubError('UNEXPECTED_MESSAGE', `${msg.type} is not allowed from a device in this state`);
      }
    } catch (err) {
      if (err instanceof HubError) this.end(err.code, err.message);
      else {
        this.log.error({ err }, 'session failure');
        this.end('INTERNAL', 'internal error');
      }
    }
  }

  /** A non-fatal coded ERROR frame (the connection stays open). */
  private notice(code: ErrorCode, detail: number | string): void {
    this.ctx.metrics.frameErrors.inc({ code });
    this.ctx.bus.emit('device:rejected', this.deviceId, code);
    this.send(encodeError(code, `${ERRORS[code].summary} (${detail})`));
  }

  private onHello(hello: Extract<Message, { type: 'hello' }>, atMs: number): void {
    if (hello.deviceId !== this.deviceId) {
      throw new HubError('DEVICE_MISMATCH', `HELLO names ${hello.deviceId}, the token is for ${this.deviceId}`);
    }
    if (this.helloTimer) {
      clearTimeout(this.helloTimer);
      this.helloTimer = null;
    }
    const { sessions, metrics } = this.ctx;
    sessions.register(this);
    this.registered = true;
    metrics.deviceSessions.inc();
    const cluster = this.cluster;
    if (cluster === null) {
      this.welcome(hello, atMs, null);
      return;
    }
    // Several instances: WELCOME waits for the claim and the shared state (bounded by the cluster).
    // Over MQTT the link is not paused: that would hold the hub's whole broker input, and the device
    // publishes nothing before WELCOME [PROTO-1.6] (what it does publish is refused below).
    this.state = 'joining';
    if (this.link.transport !== 'mqtt') this.hold(HOLD_CLUSTER, true);
    cluster.beforeHello(this, hello, atMs).then(
      (offsetMs) => {
        if (this.state !== 'joining') return; // ended (replaced, closed) while joining
        if (this.link.transport !== 'mqtt') this.hold(HOLD_CLUSTER, false);
        this.welcome(hello, atMs, offsetMs);
      },
      (err: unknown) => {
        this.log.error({ err }, 'session failure while joining the cluster');
        this.end('INTERNAL', 'internal error');
      },
    );
  }

  /** The ingest's hello and WELCOME; `bootOffsetMs`: the HELLO boot's offset agreed cluster-wide. */
  private welcome(hello: Hello, atMs: number, bootOffsetMs: number | null): void {
    const { config, ingest, bus } = this.ctx;
    const info = ingest.hello(this.deviceId, hello, atMs);
    this.helloed = true;
    if (bootOffsetMs !== null) this.cluster?.seedBootOffset(this.deviceId, hello.bootId, bootOffsetMs);
    this.state = 'ready';
    this.send(
      encodeFrame({
        type: 'welcome',
        acceptedVersion: Math.min(PROTOCOL_VERSION, hello.maxProtocolVersion),
        serverTimeMs: this.ctx.now(),
        lastAck: this.ctx.ackGate ? this.ctx.ackGate.welcomeAck(this.deviceId, info.lastAck) : info.lastAck,
        descriptorsKnown: info.descriptorsKnown,
        sampleIntervalMs: config.devices.sampleIntervalMs,
        heartbeatIntervalSec: config.devices.heartbeatIntervalSec,
        maxFrameBytes: MAX_FRAME_BYTES,
      }),
    );
    this.log.debug(
      {
        bootId: hello.bootId,
        firmwareVersion: hello.firmwareVersion,
        timeSynced: hello.timeSynced,
        bufferedFrames: hello.bufferedFrames,
        droppedFrames: hello.droppedFrames,
        lastAck: info.lastAck,
        descriptorsKnown: info.descriptorsKnown,
      },
      'device session ready',
    );
    bus.emit('device:online', {
      deviceId: this.deviceId,
      firmwareVersion: hello.firmwareVersion,
      bootId: hello.bootId,
      timeSynced: hello.timeSynced,
      bufferedFrames: hello.bufferedFrames,
      droppedFrames: hello.droppedFrames,
      atMs,
    });
  }

  private onDescriptors(frame: Buffer, channels: ChannelDescriptor[]): void {
    // [PROTO-3.3.1] hash = CRC-32 of the payload bytes as received (canonical encoding).
    const length = frame.readUInt16LE(6);
    const hash = crc32(frame.subarray(HEADER_BYTES, HEADER_BYTES + length));
    this.ctx.ingest.descriptors(this.deviceId, hash, channels);
    if (this.refusal?.code === 'UNKNOWN_DESCRIPTORS') this.refusal = null;
  }

  /** A TELEMETRY frame in a ready session: scanned (not decoded) and handed to the pipeline. */
  private telemetry(data: Buffer, receivedAtMs: number): void {
    try {
      const scan = this.ctx.ingest.scan(this.deviceId, data);
      if (this.cluster !== null && this.clusterHolds(data, scan, receivedAtMs)) return;
      this.onTelemetry(data, scan, receivedAtMs);
    } catch (err) {
      if (err instanceof HubError) this.end(err.code, err.message);
      else {
        this.log.error({ err }, 'session failure');
        this.end('INTERNAL', 'internal error');
      }
    }
  }

  /**
   * Several instances: the first unsynced frame of a boot with no HELLO anchor and no known offset (an
   * older boot's replay) sets that boot's offset. It and every frame after it wait (link paused) until
   * the offset is agreed cluster-wide; the frame is then stored with the agreed one, so no instance
   * ever stores that boot under another offset. True when the frame is held.
   */
  private clusterHolds(data: Buffer, scan: Readonly<TelemetryScan>, receivedAtMs: number): boolean {
    if (this.held !== null) {
      this.held.push({ data, atMs: receivedAtMs });
      return true;
    }
    const cluster = this.cluster as SessionCluster;
    const offsetMs = cluster.unanchoredBootOffset(this.deviceId, scan, receivedAtMs);
    if (offsetMs === null) return false;
    const bootId = scan.bootId;
    this.held = [{ data, atMs: receivedAtMs }];
    this.hold(HOLD_CLUSTER, true);
    void cluster.agreeBootOffset(this.deviceId, bootId, offsetMs).then((agreed) => {
      const frames = this.held ?? [];
      this.held = null;
      // Ended meanwhile: none of the held frames was stored or acknowledged; the device replays them.
      if (this.state !== 'ready') return;
      cluster.seedBootOffset(this.deviceId, bootId, agreed);
      for (let i = 0; i < frames.length; i++) {
        if (this.state !== 'ready') return;
        const again = this.held as { data: Buffer; atMs: number }[] | null;
        if (again !== null) {
          // Another boot's offset is being agreed: the rest waits behind it, in order.
          again.push(...frames.slice(i));
          return;
        }
        const f = frames[i] as { data: Buffer; atMs: number };
        this.telemetry(f.data, f.atMs);
      }
      if (this.held === null) this.hold(HOLD_CLUSTER, false);
    });
    return true;
  }

  private onTelemetry(frame: Buffer, t: Readonly<TelemetryScan>, receivedAtMs: number): void {
    const { bootId, seq } = t;
    if (this.refusal) {
      const r = this.refusal;
      if (bootId === r.bootId && seq <= r.seq)
        this.refusal = null; // the device is replaying
      else {
        // Refused silently (one ERROR per episode): acknowledging it would cover the refused frame.
        this.ctx.metrics.frameErrors.inc({ code: r.code });
        this.ctx.bus.emit('device:rejected', this.deviceId, r.code);
        if (r.code === 'STORAGE_FULL') this.ctx.metrics.logFullRejections.inc();
        return;
      }
    }
    const started = performance.now();
    const budget = this.ctx.counts.inflight;
    const cost = InflightBudget.cost(frame.length);
    this.inflight++;
    const over = budget.take(cost);
    try {
      this.ctx.ingest.store(this.deviceId, frame, t, receivedAtMs, (err, _outcome, offset) => {
        // ACK_DURABILITY=influx: durable locally; the frame stays in flight (budget, session bound)
        // until InfluxDB confirmed the log up to it, then comes back through `confirmed`.
        const gate = this.ctx.ackGate;
        if (!err && gate) gate.wait(this, offset, bootId, seq, cost, started);
        else this.frameDone(err, bootId, seq, cost, started);
      });
    } catch (err) {
      this.inflight--;
      budget.release(cost);
      if (err instanceof HubError && ERRORS[err.code].close === null) {
        // Non-fatal refusal [PROTO-5.2, PROTO-5.5]: no ACK; the device keeps the frame and replays it.
        this.refusal = { bootId, seq, code: err.code };
        this.notice(err.code, `boot ${bootId} seq ${seq}`);
        return;
      }
      throw err;
    }
    // The hub holds more in flight than its bound: this link waits (backpressure stays in the
    // kernel's socket buffers and on the device) until the budget resumes it.
    if (over && budget.pause(this.budgetHold)) this.ctx.metrics.sessionPauses.inc();
    if (this.inflight > MAX_INFLIGHT_FRAMES && (this.holds & HOLD_SESSION) === 0) {
      this.hold(HOLD_SESSION, true);
      this.ctx.metrics.sessionPauses.inc();
    }
  }

  /** The latest ACK this session queued (ack-gate.ts: a device's confirmed position). */
  get lastAck(): FrameRef | null {
    return this.acked ? { bootId: this.ackBoot, seq: this.ackSeq } : null;
  }

  /** The ACK gate released this frame: InfluxDB confirmed it (ack-gate.ts). */
  confirmed(bootId: number, seq: number, cost: number, startedMs: number): void {
    this.frameDone(null, bootId, seq, cost, startedMs);
  }

  /** A frame left the pipeline: durable (and confirmed when the ACK waits for InfluxDB), or failed. */
  private frameDone(err: HubError | null, bootId: number, seq: number, cost: number, started: number): void {
    this.inflight--;
    this.ctx.counts.inflight.release(cost);
    this.ctx.metrics.ackLatency.observe((performance.now() - started) / 1000);
    if (err) {
      if (!this.storeFailed) this.log.error({ err: err.cause ?? err, bootId, seq }, 'frame not stored');
      this.storeFailed = true;
      this.end(err.code, err.message);
    } else if (!this.storeFailed) this.queueAck(bootId, seq);
    if ((this.holds & HOLD_SESSION) !== 0 && this.inflight < MAX_INFLIGHT_FRAMES / 2) {
      this.hold(HOLD_SESSION, false);
    }
    if (this.inflight === 0) this.onDrained?.();
  }

  /** Sets or clears one reason to pause; the link is paused while any reason holds. */
  private hold(bit: number, on: boolean): void {
    const before = this.holds;
    this.holds = on ? before | bit : before & ~bit;
    if (before === 0 && this.holds !== 0) this.link.pause();
    else if (before !== 0 && this.holds === 0) this.link.resume();
  }

  /** One cumulative ACK per commit group at most: the latest (boot, seq) wins [PROTO-3.5]. */
  private queueAck(bootId: number, seq: number): void {
    this.ackBoot = bootId;
    this.ackSeq = seq;
    this.acked = true;
    const nowMs = this.ctx.now();
    if (this.ackFrames++ === 0) this.ackHeldSinceMs = nowMs;
    const first = !this.ackScheduled;
    this.ackScheduled = true;
    this.ctx.counts.ackQueue.add(this, first, nowMs);
  }

  /** The hub's clock (the session context's), for the ACK queue's flush. */
  now(): number {
    return this.ctx.now();
  }

  /**
   * Sends the queued ACK when it is due (ACK pacing, above); true when nothing is left queued.
   * `nowMs`: the flush's one clock reading (needed only while streaming).
   */
  flushAckIfDue(nowMs: number): boolean {
    if (
      this.ackScheduled &&
      this.ctx.counts.ackQueue.streaming &&
      this.ackFrames < ACK_HOLD_FRAMES &&
      this.state === 'ready' &&
      nowMs - this.ackHeldSinceMs < ACK_HOLD_MAX_MS
    ) {
      return false;
    }
    this.flushAck();
    return true;
  }

  /** Sends the queued ACK, if any, held or not (the hub-wide flush, or the session's close). */
  flushAck(): void {
    if (!this.ackScheduled) return;
    this.ackScheduled = false;
    this.ackFrames = 0;
    if (!this.link.isOpen() || this.dropSlowConsumer()) return;
    if (this.link.sendAck) this.link.sendAck(this.ackBoot, this.ackSeq);
    else this.link.send(encodeAck(this.ackBoot, this.ackSeq));
    this.ctx.counts.acks++;
  }

  private onClose(code: number): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.helloTimer = null;
    this.onDrained = null;
    this.ctx.counts.inflight.forget(this.budgetHold);
    if (this.closeReason === 'closed' && code === 1006) this.closeReason = 'connection_lost';
    const { metrics, bus, ingest, sessions } = this.ctx;
    metrics.deviceDisconnects.inc({ reason: this.closeReason });
    if (this.registered) {
      this.registered = false;
      sessions.unregister(this);
      metrics.deviceSessions.dec();
      if (this.helloed) {
        ingest.release(this.deviceId);
        bus.emit('device:offline', {
          deviceId: this.deviceId,
          reason: this.closeReason,
          closeCode: code,
          atMs: this.ctx.now(),
        });
      }
      this.cluster?.ended(this);
    }
    this.log.debug({ code, reason: this.closeReason }, 'device session closed');
    const callbacks = this.closedCallbacks;
    this.closedCallbacks = [];
    for (const cb of callbacks) cb();
  }
}
