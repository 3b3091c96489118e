/**
 * The ingest pipeline between device sessions and the local log: per-device state (dedupe by
 * (device, boot, seq), gaps, time mapping, descriptor sets), validation against descriptors, and the
 * hand-off to the log's group commit. Completion callbacks run only after the durable commit, which is
 * when the session may ACK [PROTO-3.5] and when `readings` events are emitted.
 *
 * In-memory device state is the authority while a device is active (it already includes frames that
 * are queued but not yet committed, so dedupe sees them); every change is also queued into the same
 * log group as the frame it belongs to, so what is on disk is always consistent with the frames there.
 */
import type { ChannelDescriptor, FrameRef, Hello, Telemetry } from '../codec/index.ts';
import type { HubConfig } from '../config/index.ts';
import { HubError } from '../errors.ts';
import type { HubEventBus } from '../events.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import { type BootState, type DeviceRecord, MAX_BOOTS_PER_DEVICE, newDeviceRecord } from '../storage/device-state.ts';
import type { LocalLog } from '../storage/local-log.ts';
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

/** Runs once the frame is durable (or a duplicate and everything before it is durable), or failed. */
export type TelemetryDone = (err: HubError | null, outcome: TelemetryOutcome) => void;

export interface Ingest {
  /** Session start: loads state, records the HELLO's time anchor, answers WELCOME's fields. */
  hello(deviceId: string, hello: Hello, atMs: number): WelcomeInfo;
  /** Stores a descriptor set (known immediately; persisted with the next group) [PROTO-3.3]. */
  descriptors(deviceId: string, hash: number, channels: ChannelDescriptor[]): void;
  /**
   * Accepts a decoded TELEMETRY frame. Throws a HubError synchronously when the frame is refused
   * (UNKNOWN_DESCRIPTORS, STORAGE_FULL: non-fatal; UNKNOWN_CHANNEL, TYPE_MISMATCH: fatal); otherwise
   * `done` runs after the durable commit.
   */
  telemetry(deviceId: string, frame: Uint8Array, t: Telemetry, receivedAtMs: number, done: TelemetryDone): void;
  /** A session of this device ended. */
  release(deviceId: string): void;
  /** The device's current descriptor set (last announced), from memory or the local log. */
  currentChannels(deviceId: string): ChannelDescriptor[] | undefined;
  /** Devices with state held in memory. */
  activeDevices(): number;
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
}

/** Channel index → descriptor, built once per descriptor set (indexes are 0..127 [PROTO-3.3]). */
const channelTables = new WeakMap<ChannelDescriptor[], (ChannelDescriptor | undefined)[]>();
function channelTable(channels: ChannelDescriptor[]): (ChannelDescriptor | undefined)[] {
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
    const ch = table[block.channel];
    if (!ch) throw new HubError('UNKNOWN_CHANNEL', `channel index ${block.channel} is not in the descriptor set`);
    if (ch.valueType !== block.valueType) {
      throw new HubError('TYPE_MISMATCH', `channel ${ch.key} is type ${ch.valueType}, block says ${block.valueType}`);
    }
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

export function createIngest(opts: IngestOptions): Ingest {
  const { log, metrics, bus, now } = opts;
  const mem = new Map<string, DeviceMem>();

  function load(deviceId: string): DeviceMem {
    let m = mem.get(deviceId);
    if (!m) {
      const loaded = log.loadDevice(deviceId);
      m = {
        record: loaded.record ?? newDeviceRecord(now()),
        boots: loaded.boots,
        helloBootId: 0,
        helloOffsetMs: 0,
        durableAck: loaded.record?.lastAck ?? null,
        sessions: 0,
        inflight: 0,
      };
      mem.set(deviceId, m);
      if (!loaded.record) log.putDevice(deviceId, m.record);
    }
    return m;
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
      const descriptorsKnown =
        hello.descriptorHash !== 0 && log.lookupDescriptors(deviceId, hello.descriptorHash) !== undefined;
      if (descriptorsKnown && m.record.descriptorHash !== hello.descriptorHash) {
        m.record = { ...m.record, descriptorHash: hello.descriptorHash };
        log.putDevice(deviceId, m.record);
      }
      return { lastAck: m.durableAck, descriptorsKnown };
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

    telemetry(deviceId, frame, t, receivedAtMs, done) {
      const m = load(deviceId);
      const channels = log.lookupDescriptors(deviceId, t.descriptorHash);
      if (!channels) {
        throw new HubError('UNKNOWN_DESCRIPTORS', `descriptor set ${t.descriptorHash.toString(16)} is not known`);
      }
      const shape = checkTelemetry(t, channels);
      let boot = m.boots.get(t.bootId);
      if (boot && t.seq <= boot.highestSeq) {
        // [PROTO-3.4.2] a replay: not stored again, acknowledged again once everything before is durable.
        metrics.duplicates.inc();
        m.inflight++;
        log.barrier((err) => {
          m.inflight--;
          maybeForget(deviceId, m);
          done(err ? new HubError('INTERNAL', 'local log commit failed', { cause: err }) : null, 'duplicate');
        });
        return;
      }
      if (log.isFull()) {
        metrics.logFullRejections.inc();
        throw new HubError('STORAGE_FULL');
      }
      const nowMs = now();
      const highest = boot?.highestSeq ?? 0;
      if (t.seq > highest + 1) metrics.gaps.inc(t.seq - highest - 1);
      const tm = mapFrameTime({
        baseTime: t.baseTime,
        unsynced: t.unsynced,
        minDeltaMs: shape.minDeltaMs,
        maxDeltaMs: shape.maxDeltaMs,
        bootOffsetMs: boot?.timeOffsetMs ?? null,
        helloOffsetMs: t.bootId === m.helloBootId ? m.helloOffsetMs : null,
        receivedAtMs,
        nowMs,
        firstSeenMs: m.record.firstSeenMs,
        maxFutureSkewMs: opts.devices.maxFutureSkewMs,
      });
      if (tm.clamp) metrics.timestampsClamped.inc({ reason: tm.clamp });
      if (tm.estimated) metrics.timestampsClamped.inc({ reason: 'unanchored_boot' });

      if (!boot) {
        boot = { highestSeq: 0, timeOffsetMs: null, firstSeenMs: nowMs };
        m.boots.set(t.bootId, boot);
        trimBoots(deviceId, m);
      }
      boot.highestSeq = t.seq;
      if (tm.newBootOffsetMs !== null) boot.timeOffsetMs = tm.newBootOffsetMs;
      log.putBoot(deviceId, t.bootId, boot);
      const span = tm.maxTimeMs - tm.minTimeMs;
      m.record = {
        ...m.record,
        lastAck: { bootId: t.bootId, seq: t.seq },
        maxSpanMs: Math.max(span, m.record.maxSpanMs),
      };
      log.putDevice(deviceId, m.record);
      m.inflight++;
      const ack: FrameRef = { bootId: t.bootId, seq: t.seq };
      log.append(
        {
          deviceId,
          bootId: t.bootId,
          seq: t.seq,
          receivedAtMs,
          timeOffsetMs: tm.timeOffsetMs,
          frame,
          minTimeMs: tm.minTimeMs,
          maxTimeMs: tm.maxTimeMs,
        },
        (err) => {
          m.inflight--;
          if (err) {
            maybeForget(deviceId, m);
            done(new HubError('INTERNAL', 'local log commit failed', { cause: err }), 'stored');
            return;
          }
          m.durableAck = ack;
          metrics.readingsStored.inc(shape.samples);
          if (shape.missing > 0) metrics.readingsMissing.inc(shape.missing);
          if (bus.listenerCount('readings') > 0) {
            bus.emit('readings', deviceId, telemetryToReadings(deviceId, t, channels, tm.timeOffsetMs).readings);
          }
          maybeForget(deviceId, m);
          done(null, 'stored');
        },
      );
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
  };
}
