import { Point } from '@influxdata/influxdb-client';
import { describe, expect, it } from 'vitest';
import {
  type ChannelDescriptor,
  decodeFrame,
  encodeFrame,
  type Telemetry,
  ValueType,
} from '../../server/codec/index.ts';
import { telemetryToReadings } from '../../server/pipeline/readings.ts';
import {
  appendEntryLines,
  appendReadingLines,
  escapeTag,
  frameDeadLetterLine,
  frameText,
  LineBuffer,
  readingToLine,
  SeriesPrefixCache,
} from '../../server/storage/influx/line-protocol.ts';
import type { LogEntry, Reading } from '../../server/storage/types.ts';
import { CHANNELS, HASH, MemoryLog, telemetryFrame } from './forwarder-fakes.ts';

/** The client's serializer, the reference our builder must match byte for byte. */
function viaPoint(r: Reading): string | undefined {
  const p = new Point('telemetry').tag('device', r.deviceId).tag('channel', r.channel).tag('unit', r.unit);
  if (typeof r.value === 'boolean') p.booleanField('state', r.value);
  else p.floatField('value', r.value);
  return p.timestamp(r.timeMs).toLineProtocol({ convertTime: (t) => String(t) });
}

const reading = (value: number | boolean, unit = '°C', channel = 'temp'): Reading => ({
  deviceId: 'greenhouse-01.a_b',
  channel,
  unit,
  timeMs: 1_700_000_000_123,
  value,
});

describe('line protocol for readings', () => {
  const cases: Reading[] = [
    reading(23.45),
    reading(-40),
    reading(0),
    reading(4294967295 * 1e9, 'B'),
    reading(1e-9, 'V'),
    reading(Math.fround(0.1), 'V'), // an f32 widened to float64: must survive as the same float64
    reading(-2147483648, 'dBm'),
    reading(true, '', 'relay'),
    reading(false, 'on/off', 'relay'),
    reading(1013.25, 'hPa'),
    reading(5, ''),
    reading(5, 'm s'),
    reading(5, 'a,b'),
    reading(5, 'k=v'),
    reading(5, 'µg/m³'),
    reading(5, 'a\\b'),
  ];

  it.each(cases.map((r) => [JSON.stringify(r.value) + ' ' + JSON.stringify(r.unit), r] as const))(
    'matches Point.toLineProtocol for %s',
    (_name, r) => {
      expect(readingToLine(r)).toBe(viaPoint(r));
      const out: string[] = [];
      appendReadingLines([r, r], out);
      expect(out).toEqual([viaPoint(r), viaPoint(r)]);
    },
  );

  it('writes every number as a float field and every bool as a boolean field, ms timestamp last', () => {
    expect(readingToLine(reading(42, '%', 'humidity'))).toBe(
      'telemetry,channel=humidity,device=greenhouse-01.a_b,unit=% value=42 1700000000123',
    );
    expect(readingToLine(reading(true, '', 'relay'))).toBe(
      'telemetry,channel=relay,device=greenhouse-01.a_b state=T 1700000000123',
    );
  });

  it('float text reads back to the identical float64', () => {
    for (const v of [23.45, Math.fround(3.3), 1e-9, 4294967295, -0.001, 123456.789]) {
      const line = readingToLine(reading(v));
      const text = / value=(\S+) /.exec(line)?.[1];
      expect(Number(text)).toBe(v);
    }
  });

  it('doubles a backslash that would otherwise escape a separator (where Point does not)', () => {
    expect(escapeTag('a\\')).toBe('a\\\\');
    expect(escapeTag('a\\,b')).toBe('a\\\\\\,b');
    expect(escapeTag('a\\b')).toBe('a\\b');
    expect(readingToLine(reading(1, 'x\\'))).toBe(
      'telemetry,channel=temp,device=greenhouse-01.a_b,unit=x\\\\ value=1 1700000000123',
    );
    // Point leaves the trailing backslash alone, which escapes the space before the field set.
    expect(viaPoint(reading(1, 'x\\'))).toContain('unit=x\\ value=1');
  });

  it('refuses non-finite numbers rather than writing a line InfluxDB would reject', () => {
    expect(() => readingToLine(reading(Number.NaN))).toThrow();
    expect(() => readingToLine(reading(Number.POSITIVE_INFINITY))).toThrow();
  });
});

describe('stored frame → lines', () => {
  const log = new MemoryLog(['dev-1']);
  const entry = (frame: Uint8Array, timeOffsetMs = 0, deviceId = 'dev-1'): LogEntry => ({
    deviceId,
    bootId: 7,
    seq: 1,
    receivedAtMs: 0,
    timeOffsetMs,
    frame,
  });

  it('decodes, scales fixed-point values, applies deltas and the persisted time offset', () => {
    const frame = telemetryFrame({
      seq: 3,
      baseTime: 1_000_000,
      samples: 2,
      value: (ch, i) => (ch === 0 ? 2345 + i : ch === 1 ? 55 : ch === 2 ? i === 1 : 3.5),
      unsynced: true,
    });
    const out: string[] = [];
    const result = appendEntryLines(entry(frame, 1_700_000_000_000), log.lookupDescriptors, out);
    expect(result).toEqual({ ok: true, readings: 8 });
    const t0 = 1_700_000_000_000 + 1_000_000;
    expect(out).toEqual([
      `telemetry,channel=temp,device=dev-1,unit=°C value=23.45 ${t0}`,
      `telemetry,channel=temp,device=dev-1,unit=°C value=23.46 ${t0 + 1}`,
      `telemetry,channel=humidity,device=dev-1,unit=% value=55 ${t0}`,
      `telemetry,channel=humidity,device=dev-1,unit=% value=55 ${t0 + 1}`,
      `telemetry,channel=relay,device=dev-1 state=F ${t0}`,
      `telemetry,channel=relay,device=dev-1 state=T ${t0 + 1}`,
      `telemetry,channel=vbat,device=dev-1,unit=V value=3.5 ${t0}`,
      `telemetry,channel=vbat,device=dev-1,unit=V value=3.5 ${t0 + 1}`,
    ]);
  });

  it('writes an f32 reading as the decimal the device wrote, not its float64 widening', () => {
    const volts = [3.3, 0.1, 4.095, -12.7, 1234.567];
    const frame = telemetryFrame({
      seq: 4,
      baseTime: 1_000_000,
      samples: volts.length,
      value: (ch, i) => (ch === 3 ? Math.fround(volts[i] as number) : ch === 2 ? false : 1),
    });
    const out: string[] = [];
    expect(appendEntryLines(entry(frame), log.lookupDescriptors, out)).toMatchObject({ ok: true });
    const vbat = out.filter((l) => l.startsWith('telemetry,channel=vbat,'));
    expect(vbat.map((l) => l.split(' ')[1])).toEqual(volts.map((v) => `value=${v}`));
  });

  it('skips missing samples (they are counted at ingest, not stored)', () => {
    const frame = telemetryFrame({
      seq: 1,
      baseTime: 5000,
      samples: 3,
      channels: [1],
      value: (_c, i) => (i === 1 ? null : 9),
    });
    const out: string[] = [];
    expect(appendEntryLines(entry(frame), log.lookupDescriptors, out)).toEqual({ ok: true, readings: 2 });
    expect(out).toEqual([
      'telemetry,channel=humidity,device=dev-1,unit=% value=9 5000',
      'telemetry,channel=humidity,device=dev-1,unit=% value=9 5002',
    ]);
  });

  it('reports a frame whose descriptor set is unknown instead of throwing', () => {
    const out: string[] = [];
    const frame = telemetryFrame({ seq: 1, baseTime: 5000, hash: (HASH + 1) >>> 0 });
    const result = appendEntryLines(entry(frame), log.lookupDescriptors, out);
    expect(result).toMatchObject({ ok: false, code: 'UNKNOWN_DESCRIPTORS' });
    expect(out).toEqual([]);
  });

  it('reports a stored frame that is not TELEMETRY, or is corrupt, with its code', () => {
    const out: string[] = [];
    const ack = encodeFrame({ type: 'ack', bootId: 1, seq: 1 });
    expect(appendEntryLines(entry(ack), log.lookupDescriptors, out)).toMatchObject({ ok: false });
    const bad = telemetryFrame({ seq: 1, baseTime: 1 });
    bad[bad.length - 1] = (bad[bad.length - 1] as number) ^ 0xff;
    expect(appendEntryLines(entry(bad), log.lookupDescriptors, out)).toMatchObject({ ok: false, code: 'BAD_CRC' });
    expect(out).toEqual([]);
  });

  it('reports a block that disagrees with its descriptors', () => {
    const lookup = () => CHANNELS.slice(0, 2);
    const out: string[] = [];
    const frame = telemetryFrame({ seq: 1, baseTime: 1, channels: [3] });
    expect(appendEntryLines(entry(frame), lookup, out)).toMatchObject({ ok: false, code: 'UNKNOWN_CHANNEL' });
  });

  it('names an undecodable frame in its dead-letter line', () => {
    const frame = telemetryFrame({ seq: 9, baseTime: 1 });
    const line = frameDeadLetterLine({ ...entry(frame), seq: 9 });
    expect(line).toBe(`# frame device=dev-1 boot=7 seq=9 hex=${Buffer.from(frame).toString('hex')}`);
  });
});

describe('frame text with cached series prefixes', () => {
  const entry = (frame: Uint8Array, deviceId: string, timeOffsetMs = 0): LogEntry => ({
    deviceId,
    bootId: 7,
    seq: 1,
    receivedAtMs: 0,
    timeOffsetMs,
    frame,
  });
  /** Every value type, scales, units that need escaping, a unit with a trailing backslash, no unit. */
  const channels: ChannelDescriptor[] = [
    { index: 0, key: 'temp', unit: '°C', valueType: ValueType.I16, scaleExp: -2, periodMs: 1000 },
    { index: 1, key: 'u8', unit: 'a b,c=d', valueType: ValueType.U8, scaleExp: 1, periodMs: 1000 },
    { index: 2, key: 'relay', unit: '', valueType: ValueType.BOOL, scaleExp: 0, periodMs: 0 },
    { index: 3, key: 'vbat', unit: 'V\\', valueType: ValueType.F32, scaleExp: 0, periodMs: 1000 },
    { index: 5, key: 'big', unit: 'Wh', valueType: ValueType.U32, scaleExp: -3, periodMs: 1000 },
  ];
  const frame = (seq: number) =>
    encodeFrame({
      type: 'telemetry',
      unsynced: false,
      bootId: 7,
      seq,
      descriptorHash: 42,
      baseTime: 1_700_000_000_000 + seq,
      blocks: channels.map((c) => ({
        channel: c.index,
        valueType: c.valueType,
        deltasMs: [0, 3, 250],
        values:
          c.valueType === ValueType.BOOL
            ? [true, null, false]
            : c.valueType === ValueType.F32
              ? [Math.fround(0.1 * seq), Number.NaN, -1e-9]
              : [(seq * 7) % 200, null, seq],
      })),
    });

  it('builds exactly the lines of the readings path, for many frames and devices through one cache', () => {
    const cache = new SeriesPrefixCache(3); // smaller than the devices: entries are evicted and rebuilt
    const lookup = (_d: string, hash: number) => (hash === 42 ? channels : undefined);
    for (let seq = 1; seq <= 40; seq++) {
      const deviceId = `dev-${seq % 5}`;
      const e = entry(frame(seq), deviceId, seq * 1000);
      const expected: string[] = [];
      const { readings } = telemetryToReadings(deviceId, decodeFrame(e.frame) as Telemetry, channels, seq * 1000);
      appendReadingLines(readings, expected);
      const got = frameText(e, lookup, cache);
      expect(got).toEqual({ ok: true, text: expected.join('\n'), lines: expected.length });
    }
    expect(cache.size).toBe(3);
  });

  it('asks the log for a descriptor set once while it is cached', () => {
    const cache = new SeriesPrefixCache(10);
    let lookups = 0;
    const lookup = () => {
      lookups++;
      return channels;
    };
    for (let seq = 1; seq <= 20; seq++) expect(frameText(entry(frame(seq), 'dev-1'), lookup, cache).ok).toBe(true);
    expect(lookups).toBe(1);
    expect(frameText(entry(frame(1), 'dev-2'), lookup, cache).ok).toBe(true);
    expect(lookups).toBe(2);
  });

  it('writes a whole batch into one buffer, growing from its smallest size: the same bytes as the readings path', () => {
    const cache = new SeriesPrefixCache(3);
    const lookup = (_d: string, hash: number) => (hash === 42 ? channels : undefined);
    const body = new LineBuffer(0);
    const expected: string[] = [];
    // Time offsets put the timestamps across digit-count boundaries (1 to 16 digits).
    const offsets = [-1_700_000_000_001, -1_699_999_999_991, -1_699_999_999_901, 0, 8_000_000_000_000_000];
    for (let seq = 1; seq <= 40; seq++) {
      const deviceId = `dev-${seq % 5}`;
      const offset = offsets[seq % offsets.length] as number;
      const e = entry(frame(seq), deviceId, offset);
      const { readings } = telemetryToReadings(deviceId, decodeFrame(e.frame) as Telemetry, channels, offset);
      appendReadingLines(readings, expected);
      expect(body.appendFrame(e, lookup, cache)).toEqual({ ok: true, readings: readings.length });
    }
    body.appendLine('hub_stats,instance=a\\ b frames=1i 1700000000000');
    expected.push('hub_stats,instance=a\\ b frames=1i 1700000000000');
    expect(body.lines).toBe(expected.length);
    expect(body.bytes().equals(Buffer.from(expected.join('\n'), 'utf8'))).toBe(true);
    expect(body.toLines()).toEqual(expected);
    body.reset();
    expect([body.lines, body.bytes().length, body.toLines()]).toEqual([0, 0, []]);
  });

  it('leaves the buffer as it was when a frame fails after some of its lines were written', () => {
    const lookup = () => channels;
    const body = new LineBuffer(0);
    expect(body.appendFrame(entry(frame(1), 'dev-1'), lookup, new SeriesPrefixCache())).toMatchObject({ ok: true });
    const before = Buffer.from(body.bytes());
    const linesBefore = body.lines;
    // The last block names an index the descriptor set lacks: its first blocks decode and are written first.
    const bad = encodeFrame({
      ...(decodeFrame(frame(2)) as Telemetry),
      blocks: [
        { channel: 0, valueType: ValueType.I16, deltasMs: [0], values: [1] },
        { channel: 9, valueType: ValueType.I16, deltasMs: [0], values: [2] },
      ],
    });
    expect(body.appendFrame(entry(bad, 'dev-1'), lookup, new SeriesPrefixCache())).toMatchObject({
      ok: false,
      code: 'UNKNOWN_CHANNEL',
    });
    expect(body.lines).toBe(linesBefore);
    expect(body.bytes().equals(before)).toBe(true);
    expect(body.appendFrame(entry(frame(3), 'dev-1'), lookup, new SeriesPrefixCache())).toMatchObject({ ok: true });
    expect(body.toLines().slice(0, linesBefore)).toEqual(before.toString('utf8').split('\n'));
  });
});
