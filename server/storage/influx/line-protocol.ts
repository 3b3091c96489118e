/**
 * Readings → InfluxDB line protocol, following the schema in docs/storage.md:
 *
 *   telemetry,channel=<key>,device=<id>[,unit=<unit>] value=<float>|state=<bool> <unix ms>
 *
 * Lines are built directly rather than through `Point` because this is the forwarder's hot loop
 * (bench/forwarder.bench.ts measures both); unit tests hold the output byte-equal to
 * `Point.toLineProtocol()` for every reading shape, so the client stays the reference serializer.
 * Pure: no I/O.
 */
import { decodeFrame } from '../../codec/index.ts';
import { HubError } from '../../errors.ts';
import { telemetryToReadings } from '../../pipeline/readings.ts';
import type { DescriptorLookup, LogEntry, Reading } from '../types.ts';

export const MEASUREMENT = 'telemetry';
export const STATS_MEASUREMENT = 'hub_stats';
/** Per-device health written with the hub stats (presence, gaps, rejected frames). */
export const DEVICE_STATUS_MEASUREMENT = 'device_status';
/** Numeric channels (every integer type and f32, scaled) share this one float field. */
export const VALUE_FIELD = 'value';
/** Bool channels. */
export const STATE_FIELD = 'state';
/** Timestamps are Unix milliseconds; the write URL carries `precision=ms`. */
export const PRECISION = 'ms';

const TAG_SPECIAL = /[ ,=\\]/;

/**
 * Escapes a tag value (or tag key, field key) for line protocol: comma, equals sign and space get a
 * backslash. A backslash is otherwise kept as it is (InfluxDB stores `a\b` verbatim), but one that
 * stands before a special character or at the end would escape what follows it, so it is doubled
 * there; the parser then keeps both (`a\\` is stored). `Point` does not do this (it emits
 * `unit=a\ value=1`, which InfluxDB reads as a different point), so units with such backslashes are
 * the one place where this builder and `Point` differ.
 */
export function escapeTag(value: string): string {
  if (!TAG_SPECIAL.test(value)) return value;
  return value.replace(/\\(?=[ ,=]|$)/g, '\\\\').replace(/[ ,=]/g, '\\$&');
}

/** Device ids and channel keys come from validated alphabets [PROTO-2.8] and never need escaping. */
function seriesKey(deviceId: string, channel: string, unit: string): string {
  // Tags sorted by key (channel < device < unit), as InfluxDB recommends and `Point` emits.
  // An empty unit has no tag: line protocol has no empty tag values.
  const base = `${MEASUREMENT},channel=${channel},device=${deviceId}`;
  return unit === '' ? base : `${base},unit=${escapeTag(unit)}`;
}

/** One reading as one line; numbers always as floats (no `i` suffix), booleans as `true`/`false`. */
export function readingToLine(r: Reading): string {
  const field =
    typeof r.value === 'boolean' ? `${STATE_FIELD}=${r.value ? 'T' : 'F'}` : `${VALUE_FIELD}=${formatFloat(r.value)}`;
  return `${seriesKey(r.deviceId, r.channel, r.unit)} ${field} ${Math.trunc(r.timeMs)}`;
}

/**
 * A float as line protocol accepts it. `String(n)` is the shortest text that reads back to the same
 * float64 (so 23.45 stays 23.45); InfluxDB parses its exponent form (`1e-9`) too.
 */
function formatFloat(n: number): string {
  if (!Number.isFinite(n)) throw new HubError('INTERNAL', `non-finite value ${n} cannot be written`);
  return String(n);
}

/**
 * Appends the lines of many readings to `out`, reusing the series key while device, channel and
 * unit stay the same (readings of one block are consecutive).
 */
export function appendReadingLines(readings: readonly Reading[], out: string[]): void {
  let lastDevice = '';
  let lastChannel = '';
  let lastUnit = '';
  let prefix = '';
  for (const r of readings) {
    if (r.channel !== lastChannel || r.deviceId !== lastDevice || r.unit !== lastUnit || prefix === '') {
      lastDevice = r.deviceId;
      lastChannel = r.channel;
      lastUnit = r.unit;
      prefix = seriesKey(r.deviceId, r.channel, r.unit);
    }
    const field =
      typeof r.value === 'boolean' ? (r.value ? ' state=T ' : ' state=F ') : ` ${VALUE_FIELD}=${formatFloat(r.value)} `;
    out.push(prefix + field + Math.trunc(r.timeMs));
  }
}

/** The outcome of turning one stored frame into lines. */
export type EntryLines = { ok: true; readings: number } | { ok: false; code: string; reason: string };

/**
 * Decodes a stored TELEMETRY frame and appends its lines to `out`, applying the entry's persisted
 * time offset. A frame that cannot be turned into readings (descriptors gone, not TELEMETRY, codec
 * error) appends nothing and reports why, so the caller can dead-letter it rather than drop it.
 */
export function appendEntryLines(entry: LogEntry, lookup: DescriptorLookup, out: string[]): EntryLines {
  try {
    const message = decodeFrame(entry.frame);
    if (message.type !== 'telemetry') {
      return { ok: false, code: 'UNEXPECTED_MESSAGE', reason: `stored frame is ${message.type}, not telemetry` };
    }
    const channels = lookup(entry.deviceId, message.descriptorHash);
    if (!channels) {
      const hash = message.descriptorHash.toString(16).padStart(8, '0');
      return { ok: false, code: 'UNKNOWN_DESCRIPTORS', reason: `no descriptor set ${hash} for ${entry.deviceId}` };
    }
    const { readings } = telemetryToReadings(entry.deviceId, message, channels, entry.timeOffsetMs);
    appendReadingLines(readings, out);
    return { ok: true, readings: readings.length };
  } catch (err) {
    const code = err instanceof HubError ? err.code : 'INTERNAL';
    return { ok: false, code, reason: (err as Error).message };
  }
}

/** How an undecodable frame is kept in the dead-letter store: a comment line that names it. */
export function frameDeadLetterLine(entry: LogEntry): string {
  return `# frame device=${entry.deviceId} boot=${entry.bootId} seq=${entry.seq} hex=${Buffer.from(entry.frame).toString('hex')}`;
}
