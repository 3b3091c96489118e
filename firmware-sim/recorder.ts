/**
 * What happened to every sample, for tests that compare the simulator's view with the database:
 * which frames the hub acknowledged (they must be stored exactly once) and which the outbox dropped
 * (never-sent ones must not be stored). Optional: without a recorder the device keeps no per-frame
 * messages after encoding.
 */
import { type ChannelDescriptor, readingValue, type Telemetry } from '../server/codec/index.ts';

export interface RecordedFrame {
  deviceId: string;
  /** The decoded content of the frame exactly as sent. */
  message: Telemetry;
  /** The descriptor set the frame's hash refers to (channel keys, units, scales). */
  channels: readonly ChannelDescriptor[];
}

export interface SampleRecorder {
  /** The hub acknowledged the frame: it is durably stored [PROTO-3.5]. */
  acked(frame: RecordedFrame): void;
  /** The full outbox dropped the frame; `wasSent`: it had been on the wire (the hub may hold it). */
  dropped(frame: RecordedFrame, wasSent: boolean): void;
  /** The frame was sealed and written to the board's flash (the outbox): buffered. */
  sampled?(frame: RecordedFrame): void;
  /** Samples still in RAM when the board crashed or lost power (seq 0: they never made a frame). */
  lost?(frame: RecordedFrame): void;
}

/** One reading as the hub should store it (missing samples have none). */
export interface RecordedReading {
  deviceId: string;
  bootId: number;
  seq: number;
  channel: string;
  unit: string;
  /** `baseTime + deltaMs`: Unix ms, or uptime ms when `unsynced` (the hub maps it [PROTO-3.4.1]). */
  deviceTimeMs: number;
  unsynced: boolean;
  /** Engineering value (fixed-point scaled), or boolean for bool channels. */
  value: number | boolean;
}

/** Expands a frame into its readings (missing samples skipped), as `telemetryToReadings` would. */
export function readingsOf(frame: RecordedFrame): RecordedReading[] {
  const { message: m, channels, deviceId } = frame;
  const out: RecordedReading[] = [];
  for (const block of m.blocks) {
    const ch = channels.find((c) => c.index === block.channel);
    if (!ch) continue; // only malformed frames (never recorded) name unknown channels
    for (let i = 0; i < block.values.length; i++) {
      const raw = block.values[i];
      if (raw === null || raw === undefined) continue;
      out.push({
        deviceId,
        bootId: m.bootId,
        seq: m.seq,
        channel: ch.key,
        unit: ch.unit,
        deviceTimeMs: m.baseTime + (block.deltasMs[i] as number),
        unsynced: m.unsynced,
        value: readingValue(raw, ch),
      });
    }
  }
  return out;
}

/** Keeps every recorded frame in memory, per device. For tests and short demo runs. */
export class MemoryRecorder implements SampleRecorder {
  readonly ackedFrames = new Map<string, RecordedFrame[]>();
  readonly droppedFrames = new Map<string, { frame: RecordedFrame; wasSent: boolean }[]>();

  acked(frame: RecordedFrame): void {
    let list = this.ackedFrames.get(frame.deviceId);
    if (!list) {
      list = [];
      this.ackedFrames.set(frame.deviceId, list);
    }
    list.push(frame);
  }

  dropped(frame: RecordedFrame, wasSent: boolean): void {
    let list = this.droppedFrames.get(frame.deviceId);
    if (!list) {
      list = [];
      this.droppedFrames.set(frame.deviceId, list);
    }
    list.push({ frame, wasSent });
  }

  /** Every acked reading (of one device, or of all). */
  ackedReadings(deviceId?: string): RecordedReading[] {
    const lists = deviceId ? [this.ackedFrames.get(deviceId) ?? []] : [...this.ackedFrames.values()];
    return lists.flatMap((l) => l.flatMap(readingsOf));
  }

  /** Readings of dropped frames; `unsentOnly` keeps those that never reached the wire. */
  droppedReadings(options: { unsentOnly?: boolean; deviceId?: string } = {}): RecordedReading[] {
    const lists = options.deviceId
      ? [this.droppedFrames.get(options.deviceId) ?? []]
      : [...this.droppedFrames.values()];
    return lists.flatMap((l) => l.filter((d) => !options.unsentOnly || !d.wasSent).flatMap((d) => readingsOf(d.frame)));
  }

  /** (bootId, seq) pairs acked for a device, in ack order. */
  ackedRefs(deviceId: string): { bootId: number; seq: number }[] {
    return (this.ackedFrames.get(deviceId) ?? []).map((f) => ({ bootId: f.message.bootId, seq: f.message.seq }));
  }
}
