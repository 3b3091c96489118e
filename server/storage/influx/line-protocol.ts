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
import { checkedChannel, decodeFrame, readingValue, ValueType } from '../../codec/index.ts';
import { HubError } from '../../errors.ts';
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

/** One channel of a (device, descriptor set): its series prefix, built once, and how to read its values. */
interface SeriesChannel {
  /** `telemetry,channel=…,device=…[,unit=…] value=` (or ` state=`) as UTF-8: everything before the value. */
  prefix: Buffer;
  key: string;
  valueType: number;
  scaleExp: number;
}

/**
 * Series prefixes (measurement + escaped tags + field key) per (device, descriptor set), built once
 * and reused for every frame of that set instead of once per reading. Keyed by the descriptor hash:
 * a set never changes under its hash [PROTO-3.3], so an entry never goes stale. Bounded: past
 * `maxEntries` sets the oldest entry is dropped (and rebuilt if its device sends again), so a fleet
 * of any size costs at most `maxEntries` × one set's prefixes.
 */
export class SeriesPrefixCache {
  private readonly byDevice = new Map<string, Map<number, (SeriesChannel | undefined)[]>>();
  private readonly order: [deviceId: string, hash: number][] = [];
  private head = 0;

  constructor(private readonly maxEntries = 10_000) {}

  /** The set's channels by index, or undefined when the log holds no such descriptor set. */
  get(deviceId: string, hash: number, lookup: DescriptorLookup): (SeriesChannel | undefined)[] | undefined {
    const sets = this.byDevice.get(deviceId);
    const hit = sets?.get(hash);
    if (hit) return hit;
    const channels = lookup(deviceId, hash);
    if (!channels) return undefined;
    const table: (SeriesChannel | undefined)[] = [];
    for (const ch of channels) {
      const field = ch.valueType === ValueType.BOOL ? STATE_FIELD : VALUE_FIELD;
      // An index listed twice keeps its first descriptor, as telemetryToReadings' scan does.
      table[ch.index] ??= {
        prefix: Buffer.from(`${seriesKey(deviceId, ch.key, ch.unit)} ${field}=`, 'utf8'),
        key: ch.key,
        valueType: ch.valueType,
        scaleExp: ch.scaleExp,
      };
    }
    if (this.order.length - this.head >= this.maxEntries) this.evictOldest();
    if (sets) sets.set(hash, table);
    else this.byDevice.set(deviceId, new Map([[hash, table]]));
    this.order.push([deviceId, hash]);
    return table;
  }

  get size(): number {
    return this.order.length - this.head;
  }

  private evictOldest(): void {
    const [deviceId, hash] = this.order[this.head] as [string, number];
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order.splice(0, this.head);
      this.head = 0;
    }
    const sets = this.byDevice.get(deviceId);
    sets?.delete(hash);
    if (sets?.size === 0) this.byDevice.delete(deviceId);
  }
}

/** Room for one line's value, separators and timestamp after its prefix (a number's text is ≤ 25 bytes). */
const LINE_TAIL_BYTES = 64;
const NEWLINE = 0x0a;
const SPACE = 0x20;

/**
 * Lines as UTF-8 bytes, `\n` between lines, written in place: the body of one write request. The
 * forwarder builds each batch here (no string per line or per frame, nothing for the garbage
 * collector to promote while the batch is in flight) and reuses the buffer for a later batch once
 * InfluxDB confirmed this one (`reset`). Grows by doubling; never shrinks.
 */
export class LineBuffer {
  private buf: Buffer;
  /** Bytes written. */
  length = 0;
  /** Lines written. */
  lines = 0;

  constructor(initialBytes = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(Math.max(256, initialBytes));
  }

  reset(): void {
    this.length = 0;
    this.lines = 0;
  }

  /** The bytes written so far: a view, valid until the next write or `reset`. */
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }

  /** The lines written so far, one string per line (a rejected batch is bisected line by line). */
  toLines(): string[] {
    return this.length === 0 ? [] : this.bytes().toString('utf8').split('\n');
  }

  /** Appends one line given as text (it must not hold a `\n`). */
  appendLine(line: string): void {
    this.ensure(Buffer.byteLength(line) + 1);
    if (this.lines > 0) this.buf[this.length++] = NEWLINE;
    this.length += this.buf.write(line, this.length, 'utf8');
    this.lines++;
  }

  /**
   * Appends the lines of a stored TELEMETRY frame, applying the entry's persisted time offset, with
   * the series prefixes from `cache`. The same lines, in the same order, as `telemetryToReadings` +
   * `appendReadingLines` (unit tests hold them equal), without a reading object or a string per
   * value. A frame that cannot become lines (descriptors gone, not TELEMETRY, codec error, a block
   * that disagrees with its descriptors) leaves the buffer as it was and says why, so the caller can
   * dead-letter it.
   */
  appendFrame(entry: LogEntry, lookup: DescriptorLookup, cache: SeriesPrefixCache): EntryLines {
    const startLength = this.length;
    const startLines = this.lines;
    try {
      const message = decodeFrame(entry.frame);
      if (message.type !== 'telemetry') {
        return { ok: false, code: 'UNEXPECTED_MESSAGE', reason: `stored frame is ${message.type}, not telemetry` };
      }
      const table = cache.get(entry.deviceId, message.descriptorHash, lookup);
      if (!table) {
        const hash = message.descriptorHash.toString(16).padStart(8, '0');
        return { ok: false, code: 'UNKNOWN_DESCRIPTORS', reason: `no descriptor set ${hash} for ${entry.deviceId}` };
      }
      const base = message.baseTime + entry.timeOffsetMs;
      for (const block of message.blocks) {
        const ch = checkedChannel(table[block.channel], block);
        const { deltasMs, values } = block;
        for (let i = 0; i < values.length; i++) {
          const raw = values[i];
          if (typeof raw !== 'boolean' && !(typeof raw === 'number' && Number.isFinite(raw))) continue; // missing: counted at ingest, not stored
          this.ensure(ch.prefix.length + LINE_TAIL_BYTES);
          const buf = this.buf;
          let at = this.length;
          if (this.lines > 0) buf[at++] = NEWLINE;
          buf.set(ch.prefix, at);
          at += ch.prefix.length;
          if (typeof raw === 'boolean')
            buf[at++] = raw ? 0x54 : 0x46; // T, F
          else at = writeAscii(buf, at, formatFloat(readingValue(raw, ch)));
          buf[at++] = SPACE;
          this.length = writeInteger(buf, at, Math.trunc(base + (deltasMs[i] as number)));
          this.lines++;
        }
      }
      return { ok: true, readings: this.lines - startLines };
    } catch (err) {
      this.length = startLength;
      this.lines = startLines;
      const code = err instanceof HubError ? err.code : 'INTERNAL';
      return { ok: false, code, reason: (err as Error).message };
    }
  }

  private ensure(bytes: number): void {
    const needed = this.length + 1 + bytes;
    if (needed <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(needed, this.buf.length * 2));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
}

/** Writes a number's text (ASCII: digits, sign, point, exponent) at `at`; returns the end. */
function writeAscii(buf: Buffer, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) buf[at + i] = text.charCodeAt(i);
  return at + text.length;
}

/** Writes a safe integer's decimal digits at `at` (no string in between); returns the end. */
function writeInteger(buf: Buffer, at: number, n: number): number {
  if (!Number.isSafeInteger(n)) return writeAscii(buf, at, String(n));
  if (n < 0) {
    buf[at++] = 0x2d; // -
    n = -n;
  }
  let digits = 1;
  for (let p = 10; p <= n; p *= 10) digits++;
  const end = at + digits;
  for (let i = end - 1; i >= at; i--) {
    const q = Math.floor(n / 10);
    buf[i] = 0x30 + (n - q * 10);
    n = q;
  }
  return end;
}

/** One stored frame as line protocol: its lines joined by `\n`. */
export type FrameText = { ok: true; text: string; lines: number } | { ok: false; code: string; reason: string };

/** One frame's lines as text (`LineBuffer.appendFrame`, decoded): for tests and tools, not the forwarder. */
export function frameText(entry: LogEntry, lookup: DescriptorLookup, cache: SeriesPrefixCache): FrameText {
  const out = new LineBuffer(1024);
  const result = out.appendFrame(entry, lookup, cache);
  if (!result.ok) return result;
  return { ok: true, text: out.bytes().toString('utf8'), lines: result.readings };
}

/**
 * Decodes a stored TELEMETRY frame and appends its lines to `out` (one string per line). A frame that
 * cannot be turned into readings appends nothing and reports why (see `frameText`).
 */
export function appendEntryLines(
  entry: LogEntry,
  lookup: DescriptorLookup,
  out: string[],
  cache: SeriesPrefixCache = new SeriesPrefixCache(1),
): EntryLines {
  const lines = new LineBuffer(1024);
  const result = lines.appendFrame(entry, lookup, cache);
  if (result.ok) for (const line of lines.toLines()) out.push(line);
  return result;
}

/** How an undecodable frame is kept in the dead-letter store: a comment line that names it. */
export function frameDeadLetterLine(entry: LogEntry): string {
  return `# frame device=${entry.deviceId} boot=${entry.bootId} seq=${entry.seq} hex=${Buffer.from(entry.frame).toString('hex')}`;
}
