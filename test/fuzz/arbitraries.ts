/**
 * fast-check arbitraries for valid protocol v1 messages (docs/protocol.md). Every generated message
 * encodes: fields stay inside their ranges and alphabets and frames stay under 4096 bytes. Shared by the
 * property tests (test/unit/codec-property.test.ts) and the fuzz corpus (test/fuzz/run.ts).
 */
import fc from 'fast-check';
import {
  type Block,
  type ChannelDescriptor,
  type CommandArg,
  type Message,
  type SampleValue,
  type SampleValueTypeId,
  ValueType,
  type ValueTypeId,
} from '../../server/codec/index.ts';

const MAX_U32 = 0xffff_ffff;
const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.oneof(fc.integer({ min: 0, max: MAX_U32 }), fc.constantFrom(0, 1, 0x7fff_ffff, 0x8000_0000, MAX_U32));
const nonZeroU32 = fc.oneof(fc.integer({ min: 1, max: MAX_U32 }), fc.constantFrom(1, MAX_U32));
const u64 = fc.oneof(
  fc.maxSafeNat(),
  fc.integer({ min: 0, max: 2 ** 42 }),
  fc.constantFrom(0, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER),
);
/** Every f32 bit pattern class: fc.float yields binary32 values including NaN, ±Infinity, −0, subnormals. */
const f32 = fc.float();

const deviceId = fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/);
const channelKey = fc.stringMatching(/^[a-z][a-z0-9_]{0,31}$/);
const commandName = fc.stringMatching(/^[a-z0-9_]{1,32}$/);

// biome-ignore lint/suspicious/noControlCharactersInRegex: free text excludes control characters [PROTO-2.8]
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/gu;

/** Cuts whole code points off the end until the UTF-8 encoding fits. */
function fitUtf8(s: string, maxBytes: number): string {
  const points = [...s.replace(CONTROL, '')];
  while (Buffer.byteLength(points.join(''), 'utf8') > maxBytes) points.pop();
  return points.join('');
}

/** Free text of at most `maxBytes` UTF-8 bytes: ASCII, any code point, and a leading U+FEFF sometimes. */
export function freeText(maxBytes: number): fc.Arbitrary<string> {
  return fc
    .oneof(
      fc.string({ unit: 'grapheme-ascii', maxLength: maxBytes }),
      fc.string({ unit: 'binary', maxLength: maxBytes }),
      fc.string({ unit: 'binary', maxLength: 8 }).map((s) => `\uFEFF${s}`),
    )
    .map((s) => fitUtf8(s, maxBytes));
}

const sampleValueType = fc.integer({ min: 0, max: 7 }) as fc.Arbitrary<SampleValueTypeId>;

/** A value of the given type (number or boolean; strings for type 9). */
export function arbValueOf(valueType: ValueTypeId): fc.Arbitrary<number | boolean | string> {
  switch (valueType) {
    case ValueType.BOOL:
      return fc.boolean();
    case ValueType.I8:
      return fc.integer({ min: -0x80, max: 0x7f });
    case ValueType.U8:
      return u8;
    case ValueType.I16:
      return fc.integer({ min: -0x8000, max: 0x7fff });
    case ValueType.U16:
      return u16;
    case ValueType.I32:
      return fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff });
    case ValueType.U32:
      return fc.integer({ min: 0, max: MAX_U32 });
    case ValueType.F32:
      return f32;
    default:
      return freeText(200);
  }
}

const deltaMs = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 63 }) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 100_000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0x7fff_ffff }) },
  { weight: 1, arbitrary: fc.constantFrom(64, 8191, 8192, 134_217_728, 0x7fff_ffff) },
);

/** Blocks stay small enough that 10 of them fit a frame: 3 + 32 × (5 + 4) bytes each. */
const block: fc.Arbitrary<Block> = sampleValueType.chain((valueType) =>
  fc
    .array(
      fc.tuple(
        deltaMs,
        fc.option(arbValueOf(valueType) as fc.Arbitrary<number | boolean>, {
          freq: 5,
          nil: null,
        }) as fc.Arbitrary<SampleValue>,
      ),
      { minLength: 1, maxLength: 32 },
    )
    .chain((samples) =>
      fc.record({
        channel: fc.integer({ min: 0, max: 127 }),
        valueType: fc.constant(valueType),
        deltasMs: fc.constant(samples.map((s) => s[0])),
        values: fc.constant(samples.map((s) => s[1])),
      }),
    ),
);

const channelRest = sampleValueType.chain((valueType) =>
  fc.record({
    unit: freeText(16),
    valueType: fc.constant(valueType),
    scaleExp:
      valueType === ValueType.BOOL || valueType === ValueType.F32 ? fc.constant(0) : fc.integer({ min: -9, max: 9 }),
    periodMs: u32,
  }),
);

const channels: fc.Arbitrary<ChannelDescriptor[]> = fc
  .integer({ min: 1, max: 64 })
  .chain((n) =>
    fc
      .tuple(
        fc.uniqueArray(fc.integer({ min: 0, max: 127 }), { minLength: n, maxLength: n }),
        fc.uniqueArray(channelKey, { minLength: n, maxLength: n }),
        fc.array(channelRest, { minLength: n, maxLength: n }),
      )
      .map(([indexes, keys, rests]) =>
        indexes
          .sort((a, b) => a - b)
          .map((index, i) => ({ index, key: keys[i] as string, ...(rests[i] as (typeof rests)[number]) })),
      ),
  );

const argValueType = fc.constantFrom<ValueTypeId>(0, 1, 2, 3, 4, 5, 6, 7, 9);
const commandArg: fc.Arbitrary<CommandArg> = argValueType.chain((valueType) =>
  fc.record({ key: channelKey, valueType: fc.constant(valueType), value: arbValueOf(valueType) }),
);

export const arbHello = fc.record({
  type: fc.constant('hello' as const),
  timeSynced: fc.boolean(),
  deviceId,
  firmwareVersion: freeText(64),
  maxProtocolVersion: fc.integer({ min: 1, max: 255 }),
  bootId: nonZeroU32,
  resetReason: fc.integer({ min: 0, max: 7 }),
  uptimeMs: u64,
  descriptorHash: u32,
  bufferedFrames: u32,
  droppedFrames: u32,
});

export const arbWelcome = fc.record({
  type: fc.constant('welcome' as const),
  acceptedVersion: fc.integer({ min: 1, max: 255 }),
  serverTimeMs: u64,
  lastAck: fc.option(fc.record({ bootId: u32, seq: u32 }), { nil: null }),
  descriptorsKnown: fc.boolean(),
  sampleIntervalMs: u32,
  heartbeatIntervalSec: fc.integer({ min: 1, max: 3600 }),
  maxFrameBytes: fc.integer({ min: 12, max: 4096 }),
});

export const arbDescriptors = fc.record({ type: fc.constant('descriptors' as const), channels });

export const arbTelemetry = fc.record({
  type: fc.constant('telemetry' as const),
  unsynced: fc.boolean(),
  bootId: nonZeroU32,
  seq: nonZeroU32,
  descriptorHash: u32,
  baseTime: u64,
  blocks: fc.array(block, { minLength: 1, maxLength: 10 }),
});

export const arbAck = fc.record({ type: fc.constant('ack' as const), bootId: u32, seq: u32 });

export const arbCommand = fc.record({
  type: fc.constant('command' as const),
  commandId: nonZeroU32,
  name: commandName,
  args: fc.array(commandArg, { maxLength: 16 }),
});

export const arbCommandAccepted = fc.record({ type: fc.constant('command_accepted' as const), commandId: nonZeroU32 });

export const arbCommandResult = fc.record({
  type: fc.constant('command_result' as const),
  commandId: nonZeroU32,
  status: fc.integer({ min: 0, max: 4 }),
  message: freeText(200),
});

export const arbError = fc.record({
  type: fc.constant('error' as const),
  fatal: fc.boolean(),
  code: u16,
  message: freeText(200),
});

/** Any valid message; TELEMETRY weighs most, as on the wire. */
export const arbMessage: fc.Arbitrary<Message> = fc.oneof(
  { weight: 2, arbitrary: arbHello },
  { weight: 1, arbitrary: arbWelcome },
  { weight: 2, arbitrary: arbDescriptors },
  { weight: 5, arbitrary: arbTelemetry },
  { weight: 1, arbitrary: arbAck },
  { weight: 2, arbitrary: arbCommand },
  { weight: 1, arbitrary: arbCommandAccepted },
  { weight: 1, arbitrary: arbCommandResult },
  { weight: 1, arbitrary: arbError },
);

/** True when a message holds an f32 NaN, the one value whose bits encoding canonicalises [PROTO-2.1]. */
export function hasNaN(m: Message): boolean {
  if (m.type === 'telemetry') return m.blocks.some((b) => b.values.some((v) => Number.isNaN(v)));
  if (m.type === 'command') return m.args.some((a) => Number.isNaN(a.value));
  return false;
}
