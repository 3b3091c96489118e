/**
 * Typed in-process events from the ingest path to its consumers (live fan-out, MQTT bus, stats).
 * Emitted only after the fact they report is true. Readings come twice, for two kinds of consumer:
 *
 * - `readings:accepted` — the hub ACCEPTED the frame (validated, not a duplicate, timestamps mapped,
 *   handed to the local log's current group), before the durable commit. For views of what devices
 *   report (the live fan-out): lowest latency, no durability promise. If the commit then fails, the
 *   frame gets no ACK, its session closes with INTERNAL (1011) and no `readings` follows; the device
 *   keeps the frame and replays it, and a replay maps to the same timestamps (docs/architecture.md §4).
 *   Frames refused before acceptance (UNKNOWN_DESCRIPTORS, STORAGE_FULL, duplicates, coded errors)
 *   never emit it. It carries the frame as accepted ({@link AcceptedFrame}), NOT decoded: it is
 *   emitted synchronously on the hot path for every accepted frame, so a listener that only needs some
 *   frames' values (the live view decodes, per tick, only what someone subscribed to) pays nothing for
 *   the others.
 * - `readings` — after the local log committed (and flushed) the frame, when its ACK may go out: for
 *   consumers that must only see stored data. Decoded only when it has listeners, at most once per
 *   frame (the same array `AcceptedFrame.readings()` returned, if a listener already asked for it).
 *   Treat it as read-only.
 */
import { EventEmitter } from 'node:events';
import type { AlertEvent } from './alerts/types.ts';
import type { Reading } from './storage/types.ts';

/**
 * Receives a frame's samples without reading objects (`AcceptedFrame.forEachSample`): one call per
 * sample with a value (missing ones and f32 NaN/±Infinity are skipped, as in the readings), block by
 * block in frame order; `value` is scaled (fixed point) and `timeMs` mapped to the hub's clock.
 */
export interface SampleSink {
  sample(channel: string, unit: string, timeMs: number, value: number | boolean): void;
}

/** One TELEMETRY frame the hub accepted, as `readings:accepted` carries it: decoded only on demand. */
export interface AcceptedFrame {
  readonly deviceId: string;
  /** Hub time (Unix ms) the frame arrived. */
  readonly receivedAtMs: number;
  /** Samples with a value: the length of `readings()`. */
  readonly samples: number;
  /** Channels of its descriptor set (a frame holds at most these). */
  readonly channelCount: number;
  /** The frame's readings (decoded at the first call, then cached; the same array every time). */
  readings(): Reading[];
  /** Feeds every sample with a value to `sink` without building reading objects (decodes each call). */
  forEachSample(sink: SampleSink): void;
}

export type PresenceState = 'online' | 'stale' | 'offline';

export interface HubEvents {
  /** Readings of one TELEMETRY frame, after the local log committed it (durable; ACK may follow). */
  readings: [deviceId: string, readings: Reading[]];
  /**
   * The same frame as `readings`, after the commit, NOT decoded: for consumers that need the values
   * of some devices only (alert rules, server/alerts/), so that the others' frames cost a lookup.
   * Emitted only when it has listeners; the same object `readings:accepted` carried, when it had any.
   */
  'readings:stored': [deviceId: string, stored: AcceptedFrame];
  /**
   * One TELEMETRY frame the hub accepted and handed to the local log, before the commit (not durable
   * yet; see above). Emitted synchronously on the ingest path for every accepted frame: listeners must
   * be cheap (keep the reference, decode later and only what is needed).
   */
  'readings:accepted': [deviceId: string, accepted: AcceptedFrame];
  /** A device session completed HELLO → WELCOME. */
  'device:online': [
    info: {
      deviceId: string;
      firmwareVersion: string;
      bootId: number;
      timeSynced: boolean;
      /** From HELLO: frames waiting in the device's outbox, and frames it dropped (drop-oldest) this boot. */
      bufferedFrames: number;
      droppedFrames: number;
      atMs: number;
    },
  ];
  /**
   * A device session ended. `reason` is an error code or 'closed' / 'replaced' / 'heartbeat';
   * `closeCode` is the connection's WebSocket close code (1006: lost without a close frame).
   */
  'device:offline': [info: { deviceId: string; reason: string; atMs: number; closeCode?: number }];
  /** Frames missing between stored sequence numbers of a boot (lost before reaching the hub). */
  'device:gap': [deviceId: string, missingFrames: number];
  /** A TELEMETRY frame at or below its boot's highest stored seq: re-acknowledged, not stored again [PROTO-3.4.2]. */
  'device:duplicate': [deviceId: string, bootId: number, seq: number];
  /**
   * A HELLO reused a boot id the hub already holds frames of, but its uptime shows a new boot: the new
   * frames are stored under their own timestamps, not taken for replays [PROTO-3.4.3].
   */
  'device:boot-reused': [deviceId: string, bootId: number];
  /**
   * A frame from the device was rejected with a coded error (counted in `hub_frame_errors_total`);
   * `detail` says what was wrong when the session knows (the text of its ERROR frame).
   */
  'device:rejected': [deviceId: string, code: string, detail?: string];
  /** A device's descriptor set was stored. */
  'device:descriptors': [deviceId: string];
  /** A command changed state (sent, accepted, result, timeout). */
  'command:update': [update: CommandUpdate];
  /** A device's token was revoked or rotated: its live session must close. */
  'device:revoked': [deviceId: string];
  /** An alert fired or resolved (server/alerts/, docs/alerts.md): one event per transition. */
  alert: [event: AlertEvent];
  /** An OTA campaign changed (server/ota/campaign.ts, docs/ota.md): a board's state, a wave, pause, end. */
  'ota:campaign': [update: OtaCampaignUpdate];
  // ── Several instances (server/cluster/relay.ts, docs/scaling.md): what another instance relayed. ──
  // Separate events on purpose: only views (the live page, the offline alert rule's presence) listen;
  // local-only consumers (forwarder, activity log, device health, MQTT bridge) never see them.
  /** A frame another instance accepted (only while this instance has live clients). */
  'remote:accepted': [deviceId: string, accepted: AcceptedFrame];
  /** A device's session completed HELLO on another instance (or that instance's presence snapshot says so). */
  'remote:online': [info: RemotePresence];
  /**
   * A device's session on another instance ended; `instance_lost` when that instance left the
   * cluster (its last will) with the device not seen elsewhere.
   */
  'remote:offline': [info: { deviceId: string; reason: string; atMs: number; instanceId: string }];
  /** This instance cannot hear the instance holding the device any more (its own broker link is down). */
  'remote:unknown': [info: { deviceId: string; atMs: number; instanceId: string }];
  /** A device on another instance announced a descriptor set. */
  'remote:descriptors': [deviceId: string, channels: readonly ChannelMeta[]];
  /** A command issued on another instance changed state. */
  'remote:command': [update: CommandUpdate, instanceId: string];
  /** An alert transition raised by another instance (its sinks already ran there). */
  'remote:alert': [event: AlertEvent, instanceId: string];
  /** Another instance left the cluster (membership: its last will, or a clean stop). */
  'remote:lost': [instanceId: string, atMs: number];
  /** The live view got its first client, or lost its last one (the relay announces its interest). */
  'live:watching': [watching: boolean];
}

/** A device online on another instance, as `remote:online` carries it. */
export interface RemotePresence {
  deviceId: string;
  firmwareVersion: string;
  bootId: number;
  timeSynced: boolean;
  atMs: number;
  /** The instance holding the device's session. */
  instanceId: string;
}

/** A channel as views need it (key, unit, nominal period [PROTO-3.3]). */
export interface ChannelMeta {
  key: string;
  unit: string;
  periodMs: number;
}

export interface OtaCampaignUpdate {
  campaignId: string;
  state: 'running' | 'paused' | 'aborted' | 'completed';
  wave: number;
  /** started, board, wave, paused, resumed, aborted, completed */
  what: string;
  /** Boards by state. */
  counts: Record<string, number>;
  deviceId?: string;
  boardState?: string | undefined;
  atMs: number;
}

export interface CommandUpdate {
  deviceId: string;
  commandId: number;
  name: string;
  state: 'sent' | 'accepted' | 'done' | 'timeout' | 'failed';
  /** COMMAND_RESULT status [PROTO-3.7] when state is 'done'. */
  status?: number;
  message?: string;
  atMs: number;
}

type Listener = (...args: unknown[]) => void;

/**
 * Where EventEmitter keeps an event's listeners: the function itself while there is one, else an array
 * it adds to and removes from in place (push, unshift, splice). `rawListeners()` would copy it.
 */
interface ListenerStore {
  _events: Record<string | symbol, Listener | Listener[] | undefined>;
}

/** `emit` passes on at most three arguments: this fails to compile if an event declares more. */
type AtMostThree<N extends 0 | 1 | 2 | 3> = N;
export type HubEventArity = AtMostThree<HubEvents[keyof HubEvents]['length']>;

/**
 * The bus. Every listener runs isolated: one that throws is reported through `onListenerError` (the
 * hub counts and logs it) and the listeners after it still run, so a faulty consumer can never strand
 * the others or the frame that emitted the event.
 *
 * `emit` allocates nothing (it runs per frame on the ingest path): it takes its arguments one by one
 * (no rest array), reads EventEmitter's listener store directly and, where an event has several
 * listeners, copies them into a snapshot array reused at each nesting depth (a listener may emit in
 * turn). As with EventEmitter, an emit runs the listeners present when it began: one added meanwhile
 * waits for the next emit, one removed meanwhile still runs.
 */
export class HubEventBus extends EventEmitter<HubEvents> {
  onListenerError: (err: unknown, event: string) => void = () => undefined;
  readonly #snapshots: (Listener | undefined)[][] = [];
  #depth = 0;

  override emit<K extends keyof HubEvents>(event: K, ...args: HubEvents[K]): boolean;
  override emit(event: string, a?: unknown, b?: unknown, c?: unknown): boolean {
    // biome-ignore lint/complexity/noArguments: how many were emitted, without a rest array to allocate
    const argc = arguments.length - 1;
    const stored = (this as unknown as ListenerStore)._events[event];
    if (stored === undefined) return false;
    if (typeof stored === 'function') {
      this.#run(stored, event, argc, a, b, c);
      return true;
    }
    const count = stored.length;
    let snapshot = this.#snapshots[this.#depth];
    if (snapshot === undefined) {
      snapshot = [];
      this.#snapshots.push(snapshot);
    }
    for (let i = 0; i < count; i++) snapshot[i] = stored[i];
    this.#depth++;
    try {
      for (let i = 0; i < count; i++) this.#run(snapshot[i] as Listener, event, argc, a, b, c);
    } finally {
      this.#depth--;
      snapshot.fill(undefined, 0, count); // keeps no removed listener alive
    }
    return count > 0;
  }

  /** Calls `listener` with the first `argc` of a, b, c (as many arguments as were emitted). */
  #run(listener: Listener, event: string, argc: number, a: unknown, b: unknown, c: unknown): void {
    try {
      if (argc === 2) listener.call(this, a, b);
      else if (argc === 1) listener.call(this, a);
      else if (argc === 0) listener.call(this);
      else listener.call(this, a, b, c);
    } catch (err) {
      try {
        this.onListenerError(err, event);
      } catch {
        // Reporting must not throw into the emitter either.
      }
    }
  }
}
