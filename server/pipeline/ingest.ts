/**
 * The ingest pipeline between device sessions and the local log: per-device state (dedupe by
 * (device, boot, seq), gaps, time mapping, descriptor sets), validation against descriptors, and the
 * hand-off to the log's group commit. Completion callbacks run only after the durable commit, which is
 * when the session may ACK [PROTO-3.5] and when `readings` events are emitted. `readings:accepted`
 * (views such as the live fan-out) is emitted earlier, when the frame is handed to the log, with the
 * frame itself (`AcceptedTelemetry`): nothing is decoded on the hot path.
 *
 * In-memory device state is the authority while a device is active (it already includes frames that
 * are queued but not yet committed, so dedupe sees them); every change is also queued into the same
 * log group as the frame it belongs to, so what is on disk is always consistent with the frames there.
 */

import type { SharedDeviceState } from '../cluster/store/types.ts';
import {
  type ChannelDescriptor,
  checkedChannel,
  decodeFrame,
  type FrameRef,
  type Hello,
  newTelemetryScan,
  peekDescriptorHash,
  readingValue,
  scanTelemetry,
  type Telemetry,
  type TelemetryScan,
} from '../codec/index.ts';
import type { HubConfig } from '../config/index.ts';
import { HubError } from '../errors.ts';
import type { AcceptedFrame, HubEventBus, SampleSink } from '../events.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import { type BootState, type DeviceRecord, MAX_BOOTS_PER_DEVICE, newDeviceRecord } from '../storage/device-state.ts';
import type { LocalLog } from '../storage/local-log.ts';
import type { Reading } from '../storage/types.ts';
import { telemetryToReadings } from './readings.ts';
import { mapFrameTime } from './time-map.ts';

export interface IngestOptions {
  log: LocalLog;
  metrics: Metrics;
  bus: HubEventBus;
  devices: HubConfig['devices'];
  logger: Logger;
  now: () => number;
}

export interface WelcomeInfo {
  /** Last (boot, seq) durably stored, for WELCOME [PROTO-3.2]. */
  lastAck: FrameRef | null;
  /** The hub holds the descriptor set HELLO announced. */
  descriptorsKnown: boolean;
}

/** What happened to a TELEMETRY frame that was accepted (not refused). */
export type TelemetryOutcome = 'stored' | 'duplicate';

/**
 * Runs once the frame is durable (or a duplicate and everything before it is durable), or failed.
 * `offset`: the frame's position in the local log; for a duplicate the log's head when it was queued
 * (at or past its original): what an ACK waiting for InfluxDB waits on (transport/ack-gate.ts).
 */
export type TelemetryDone = (err: HubError | null, outcome: TelemetryOutcome, offset: number) => void;

export interface Ingest {
  /** Session start: loads state, records the HELLO's time anchor, answers WELCOME's fields. */
  hello(deviceId: string, hello: Hello, atMs: number): WelcomeInfo;
  /** Stores a descriptor set (known immediately; persisted with the next group) [PROTO-3.3]. */
  descriptors(deviceId: string, hash: number, channels: ChannelDescriptor[]): void;
  /**
   * Validates a TELEMETRY frame without decoding it into objects (see telemetry-scan.ts). Throws the
   * frame's coded error (the codec's, in [PROTO-2.7] order), or UNKNOWN_CHANNEL / TYPE_MISMATCH when it
   * disagrees with its (known) descriptor set. The result is scratch, valid until the next call.
   */
  scan(deviceId: string, frame: Uint8Array): Readonly<TelemetryScan>;
  /**
   * Stores a scanned frame. Throws a HubError synchronously when it is refused (UNKNOWN_DESCRIPTORS,
   * STORAGE_FULL: non-fatal); otherwise `done` runs after the durable commit (or, for a duplicate,
   * once everything queued before it is durable). A frame to be stored emits `readings:accepted`
   * before this returns (when anyone listens) and `readings` after its commit.
   */
  store(
    deviceId: string,
    frame: Uint8Array,
    scan: Readonly<TelemetryScan>,
    receivedAtMs: number,
    done: TelemetryDone,
  ): void;
  /** A session of this device ended. */
  release(deviceId: string): void;
  /** The device's current descriptor set (last announced), from memory or the local log. */
  currentChannels(deviceId: string): ChannelDescriptor[] | undefined;
  /** Devices with state held in memory. */
  activeDevices(): number;
  /** Adds the counts gathered since the last call to the prom-client counters. */
  flushCounts(): void;
}

/**
 * The ingest as several instances use it (server/cluster/sessions.ts): the shared state in and out.
 * Unused, and free on the hot path, with one instance.
 */
export interface ClusterIngest extends Ingest {
  /** The device's state (memory, else the local log), read-only; null when it has none. */
  deviceState(
    deviceId: string,
  ): { record: Readonly<DeviceRecord>; boots: ReadonlyMap<number, Readonly<BootState>> } | null;
  /**
   * Before `hello`: merges the device's state as the cluster shares it. Per boot the highest seq is the
   * max, the shared offset and correction win when set, the first sighting is the earliest; the newer
   * last ACK wins (a later boot, else a higher seq); the first sighting of the device is the earliest;
   * descriptor sets go into the local log so frames decode. Queued into the log's next group.
   */
  adopt(deviceId: string, shared: SharedDeviceState): void;
  /** Sets (device, boot)'s time offset to the one every instance uses (creates the boot when new). */
  seedBootOffset(deviceId: string, bootId: number, offsetMs: number): void;
  /**
   * The offset this frame would set for its boot when that boot has no HELLO anchor and no offset yet
   * (an unsynced frame of an older boot replayed after a reboot, not a duplicate); else null. The
   * session agrees it with the other instances before storing the frame.
   */
  unanchoredBootOffset(deviceId: string, scan: Readonly<TelemetryScan>, receivedAtMs: number): number | null;
  /** One listener told of every stored frame once it is durable (the cluster's write-behind). */
  onDurable(listener: (deviceId: string, bootId: number, seq: number) => void): () => void;
}

interface DeviceMem {
  record: DeviceRecord;
  boots: Map<number, BootState>;
  /** Boot announced by the latest HELLO and its uptime anchor (arrival − uptime). */
  helloBootId: number;
  helloOffsetMs: number;
  /** Last ack durably stored (record.lastAck runs ahead of it while frames are queued). */
  durableAck: FrameRef | null;
  sessions: number;
  inflight: number;
  /** The descriptor set the last frame used (almost always the next frame's too). */
  lastHash: number;
  lastChannels: ChannelDescriptor[] | undefined;
}

/** Channel index → descriptor, built once per descriptor set (indexes are 0..127 [PROTO-3.3]). */
const channelTables = new WeakMap<ChannelDescriptor[], (ChannelDescriptor | undefined)[]>();
export function channelTable(channels: ChannelDescriptor[]): (ChannelDescriptor | undefined)[] {
  let t = channelTables.get(channels);
  if (!t) {
    t = new Array(128);
    for (const ch of channels) t[ch.index] = ch;
    channelTables.set(channels, t);
  }
  return t;
}

interface FrameShape {
  samples: number;
  missing: number;
  minDeltaMs: number;
  maxDeltaMs: number;
}

/** Checks blocks against the descriptor set and measures the frame (no allocation per sample). */
export function checkTelemetry(t: Telemetry, channels: ChannelDescriptor[]): FrameShape {
  const table = channelTable(channels);
  let samples = 0;
  let missing = 0;
  let minDeltaMs = Number.POSITIVE_INFINITY;
  let maxDeltaMs = 0;
  for (const block of t.blocks) {
    checkedChannel(table[block.channel], block);
    const { deltasMs, values } = block;
    for (let i = 0; i < values.length; i++) {
      const d = deltasMs[i] as number;
      if (d < minDeltaMs) minDeltaMs = d;
      if (d > maxDeltaMs) maxDeltaMs = d;
      const v = values[i];
      if (v === null || (typeof v === 'number' && !Number.isFinite(v))) missing++;
      else samples++;
    }
  }
  if (minDeltaMs === Number.POSITIVE_INFINITY) minDeltaMs = 0;
  return { samples, missing, minDeltaMs, maxDeltaMs };
}

/**
 * How much later than the first stored frame of a boot its start (HELLO arrival − uptime) may seem
 * before the HELLO counts as a new boot reusing the id [PROTO-3.4.3]: network latency plus the drift
 * between the device's uptime clock and the hub's (1000 ppm is far beyond any crystal).
 */
export function bootReuseToleranceMs(uptimeMs: number): number {
  return 5000 + uptimeMs / 1000;
}

/** Shared result of the common case: a synced frame whose times are plausible (offset 0, no clamp). */
const PLAIN = {
  timeOffsetMs: 0,
  newBootOffsetMs: null,
  newBootCorrectionMs: null,
  clamp: null,
  estimated: false,
  minTimeMs: 0,
  maxTimeMs: 0,
};

/**
 * The common case of `mapFrameTime` without its allocations: a synced frame within
 * [firstSeen, now + skew]. Returns null for everything else (then `mapFrameTime` decides).
 * The result is a shared object: read it before the next call.
 */
function plausibleSynced(
  scan: Readonly<TelemetryScan>,
  firstSeenMs: number,
  nowMs: number,
  maxFutureSkewMs: number,
): typeof PLAIN | null {
  if (scan.unsynced) return null;
  const min = scan.baseTime + scan.minDeltaMs;
  const max = scan.baseTime + scan.maxDeltaMs;
  if (max > nowMs + maxFutureSkewMs || min < firstSeenMs) return null;
  PLAIN.minTimeMs = min;
  PLAIN.maxTimeMs = max;
  return PLAIN;
}

/** Scan result from a decoded message (the slow path; see Ingest.scan). */
function fillFromDecoded(out: TelemetryScan, t: Telemetry, channels: ChannelDescriptor[] | undefined): void {
  out.unsynced = t.unsynced;
  out.bootId = t.bootId;
  out.seq = t.seq;
  out.descriptorHash = t.descriptorHash;
  out.baseTime = t.baseTime;
  out.mismatch = null;
  if (channels) {
    const shape = checkTelemetry(t, channels); // throws UNKNOWN_CHANNEL / TYPE_MISMATCH
    out.samples = shape.samples;
    out.missing = shape.missing;
    out.minDeltaMs = shape.minDeltaMs;
    out.maxDeltaMs = shape.maxDeltaMs;
  }
}

/**
 * Per-frame counts kept as plain numbers and added to the prom-client counters in bulk by `flush`
 * (each group commit, and before every /metrics scrape), so the hot path does no metric lookups.
 */
export interface IngestCounts {
  readings: number;
  missing: number;
}

/** Decodes a validated TELEMETRY frame into readings (values scaled, times mapped). */
function toReadings(
  deviceId: string,
  frame: Uint8Array,
  channels: ChannelDescriptor[],
  timeOffsetMs: number,
): Reading[] {
  return telemetryToReadings(deviceId, decodeFrame(frame) as Telemetry, channels, timeOffsetMs).readings;
}

/**
 * A frame as `readings:accepted` carries it: the raw frame (which the log's group holds anyway), its
 * descriptor set and time offset. Values are decoded only when a listener asks, so the event costs
 * one small object per frame.
 */
export class AcceptedTelemetry implements AcceptedFrame {
  #readings: Reading[] | null = null;
  constructor(
    readonly deviceId: string,
    readonly frame: Uint8Array,
    readonly channels: ChannelDescriptor[],
    readonly timeOffsetMs: number,
    readonly receivedAtMs: number,
    readonly samples: number,
  ) {}

  get channelCount(): number {
    return this.channels.length;
  }

  /** True once `readings()` was called (its array is cached). */
  get decoded(): boolean {
    return this.#readings !== null;
  }

  readings(): Reading[] {
    this.#readings ??= toReadings(this.deviceId, this.frame, this.channels, this.timeOffsetMs);
    return this.#readings;
  }

  forEachSample(sink: SampleSink): void {
    // The frame was validated against its descriptors when it was accepted (scan): no checks here.
    const t = decodeFrame(this.frame) as Telemetry;
    const table = channelTable(this.channels);
    const base = t.baseTime + this.timeOffsetMs;
    for (const block of t.blocks) {
      const ch = table[block.channel] as ChannelDescriptor;
      const { deltasMs, values } = block;
      for (let i = 0; i < values.length; i++) {
        const raw = values[i];
        if (raw === null || raw === undefined || (typeof raw === 'number' && !Number.isFinite(raw))) continue;
        sink.sample(ch.key, ch.unit, base + (deltasMs[i] as number), readingValue(raw, ch));
      }
    }
  }
}

export function createIngest(opts: IngestOptions): ClusterIngest {
  const { log, metrics, bus, now } = opts;
  const mem = new Map<string, DeviceMem>();
  const scratch = newTelemetryScan();
  const counts: IngestCounts = { readings: 0, missing: 0 };
  let durableListener: ((deviceId: string, bootId: number, seq: number) => void) | null = null;

  function load(deviceId: string): DeviceMem {
    let m = mem.get(deviceId);
    if (!m) {
      const loaded = log.loadDevice(deviceId);
      m = {
        record: loaded.record ?? newDeviceRecord(now()),
        boots: loaded.boots,
        helloBootId: 0,
        helloOffsetMs: 0,
        durableAck: loaded.record?.lastAck ? { ...loaded.record.lastAck } : null,
        sessions: 0,
        inflight: 0,
        lastHash: -1,
        lastChannels: undefined,
      };
      mem.set(deviceId, m);
      if (!loaded.record) log.putDevice(deviceId, m.record);
    }
    return m;
  }

  /**
   * After a failed commit nothing queued is on disk: every active device's state goes back to what the
   * log holds (dedupe positions, last ACK, time anchors), so a replay of the failed frames is stored,
   * not taken for a duplicate. What the session told us (HELLO's boot and anchor) stays.
   */
  log.onCommitFailed(() => {
    for (const [deviceId, m] of mem) {
      const loaded = log.loadDevice(deviceId);
      m.record = loaded.record ?? newDeviceRecord(now());
      if (!loaded.record) log.putDevice(deviceId, m.record);
      m.boots = loaded.boots;
      m.durableAck = loaded.record?.lastAck ? { ...loaded.record.lastAck } : null;
      m.lastHash = -1;
      m.lastChannels = undefined;
    }
  });

  function descriptorsOf(m: DeviceMem, deviceId: string, hash: number): ChannelDescriptor[] | undefined {
    if (m.lastHash === hash && m.lastChannels !== undefined) return m.lastChannels;
    const channels = log.lookupDescriptors(deviceId, hash);
    if (channels) {
      m.lastHash = hash;
      m.lastChannels = channels;
    }
    return channels;
  }

  function maybeForget(deviceId: string, m: DeviceMem): void {
    if (m.sessions <= 0 && m.inflight <= 0 && mem.get(deviceId) === m) mem.delete(deviceId);
  }

  function trimBoots(deviceId: string, m: DeviceMem): void {
    if (m.boots.size <= MAX_BOOTS_PER_DEVICE) return;
    const oldest = [...m.boots.entries()].sort((a, b) => a[1].firstSeenMs - b[1].firstSeenMs);
    for (const [bootId] of oldest.slice(0, m.boots.size - MAX_BOOTS_PER_DEVICE)) {
      m.boots.delete(bootId);
      log.removeBoot(deviceId, bootId);
    }
  }

  return {
    hello(deviceId, hello, atMs) {
      const m = load(deviceId);
      m.sessions++;
      m.helloBootId = hello.bootId;
      m.helloOffsetMs = atMs - hello.uptimeMs;
      const bootStart = Math.max(0, m.helloOffsetMs);
      // First sighting = when the device's first seen boot started, so samples it buffered between
      // booting and its first connection are plausible (see device-state.ts).
      if (m.record.lastAck === null && m.boots.size === 0 && bootStart < m.record.firstSeenMs) {
        m.record = { ...m.record, firstSeenMs: bootStart };
        log.putDevice(deviceId, m.record);
      }
      const boot = m.boots.get(hello.bootId);
      if (boot && bootStart > boot.firstSeenMs + bootReuseToleranceMs(hello.uptimeMs)) {
        // [PROTO-3.4.3] This boot started after the hub had stored frames of its id: a new boot that
        // reused the id. Its frames must not be taken for replays (seq restarts), nor its outbox freed by
        // a last ACK that names the old boot: start the id afresh and report no last ACK.
        opts.logger.warn(
          { deviceId, bootId: hello.bootId, storedHighestSeq: boot.highestSeq, uptimeMs: hello.uptimeMs },
          'device reused a boot id: its new frames are stored as a new boot (devices must draw a fresh boot id per boot)',
        );
        metrics.bootIdsReused.inc();
        boot.highestSeq = 0;
        boot.timeOffsetMs = null;
        boot.clockCorrectionMs = null;
        boot.firstSeenMs = atMs;
        log.putBoot(deviceId, hello.bootId, boot);
        m.record.lastAck = null;
        m.durableAck = null;
        log.putDevice(deviceId, m.record);
        bus.emit('device:boot-reused', deviceId, hello.bootId);
      }
      const descriptorsKnown =
        hello.descriptorHash !== 0 && log.lookupDescriptors(deviceId, hello.descriptorHash) !== undefined;
      if (descriptorsKnown && m.record.descriptorHash !== hello.descriptorHash) {
        m.record = { ...m.record, descriptorHash: hello.descriptorHash };
        log.putDevice(deviceId, m.record);
      }
      return { lastAck: m.durableAck ? { ...m.durableAck } : null, descriptorsKnown };
    },

    descriptors(deviceId, hash, channels) {
      log.putDescriptors(deviceId, hash, channels);
      const m = load(deviceId);
      if (m.record.descriptorHash !== hash) {
        m.record = { ...m.record, descriptorHash: hash };
        log.putDevice(deviceId, m.record);
      }
      log.barrier((err) => {
        if (!err) bus.emit('device:descriptors', deviceId);
      });
    },

    scan(deviceId, frame) {
      const hash = peekDescriptorHash(frame);
      const channels = descriptorsOf(load(deviceId), deviceId, hash);
      const table = channels ? channelTable(channels) : undefined;
      if (!scanTelemetry(frame, scratch, table)) {
        // Malformed: the codec names the fault. (Should the codec accept what the scan refused — the
        // tests say it does not — the decoded message is measured the slow way instead.)
        const m = decodeFrame(frame);
        if (m.type !== 'telemetry') throw new HubError('UNEXPECTED_MESSAGE', `expected TELEMETRY, got ${m.type}`);
        opts.logger.warn({ deviceId }, 'telemetry scan refused a frame the codec accepts');
        fillFromDecoded(scratch, m, channels);
      }
      if (scratch.mismatch !== null) {
        throw new HubError(
          scratch.mismatch,
          scratch.mismatch === 'UNKNOWN_CHANNEL'
            ? `channel index ${scratch.mismatchChannel} is not in the descriptor set`
            : `channel index ${scratch.mismatchChannel}: block type ${scratch.mismatchType} differs from its descriptor`,
        );
      }
      return scratch;
    },

    store(deviceId, frame, scan, receivedAtMs, done) {
      const m = load(deviceId);
      const channels = descriptorsOf(m, deviceId, scan.descriptorHash);
      if (!channels) {
        throw new HubError('UNKNOWN_DESCRIPTORS', `descriptor set ${scan.descriptorHash.toString(16)} is not known`);
      }
      // Copy out of the scratch scan: the callbacks below run after later frames were scanned.
      const bootId = scan.bootId;
      const seq = scan.seq;
      const samples = scan.samples;
      const missing = scan.missing;
      let boot = m.boots.get(bootId);
      if (boot && seq <= boot.highestSeq) {
        // [PROTO-3.4.2] a replay: not stored again, acknowledged again once everything before is durable.
        metrics.duplicates.inc();
        bus.emit('device:duplicate', deviceId, bootId, seq);
        m.inflight++;
        log.barrier((err, offset) => {
          m.inflight--;
          maybeForget(deviceId, m);
          done(err ? new HubError('INTERNAL', 'local log commit failed', { cause: err }) : null, 'duplicate', offset);
        });
        return;
      }
      if (log.isFull()) {
        metrics.logFullRejections.inc();
        throw new HubError('STORAGE_FULL');
      }
      const nowMs = now();
      const highest = boot?.highestSeq ?? 0;
      if (seq > highest + 1) {
        metrics.gaps.inc(seq - highest - 1);
        bus.emit('device:gap', deviceId, seq - highest - 1);
      }
      const correction = boot?.clockCorrectionMs ?? null;
      const tm =
        (correction === null
          ? plausibleSynced(scan, m.record.firstSeenMs, nowMs, opts.devices.maxFutureSkewMs)
          : null) ??
        mapFrameTime({
          baseTime: scan.baseTime,
          unsynced: scan.unsynced,
          minDeltaMs: scan.minDeltaMs,
          maxDeltaMs: scan.maxDeltaMs,
          bootOffsetMs: boot?.timeOffsetMs ?? null,
          bootCorrectionMs: correction,
          helloOffsetMs: bootId === m.helloBootId ? m.helloOffsetMs : null,
          receivedAtMs,
          nowMs,
          firstSeenMs: m.record.firstSeenMs,
          maxFutureSkewMs: opts.devices.maxFutureSkewMs,
        });
      const timeOffsetMs = tm.timeOffsetMs;
      if (tm.clamp) metrics.timestampsClamped.inc({ reason: tm.clamp });
      if (tm.estimated) metrics.timestampsClamped.inc({ reason: 'unanchored_boot' });

      // The boot state is written when more than its highest seq changes, or when the device's last
      // stored frame moves to another boot (then the boot it leaves is written too): the highest seq
      // of the boot the device record's lastAck names is that lastAck, which `loadDevice` restores.
      // One state write per device per group instead of two (with many devices, about one per frame).
      const rec = m.record;
      const prevAck = rec.lastAck;
      let writeBoot = prevAck === null || prevAck.bootId !== bootId;
      if (!boot) {
        boot = { highestSeq: 0, timeOffsetMs: null, firstSeenMs: nowMs };
        m.boots.set(bootId, boot);
        trimBoots(deviceId, m);
        writeBoot = true;
      }
      boot.highestSeq = seq;
      if (tm.newBootOffsetMs !== null && tm.newBootOffsetMs !== boot.timeOffsetMs) {
        boot.timeOffsetMs = tm.newBootOffsetMs;
        writeBoot = true;
      }
      if (tm.newBootCorrectionMs !== null && tm.newBootCorrectionMs !== boot.clockCorrectionMs) {
        boot.clockCorrectionMs = tm.newBootCorrectionMs;
        writeBoot = true;
      }
      if (writeBoot) {
        log.putBoot(deviceId, bootId, boot);
        const left = prevAck !== null && prevAck.bootId !== bootId ? m.boots.get(prevAck.bootId) : undefined;
        if (left && prevAck) log.putBoot(deviceId, prevAck.bootId, left);
      }
      // Mutated in place: the log snapshots the record once per group (see LocalLog.putDevice).
      if (rec.lastAck) {
        rec.lastAck.bootId = bootId;
        rec.lastAck.seq = seq;
      } else rec.lastAck = { bootId, seq };
      const span = tm.maxTimeMs - tm.minTimeMs;
      if (span > rec.maxSpanMs) rec.maxSpanMs = span;
      log.putDevice(deviceId, rec);
      m.inflight++;
      // The accepted frame, when `readings:accepted` has listeners: a reference, not a decode.
      let accepted: AcceptedTelemetry | null = null;
      log.append(
        {
          deviceId,
          bootId,
          seq,
          receivedAtMs,
          timeOffsetMs,
          frame,
          minTimeMs: tm.minTimeMs,
          maxTimeMs: tm.maxTimeMs,
        },
        (err, offset) => {
          m.inflight--;
          if (err) {
            // Not stored. The log's onCommitFailed (above) reloads this device's state from disk once
            // every failed callback ran, so its replay is stored, not acked as a duplicate.
            done(new HubError('INTERNAL', 'local log commit failed', { cause: err }), 'stored', offset);
            return;
          }
          const durable = m.durableAck;
          if (durable) {
            durable.bootId = bootId;
            durable.seq = seq;
          } else m.durableAck = { bootId, seq };
          if (durableListener !== null) durableListener(deviceId, bootId, seq);
          counts.readings += samples;
          counts.missing += missing;
          if (bus.listenerCount('readings') > 0) {
            // Values are needed only now, and only by listeners: decode the stored frame at most once
            // (a view may already have asked the accepted frame for its readings).
            const readings = accepted?.decoded
              ? accepted.readings()
              : toReadings(deviceId, frame, channels, timeOffsetMs);
            bus.emit('readings', deviceId, readings); // listeners are isolated by the bus
          }
          if (bus.listenerCount('readings:stored') > 0) {
            // Not decoded: its listeners (alert rules) decode only the frames of devices they watch.
            bus.emit(
              'readings:stored',
              deviceId,
              accepted ?? new AcceptedTelemetry(deviceId, frame, channels, timeOffsetMs, receivedAtMs, samples),
            );
          }
          maybeForget(deviceId, m);
          done(null, 'stored', offset);
        },
      );
      // Accepted: validated, not a duplicate, times mapped, queued in the log's group. Views see it
      // now rather than after the fsync; should the commit fail, no `readings` follows (events.ts).
      // The event carries the frame, not its readings: a view decodes what it needs, when it needs it.
      if (bus.listenerCount('readings:accepted') > 0) {
        const frameView = new AcceptedTelemetry(deviceId, frame, channels, timeOffsetMs, receivedAtMs, samples);
        // Kept until the commit only for `readings` listeners (else it would outlive young-generation
        // collections for nothing).
        if (bus.listenerCount('readings') > 0 || bus.listenerCount('readings:stored') > 0) accepted = frameView;
        // A failing view cannot fail the frame: the bus isolates its listeners (events.ts).
        bus.emit('readings:accepted', deviceId, frameView);
      }
    },

    release(deviceId) {
      const m = mem.get(deviceId);
      if (!m) return;
      m.sessions--;
      maybeForget(deviceId, m);
    },

    currentChannels(deviceId) {
      const record = mem.get(deviceId)?.record ?? log.loadDevice(deviceId).record;
      const hash = record?.descriptorHash;
      return hash ? log.lookupDescriptors(deviceId, hash) : undefined;
    },

    activeDevices() {
      return mem.size;
    },

    deviceState(deviceId) {
      const m = mem.get(deviceId);
      if (m) return { record: m.record, boots: m.boots };
      const loaded = log.loadDevice(deviceId);
      return loaded.record ? { record: loaded.record, boots: loaded.boots } : null;
    },

    adopt(deviceId, shared) {
      const m = load(deviceId);
      for (const sb of shared.boots) {
        const b = m.boots.get(sb.bootId);
        if (!b) {
          const fresh: BootState = {
            highestSeq: sb.highestSeq,
            timeOffsetMs: sb.timeOffsetMs,
            clockCorrectionMs: sb.clockCorrectionMs,
            firstSeenMs: sb.firstSeenMs,
          };
          m.boots.set(sb.bootId, fresh);
          log.putBoot(deviceId, sb.bootId, fresh);
          continue;
        }
        let changed = false;
        if (sb.highestSeq > b.highestSeq) {
          b.highestSeq = sb.highestSeq;
          changed = true;
        }
        if (sb.timeOffsetMs !== null && sb.timeOffsetMs !== b.timeOffsetMs) {
          b.timeOffsetMs = sb.timeOffsetMs;
          changed = true;
        }
        if (sb.clockCorrectionMs !== null && sb.clockCorrectionMs !== (b.clockCorrectionMs ?? null)) {
          b.clockCorrectionMs = sb.clockCorrectionMs;
          changed = true;
        }
        if (sb.firstSeenMs < b.firstSeenMs) {
          b.firstSeenMs = sb.firstSeenMs;
          changed = true;
        }
        if (changed) log.putBoot(deviceId, sb.bootId, b);
      }
      trimBoots(deviceId, m);
      // A later boot is newer whatever its seq; an unknown (trimmed) boot is older than a known one.
      const newer = (a: FrameRef, b: FrameRef | null): boolean => {
        if (b === null) return true;
        if (a.bootId === b.bootId) return a.seq > b.seq;
        const fa = m.boots.get(a.bootId)?.firstSeenMs;
        const fb = m.boots.get(b.bootId)?.firstSeenMs;
        return fa !== undefined && (fb === undefined || fa > fb);
      };
      let record = m.record;
      const ack = shared.lastAck;
      if (ack && newer(ack, m.durableAck)) {
        m.durableAck = { bootId: ack.bootId, seq: ack.seq };
        if (newer(ack, record.lastAck)) record = { ...record, lastAck: { bootId: ack.bootId, seq: ack.seq } };
        const b = m.boots.get(ack.bootId);
        if (b && b.highestSeq < ack.seq) {
          b.highestSeq = ack.seq;
          log.putBoot(deviceId, ack.bootId, b);
        }
      }
      if (shared.firstSeenMs < record.firstSeenMs) record = { ...record, firstSeenMs: shared.firstSeenMs };
      if (!record.descriptorHash && shared.descriptorHash !== 0)
        record = { ...record, descriptorHash: shared.descriptorHash };
      if (record !== m.record) {
        m.record = record;
        log.putDevice(deviceId, record);
      }
      for (const d of shared.descriptors) {
        if (log.lookupDescriptors(deviceId, d.hash) === undefined) log.putDescriptors(deviceId, d.hash, d.channels);
      }
    },

    seedBootOffset(deviceId, bootId, offsetMs) {
      const m = load(deviceId);
      let b = m.boots.get(bootId);
      if (!b) {
        b = { highestSeq: 0, timeOffsetMs: offsetMs, clockCorrectionMs: null, firstSeenMs: now() };
        m.boots.set(bootId, b);
        trimBoots(deviceId, m);
        log.putBoot(deviceId, bootId, b);
      } else if (b.timeOffsetMs !== offsetMs) {
        b.timeOffsetMs = offsetMs;
        log.putBoot(deviceId, bootId, b);
      }
      // The HELLO boot started at its agreed offset (uptime 0). For a device with no frame stored yet
      // that is its first sighting (as in `hello`, from the anchor every instance shares): this
      // instance's own later estimate would clamp the boot's first samples, off the other instances'.
      const start = Math.max(0, offsetMs);
      if (bootId === m.helloBootId && start < m.record.firstSeenMs && m.record.lastAck === null) {
        let stored = false;
        for (const other of m.boots.values()) if (other.highestSeq > 0) stored = true;
        if (!stored) {
          m.record = { ...m.record, firstSeenMs: start };
          log.putDevice(deviceId, m.record);
        }
      }
    },

    unanchoredBootOffset(deviceId, scan, receivedAtMs) {
      if (!scan.unsynced) return null;
      const m = load(deviceId);
      if (scan.bootId === m.helloBootId) return null;
      const boot = m.boots.get(scan.bootId);
      if (boot && (boot.timeOffsetMs !== null || scan.seq <= boot.highestSeq)) return null;
      return mapFrameTime({
        baseTime: scan.baseTime,
        unsynced: true,
        minDeltaMs: scan.minDeltaMs,
        maxDeltaMs: scan.maxDeltaMs,
        bootOffsetMs: null,
        bootCorrectionMs: boot?.clockCorrectionMs ?? null,
        helloOffsetMs: null,
        receivedAtMs,
        nowMs: now(),
        firstSeenMs: m.record.firstSeenMs,
        maxFutureSkewMs: opts.devices.maxFutureSkewMs,
      }).newBootOffsetMs;
    },

    onDurable(listener) {
      durableListener = listener;
      return () => {
        if (durableListener === listener) durableListener = null;
      };
    },

    flushCounts() {
      if (counts.readings > 0) metrics.readingsStored.inc(counts.readings);
      if (counts.missing > 0) metrics.readingsMissing.inc(counts.missing);
      counts.readings = 0;
      counts.missing = 0;
    },
  };
}
