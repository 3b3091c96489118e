/**
 * TELEMETRY frame → readings: descriptor lookup, fixed-point scaling and time mapping. Pure; shared by
 * the ingest path (live fan-out), the InfluxDB forwarder and embedded history queries so all three
 * see the same values and the same timestamps.
 */
import { type ChannelDescriptor, checkedChannel, readingValue, type Telemetry } from '../codec/index.ts';
import type { Reading } from '../storage/types.ts';

export interface ReadingsResult {
  readings: Reading[];
  /** Samples flagged missing or f32 NaN/±Infinity: not stored, counted. */
  missing: number;
}

/**
 * Maps a decoded TELEMETRY message to readings. Throws UNKNOWN_CHANNEL / TYPE_MISMATCH when a block
 * disagrees with the descriptor set.
 */
export function telemetryToReadings(
  deviceId: string,
  telemetry: Telemetry,
  channels: readonly ChannelDescriptor[],
  timeOffsetMs: number,
): ReadingsResult {
  const readings: Reading[] = [];
  let missing = 0;
  const base = telemetry.baseTime + timeOffsetMs;
  for (const block of telemetry.blocks) {
    const ch = checkedChannel(findChannel(channels, block.channel), block);
    const { deltasMs, values } = block;
    for (let i = 0; i < values.length; i++) {
      const raw = values[i];
      if (raw === null || raw === undefined || (typeof raw === 'number' && !Number.isFinite(raw))) {
        missing++;
        continue;
      }
      readings.push({
        deviceId,
        channel: ch.key,
        unit: ch.unit,
        timeMs: base + (deltasMs[i] as number),
        value: readingValue(raw, ch),
      });
    }
  }
  return { readings, missing };
}

function findChannel(channels: readonly ChannelDescriptor[], index: number): ChannelDescriptor | undefined {
  // Descriptor sets are small (≤ 64) and sorted; a linear scan beats building a map per frame.
  for (const ch of channels) if (ch.index === index) return ch;
  return undefined;
}
