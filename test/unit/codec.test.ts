/** Targeted codec tests: descriptor hash, fixed-point scaling, encode-side validation, NaN, strings. */
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc32 as codecCrc32, SHORT_INPUT_BYTES } from '../../server/codec/crc32.ts';
import {
  type ChannelDescriptor,
  decodeFrame,
  descriptorHash,
  descriptorPayload,
  encodeFrame,
  type Message,
  scaledValue,
  type Telemetry,
  ValueType,
} from '../../server/codec/index.ts';
import { type ErrorCode, ProtocolError } from '../../server/errors.ts';
import { TYPICAL_CHANNELS, TYPICAL_TELEMETRY } from '../vectors/generate.ts';

function codeOf(fn: () => unknown): ErrorCode | 'no error' | 'not a ProtocolError' {
  try {
    fn();
  } catch (err) {
    return err instanceof ProtocolError ? err.code : 'not a ProtocolError';
  }
  return 'no error';
}

/** Rewrites the CRC after an edit. */
function refit(bytes: Uint8Array): Uint8Array {
  const out = Uint8Array.from(bytes);
  new DataView(out.buffer).setUint32(out.length - 4, crc32(out.subarray(0, out.length - 4)), true);
  return out;
}

const tel = (blocks: Telemetry['blocks'], extra: Partial<Telemetry> = {}): Telemetry => ({
  ...TYPICAL_TELEMETRY,
  blocks,
  ...extra,
});
const f32Block = (values: Telemetry['blocks'][number]['values']) => ({
  channel: 2,
  valueType: ValueType.F32,
  deltasMs: values.map((_, i) => i),
  values,
});

describe('CRC-32 [PROTO-2.6]', () => {
  it('equals zlib.crc32 on any range, on both sides of the JavaScript/zlib switch', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 2 * SHORT_INPUT_BYTES }),
        fc.nat(16),
        fc.nat(16),
        (bytes, cutStart, cutEnd) => {
          const start = Math.min(cutStart, bytes.length);
          const end = Math.max(start, bytes.length - cutEnd);
          expect(codecCrc32(bytes, start, end)).toBe(crc32(bytes.subarray(start, end)));
        },
      ),
      { numRuns: 500 },
    );
    expect(codecCrc32(Buffer.from('123456789'))).toBe(0xcbf43926);
  });
});

describe('descriptor hash [PROTO-3.3.1]', () => {
  it('is the CRC-32 of the DESCRIPTORS frame payload', () => {
    const frame = encodeFrame({ type: 'descriptors', channels: TYPICAL_CHANNELS });
    const payload = frame.subarray(8, frame.length - 4);
    expect(Buffer.from(descriptorPayload(TYPICAL_CHANNELS))).toEqual(Buffer.from(payload));
    expect(descriptorHash(TYPICAL_CHANNELS)).toBe(crc32(payload));
  });

  it('changes when any descriptor field changes, so a renamed unit or rescaled channel is a new set', () => {
    const [first, ...rest] = TYPICAL_CHANNELS as [ChannelDescriptor, ...ChannelDescriptor[]];
    const variants: ChannelDescriptor[][] = [
      [{ ...first, unit: 'K' }, ...rest],
      [{ ...first, scaleExp: -1 }, ...rest],
      [{ ...first, periodMs: 2000 }, ...rest],
      [{ ...first, key: 'temp_k' }, ...rest],
      [...rest, { ...first, index: 8 }], // same channel at another index
    ];
    const hashes = new Set([descriptorHash(TYPICAL_CHANNELS), ...variants.map(descriptorHash)]);
    expect(hashes.size).toBe(1 + variants.length);
  });
});

describe('scaledValue [PROTO-4]', () => {
  it('gives exactly the decimal value of a fixed-point reading', () => {
    expect(scaledValue(2345, -2)).toBe(23.45);
    expect(scaledValue(-2345, -2)).toBe(-23.45);
    expect(scaledValue(3712, -3)).toBe(3.712);
    expect(scaledValue(456, -1)).toBe(45.6);
    expect(scaledValue(1, -9)).toBe(1e-9);
    expect(scaledValue(5, 3)).toBe(5000);
    expect(scaledValue(-7, 9)).toBe(-7e9);
    expect(scaledValue(2345, 0)).toBe(2345);
    // Multiplying by 10^-n instead is off by an ulp for many readings, e.g. 3 × 10^-1.
    expect(scaledValue(3, -1)).toBe(0.3);
    expect(3 * 10 ** -1).not.toBe(0.3);
  });
});

describe('f32 NaN [PROTO-2.1]', () => {
  it('encodes every NaN as the canonical 0x7FC00000', () => {
    const negativeNaN = new Float32Array(new Uint32Array([0xffc00001]).buffer)[0] as number;
    expect(Number.isNaN(negativeNaN)).toBe(true);
    for (const nan of [Number.NaN, 0 / 0, negativeNaN]) {
      const frame = encodeFrame(tel([f32Block([nan])]));
      const valueAt = frame.length - 4 - 4; // the only value is the last field
      expect(Buffer.from(frame.subarray(valueAt, valueAt + 4)).toString('hex')).toBe('0000c07f');
    }
  });

  it('decodes a non-canonical NaN as NaN, and re-encodes it canonically', () => {
    const frame = encodeFrame(tel([f32Block([1.5])]));
    const valueAt = frame.length - 8;
    const edited = Uint8Array.from(frame);
    edited.set([0x01, 0x00, 0xc0, 0xff], valueAt); // 0xFFC00001: negative quiet NaN with payload
    const decoded = decodeFrame(refit(edited));
    expect(decoded.type === 'telemetry' && decoded.blocks[0]?.values[0]).toBeNaN();
    const again = encodeFrame(decoded);
    expect(Buffer.from(again.subarray(valueAt, valueAt + 4)).toString('hex')).toBe('0000c07f');
  });

  it('keeps -0 and the infinities as values, not missing samples', () => {
    const decoded = decodeFrame(encodeFrame(tel([f32Block([-0, Number.POSITIVE_INFINITY, null])])));
    expect(decoded.type === 'telemetry' && decoded.blocks[0]?.values).toEqual([-0, Number.POSITIVE_INFINITY, null]);
    expect(Object.is(decoded.type === 'telemetry' && decoded.blocks[0]?.values[0], -0)).toBe(true);
  });
});

describe('strings [PROTO-2.1, PROTO-2.8]', () => {
  const error = (message: string): Message => ({ type: 'error', fatal: false, code: 300, message });

  it('keeps a leading U+FEFF: it is content, not a byte-order mark to strip', () => {
    const frame = encodeFrame(error('\uFEFFhi'));
    expect(Buffer.from(frame.subarray(10, 10 + 6)).toString('hex')).toBe('05efbbbf6869');
    expect(decodeFrame(frame)).toEqual(error('\uFEFFhi'));
  });

  it('counts limits in UTF-8 bytes, not characters', () => {
    expect(codeOf(() => encodeFrame(error('é'.repeat(100))))).toBe('no error'); // 200 bytes
    expect(codeOf(() => encodeFrame(error(`${'é'.repeat(100)}x`)))).toBe('BAD_FIELD'); // 201 bytes
  });

  it('refuses to encode a lone surrogate, which UTF-8 cannot carry', () => {
    expect(codeOf(() => encodeFrame(error('a\uD800b')))).toBe('BAD_FIELD');
    expect(codeOf(() => encodeFrame(error('a\uDC00')))).toBe('BAD_FIELD');
    expect(codeOf(() => encodeFrame(error('🚀')))).toBe('no error'); // a proper surrogate pair
  });
});

describe('encodeFrame results', () => {
  it('are independent copies: encoding another frame does not change an earlier result', () => {
    const first = encodeFrame(TYPICAL_TELEMETRY);
    const snapshot = Buffer.from(first).toString('hex');
    encodeFrame({ type: 'ack', bootId: 1, seq: 2 });
    expect(() => encodeFrame({ type: 'ack', bootId: 0, seq: -1 })).toThrow(ProtocolError);
    expect(Buffer.from(first).toString('hex')).toBe(snapshot);
    expect(decodeFrame(encodeFrame({ type: 'ack', bootId: 1, seq: 2 }))).toEqual({ type: 'ack', bootId: 1, seq: 2 });
  });
});

describe('encode-side validation', () => {
  const hello: Message = {
    type: 'hello',
    timeSynced: true,
    deviceId: 'dev-1',
    firmwareVersion: '1.0',
    maxProtocolVersion: 1,
    bootId: 1,
    resetReason: 0,
    uptimeMs: 0,
    descriptorHash: 0,
    bufferedFrames: 0,
    droppedFrames: 0,
  };
  const u8Block = { channel: 1, valueType: ValueType.U8, deltasMs: [0], values: [1] } as Telemetry['blocks'][number];
  const cases: [string, Message, ErrorCode][] = [
    ['device id with a space', { ...hello, deviceId: 'dev 1' }, 'BAD_FIELD'],
    ['empty device id', { ...hello, deviceId: '' }, 'BAD_FIELD'],
    ['bootId 0', { ...hello, bootId: 0 }, 'BAD_FIELD'],
    ['resetReason 8', { ...hello, resetReason: 8 }, 'BAD_FIELD'],
    ['uptime 2^53', { ...hello, uptimeMs: 2 ** 53 }, 'BAD_FIELD'],
    ['negative uptime', { ...hello, uptimeMs: -1 }, 'BAD_FIELD'],
    ['fractional u32', { ...hello, bufferedFrames: 1.5 }, 'BAD_FIELD'],
    ['u32 above 2^32-1', { ...hello, droppedFrames: 2 ** 32 }, 'BAD_FIELD'],
    ['65-byte firmware version', { ...hello, firmwareVersion: 'v'.repeat(65) }, 'BAD_FIELD'],
    ['no blocks', tel([]), 'BAD_FIELD'],
    ['129 blocks', tel(Array.from({ length: 129 }, () => u8Block)), 'BAD_FIELD'],
    ['seq 0', tel([u8Block], { seq: 0 }), 'BAD_FIELD'],
    ['channel 128', tel([{ ...u8Block, channel: 128 }]), 'BAD_FIELD'],
    ['delta 2^31', tel([{ ...u8Block, deltasMs: [2 ** 31] }]), 'BAD_FIELD'],
    ['negative delta', tel([{ ...u8Block, deltasMs: [-1] }]), 'BAD_FIELD'],
    ['fractional delta', tel([{ ...u8Block, deltasMs: [0.5] }]), 'BAD_FIELD'],
    ['256 samples', tel([{ ...u8Block, deltasMs: Array(256).fill(0), values: Array(256).fill(1) }]), 'BAD_FIELD'],
    ['more deltas than values', tel([{ ...u8Block, deltasMs: [0, 1] }]), 'BAD_FIELD'],
    ['u8 value 256', tel([{ ...u8Block, values: [256] }]), 'BAD_FIELD'],
    ['i8 value 128', tel([{ ...u8Block, valueType: ValueType.I8, values: [128] }]), 'BAD_FIELD'],
    ['i16 value 1.5', tel([{ ...u8Block, valueType: ValueType.I16, values: [1.5] }]), 'BAD_FIELD'],
    ['bool given 1', tel([{ ...u8Block, valueType: ValueType.BOOL, values: [1] }]), 'BAD_FIELD'],
    ['u8 given true', tel([{ ...u8Block, values: [true] }]), 'BAD_FIELD'],
    ['block of type string', tel([{ ...u8Block, valueType: 9 as never }]), 'BAD_VALUE_TYPE'],
    ['block of type 8', tel([{ ...u8Block, valueType: 8 as never }]), 'BAD_VALUE_TYPE'],
    [
      'frame over 4096 bytes',
      tel(
        Array.from({ length: 9 }, (_, i) => ({
          ...u8Block,
          channel: i,
          deltasMs: Array(255).fill(0),
          values: Array(255).fill(1),
        })),
      ),
      'TOO_LARGE',
    ],
    ['no channels', { type: 'descriptors', channels: [] }, 'BAD_FIELD'],
    [
      'unsorted channels',
      { type: 'descriptors', channels: [TYPICAL_CHANNELS[1], TYPICAL_CHANNELS[0]] as ChannelDescriptor[] },
      'BAD_FIELD',
    ],
    [
      'duplicate keys',
      {
        type: 'descriptors',
        channels: [TYPICAL_CHANNELS[0], { ...TYPICAL_CHANNELS[1], key: 'temp_c' }] as ChannelDescriptor[],
      },
      'BAD_FIELD',
    ],
    [
      'scale on f32',
      { type: 'descriptors', channels: [{ ...(TYPICAL_CHANNELS[2] as ChannelDescriptor), scaleExp: -1 }] },
      'BAD_FIELD',
    ],
    [
      'descriptor of type string',
      { type: 'descriptors', channels: [{ ...(TYPICAL_CHANNELS[0] as ChannelDescriptor), valueType: 9 as never }] },
      'BAD_VALUE_TYPE',
    ],
    [
      'unit with a newline',
      { type: 'descriptors', channels: [{ ...(TYPICAL_CHANNELS[0] as ChannelDescriptor), unit: '°C\n' }] },
      'BAD_FIELD',
    ],
    ['commandId 0', { type: 'command', commandId: 0, name: 'reboot', args: [] }, 'BAD_FIELD'],
    ['command name with a capital', { type: 'command', commandId: 1, name: 'Reboot', args: [] }, 'BAD_FIELD'],
    [
      '17 arguments',
      {
        type: 'command',
        commandId: 1,
        name: 'x',
        args: Array.from({ length: 17 }, (_, i) => ({ key: `a${i}`, valueType: ValueType.U8, value: 1 })),
      },
      'BAD_FIELD',
    ],
    [
      'argument of type 8',
      { type: 'command', commandId: 1, name: 'x', args: [{ key: 'a', valueType: 8 as never, value: 1 }] },
      'BAD_VALUE_TYPE',
    ],
    [
      'string argument given a number',
      { type: 'command', commandId: 1, name: 'x', args: [{ key: 'a', valueType: ValueType.STRING, value: 1 }] },
      'BAD_FIELD',
    ],
    ['accepted commandId 0', { type: 'command_accepted', commandId: 0 }, 'BAD_FIELD'],
    ['result status 5', { type: 'command_result', commandId: 1, status: 5, message: '' }, 'BAD_FIELD'],
    ['error code 65536', { type: 'error', fatal: true, code: 65536, message: '' }, 'BAD_FIELD'],
    [
      'heartbeat 0',
      {
        type: 'welcome',
        acceptedVersion: 1,
        serverTimeMs: 0,
        lastAck: null,
        descriptorsKnown: false,
        sampleIntervalMs: 0,
        heartbeatIntervalSec: 0,
        maxFrameBytes: 4096,
      },
      'BAD_FIELD',
    ],
    [
      'maxFrameBytes 4097',
      {
        type: 'welcome',
        acceptedVersion: 1,
        serverTimeMs: 0,
        lastAck: null,
        descriptorsKnown: false,
        sampleIntervalMs: 0,
        heartbeatIntervalSec: 30,
        maxFrameBytes: 4097,
      },
      'BAD_FIELD',
    ],
    ['unknown message type', { type: 'nope' } as unknown as Message, 'UNKNOWN_TYPE'],
  ];

  it.each(cases)('refuses %s with %s', (_name, message, code) => {
    expect(codeOf(() => encodeFrame(message))).toBe(code);
  });

  it('accepts the boundary values next to each refusal', () => {
    const ok: Message[] = [
      { ...hello, uptimeMs: Number.MAX_SAFE_INTEGER, resetReason: 7, deviceId: 'd'.repeat(64) },
      tel([{ ...u8Block, deltasMs: [2 ** 31 - 1] }]),
      tel([{ ...u8Block, deltasMs: Array(255).fill(0), values: Array(255).fill(255) }]),
      tel(Array.from({ length: 128 }, (_, i) => ({ ...u8Block, channel: i }))),
      { type: 'error', fatal: true, code: 65535, message: 'x'.repeat(200) },
    ];
    for (const message of ok) expect(decodeFrame(encodeFrame(message))).toEqual(message);
  });
});

describe('errors carry the catalogue codes', () => {
  it('gives the close and wire codes of the catalogue (docs/errors.md)', () => {
    let err: unknown;
    try {
      decodeFrame(new Uint8Array(5000));
    } catch (e) {
      err = e;
    }
    // 5000 zero bytes: the magic is checked before the size [PROTO-2.7].
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe('BAD_MAGIC');
    expect((err as ProtocolError).closeCode).toBe(1002);
    const big = new Uint8Array(5000);
    big.set([0x45, 0x53, 1]);
    const tooLarge = (() => {
      try {
        decodeFrame(big);
      } catch (e) {
        return e as ProtocolError;
      }
    })();
    expect([tooLarge?.code, tooLarge?.closeCode, tooLarge?.wireCode]).toEqual(['TOO_LARGE', 1009, 103]);
  });
});
