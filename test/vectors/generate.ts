/**
 * Generates test/vectors/protocol-v1.json, the golden vectors of protocol v1 (docs/protocol.md).
 *
 *   npx tsx test/vectors/generate.ts           # rewrite the file
 *   npx tsx test/vectors/generate.ts --check   # exit 1 when the committed file differs from the generator
 *
 * Valid vectors are messages written here and encoded by the codec; malformed vectors are crafted byte
 * by byte below (never by the encoder, which refuses to produce them). Before writing, every valid
 * vector must round-trip and every malformed one must fail with its stated code, but the codec is not
 * the only judge: test/unit/codec-vectors.test.ts re-encodes every valid vector with an independent
 * encoder (Buffer writes, bitwise CRC-32) and checks every malformed vector's envelope independently.
 *
 * Output is deterministic: same code → same bytes (no clock, no randomness, fixed key order).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { crc32 } from 'node:zlib';
import {
  type ChannelDescriptor,
  decodeFrame,
  descriptorHash,
  encodeFrame,
  type Message,
  type SampleValue,
  type Telemetry,
  ValueType,
} from '../../server/codec/index.ts';
import { type ErrorCode, isErrorCode, ProtocolError } from '../../server/errors.ts';

export const VECTORS_PATH = fileURLToPath(new URL('./protocol-v1.json', import.meta.url));

export interface ValidVector {
  name: string;
  description?: string;
  fields: unknown;
  hex: string;
}
export interface MalformedVector {
  name: string;
  description: string;
  hex: string;
  error: ErrorCode;
}
export interface VectorFile {
  protocol: 1;
  conventions: Record<string, string>;
  valid: ValidVector[];
  malformed: MalformedVector[];
}

export const CONVENTIONS: Record<string, string> = {
  hex: 'The whole frame (header, payload, CRC trailer) as lowercase hex, no separators.',
  fields:
    'The message exactly as the TypeScript decodeFrame returns it (server/codec/types.ts): `type` is the message name; TELEMETRY blocks are columnar (`deltasMs[i]` belongs to `values[i]`); a missing sample is null; u64 fields are JSON numbers (always <= 2^53-1); flags appear as booleans (timeSynced, unsynced, descriptorsKnown, fatal, lastAck null or an object).',
  f32: 'An f32 value (valueType 7, in TELEMETRY values or COMMAND args) is a JSON number holding the exact binary32 value, or one of the strings "NaN", "Infinity", "-Infinity", "-0" for values JSON cannot hold. The strings apply only to f32 values; a valueType 9 (string) argument is always literal text.',
  nan: 'Valid vectors only use the canonical NaN 0x7FC00000 so that every valid vector re-encodes byte-identically.',
  error:
    'The code name from docs/errors.md of the first failing check in the order of [PROTO-2.7]. Each malformed vector has exactly one fault; payload-level faults carry a correct length and CRC.',
};

// ───────────────────────── valid vectors ─────────────────────────

const f = Math.fround;

/** The "typical" descriptor set: 8 channels, i16 fixed-point and f32 mixed with other types. */
export const TYPICAL_CHANNELS: ChannelDescriptor[] = [
  { index: 0, key: 'temp_c', unit: '°C', valueType: ValueType.I16, scaleExp: -2, periodMs: 1000 },
  { index: 1, key: 'humidity_pct', unit: '%', valueType: ValueType.U16, scaleExp: -1, periodMs: 1000 },
  { index: 2, key: 'pressure_hpa', unit: 'hPa', valueType: ValueType.F32, scaleExp: 0, periodMs: 1000 },
  { index: 3, key: 'battery_v', unit: 'V', valueType: ValueType.I16, scaleExp: -3, periodMs: 1000 },
  { index: 4, key: 'rssi_dbm', unit: 'dBm', valueType: ValueType.I8, scaleExp: 0, periodMs: 1000 },
  { index: 5, key: 'heap_free_b', unit: 'B', valueType: ValueType.U32, scaleExp: 0, periodMs: 1000 },
  { index: 6, key: 'door_open', unit: '', valueType: ValueType.BOOL, scaleExp: 0, periodMs: 0 },
  { index: 7, key: 'lux', unit: 'lx', valueType: ValueType.F32, scaleExp: 0, periodMs: 1000 },
];
const TYPICAL_HASH = descriptorHash(TYPICAL_CHANNELS);
const BOOT = 0x5eed_b007;
const T0 = 1_767_225_600_000; // 2026-01-01T00:00:00Z in Unix ms

function block(channel: number, valueType: Telemetry['blocks'][number]['valueType'], samples: [number, SampleValue][]) {
  return { channel, valueType, deltasMs: samples.map((s) => s[0]), values: samples.map((s) => s[1]) };
}
const every1s = (values: SampleValue[]): [number, SampleValue][] => values.map((v, i) => [i * 1000, v]);

function telemetry(blocks: Telemetry['blocks'], extra: Partial<Telemetry> = {}): Telemetry {
  return {
    type: 'telemetry',
    unsynced: false,
    bootId: BOOT,
    seq: 1,
    descriptorHash: TYPICAL_HASH,
    baseTime: T0,
    blocks,
    ...extra,
  };
}

/** The typical telemetry frame: 8 channels × 4 samples (used by bench/codec.bench.ts too). */
export const TYPICAL_TELEMETRY: Telemetry = telemetry(
  [
    block(0, ValueType.I16, every1s([2345, 2347, 2351, 2349])),
    block(1, ValueType.U16, every1s([456, 457, 455, 458])),
    block(2, ValueType.F32, every1s([f(1013.25), f(1013.5), f(1013.375), f(1013.125)])),
    block(3, ValueType.I16, every1s([3712, 3710, 3709, 3709])),
    block(4, ValueType.I8, every1s([-67, -66, -70, -68])),
    block(5, ValueType.U32, every1s([182_344, 182_120, 181_996, 182_344])),
    block(6, ValueType.BOOL, every1s([false, false, true, true])),
    block(7, ValueType.F32, every1s([f(312.5), f(318.75), f(320), f(1.5e-3)])),
  ],
  { seq: 42 },
);

/** Exactly 4096 bytes: 21 bytes of fixed TELEMETRY fields, 7 blocks of 255 u8 samples, one of 235. */
export function maxSizeTelemetry(): Telemetry {
  const blocks: Telemetry['blocks'] = [];
  for (let b = 0; b < 8; b++) {
    const n = b < 7 ? 255 : 235;
    const samples: [number, SampleValue][] = [];
    for (let i = 0; i < n; i++) {
      // delta ≤ 63 keeps every tag at one byte; the last sample of the last block is missing (1 byte).
      samples.push([i % 64, b === 7 && i === n - 1 ? null : (i * 7 + b) & 0xff]);
    }
    blocks.push(block(b, ValueType.U8, samples));
  }
  return telemetry(blocks, { seq: 0xffff_ffff });
}

const sixtyFourChannels: ChannelDescriptor[] = Array.from({ length: 64 }, (_, i) => {
  const valueType = (i % 8) as ChannelDescriptor['valueType'];
  const intType = valueType !== ValueType.BOOL && valueType !== ValueType.F32;
  return {
    index: i * 2 + 1, // 1, 3, …, 127: spread up to the highest index
    key: i === 63 ? `k${'x'.repeat(31)}` : `ch_${String(i).padStart(2, '0')}`,
    unit: i === 0 ? 'µS/cm at 25 °C' : i % 3 === 0 ? '' : 'V',
    valueType,
    scaleExp: intType ? (i % 19) - 9 : 0,
    periodMs: i === 1 ? 0xffff_ffff : i * 250,
  };
});

const MAX_U53 = Number.MAX_SAFE_INTEGER;
const MAX_U32 = 0xffff_ffff;

function validMessages(): { name: string; description?: string; message: Message }[] {
  return [
    // HELLO [PROTO-3.1]
    {
      name: 'hello-minimal',
      description:
        'Shortest HELLO: one-byte device id, empty firmware version, unsynced clock, every number at its minimum.',
      message: {
        type: 'hello',
        timeSynced: false,
        deviceId: 'a',
        firmwareVersion: '',
        maxProtocolVersion: 1,
        bootId: 1,
        resetReason: 0,
        uptimeMs: 0,
        descriptorHash: 0,
        bufferedFrames: 0,
        droppedFrames: 0,
      },
    },
    {
      name: 'hello-typical',
      description: 'A synced device after a power-on reset, announcing the typical 8-channel descriptor set.',
      message: {
        type: 'hello',
        timeSynced: true,
        deviceId: 'esp32-kitchen_01.A',
        firmwareVersion: '1.4.2+g3f2a9c1',
        maxProtocolVersion: 1,
        bootId: BOOT,
        resetReason: 1,
        uptimeMs: 12_345,
        descriptorHash: TYPICAL_HASH,
        bufferedFrames: 17,
        droppedFrames: 0,
      },
    },
    {
      name: 'hello-maximums',
      description:
        '64-byte device id, 64-byte firmware version, reset reason 7, uptime 2^53-1, u32 fields at 2^32-1, maxProtocolVersion 255.',
      message: {
        type: 'hello',
        timeSynced: true,
        deviceId: 'Z'.repeat(32) + '0123456789._-abcdefghijklmnopqrs',
        firmwareVersion: 'v'.repeat(64),
        maxProtocolVersion: 255,
        bootId: MAX_U32,
        resetReason: 7,
        uptimeMs: MAX_U53,
        descriptorHash: MAX_U32,
        bufferedFrames: MAX_U32,
        droppedFrames: MAX_U32,
      },
    },
    {
      name: 'hello-utf8-firmware-version',
      description:
        'Multi-byte UTF-8 in free text, including a leading U+FEFF that must be kept, not stripped as a BOM.',
      message: {
        type: 'hello',
        timeSynced: false,
        deviceId: 'dev-b-free',
        firmwareVersion: '\uFEFFrelease – β 2 ✓ 🚀',
        maxProtocolVersion: 2,
        bootId: 0x8000_0000,
        resetReason: 3,
        uptimeMs: 2 ** 32,
        descriptorHash: 0,
        bufferedFrames: 1,
        droppedFrames: 99,
      },
    },
    // WELCOME [PROTO-3.2]
    {
      name: 'welcome-without-last-ack',
      description: 'First contact: HAS_LAST_ACK clear (the ack fields are 0), descriptors unknown.',
      message: {
        type: 'welcome',
        acceptedVersion: 1,
        serverTimeMs: T0,
        lastAck: null,
        descriptorsKnown: false,
        sampleIntervalMs: 0,
        heartbeatIntervalSec: 30,
        maxFrameBytes: 4096,
      },
    },
    {
      name: 'welcome-with-last-ack',
      description: 'Reconnect: HAS_LAST_ACK and DESCRIPTORS_KNOWN set.',
      message: {
        type: 'welcome',
        acceptedVersion: 1,
        serverTimeMs: T0 + 1234,
        lastAck: { bootId: BOOT, seq: 41 },
        descriptorsKnown: true,
        sampleIntervalMs: 1000,
        heartbeatIntervalSec: 15,
        maxFrameBytes: 1024,
      },
    },
    {
      name: 'welcome-boundaries',
      description:
        'serverTimeMs 2^53-1, last ack at u32 maximums, heartbeat 3600 s, maxFrameBytes 12 (the smallest frame).',
      message: {
        type: 'welcome',
        acceptedVersion: 1,
        serverTimeMs: MAX_U53,
        lastAck: { bootId: MAX_U32, seq: MAX_U32 },
        descriptorsKnown: false,
        sampleIntervalMs: MAX_U32,
        heartbeatIntervalSec: 3600,
        maxFrameBytes: 12,
      },
    },
    {
      name: 'welcome-last-ack-zero-descriptors-known',
      description: 'HAS_LAST_ACK set with (0, 0) is meaningful (the flag, not the values, says so); heartbeat 1 s.',
      message: {
        type: 'welcome',
        acceptedVersion: 1,
        serverTimeMs: 0,
        lastAck: { bootId: 0, seq: 0 },
        descriptorsKnown: true,
        sampleIntervalMs: 100,
        heartbeatIntervalSec: 1,
        maxFrameBytes: 4095,
      },
    },
    // DESCRIPTORS [PROTO-3.3]
    {
      name: 'descriptors-one-channel',
      description: 'A single channel at index 0.',
      message: {
        type: 'descriptors',
        channels: [{ index: 0, key: 't', unit: '°C', valueType: ValueType.F32, scaleExp: 0, periodMs: 60_000 }],
      },
    },
    {
      name: 'descriptors-typical',
      description: 'The 8-channel set whose CRC-32 is the descriptorHash used by the telemetry vectors.',
      message: { type: 'descriptors', channels: TYPICAL_CHANNELS },
    },
    {
      name: 'descriptors-every-value-type-and-scale-bound',
      description:
        'Every sample value type 0..7; scaleExp -9 and 9; empty unit; irregular period 0; non-contiguous indexes.',
      message: {
        type: 'descriptors',
        channels: [
          { index: 0, key: 'relay', unit: '', valueType: ValueType.BOOL, scaleExp: 0, periodMs: 0 },
          { index: 5, key: 'i8_ch', unit: 'dBm', valueType: ValueType.I8, scaleExp: -9, periodMs: 1 },
          { index: 6, key: 'u8_ch', unit: '%', valueType: ValueType.U8, scaleExp: 9, periodMs: 2 },
          { index: 10, key: 'i16_ch', unit: '°C', valueType: ValueType.I16, scaleExp: -2, periodMs: 500 },
          { index: 11, key: 'u16_ch', unit: 'hPa', valueType: ValueType.U16, scaleExp: -1, periodMs: 1000 },
          { index: 12, key: 'i32_ch', unit: 'B', valueType: ValueType.I32, scaleExp: 3, periodMs: 5000 },
          { index: 100, key: 'u32_ch', unit: 's', valueType: ValueType.U32, scaleExp: 0, periodMs: 60_000 },
          { index: 127, key: 'f32_ch', unit: 'V', valueType: ValueType.F32, scaleExp: 0, periodMs: 0xffff_ffff },
        ],
      },
    },
    {
      name: 'descriptors-64-channels',
      description: 'The maximum of 64 channels, indexes 1..127 odd, a 32-byte key and a 16-byte unit.',
      message: { type: 'descriptors', channels: sixtyFourChannels },
    },
    // TELEMETRY [PROTO-3.4]
    {
      name: 'telemetry-typical-8x4',
      description: 'The typical frame: 8 channels × 4 samples at 1 s, i16/u16 fixed-point, f32, i8, u32, bool.',
      message: TYPICAL_TELEMETRY,
    },
    {
      name: 'telemetry-small-1x1',
      description: 'The smallest useful frame: one i16 sample at delta 0.',
      message: telemetry([block(0, ValueType.I16, [[0, 2345]])], { seq: 1 }),
    },
    {
      name: 'telemetry-bool',
      description: 'bool values true and false, and a missing bool.',
      message: telemetry([
        block(6, ValueType.BOOL, [
          [0, true],
          [1, false],
          [2, null],
          [3, true],
        ]),
      ]),
    },
    {
      name: 'telemetry-i8-bounds',
      message: telemetry([block(4, ValueType.I8, every1s([-128, 127, 0, -1]))]),
    },
    {
      name: 'telemetry-u8-bounds',
      message: telemetry([block(1, ValueType.U8, every1s([0, 255, 128]))]),
    },
    {
      name: 'telemetry-i16-bounds',
      message: telemetry([block(0, ValueType.I16, every1s([-32768, 32767, 0, -2345]))]),
    },
    {
      name: 'telemetry-u16-bounds',
      message: telemetry([block(1, ValueType.U16, every1s([0, 65535, 32768]))]),
    },
    {
      name: 'telemetry-i32-bounds',
      message: telemetry([block(9, ValueType.I32, every1s([-2147483648, 2147483647, 0, -1]))]),
    },
    {
      name: 'telemetry-u32-bounds',
      message: telemetry([block(5, ValueType.U32, every1s([0, 4294967295, 2147483648]))]),
    },
    {
      name: 'telemetry-f32-values',
      description:
        'f32 values: an exact one, one rounded to binary32 (21.3), -0, the largest finite, the smallest subnormal, a negative.',
      message: telemetry([
        block(
          2,
          ValueType.F32,
          every1s([f(1.5), f(21.3), -0, f(3.4028234663852886e38), f(1.401298464324817e-45), f(-273.15)]),
        ),
      ]),
    },
    {
      name: 'telemetry-f32-nan-infinity',
      description: 'NaN (canonical 0x7FC00000), +Infinity and -Infinity are values on the wire, not missing markers.',
      message: telemetry([
        block(2, ValueType.F32, every1s([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY])),
      ]),
    },
    {
      name: 'telemetry-fixed-point-negative',
      description: 'i16 -2345 at scale -2 is -23.45 °C; i32 at scale 3 (kilo); negative values two’s complement.',
      message: telemetry([
        block(0, ValueType.I16, every1s([-2345, -1, -32768])),
        block(12, ValueType.I32, every1s([-5, -1_000_000])),
      ]),
    },
    {
      name: 'telemetry-missing-samples',
      description: 'Missing samples carry no value bytes (tag odd); a block may be all missing.',
      message: telemetry([
        block(0, ValueType.I16, [
          [0, 2345],
          [1000, null],
          [2000, 2350],
          [3000, null],
        ]),
        block(3, ValueType.I16, [
          [0, null],
          [5000, null],
        ]),
      ]),
    },
    {
      name: 'telemetry-varint-widths',
      description:
        'Sample tags of 1, 2, 3, 4 and 5 bytes at each width boundary (deltas 63/64, 8191/8192, 1048575/1048576, 134217727/134217728), present and missing.',
      message: telemetry([
        block(1, ValueType.U8, [
          [0, 1],
          [63, 2],
          [63, null],
          [64, 3],
          [8191, 4],
          [8192, null],
          [1_048_575, 5],
          [1_048_576, 6],
          [134_217_727, null],
          [134_217_728, 7],
        ]),
      ]),
    },
    {
      name: 'telemetry-max-delta',
      description:
        'deltaMs 2^31-1 with a value (tag 2^32-2) and missing (tag 2^32-1, the largest 5-byte varint allowed).',
      message: telemetry([
        block(1, ValueType.U16, [
          [2147483647, 7],
          [2147483647, null],
        ]),
      ]),
    },
    {
      name: 'telemetry-unsynced',
      description: 'UNSYNCED flag: baseTime is uptime in ms since boot.',
      message: telemetry([block(0, ValueType.I16, every1s([2101, 2102]))], { unsynced: true, baseTime: 5_000, seq: 3 }),
    },
    {
      name: 'telemetry-base-time-max',
      description: 'baseTime 2^53-1 (u64 maximum accepted), bootId and seq 2^32-1, descriptorHash 0.',
      message: telemetry([block(127, ValueType.U32, [[0, 1]])], {
        baseTime: MAX_U53,
        bootId: MAX_U32,
        seq: MAX_U32,
        descriptorHash: 0,
      }),
    },
    {
      name: 'telemetry-255-samples',
      description: 'One block with the maximum of 255 i16 samples, deltas 0..254000 ms (1..3-byte tags).',
      message: telemetry([
        block(
          0,
          ValueType.I16,
          Array.from({ length: 255 }, (_, i): [number, SampleValue] => [
            i * 1000,
            i % 17 === 16 ? null : i * 97 - 12_000,
          ]),
        ),
      ]),
    },
    {
      name: 'telemetry-128-blocks',
      description: 'The maximum of 128 blocks, one per channel index 0..127, one u8 sample each.',
      message: telemetry(Array.from({ length: 128 }, (_, i) => block(i, ValueType.U8, [[0, i]]))),
    },
    {
      name: 'telemetry-exactly-4096-bytes',
      description: 'A frame of exactly MAX_FRAME_BYTES: 8 blocks, 2020 u8 samples.',
      message: maxSizeTelemetry(),
    },
    // ACK [PROTO-3.5]
    { name: 'ack-typical', message: { type: 'ack', bootId: BOOT, seq: 42 } },
    { name: 'ack-maximums', message: { type: 'ack', bootId: MAX_U32, seq: MAX_U32 } },
    // COMMAND [PROTO-3.6]
    {
      name: 'command-set-sample-interval',
      message: {
        type: 'command',
        commandId: 1,
        name: 'set_sample_interval',
        args: [{ key: 'interval_ms', valueType: ValueType.U32, value: 5000 }],
      },
    },
    {
      name: 'command-identify',
      message: {
        type: 'command',
        commandId: 2,
        name: 'identify',
        args: [{ key: 'duration_ms', valueType: ValueType.U32, value: 3000 }],
      },
    },
    {
      name: 'command-reboot',
      description: 'No arguments.',
      message: { type: 'command', commandId: 3, name: 'reboot', args: [] },
    },
    {
      name: 'command-send-descriptors',
      message: { type: 'command', commandId: MAX_U32, name: 'send_descriptors', args: [] },
    },
    {
      name: 'command-every-arg-type',
      description: 'Arguments of every value type including string (type 9), an empty string and f32 NaN.',
      message: {
        type: 'command',
        commandId: 0x0102_0304,
        name: 'x_test_9',
        args: [
          { key: 'b', valueType: ValueType.BOOL, value: true },
          { key: 'i8', valueType: ValueType.I8, value: -128 },
          { key: 'u8', valueType: ValueType.U8, value: 255 },
          { key: 'i16', valueType: ValueType.I16, value: -32768 },
          { key: 'u16', valueType: ValueType.U16, value: 65535 },
          { key: 'i32', valueType: ValueType.I32, value: -2147483648 },
          { key: 'u32', valueType: ValueType.U32, value: 4294967295 },
          { key: 'f32', valueType: ValueType.F32, value: f(-0.1) },
          { key: 'f32_nan', valueType: ValueType.F32, value: Number.NaN },
          { key: 'label', valueType: ValueType.STRING, value: 'Küche ✓' },
          { key: 'empty', valueType: ValueType.STRING, value: '' },
          { key: 'looks_like_nan', valueType: ValueType.STRING, value: 'NaN' },
        ],
      },
    },
    {
      name: 'command-maximums',
      description: '32-byte name, 16 arguments, a 32-byte key and a 200-byte string argument.',
      message: {
        type: 'command',
        commandId: 7,
        name: `a${'0_'.repeat(15)}z`,
        args: Array.from({ length: 16 }, (_, i) =>
          i === 0
            ? { key: `k${'y'.repeat(31)}`, valueType: ValueType.STRING, value: 's'.repeat(200) }
            : { key: `arg_${i}`, valueType: ValueType.U8, value: i },
        ),
      },
    },
    // COMMAND_ACCEPTED / COMMAND_RESULT [PROTO-3.7]
    { name: 'command-accepted', message: { type: 'command_accepted', commandId: 1 } },
    { name: 'command-accepted-max-id', message: { type: 'command_accepted', commandId: MAX_U32 } },
    {
      name: 'command-result-ok-empty-message',
      message: { type: 'command_result', commandId: 1, status: 0, message: '' },
    },
    {
      name: 'command-result-busy-max-message',
      description: 'status 4 (busy) with a 200-byte message.',
      message: { type: 'command_result', commandId: 2, status: 4, message: 'm'.repeat(199) + '!' },
    },
    {
      name: 'command-result-bad-arguments',
      message: { type: 'command_result', commandId: 3, status: 3, message: 'interval_ms must be 100..3600000' },
    },
    // ERROR [PROTO-3.8]
    {
      name: 'error-fatal',
      description: 'FATAL ERROR with wire code 105 (BAD_CRC).',
      message: { type: 'error', fatal: true, code: 105, message: 'CRC mismatch' },
    },
    {
      name: 'error-non-fatal-storage-full',
      description: 'Non-fatal ERROR 300 (STORAGE_FULL) [PROTO-5.5].',
      message: { type: 'error', fatal: false, code: 300, message: 'local log full, retry later' },
    },
    {
      name: 'error-code-max-empty-message',
      description: 'Any u16 code is carried (receivers map unknown codes themselves); empty message.',
      message: { type: 'error', fatal: false, code: 65535, message: '' },
    },
  ];
}

// ───────────────────────── malformed vectors ─────────────────────────

/** A little-endian byte builder for crafting payloads the encoder refuses to write. */
class B {
  readonly bytes: number[] = [];
  u8(...vs: number[]): this {
    for (const v of vs) this.bytes.push(v & 0xff);
    return this;
  }
  i8(v: number): this {
    return this.u8(v & 0xff);
  }
  u16(v: number): this {
    return this.u8(v, v >>> 8);
  }
  u32(v: number): this {
    return this.u8(v, v >>> 8, v >>> 16, v >>> 24);
  }
  u64(v: bigint): this {
    for (let i = 0n; i < 8n; i++) this.bytes.push(Number((v >> (8n * i)) & 0xffn));
    return this;
  }
  /** str8 from text, or from raw bytes when given an array. */
  str(s: string | number[]): this {
    const raw = typeof s === 'string' ? [...Buffer.from(s, 'utf8')] : s;
    return this.u8(raw.length).raw(raw);
  }
  raw(bytes: number[] | Uint8Array): this {
    for (const b of bytes) this.bytes.push(b);
    return this;
  }
  /** Canonical LEB128. */
  varint(v: number): this {
    let rest = v;
    while (rest >= 0x80) {
      this.bytes.push((rest % 128) | 0x80);
      rest = Math.floor(rest / 128);
    }
    return this.u8(rest);
  }
}

interface FrameOptions {
  magic?: [number, number];
  version?: number;
  reserved?: number;
  /** Overrides the length field (default: the payload length). */
  length?: number;
  /** Overrides the CRC trailer (default: the correct CRC). */
  crc?: number;
}

function frame(type: number, flags: number, payload: B | number[], o: FrameOptions = {}): Uint8Array {
  const p = payload instanceof B ? payload.bytes : payload;
  const out = new Uint8Array(12 + p.length);
  const view = new DataView(out.buffer);
  out[0] = o.magic?.[0] ?? 0x45;
  out[1] = o.magic?.[1] ?? 0x53;
  out[2] = o.version ?? 1;
  out[3] = type;
  out[4] = flags;
  out[5] = o.reserved ?? 0;
  view.setUint16(6, o.length ?? p.length, true);
  out.set(p, 8);
  view.setUint32(8 + p.length, o.crc ?? crc32(out.subarray(0, 8 + p.length)), true);
  return out;
}

/** Recomputes the CRC of a (possibly edited) frame whose length field is right. */
function fixCrc(bytes: Uint8Array): Uint8Array {
  const out = Uint8Array.from(bytes);
  new DataView(out.buffer).setUint32(out.length - 4, crc32(out.subarray(0, out.length - 4)), true);
  return out;
}

const concat = (...parts: (Uint8Array | number[])[]): Uint8Array => Uint8Array.from(parts.flatMap((p) => [...p]));

// Valid payload builders whose fields can be overridden one at a time.
interface HelloParts {
  deviceId: number[] | string;
  firmwareVersion: number[] | string;
  maxProtocolVersion: number;
  bootId: number;
  resetReason: number;
  uptimeMs: bigint;
}
function helloPayload(o: Partial<HelloParts> = {}): B {
  return new B()
    .str(o.deviceId ?? 'esp32-kitchen')
    .str(o.firmwareVersion ?? '1.4.2')
    .u8(o.maxProtocolVersion ?? 1)
    .u32(o.bootId ?? BOOT)
    .u8(o.resetReason ?? 1)
    .u64(o.uptimeMs ?? 12_345n)
    .u32(TYPICAL_HASH)
    .u32(0)
    .u32(0);
}

interface WelcomeParts {
  acceptedVersion: number;
  lastAckBootId: number;
  lastAckSeq: number;
  heartbeatIntervalSec: number;
  maxFrameBytes: number;
}
function welcomePayload(o: Partial<WelcomeParts> = {}): B {
  return new B()
    .u8(o.acceptedVersion ?? 1)
    .u64(BigInt(T0))
    .u32(o.lastAckBootId ?? 0)
    .u32(o.lastAckSeq ?? 0)
    .u32(1000)
    .u16(o.heartbeatIntervalSec ?? 30)
    .u16(o.maxFrameBytes ?? 4096);
}

interface ChannelParts {
  index: number;
  key: string | number[];
  unit: string | number[];
  valueType: number;
  scaleExp: number;
  periodMs: number;
}
function channel(o: Partial<ChannelParts> = {}): number[] {
  return new B()
    .u8(o.index ?? 0)
    .str(o.key ?? 'temp_c')
    .str(o.unit ?? '°C')
    .u8(o.valueType ?? ValueType.I16)
    .i8(o.scaleExp ?? -2)
    .u32(o.periodMs ?? 1000).bytes;
}
function descriptorsPayload(channels: number[][], count = channels.length): B {
  return new B().u8(count).raw(channels.flat());
}

/** A block of u8 samples at deltas 0, 1, 2, … */
function u8Block(ch: number, values: number[]): number[] {
  const b = new B().u8(ch, ValueType.U8, values.length);
  values.forEach((v, i) => {
    b.varint(i * 2).u8(v);
  });
  return b.bytes;
}
interface TelemetryParts {
  bootId: number;
  seq: number;
  baseTime: bigint;
  blockCount: number;
}
function telemetryPayload(blocks: number[][], o: Partial<TelemetryParts> = {}): B {
  return new B()
    .u32(o.bootId ?? BOOT)
    .u32(o.seq ?? 1)
    .u32(TYPICAL_HASH)
    .u64(o.baseTime ?? BigInt(T0))
    .u8(o.blockCount ?? blocks.length)
    .raw(blocks.flat());
}
function commandPayload(args: number[][], o: { commandId?: number; name?: string; argCount?: number } = {}): B {
  return new B()
    .u32(o.commandId ?? 9)
    .str(o.name ?? 'identify')
    .u8(o.argCount ?? args.length)
    .raw(args.flat());
}
const u32Arg = (key: string | number[], v: number): number[] => new B().str(key).u8(ValueType.U32).u32(v).bytes;

const T = { HELLO: 1, WELCOME: 2, DESCRIPTORS: 3, TELEMETRY: 4, ACK: 5, COMMAND: 6, ACCEPTED: 7, RESULT: 8, ERROR: 9 };

function malformedVectors(valid: Map<string, Uint8Array>): MalformedVector[] {
  const v = (name: string): Uint8Array => {
    const bytes = valid.get(name);
    if (!bytes) throw new Error(`no valid vector ${name}`);
    return bytes;
  };
  const ack = v('ack-typical'); // 20 bytes: header, 8-byte payload, CRC
  const tele = v('telemetry-typical-8x4');
  const max = v('telemetry-exactly-4096-bytes');
  const withByte = (bytes: Uint8Array, at: number, value: number): Uint8Array => {
    const out = Uint8Array.from(bytes);
    out[at] = value;
    return out;
  };
  const ackPayload = new B().u32(BOOT).u32(42);
  const m = (name: string, error: ErrorCode, description: string, bytes: Uint8Array): MalformedVector => ({
    name,
    description,
    hex: Buffer.from(bytes).toString('hex'),
    error,
  });
  const goodChannels = (n: number) =>
    Array.from({ length: n }, (_, i) => channel({ index: i, key: `ch_${i}`, unit: 'V', valueType: ValueType.U16 }));

  return [
    // Step 1: fewer than 8 bytes.
    m('truncated-empty', 'TRUNCATED', 'Zero bytes.', new Uint8Array(0)),
    m(
      'truncated-header',
      'TRUNCATED',
      'The first 7 bytes of a valid ACK: the header is incomplete.',
      ack.subarray(0, 7),
    ),
    // Step 2: magic.
    m(
      'bad-magic',
      'BAD_MAGIC',
      'Magic "EZ" instead of "ES"; otherwise a valid ACK with a correct CRC.',
      fixCrc(withByte(ack, 1, 0x5a)),
    ),
    m(
      'bad-magic-swapped',
      'BAD_MAGIC',
      'Magic bytes swapped ("SE"), CRC fixed.',
      frame(T.ACK, 0, ackPayload, { magic: [0x53, 0x45] }),
    ),
    m(
      'bad-magic-eight-zero-bytes',
      'BAD_MAGIC',
      'Eight zero bytes: long enough for a header, wrong magic.',
      new Uint8Array(8),
    ),
    // Step 3: version (checked before size, length and CRC).
    m('bad-version-0', 'BAD_VERSION', 'Version byte 0, CRC fixed.', frame(T.ACK, 0, ackPayload, { version: 0 })),
    m('bad-version-2', 'BAD_VERSION', 'Version byte 2, CRC fixed.', frame(T.ACK, 0, ackPayload, { version: 2 })),
    m(
      'bad-version-before-length-and-crc',
      'BAD_VERSION',
      'Version 2, a wrong CRC and a missing trailer byte: the version check runs first.',
      frame(T.ACK, 0, ackPayload, { version: 2, crc: 0 }).subarray(0, 19),
    ),
    // Step 4: size.
    m(
      'too-large-received',
      'TOO_LARGE',
      'The valid 4096-byte frame plus one trailing byte: 4097 bytes received is TOO_LARGE, not BAD_LENGTH.',
      concat(max, [0]),
    ),
    m(
      'too-large-declared',
      'TOO_LARGE',
      'A 20-byte frame whose length field declares 4085 payload bytes (4097 in total): TOO_LARGE, not TRUNCATED.',
      frame(T.ACK, 0, ackPayload, { length: 4085 }),
    ),
    m(
      'too-large-declared-header-only',
      'TOO_LARGE',
      'Only a header, declaring a payload of 65535 bytes.',
      frame(T.ACK, 0, [], { length: 0xffff }).subarray(0, 8),
    ),
    // Step 5: declared length vs bytes received.
    m('truncated-payload', 'TRUNCATED', 'A valid ACK cut after 2 of its 8 payload bytes.', ack.subarray(0, 10)),
    m('truncated-crc', 'TRUNCATED', 'A valid ACK missing the last CRC byte.', ack.subarray(0, 19)),
    m(
      'truncated-max-frame',
      'TRUNCATED',
      'The 4096-byte frame missing its last byte.',
      max.subarray(0, max.length - 1),
    ),
    m('bad-length-byte-after-crc', 'BAD_LENGTH', 'A valid ACK followed by one 0x00 byte.', concat(ack, [0])),
    m(
      'bad-length-frame-after-crc',
      'BAD_LENGTH',
      'Two valid ACKs in one message: one WebSocket message carries exactly one frame [PROTO-1.3].',
      concat(ack, ack),
    ),
    // Step 6: CRC.
    m(
      'bad-crc-payload-bit',
      'BAD_CRC',
      'A valid ACK with bit 0 of its first payload byte flipped.',
      withByte(ack, 8, (ack[8] as number) ^ 1),
    ),
    m(
      'bad-crc-trailer-zero',
      'BAD_CRC',
      'A valid ACK whose CRC trailer is 00000000.',
      frame(T.ACK, 0, ackPayload, { crc: 0 }),
    ),
    m(
      'bad-crc-before-type',
      'BAD_CRC',
      'A valid ACK whose type byte was changed to 0x0a without fixing the CRC: the CRC check runs before the type check.',
      withByte(ack, 3, 0x0a),
    ),
    m(
      'bad-crc-telemetry-value',
      'BAD_CRC',
      'The typical TELEMETRY frame with one value byte changed.',
      withByte(tele, 40, (tele[40] as number) ^ 0x80),
    ),
    // Step 7: type.
    m('unknown-type-0', 'UNKNOWN_TYPE', 'Type 0x00, CRC fixed.', frame(0x00, 0, ackPayload)),
    m('unknown-type-10', 'UNKNOWN_TYPE', 'Type 0x0a (the first undefined one), CRC fixed.', frame(0x0a, 0, ackPayload)),
    m(
      'unknown-type-before-flags',
      'UNKNOWN_TYPE',
      'Type 0xff with the reserved byte and all flags set: the type check runs before the flags check.',
      frame(0xff, 0xff, ackPayload, { reserved: 0xff }),
    ),
    // Step 8: flags and reserved byte.
    m(
      'bad-flags-reserved-byte',
      'BAD_FLAGS',
      'A valid ACK with reserved byte 0x01, CRC fixed.',
      frame(T.ACK, 0, ackPayload, { reserved: 1 }),
    ),
    m('bad-flags-ack-bit0', 'BAD_FLAGS', 'ACK defines no flags; bit 0 set.', frame(T.ACK, 0x01, ackPayload)),
    m(
      'bad-flags-telemetry-bit1',
      'BAD_FLAGS',
      'The typical TELEMETRY frame with flag bit 1 (undefined; only UNSYNCED = bit 0 is) set, CRC fixed.',
      fixCrc(withByte(tele, 4, 0x02)),
    ),
    m(
      'bad-flags-welcome-bit2',
      'BAD_FLAGS',
      'WELCOME defines bits 0 and 1; bit 2 set.',
      frame(T.WELCOME, 0x04, welcomePayload()),
    ),
    m(
      'bad-flags-hello-bit7',
      'BAD_FLAGS',
      'HELLO defines bit 0 only; bit 7 set.',
      frame(T.HELLO, 0x81, helloPayload()),
    ),
    m(
      'bad-flags-error-bit1',
      'BAD_FLAGS',
      'ERROR defines FATAL (bit 0) only; bit 1 set.',
      frame(T.ERROR, 0x02, new B().u16(105).str('x')),
    ),
    m(
      'bad-flags-before-payload',
      'BAD_FLAGS',
      'Reserved byte set on a frame whose payload is also empty: the flags check runs before payload decoding.',
      frame(T.ACK, 0, [], { reserved: 0x80 }),
    ),
    // Step 9: payload. Every vector below has a correct length field and CRC.
    m(
      'truncated-ack-payload',
      'TRUNCATED',
      'ACK with a 6-byte payload: seq runs past the payload.',
      frame(T.ACK, 0, ackPayload.bytes.slice(0, 6)),
    ),
    m('truncated-empty-payload', 'TRUNCATED', 'TELEMETRY with an empty payload.', frame(T.TELEMETRY, 0, [])),
    m(
      'truncated-hello-device-id',
      'TRUNCATED',
      'HELLO whose deviceId length byte says 10 but the payload ends after 4 bytes.',
      frame(T.HELLO, 0, new B().u8(10).raw(Buffer.from('esp3'))),
    ),
    m(
      'truncated-hello-after-device-id',
      'TRUNCATED',
      'HELLO ending right after a valid deviceId and firmwareVersion.',
      frame(T.HELLO, 0, new B().str('esp32').str('1.0')),
    ),
    m(
      'truncated-telemetry-sample',
      'TRUNCATED',
      'A block announcing 3 samples carrying only 2.',
      frame(T.TELEMETRY, 0, telemetryPayload([u8Block(0, [1, 2, 3]).slice(0, 3 + 4)])),
    ),
    m(
      'truncated-telemetry-block',
      'TRUNCATED',
      'blockCount 2 but only one block present.',
      frame(T.TELEMETRY, 0, telemetryPayload([u8Block(0, [1])], { blockCount: 2 })),
    ),
    m(
      'truncated-varint',
      'TRUNCATED',
      'The payload ends inside a sample tag (0x80: continuation bit set, no next byte).',
      frame(T.TELEMETRY, 0, telemetryPayload([[0, ValueType.U8, 1, 0x80]])),
    ),
    m(
      'truncated-f32-value',
      'TRUNCATED',
      'An f32 sample with only 3 of its 4 value bytes.',
      frame(T.TELEMETRY, 0, telemetryPayload([[2, ValueType.F32, 1, 0x00, 0x00, 0x00, 0x80]])),
    ),
    m(
      'truncated-descriptor-channel',
      'TRUNCATED',
      'DESCRIPTORS count 1 with a channel missing its periodMs.',
      frame(T.DESCRIPTORS, 0, descriptorsPayload([channel().slice(0, -4)])),
    ),
    m(
      'truncated-error-message',
      'TRUNCATED',
      'ERROR whose message length byte says 5 with 2 bytes left.',
      frame(T.ERROR, 1, new B().u16(105).u8(5).raw(Buffer.from('ab'))),
    ),
    m(
      'bad-length-ack-extra-byte',
      'BAD_LENGTH',
      'ACK with a 9-byte payload: one byte left after the last field.',
      frame(T.ACK, 0, new B().u32(BOOT).u32(42).u8(0)),
    ),
    m(
      'bad-length-telemetry-extra-byte',
      'BAD_LENGTH',
      'A complete TELEMETRY payload followed by one extra byte.',
      frame(T.TELEMETRY, 0, telemetryPayload([u8Block(0, [1, 2]), [0x00]], { blockCount: 1 })),
    ),
    m(
      'bad-length-error-extra-bytes',
      'BAD_LENGTH',
      'A complete ERROR payload followed by two bytes.',
      frame(T.ERROR, 0, new B().u16(300).str('full').u8(0, 0)),
    ),
    m(
      'bad-field-varint-non-canonical',
      'BAD_FIELD',
      'Sample tag 0 written as 0x80 0x00 (a superfluous zero group).',
      frame(T.TELEMETRY, 0, telemetryPayload([[1, ValueType.U8, 1, 0x80, 0x00, 7]])),
    ),
    m(
      'bad-field-varint-non-canonical-3-bytes',
      'BAD_FIELD',
      'Sample tag 2 written as 0x82 0x80 0x00.',
      frame(T.TELEMETRY, 0, telemetryPayload([[1, ValueType.U8, 1, 0x82, 0x80, 0x00, 7]])),
    ),
    m(
      'bad-field-varint-6-bytes',
      'BAD_FIELD',
      'A 6-byte sample tag (0x80 ×5, 0x01); varints are at most 5 bytes.',
      frame(T.TELEMETRY, 0, telemetryPayload([[1, ValueType.U8, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 7]])),
    ),
    m(
      'bad-field-varint-over-32-bits',
      'BAD_FIELD',
      'A 5-byte tag 0xff 0xff 0xff 0xff 0x1f = 2^33-1: above 2^32-1 (deltaMs above 2^31-1).',
      frame(T.TELEMETRY, 0, telemetryPayload([[1, ValueType.U8, 1, 0xff, 0xff, 0xff, 0xff, 0x1f, 7]])),
    ),
    m(
      'bad-field-utf8-invalid',
      'BAD_FIELD',
      'firmwareVersion bytes C3 28: a lead byte followed by a non-continuation byte.',
      frame(T.HELLO, 0, helloPayload({ firmwareVersion: [0xc3, 0x28] })),
    ),
    m(
      'bad-field-utf8-overlong',
      'BAD_FIELD',
      'firmwareVersion bytes C0 AF: an overlong encoding of "/".',
      frame(T.HELLO, 0, helloPayload({ firmwareVersion: [0x31, 0xc0, 0xaf] })),
    ),
    m(
      'bad-field-utf8-surrogate',
      'BAD_FIELD',
      'ERROR message bytes ED A0 80: an encoded UTF-16 surrogate.',
      frame(T.ERROR, 0, new B().u16(105).str([0xed, 0xa0, 0x80])),
    ),
    m(
      'bad-field-utf8-cut-sequence',
      'BAD_FIELD',
      'COMMAND_RESULT message ending in E2 82, a cut 3-byte sequence (the field itself is complete).',
      frame(T.RESULT, 0, new B().u32(1).u8(0).str([0x6f, 0x6b, 0xe2, 0x82])),
    ),
    m(
      'bad-field-device-id-alphabet',
      'BAD_FIELD',
      'deviceId "esp32 kitchen" contains a space.',
      frame(T.HELLO, 0, helloPayload({ deviceId: 'esp32 kitchen' })),
    ),
    m(
      'bad-field-device-id-empty',
      'BAD_FIELD',
      'deviceId is empty (1..64 bytes).',
      frame(T.HELLO, 0, helloPayload({ deviceId: '' })),
    ),
    m(
      'bad-field-device-id-65-bytes',
      'BAD_FIELD',
      'deviceId of 65 valid characters, all present in the payload.',
      frame(T.HELLO, 0, helloPayload({ deviceId: 'd'.repeat(65) })),
    ),
    m(
      'bad-field-firmware-version-control-char',
      'BAD_FIELD',
      'firmwareVersion "1.0\\n": free text has no control characters.',
      frame(T.HELLO, 0, helloPayload({ firmwareVersion: '1.0\n' })),
    ),
    m(
      'bad-field-firmware-version-65-bytes',
      'BAD_FIELD',
      'firmwareVersion of 65 bytes (at most 64).',
      frame(T.HELLO, 0, helloPayload({ firmwareVersion: 'v'.repeat(65) })),
    ),
    m(
      'bad-field-max-protocol-version-0',
      'BAD_FIELD',
      'HELLO maxProtocolVersion 0.',
      frame(T.HELLO, 0, helloPayload({ maxProtocolVersion: 0 })),
    ),
    m('bad-field-hello-boot-id-zero', 'BAD_FIELD', 'HELLO bootId 0.', frame(T.HELLO, 1, helloPayload({ bootId: 0 }))),
    m(
      'bad-field-reset-reason-8',
      'BAD_FIELD',
      'HELLO resetReason 8 (0..7 defined).',
      frame(T.HELLO, 0, helloPayload({ resetReason: 8 })),
    ),
    m(
      'bad-field-u64-2-pow-53',
      'BAD_FIELD',
      'HELLO uptimeMs 2^53: one above the largest u64 accepted.',
      frame(T.HELLO, 0, helloPayload({ uptimeMs: 2n ** 53n })),
    ),
    m(
      'bad-field-u64-max',
      'BAD_FIELD',
      'TELEMETRY baseTime 2^64-1.',
      frame(T.TELEMETRY, 0, telemetryPayload([u8Block(0, [1])], { baseTime: 2n ** 64n - 1n })),
    ),
    m(
      'bad-field-welcome-accepted-version-0',
      'BAD_FIELD',
      'WELCOME acceptedVersion 0.',
      frame(T.WELCOME, 0, welcomePayload({ acceptedVersion: 0 })),
    ),
    m(
      'bad-field-welcome-last-ack-without-flag',
      'BAD_FIELD',
      'WELCOME with HAS_LAST_ACK clear but lastAckSeq 5.',
      frame(T.WELCOME, 0, welcomePayload({ lastAckSeq: 5 })),
    ),
    m(
      'bad-field-welcome-heartbeat-0',
      'BAD_FIELD',
      'WELCOME heartbeatIntervalSec 0 (1..3600).',
      frame(T.WELCOME, 0, welcomePayload({ heartbeatIntervalSec: 0 })),
    ),
    m(
      'bad-field-welcome-heartbeat-3601',
      'BAD_FIELD',
      'WELCOME heartbeatIntervalSec 3601.',
      frame(T.WELCOME, 0, welcomePayload({ heartbeatIntervalSec: 3601 })),
    ),
    m(
      'bad-field-welcome-max-frame-4097',
      'BAD_FIELD',
      'WELCOME maxFrameBytes 4097 (12..4096).',
      frame(T.WELCOME, 0, welcomePayload({ maxFrameBytes: 4097 })),
    ),
    m(
      'bad-field-welcome-max-frame-11',
      'BAD_FIELD',
      'WELCOME maxFrameBytes 11: smaller than any frame.',
      frame(T.WELCOME, 0, welcomePayload({ maxFrameBytes: 11 })),
    ),
    m(
      'bad-field-descriptors-count-0',
      'BAD_FIELD',
      'DESCRIPTORS count 0 (1..64).',
      frame(T.DESCRIPTORS, 0, descriptorsPayload([])),
    ),
    m(
      'bad-field-descriptors-count-65',
      'BAD_FIELD',
      'DESCRIPTORS with 65 otherwise valid channels (at most 64).',
      frame(T.DESCRIPTORS, 0, descriptorsPayload(goodChannels(65))),
    ),
    m(
      'bad-field-channel-indexes-unsorted',
      'BAD_FIELD',
      'Channel indexes 2 then 1: not strictly ascending.',
      frame(T.DESCRIPTORS, 0, descriptorsPayload([channel({ index: 2, key: 'a' }), channel({ index: 1, key: 'b' })])),
    ),
    m(
      'bad-field-channel-indexes-equal',
      'BAD_FIELD',
      'Channel index 3 twice (different keys).',
      frame(T.DESCRIPTORS, 0, descriptorsPayload([channel({ index: 3, key: 'a' }), channel({ index: 3, key: 'b' })])),
    ),
    m(
      'bad-field-channel-index-128',
      'BAD_FIELD',
      'Channel index 128 (0..127).',
      frame(T.DESCRIPTORS, 0, descriptorsPayload([channel({ index: 128 })])),
    ),
    m(
      'bad-field-duplicate-keys',
      'BAD_FIELD',
      'Two channels with the key "temp_c".',
      frame(T.DESCRIPTORS, 0, descriptorsPayload([channel({ index: 0 }), channel({ index: 1 })])),
    ),
    m(
      'bad-field-channel-key-uppercase',
      'BAD_FIELD',
      'Channel key "Temp" (a-z 0-9 _ only).',
      frame(T.DESCRIPTORS, 0, descriptorsPayload([channel({ key: 'Temp' })])),
    ),
    m(
      'bad-field-channel-key-leading-digit',
      'BAD_FIELD',
      'Channel key "1temp" (must start with a letter).',
      frame(T.DESCRIPTORS, 0, descriptorsPayload([channel({ key: '1temp' })])),
    ),
    m(
      'bad-field-unit-17-bytes',
      'BAD_FIELD',
      'A 17-byte unit (at most 16).',
      frame(T.DESCRIPTORS, 0, descriptorsPayload([channel({ unit: 'u'.repeat(17) })])),
    ),
    m(
      'bad-field-scale-on-f32',
      'BAD_FIELD',
      'An f32 channel with scaleExp -1 (MUST be 0 for f32).',
      frame(T.DESCRIPTORS, 0, descriptorsPayload([channel({ valueType: ValueType.F32, scaleExp: -1 })])),
    ),
    m(
      'bad-field-scale-on-bool',
      'BAD_FIELD',
      'A bool channel with scaleExp 1 (MUST be 0 for bool).',
      frame(T.DESCRIPTORS, 0, descriptorsPayload([channel({ valueType: ValueType.BOOL, scaleExp: 1 })])),
    ),
    m(
      'bad-field-scale-10',
      'BAD_FIELD',
      'An i16 channel with scaleExp 10 (-9..9).',
      frame(T.DESCRIPTORS, 0, descriptorsPayload([channel({ scaleExp: 10 })])),
    ),
    m(
      'bad-field-scale-minus-10',
      'BAD_FIELD',
      'An i32 channel with scaleExp -10.',
      frame(T.DESCRIPTORS, 0, descriptorsPayload([channel({ valueType: ValueType.I32, scaleExp: -10 })])),
    ),
    m(
      'bad-field-telemetry-boot-id-zero',
      'BAD_FIELD',
      'TELEMETRY bootId 0.',
      frame(T.TELEMETRY, 0, telemetryPayload([u8Block(0, [1])], { bootId: 0 })),
    ),
    m(
      'bad-field-telemetry-seq-zero',
      'BAD_FIELD',
      'TELEMETRY seq 0 (seq starts at 1).',
      frame(T.TELEMETRY, 0, telemetryPayload([u8Block(0, [1])], { seq: 0 })),
    ),
    m(
      'bad-field-block-count-0',
      'BAD_FIELD',
      'TELEMETRY with blockCount 0 (1..128).',
      frame(T.TELEMETRY, 0, telemetryPayload([])),
    ),
    m(
      'bad-field-block-count-129',
      'BAD_FIELD',
      'TELEMETRY with 129 otherwise valid blocks (at most 128).',
      frame(T.TELEMETRY, 0, telemetryPayload(Array.from({ length: 129 }, (_, i) => u8Block(i % 128, [i & 0xff])))),
    ),
    m(
      'bad-field-block-channel-128',
      'BAD_FIELD',
      'A block for channel index 128.',
      frame(T.TELEMETRY, 0, telemetryPayload([u8Block(128, [1])])),
    ),
    m(
      'bad-field-sample-count-0',
      'BAD_FIELD',
      'A block with sampleCount 0 (1..255).',
      frame(T.TELEMETRY, 0, telemetryPayload([[0, ValueType.U8, 0]])),
    ),
    m(
      'bad-field-bool-2',
      'BAD_FIELD',
      'A bool sample with the value byte 2.',
      frame(T.TELEMETRY, 0, telemetryPayload([[6, ValueType.BOOL, 2, 0x00, 0x01, 0x02, 0x02]])),
    ),
    m(
      'bad-field-command-id-zero',
      'BAD_FIELD',
      'COMMAND commandId 0.',
      frame(T.COMMAND, 0, commandPayload([u32Arg('duration_ms', 5000)], { commandId: 0 })),
    ),
    m(
      'bad-field-command-name-alphabet',
      'BAD_FIELD',
      'COMMAND name "Reboot" (a-z 0-9 _ only).',
      frame(T.COMMAND, 0, commandPayload([], { name: 'Reboot' })),
    ),
    m(
      'bad-field-command-name-empty',
      'BAD_FIELD',
      'COMMAND with an empty name (1..32 bytes).',
      frame(T.COMMAND, 0, commandPayload([], { name: '' })),
    ),
    m(
      'bad-field-command-arg-count-17',
      'BAD_FIELD',
      'COMMAND with 17 otherwise valid arguments (at most 16).',
      frame(T.COMMAND, 0, commandPayload(Array.from({ length: 17 }, (_, i) => u32Arg(`a${i}`, i)))),
    ),
    m(
      'bad-field-command-arg-key',
      'BAD_FIELD',
      'COMMAND argument key "Duration" (channel key alphabet).',
      frame(T.COMMAND, 0, commandPayload([u32Arg('Duration', 5000)])),
    ),
    m(
      'bad-field-command-arg-bool-2',
      'BAD_FIELD',
      'COMMAND bool argument with the value byte 2.',
      frame(T.COMMAND, 0, commandPayload([new B().str('on').u8(ValueType.BOOL, 2).bytes])),
    ),
    m(
      'bad-field-string-arg-control-char',
      'BAD_FIELD',
      'COMMAND string argument containing a NUL byte.',
      frame(T.COMMAND, 0, commandPayload([new B().str('label').u8(ValueType.STRING).str('a\u0000b').bytes])),
    ),
    m(
      'bad-field-accepted-command-id-zero',
      'BAD_FIELD',
      'COMMAND_ACCEPTED commandId 0.',
      frame(T.ACCEPTED, 0, new B().u32(0)),
    ),
    m(
      'bad-field-result-status-5',
      'BAD_FIELD',
      'COMMAND_RESULT status 5 (0..4).',
      frame(T.RESULT, 0, new B().u32(1).u8(5).str('')),
    ),
    m(
      'bad-field-error-message-201-bytes',
      'BAD_FIELD',
      'ERROR with a 201-byte message (at most 200).',
      frame(T.ERROR, 1, new B().u16(105).str('e'.repeat(201))),
    ),
    m(
      'bad-value-type-descriptor-8',
      'BAD_VALUE_TYPE',
      'A channel of value type 8 (reserved).',
      frame(T.DESCRIPTORS, 0, descriptorsPayload([channel({ valueType: 8, scaleExp: 0 })])),
    ),
    m(
      'bad-value-type-descriptor-string',
      'BAD_VALUE_TYPE',
      'A channel of value type 9 (string: command arguments only).',
      frame(T.DESCRIPTORS, 0, descriptorsPayload([channel({ valueType: 9, scaleExp: 0 })])),
    ),
    m(
      'bad-value-type-block-string',
      'BAD_VALUE_TYPE',
      'A TELEMETRY block of value type 9 (string), carrying a valid str8 sample.',
      frame(T.TELEMETRY, 0, telemetryPayload([[0, 9, 1, 0x00, 0x01, 0x61]])),
    ),
    m(
      'bad-value-type-block-255',
      'BAD_VALUE_TYPE',
      'A TELEMETRY block of value type 255.',
      frame(T.TELEMETRY, 0, telemetryPayload([[0, 255, 1, 0x00, 0x01]])),
    ),
    m(
      'bad-value-type-command-arg-8',
      'BAD_VALUE_TYPE',
      'A COMMAND argument of value type 8 (reserved) followed by 4 bytes.',
      frame(T.COMMAND, 0, commandPayload([new B().str('x').u8(8).u32(1).bytes])),
    ),
    m(
      'bad-value-type-command-arg-10',
      'BAD_VALUE_TYPE',
      'A COMMAND argument of value type 10.',
      frame(T.COMMAND, 0, commandPayload([new B().str('x').u8(10).u32(1).bytes])),
    ),
  ];
}

// ───────────────────────── JSON ─────────────────────────

/** Numbers JSON cannot hold become strings (see CONVENTIONS.f32). */
export function toJsonValue(value: unknown): unknown {
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return 'NaN';
    if (value === Number.POSITIVE_INFINITY) return 'Infinity';
    if (value === Number.NEGATIVE_INFINITY) return '-Infinity';
    if (Object.is(value, -0)) return '-0';
    return value;
  }
  if (Array.isArray(value)) return value.map(toJsonValue);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJsonValue(v)]));
  }
  return value;
}

/** Deterministic JSON: two-space indentation, arrays of scalars on one line, keys in insertion order. */
export function renderJson(value: unknown, indent = ''): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    if (value.every((x) => x === null || typeof x !== 'object'))
      return `[${value.map((x) => JSON.stringify(x)).join(', ')}]`;
    return `[\n${value.map((x) => inner + renderJson(x, inner)).join(',\n')}\n${indent}]`;
  }
  const entries = Object.entries(value);
  if (entries.length === 0) return '{}';
  return `{\n${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${renderJson(v, inner)}`).join(',\n')}\n${indent}}`;
}

// ───────────────────────── build and self-check ─────────────────────────

/** Builds every vector and checks it against the codec; throws on the first disagreement. */
export function buildVectors(): VectorFile {
  const valid: ValidVector[] = [];
  const validBytes = new Map<string, Uint8Array>();
  for (const { name, description, message } of validMessages()) {
    const bytes = encodeFrame(message);
    const decoded = decodeFrame(bytes);
    if (!isDeepStrictEqual(decoded, message)) throw new Error(`${name}: decodes to a different message`);
    if (validBytes.has(name)) throw new Error(`duplicate vector name ${name}`);
    validBytes.set(name, bytes);
    valid.push({
      name,
      ...(description ? { description } : {}),
      fields: toJsonValue(decoded),
      hex: Buffer.from(bytes).toString('hex'),
    });
  }
  const malformed = malformedVectors(validBytes);
  const names = new Set(validBytes.keys());
  for (const vector of malformed) {
    if (names.has(vector.name)) throw new Error(`duplicate vector name ${vector.name}`);
    names.add(vector.name);
    let caught: unknown;
    try {
      decodeFrame(Buffer.from(vector.hex, 'hex'));
    } catch (err) {
      caught = err;
    }
    if (!(caught instanceof ProtocolError) || !isErrorCode(caught.code) || caught.code !== vector.error) {
      throw new Error(`${vector.name}: expected ${vector.error}, decoder gave ${String(caught ?? 'a message')}`);
    }
  }
  return { protocol: 1, conventions: CONVENTIONS, valid, malformed };
}

export function renderVectors(file: VectorFile = buildVectors()): string {
  return `${renderJson(file)}\n`;
}

function main(): void {
  const text = renderVectors();
  if (process.argv.includes('--check')) {
    const current = readFileSync(VECTORS_PATH, 'utf8');
    if (current !== text) {
      console.error(`${VECTORS_PATH} is out of date: run npx tsx test/vectors/generate.ts`);
      process.exit(1);
    }
    console.log('protocol-v1.json is up to date');
    return;
  }
  writeFileSync(VECTORS_PATH, text);
  const file = JSON.parse(text) as VectorFile;
  console.log(`wrote ${VECTORS_PATH}: ${file.valid.length} valid, ${file.malformed.length} malformed vectors`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main();
