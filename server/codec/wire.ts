/**
 * Bounds-checked little-endian reader and writer. Every read checks its size against the end of the
 * payload before touching bytes ([PROTO-2.7]: a field past the end is TRUNCATED, never a RangeError).
 */
import { ProtocolError } from '../errors.ts';
import { Limits, type SampleValue, ValueType } from './types.ts';

// ignoreBOM: a leading U+FEFF is content, not a marker to strip; stripping it would make a string
// decode to something that re-encodes to different bytes (the encoding must stay canonical).
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const TWO_32 = 0x1_0000_0000;

// f32 decoding through a 4-byte scratch shared by an Int32Array and a Float32Array: the bits are
// assembled as an integer (little-endian [PROTO-2]) and stored once, then read back as a float. Both
// views use the host's byte order, so this is endian-independent; and it is cheaper than a DataView per
// frame. The scratch is not observable: nothing can run between the store and the load.
const F32_SCRATCH = new Float32Array(1);
const F32_BITS = new Int32Array(F32_SCRATCH.buffer);

/** Reads an IEEE 754 binary32 stored little-endian at `p` (bounds checked by the caller). */
export function f32At(b: Uint8Array, p: number): number {
  F32_BITS[0] =
    (b[p] as number) | ((b[p + 1] as number) << 8) | ((b[p + 2] as number) << 16) | ((b[p + 3] as number) << 24);
  return F32_SCRATCH[0] as number;
}

/**
 * Reads fields from `bytes[pos..end)`. Integers are assembled from bytes (little-endian [PROTO-2]);
 * this is the decoder's hot path, so reads are plain index arithmetic with one bounds check each.
 */
export class Reader {
  readonly bytes: Uint8Array;
  pos: number;
  readonly end: number;

  constructor(bytes: Uint8Array, start: number, end: number) {
    this.bytes = bytes;
    this.pos = start;
    this.end = end;
  }

  need(n: number, what: string): void {
    if (this.pos + n > this.end) throw truncated(what);
  }

  u8(what: string): number {
    if (this.pos >= this.end) throw truncated(what);
    return this.bytes[this.pos++] as number;
  }
  i8(what: string): number {
    return (this.u8(what) << 24) >> 24;
  }
  u16(what: string): number {
    const p = this.pos;
    if (p + 2 > this.end) throw truncated(what);
    const b = this.bytes;
    this.pos = p + 2;
    return (b[p] as number) | ((b[p + 1] as number) << 8);
  }
  i16(what: string): number {
    return (this.u16(what) << 16) >> 16;
  }
  /** The signed 32-bit integer at the current position; `>>> 0` of it is the u32. */
  private int32(what: string): number {
    const p = this.pos;
    if (p + 4 > this.end) throw truncated(what);
    const b = this.bytes;
    this.pos = p + 4;
    return (b[p] as number) | ((b[p + 1] as number) << 8) | ((b[p + 2] as number) << 16) | ((b[p + 3] as number) << 24);
  }
  u32(what: string): number {
    return this.int32(what) >>> 0;
  }
  i32(what: string): number {
    return this.int32(what);
  }
  f32(what: string): number {
    const p = this.pos;
    if (p + 4 > this.end) throw truncated(what);
    this.pos = p + 4;
    return f32At(this.bytes, p);
  }
  /** u64 as a JavaScript number; above 2^53−1 is BAD_FIELD [PROTO-2.1 table]. */
  u64(what: string): number {
    const lo = this.u32(what);
    const hi = this.u32(what);
    if (hi > 0x1fffff) throw new ProtocolError('BAD_FIELD', `${what} exceeds 2^53-1`);
    return hi * TWO_32 + lo;
  }
  bool8(what: string): boolean {
    const v = this.u8(what);
    if (v > 1) throw new ProtocolError('BAD_FIELD', `${what} must be 0 or 1`);
    return v === 1;
  }
  /** Canonical unsigned LEB128, at most 5 bytes, value ≤ 2^32−1 [PROTO-2.1]. */
  varint(what: string): number {
    const b = this.bytes;
    const end = this.end;
    let p = this.pos;
    // Fast path for 2-byte varints (sample tags of deltas 64 ms..8 s): no loop.
    if (p + 1 < end) {
      const b0 = b[p] as number;
      const b1 = b[p + 1] as number;
      if (b0 >= 0x80 && b1 < 0x80 && b1 !== 0) {
        this.pos = p + 2;
        return (b0 & 0x7f) | (b1 << 7);
      }
    }
    // Groups 1–4 carry 28 bits: int32 arithmetic is exact for them.
    let result = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      if (p >= end) throw truncated(what);
      const byte = b[p++] as number;
      result |= (byte & 0x7f) << shift;
      if (byte < 0x80) {
        if (byte === 0 && shift > 0) throw new ProtocolError('BAD_FIELD', `${what} is not canonical`);
        this.pos = p;
        return result;
      }
    }
    // Group 5 carries bits 28..31: anything above 0x0f would exceed 32 bits.
    if (p >= end) throw truncated(what);
    const byte = b[p++] as number;
    if (byte >= 0x80) throw new ProtocolError('BAD_FIELD', `${what} is longer than 5 bytes`);
    if (byte === 0) throw new ProtocolError('BAD_FIELD', `${what} is not canonical`);
    if (byte > 0x0f) throw new ProtocolError('BAD_FIELD', `${what} exceeds 32 bits`);
    this.pos = p;
    return result + byte * 0x1000_0000;
  }
  str8(what: string, maxBytes: number, check?: (s: string) => boolean): string {
    const n = this.u8(`${what} length`);
    if (n > maxBytes) throw new ProtocolError('BAD_FIELD', `${what} is longer than ${maxBytes} bytes`);
    this.need(n, what);
    let s: string;
    try {
      s = utf8.decode(this.bytes.subarray(this.pos, this.pos + n));
    } catch {
      throw new ProtocolError('BAD_FIELD', `${what} is not valid UTF-8`);
    }
    this.pos += n;
    if (check && !check(s)) throw new ProtocolError('BAD_FIELD', `${what} has characters outside its alphabet`);
    return s;
  }
  /** A sample or argument value of the given type [PROTO-4]. */
  value(valueType: number, what: string): number | boolean | string {
    switch (valueType) {
      case ValueType.BOOL:
        return this.bool8(what);
      case ValueType.I8:
        return this.i8(what);
      case ValueType.U8:
        return this.u8(what);
      case ValueType.I16:
        return this.i16(what);
      case ValueType.U16:
        return this.u16(what);
      case ValueType.I32:
        return this.i32(what);
      case ValueType.U32:
        return this.u32(what);
      case ValueType.F32:
        return this.f32(what);
      case ValueType.STRING:
        return this.str8(what, Limits.messageBytes, isFreeText);
      default:
        throw new ProtocolError('BAD_VALUE_TYPE', `${what} has unknown value type ${valueType}`);
    }
  }
}

function truncated(what: string): ProtocolError {
  return new ProtocolError('TRUNCATED', `${what} runs past the payload`);
}

export class Writer {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  pos = 0;

  constructor(capacity: number) {
    this.bytes = new Uint8Array(capacity);
    this.view = new DataView(this.bytes.buffer);
  }

  private room(n: number): void {
    if (this.pos + n > this.bytes.length) throw new ProtocolError('TOO_LARGE', 'encoded frame exceeds 4096 bytes');
  }
  u8(v: number, what: string): void {
    checkInt(v, 0, 0xff, what);
    this.room(1);
    this.view.setUint8(this.pos++, v);
  }
  i8(v: number, what: string): void {
    checkInt(v, -0x80, 0x7f, what);
    this.room(1);
    this.view.setInt8(this.pos++, v);
  }
  u16(v: number, what: string): void {
    checkInt(v, 0, 0xffff, what);
    this.room(2);
    this.view.setUint16(this.pos, v, true);
    this.pos += 2;
  }
  i16(v: number, what: string): void {
    checkInt(v, -0x8000, 0x7fff, what);
    this.room(2);
    this.view.setInt16(this.pos, v, true);
    this.pos += 2;
  }
  u32(v: number, what: string): void {
    checkInt(v, 0, 0xffffffff, what);
    this.room(4);
    this.view.setUint32(this.pos, v, true);
    this.pos += 4;
  }
  i32(v: number, what: string): void {
    checkInt(v, -0x80000000, 0x7fffffff, what);
    this.room(4);
    this.view.setInt32(this.pos, v, true);
    this.pos += 4;
  }
  f32(v: number, what: string): void {
    if (typeof v !== 'number') throw new ProtocolError('BAD_FIELD', `${what} must be a number`);
    this.room(4);
    if (Number.isNaN(v)) this.view.setUint32(this.pos, 0x7fc00000, true);
    else this.view.setFloat32(this.pos, v, true);
    this.pos += 4;
  }
  u64(v: number, what: string): void {
    checkInt(v, 0, MAX_SAFE, what);
    this.room(8);
    this.view.setUint32(this.pos, v % TWO_32, true);
    this.view.setUint32(this.pos + 4, Math.floor(v / TWO_32), true);
    this.pos += 8;
  }
  bool8(v: boolean, what: string): void {
    if (typeof v !== 'boolean') throw new ProtocolError('BAD_FIELD', `${what} must be a boolean`);
    this.u8(v ? 1 : 0, what);
  }
  varint(v: number, what: string): void {
    checkInt(v, 0, 0xffffffff, what);
    let rest = v;
    while (rest >= 0x80) {
      this.room(1);
      this.bytes[this.pos++] = (rest % 128) | 0x80;
      rest = Math.floor(rest / 128);
    }
    this.room(1);
    this.bytes[this.pos++] = rest;
  }
  str8(s: string, what: string, maxBytes: number, check?: (s: string) => boolean): void {
    if (typeof s !== 'string') throw new ProtocolError('BAD_FIELD', `${what} must be a string`);
    // TextEncoder would silently turn a lone surrogate into U+FFFD: the frame would not decode to `s`.
    if (LONE_SURROGATE.test(s)) throw new ProtocolError('BAD_FIELD', `${what} is not well-formed Unicode`);
    if (check && !check(s)) throw new ProtocolError('BAD_FIELD', `${what} has characters outside its alphabet`);
    const encoded = utf8Encoder.encode(s);
    if (encoded.length > maxBytes) throw new ProtocolError('BAD_FIELD', `${what} is longer than ${maxBytes} bytes`);
    this.u8(encoded.length, `${what} length`);
    this.room(encoded.length);
    this.bytes.set(encoded, this.pos);
    this.pos += encoded.length;
  }
  value(valueType: number, v: SampleValue | string, what: string): void {
    switch (valueType) {
      case ValueType.BOOL:
        this.bool8(v as boolean, what);
        break;
      case ValueType.I8:
        this.i8(v as number, what);
        break;
      case ValueType.U8:
        this.u8(v as number, what);
        break;
      case ValueType.I16:
        this.i16(v as number, what);
        break;
      case ValueType.U16:
        this.u16(v as number, what);
        break;
      case ValueType.I32:
        this.i32(v as number, what);
        break;
      case ValueType.U32:
        this.u32(v as number, what);
        break;
      case ValueType.F32:
        this.f32(v as number, what);
        break;
      case ValueType.STRING:
        this.str8(v as string, what, Limits.messageBytes, isFreeText);
        break;
      default:
        throw new ProtocolError('BAD_VALUE_TYPE', `${what} has unknown value type ${valueType}`);
    }
  }
}

function checkInt(v: number, min: number, max: number, what: string): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new ProtocolError('BAD_FIELD', `${what} must be an integer in ${min}..${max}`);
  }
}

// Identifier alphabets [PROTO-2.8].
const DEVICE_ID = /^[A-Za-z0-9._-]{1,64}$/;
const CHANNEL_KEY = /^[a-z][a-z0-9_]{0,31}$/;
const COMMAND_NAME = /^[a-z0-9_]{1,32}$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

// With the `u` flag a surrogate pair is one code point, so this matches unpaired surrogates only.
const LONE_SURROGATE = /\p{Cs}/u;

export const isDeviceId = (s: string): boolean => DEVICE_ID.test(s);
export const isChannelKey = (s: string): boolean => CHANNEL_KEY.test(s);
export const isCommandName = (s: string): boolean => COMMAND_NAME.test(s);
export const isFreeText = (s: string): boolean => !CONTROL.test(s);
