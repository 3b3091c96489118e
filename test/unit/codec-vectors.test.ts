/**
 * The golden vectors (test/vectors/protocol-v1.json) against the codec, and against an independent
 * encoder and envelope checker written from docs/protocol.md alone (Buffer writes, bitwise CRC-32), so
 * that a codec bug cannot bless itself through the generator.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame, type Message } from '../../server/codec/index.ts';
import { ERRORS, type ErrorCode, ProtocolError } from '../../server/errors.ts';
import { renderVectors, VECTORS_PATH, type VectorFile } from '../vectors/generate.ts';

const text = readFileSync(VECTORS_PATH, 'utf8');
const file = JSON.parse(text) as VectorFile;
const bytesOf = (hex: string): Buffer => Buffer.from(hex, 'hex');

// ───────────── JSON conventions (test/vectors/README.md) ─────────────

const SPECIAL: Record<string, number> = {
  NaN: Number.NaN,
  Infinity: Number.POSITIVE_INFINITY,
  '-Infinity': Number.NEGATIVE_INFINITY,
  '-0': -0,
};
const F32 = 7;
const f32FromJson = (v: unknown): unknown => (typeof v === 'string' && v in SPECIAL ? SPECIAL[v] : v);

/** `fields` → message: the f32 strings apply to f32 values only, never to string arguments. */
function fromJson(fields: unknown): Message {
  const m = structuredClone(fields) as Record<string, unknown>;
  if (m.type === 'telemetry') {
    for (const block of m.blocks as { valueType: number; values: unknown[] }[]) {
      if (block.valueType === F32) block.values = block.values.map(f32FromJson);
    }
  }
  if (m.type === 'command') {
    for (const arg of m.args as { valueType: number; value: unknown }[]) {
      if (arg.valueType === F32) arg.value = f32FromJson(arg.value);
    }
  }
  return m as unknown as Message;
}

// ───────────── independent implementation, from docs/protocol.md ─────────────

/** CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), one bit at a time. */
function crc32Bitwise(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}

const TYPE_ID: Record<string, number> = {
  hello: 1,
  welcome: 2,
  descriptors: 3,
  telemetry: 4,
  ack: 5,
  command: 6,
  command_accepted: 7,
  command_result: 8,
  error: 9,
};
/** Flag bits each type defines [PROTO-3.x]. */
const DEFINED_FLAGS: Record<number, number> = { 1: 0x01, 2: 0x03, 3: 0, 4: 0x01, 5: 0, 6: 0, 7: 0, 8: 0, 9: 0x01 };

const u8 = (v: number) => Buffer.of(v);
const i8 = (v: number) => {
  const b = Buffer.alloc(1);
  b.writeInt8(v);
  return b;
};
const u16 = (v: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return b;
};
const i16 = (v: number) => {
  const b = Buffer.alloc(2);
  b.writeInt16LE(v);
  return b;
};
const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
};
const i32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v);
  return b;
};
const u64 = (v: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};
const f32 = (v: number) => {
  const b = Buffer.alloc(4);
  if (Number.isNaN(v)) b.writeUInt32LE(0x7fc00000);
  else b.writeFloatLE(v);
  return b;
};
const str8 = (s: string) => {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([u8(b.length), b]);
};
function varint(v: number): Buffer {
  const out: number[] = [];
  let rest = BigInt(v);
  do {
    const low = Number(rest & 0x7fn);
    rest >>= 7n;
    out.push(rest > 0n ? low | 0x80 : low);
  } while (rest > 0n);
  return Buffer.from(out);
}
function value(type: number, v: unknown): Buffer {
  const n = v as number;
  switch (type) {
    case 0:
      return u8(v === true ? 1 : 0);
    case 1:
      return i8(n);
    case 2:
      return u8(n);
    case 3:
      return i16(n);
    case 4:
      return u16(n);
    case 5:
      return i32(n);
    case 6:
      return u32(n);
    case 7:
      return f32(n);
    case 9:
      return str8(v as string);
    default:
      throw new Error(`no value type ${type}`);
  }
}

/** Encodes a message into payload bytes and flags, reading the field tables of docs/protocol.md §3. */
function independentPayload(m: Message): { flags: number; payload: Buffer } {
  const parts: Buffer[] = [];
  let flags = 0;
  switch (m.type) {
    case 'hello':
      flags = m.timeSynced ? 1 : 0;
      parts.push(str8(m.deviceId), str8(m.firmwareVersion), u8(m.maxProtocolVersion), u32(m.bootId));
      parts.push(u8(m.resetReason), u64(m.uptimeMs), u32(m.descriptorHash), u32(m.bufferedFrames));
      parts.push(u32(m.droppedFrames));
      break;
    case 'welcome':
      flags = (m.lastAck ? 1 : 0) | (m.descriptorsKnown ? 2 : 0);
      parts.push(u8(m.acceptedVersion), u64(m.serverTimeMs), u32(m.lastAck?.bootId ?? 0), u32(m.lastAck?.seq ?? 0));
      parts.push(u32(m.sampleIntervalMs), u16(m.heartbeatIntervalSec), u16(m.maxFrameBytes));
      break;
    case 'descriptors':
      parts.push(u8(m.channels.length));
      for (const c of m.channels) {
        parts.push(u8(c.index), str8(c.key), str8(c.unit), u8(c.valueType), i8(c.scaleExp), u32(c.periodMs));
      }
      break;
    case 'telemetry':
      flags = m.unsynced ? 1 : 0;
      parts.push(u32(m.bootId), u32(m.seq), u32(m.descriptorHash), u64(m.baseTime), u8(m.blocks.length));
      for (const b of m.blocks) {
        parts.push(u8(b.channel), u8(b.valueType), u8(b.values.length));
        b.values.forEach((v, i) => {
          const missing = v === null;
          parts.push(varint((b.deltasMs[i] as number) * 2 + (missing ? 1 : 0)));
          if (!missing) parts.push(value(b.valueType, v));
        });
      }
      break;
    case 'ack':
      parts.push(u32(m.bootId), u32(m.seq));
      break;
    case 'command':
      parts.push(u32(m.commandId), str8(m.name), u8(m.args.length));
      for (const a of m.args) parts.push(str8(a.key), u8(a.valueType), value(a.valueType, a.value));
      break;
    case 'command_accepted':
      parts.push(u32(m.commandId));
      break;
    case 'command_result':
      parts.push(u32(m.commandId), u8(m.status), str8(m.message));
      break;
    case 'error':
      flags = m.fatal ? 1 : 0;
      parts.push(u16(m.code), str8(m.message));
      break;
  }
  return { flags, payload: Buffer.concat(parts) };
}

function independentFrame(m: Message): Buffer {
  const { flags, payload } = independentPayload(m);
  const head = Buffer.concat([Buffer.from('ES', 'ascii'), u8(1), u8(TYPE_ID[m.type] as number), u8(flags), u8(0)]);
  const body = Buffer.concat([head, u16(payload.length), payload]);
  return Buffer.concat([body, u32(crc32Bitwise(body))]);
}

/** Steps 1–8 of [PROTO-2.7]: the envelope's verdict, or 'payload' when only payload decoding can fail. */
function envelopeVerdict(b: Buffer): ErrorCode | 'payload' {
  if (b.length < 8) return 'TRUNCATED';
  if (b[0] !== 0x45 || b[1] !== 0x53) return 'BAD_MAGIC';
  if (b[2] !== 1) return 'BAD_VERSION';
  const total = 12 + b.readUInt16LE(6);
  if (b.length > 4096 || total > 4096) return 'TOO_LARGE';
  if (b.length < total) return 'TRUNCATED';
  if (b.length > total) return 'BAD_LENGTH';
  if (crc32Bitwise(b.subarray(0, total - 4)) !== b.readUInt32LE(total - 4)) return 'BAD_CRC';
  const allowed = DEFINED_FLAGS[b[3] as number];
  if (allowed === undefined) return 'UNKNOWN_TYPE';
  if (b[5] !== 0 || ((b[4] as number) & ~allowed) !== 0) return 'BAD_FLAGS';
  return 'payload';
}

function decodeError(bytes: Uint8Array): unknown {
  try {
    decodeFrame(bytes);
  } catch (err) {
    return err;
  }
  return undefined;
}

// ───────────── tests ─────────────

describe('independent reference implementation', () => {
  it('computes the standard CRC-32 check value', () => {
    expect(crc32Bitwise(Buffer.from('123456789', 'ascii'))).toBe(0xcbf43926);
  });

  it('matches a frame written out by hand', () => {
    // ACK bootId 0x5EEDB007, seq 42: magic "ES", version 1, type 5, flags 0, reserved 0, length 8,
    // payload (LE), then the CRC-32 of the 16 bytes before it.
    const hand = Buffer.from('4553' + '01' + '05' + '00' + '00' + '0800' + '07b0ed5e' + '2a000000' + '768c497c', 'hex');
    expect(crc32Bitwise(hand.subarray(0, 16))).toBe(hand.readUInt32LE(16));
    const ack = file.valid.find((v) => v.name === 'ack-typical');
    expect(ack?.hex).toBe(hand.toString('hex'));
    expect(decodeFrame(hand)).toEqual({ type: 'ack', bootId: 0x5eedb007, seq: 42 });
  });
});

describe('vector file', () => {
  it('is what the generator produces (regenerate with npx tsx test/vectors/generate.ts)', () => {
    expect(text).toBe(renderVectors());
  });

  it('has the schema the firmware host tests read', () => {
    expect(file.protocol).toBe(1);
    expect(Object.keys(file)).toEqual(['protocol', 'conventions', 'valid', 'malformed']);
    for (const v of file.valid) {
      expect(Object.keys(v).filter((k) => k !== 'description')).toEqual(['name', 'fields', 'hex']);
      expect(v.hex).toMatch(/^([0-9a-f]{2})+$/);
    }
    for (const v of file.malformed) {
      expect(Object.keys(v)).toEqual(['name', 'description', 'hex', 'error']);
      expect(v.hex).toMatch(/^([0-9a-f]{2})*$/);
    }
    const names = [...file.valid, ...file.malformed].map((v) => v.name);
    expect(new Set(names).size).toBe(names.length);
    expect(names.length).toBeGreaterThanOrEqual(40);
  });

  it('covers every message type, every sample value type, and every frame-layer error code', () => {
    const types = new Set(file.valid.map((v) => (v.fields as { type: string }).type));
    expect([...types].sort()).toEqual(Object.keys(TYPE_ID).sort());
    const valueTypes = new Set<number>();
    for (const v of file.valid) {
      const m = fromJson(v.fields);
      if (m.type === 'telemetry') for (const b of m.blocks) valueTypes.add(b.valueType);
      if (m.type === 'command') for (const a of m.args) valueTypes.add(a.valueType);
    }
    expect([...valueTypes].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 9]);
    const frameCodes = Object.entries(ERRORS)
      .filter(([, spec]) => spec.layer === 'frame')
      .map(([code]) => code);
    expect([...new Set(file.malformed.map((v) => v.error))].sort()).toEqual(frameCodes.sort());
  });

  it('includes a frame of exactly 4096 bytes', () => {
    expect(file.valid.some((v) => v.hex.length === 2 * 4096)).toBe(true);
  });

  it('announces in TELEMETRY the CRC-32 of the DESCRIPTORS payload [PROTO-3.3.1]', () => {
    const descriptors = bytesOf(file.valid.find((v) => v.name === 'descriptors-typical')?.hex ?? '');
    const payload = descriptors.subarray(8, descriptors.length - 4);
    const telemetry = fromJson(file.valid.find((v) => v.name === 'telemetry-typical-8x4')?.fields);
    expect(telemetry.type === 'telemetry' && telemetry.descriptorHash).toBe(crc32Bitwise(payload));
  });
});

describe.each(file.valid)('valid vector $name', (vector) => {
  const bytes = bytesOf(vector.hex);
  const message = fromJson(vector.fields);

  it('decodes to its fields', () => {
    expect(decodeFrame(bytes)).toEqual(message);
  });

  it('re-encodes byte-identically', () => {
    expect(Buffer.from(encodeFrame(decodeFrame(bytes))).toString('hex')).toBe(vector.hex);
    expect(Buffer.from(encodeFrame(message)).toString('hex')).toBe(vector.hex);
  });

  it('matches the independent encoder', () => {
    expect(independentFrame(message).toString('hex')).toBe(vector.hex);
  });
});

describe.each(file.malformed)('malformed vector $name', (vector) => {
  const bytes = bytesOf(vector.hex);

  it(`fails with ${vector.error}`, () => {
    const err = decodeError(bytes);
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe(vector.error);
  });

  it('has the fault the independent envelope checker places at the same step', () => {
    const verdict = envelopeVerdict(bytes);
    if (verdict === 'payload') {
      // Only payload decoding (step 9) may fail: the envelope, length and CRC are right.
      expect(['TRUNCATED', 'BAD_FIELD', 'BAD_VALUE_TYPE', 'BAD_LENGTH']).toContain(vector.error);
    } else {
      expect(verdict).toBe(vector.error);
    }
  });
});
