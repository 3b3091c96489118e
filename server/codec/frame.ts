/**
 * Encode and decode protocol v1 frames. Pure: no I/O, no clock, no logger. Decoding either returns a
 * message or throws a ProtocolError with a catalogue code; it never throws anything else [PROTO-2.7].
 */
import { ProtocolError } from '../errors.ts';
import { crc32 } from './crc32.ts';
import {
  type Block,
  type ChannelDescriptor,
  type Command,
  type CommandArg,
  type CommandResult,
  CRC_BYTES,
  type Descriptors,
  Flags,
  HEADER_BYTES,
  type Hello,
  Limits,
  MAGIC,
  MAX_FRAME_BYTES,
  type Message,
  MessageType,
  PROTOCOL_VERSION,
  type SampleValue,
  type SampleValueTypeId,
  type Telemetry,
  ValueType,
  type Welcome,
} from './types.ts';
import { f32At, isChannelKey, isCommandName, isDeviceId, isFreeText, Reader, Writer } from './wire.ts';

/** Flag bits defined per type; everything else must be 0 [PROTO-2.4]. */
export const ALLOWED_FLAGS: Readonly<Record<number, number>> = {
  [MessageType.HELLO]: Flags.HELLO_TIME_SYNCED,
  [MessageType.WELCOME]: Flags.WELCOME_HAS_LAST_ACK | Flags.WELCOME_DESCRIPTORS_KNOWN,
  [MessageType.DESCRIPTORS]: 0,
  [MessageType.TELEMETRY]: Flags.TELEMETRY_UNSYNCED,
  [MessageType.ACK]: 0,
  [MessageType.COMMAND]: 0,
  [MessageType.COMMAND_ACCEPTED]: 0,
  [MessageType.COMMAND_RESULT]: 0,
  [MessageType.ERROR]: Flags.ERROR_FATAL,
};

// The sample loop compares against module-level constants, not `ValueType.X`: V8 compiles a module
// `const` number into the machine code as an immediate, whereas a property of an imported object is a
// load plus a map check each time it is evaluated (each case of the switch, for every sample).
const BOOL = ValueType.BOOL;
const I8 = ValueType.I8;
const U8 = ValueType.U8;
const I16 = ValueType.I16;
const U16 = ValueType.U16;
const I32 = ValueType.I32;
const U32 = ValueType.U32;
const F32 = ValueType.F32;
const MAX_CHANNEL_INDEX = Limits.maxChannelIndex;

// ───────────────────────────── decode ─────────────────────────────

/**
 * Validates the frame envelope and returns the message type, flags and payload bounds. `allowedFlags`
 * names the types the endpoint knows and their flag bits (default: the device endpoint's [PROTO-3]).
 */
export function readEnvelope(
  bytes: Uint8Array,
  allowedFlags: Readonly<Record<number, number>> = ALLOWED_FLAGS,
): { type: number; flags: number; start: number; end: number } {
  const size = bytes.length;
  if (size < HEADER_BYTES) throw new ProtocolError('TRUNCATED', `frame has ${size} bytes, header needs 8`);
  if (bytes[0] !== MAGIC[0] || bytes[1] !== MAGIC[1]) throw new ProtocolError('BAD_MAGIC');
  if (bytes[2] !== PROTOCOL_VERSION) throw new ProtocolError('BAD_VERSION', `frame version ${bytes[2]} is not 1`);
  if (size > MAX_FRAME_BYTES) throw new ProtocolError('TOO_LARGE', `frame has ${size} bytes`);
  const length = (bytes[6] as number) | ((bytes[7] as number) << 8);
  const total = HEADER_BYTES + length + CRC_BYTES;
  // A header declaring more than 4096 bytes can never become a valid frame: TOO_LARGE, not TRUNCATED,
  // so a reader of a stream (flash replay) rejects it before waiting for or buffering the rest.
  if (total > MAX_FRAME_BYTES) throw new ProtocolError('TOO_LARGE', `length field declares ${total} bytes`);
  if (size < total) throw new ProtocolError('TRUNCATED', `frame has ${size} bytes, length field says ${total}`);
  if (size > total) throw new ProtocolError('BAD_LENGTH', `frame has ${size - total} bytes after its CRC`);
  const body = HEADER_BYTES + length;
  const expected =
    ((bytes[body] as number) |
      ((bytes[body + 1] as number) << 8) |
      ((bytes[body + 2] as number) << 16) |
      ((bytes[body + 3] as number) << 24)) >>>
    0;
  if (crc32(bytes, 0, body) !== expected) throw new ProtocolError('BAD_CRC');
  const type = bytes[3] as number;
  const allowed = allowedFlags[type];
  if (allowed === undefined) throw new ProtocolError('UNKNOWN_TYPE', `message type ${type} is not defined`);
  const flags = bytes[4] as number;
  if (bytes[5] !== 0 || (flags & ~allowed) !== 0) throw new ProtocolError('BAD_FLAGS');
  return { type, flags, start: HEADER_BYTES, end: body };
}

/** Decodes one frame into a message, or throws a ProtocolError. */
export function decodeFrame(bytes: Uint8Array): Message {
  const { type, flags, start, end } = readEnvelope(bytes);
  const r = new Reader(bytes, start, end);
  let message: Message;
  switch (type) {
    case MessageType.HELLO:
      message = decodeHello(r, flags);
      break;
    case MessageType.WELCOME:
      message = decodeWelcome(r, flags);
      break;
    case MessageType.DESCRIPTORS:
      message = decodeDescriptors(r);
      break;
    case MessageType.TELEMETRY:
      message = decodeTelemetry(r, flags);
      break;
    case MessageType.ACK:
      message = { type: 'ack', bootId: r.u32('bootId'), seq: r.u32('seq') };
      break;
    case MessageType.COMMAND:
      message = decodeCommand(r);
      break;
    case MessageType.COMMAND_ACCEPTED:
      message = { type: 'command_accepted', commandId: nonZeroU32(r, 'commandId') };
      break;
    case MessageType.COMMAND_RESULT:
      message = decodeCommandResult(r);
      break;
    default: // MessageType.ERROR; readEnvelope rejected every other type
      message = {
        type: 'error',
        fatal: (flags & Flags.ERROR_FATAL) !== 0,
        code: r.u16('code'),
        message: r.str8('message', Limits.messageBytes, isFreeText),
      };
  }
  if (r.pos !== end) throw new ProtocolError('BAD_LENGTH', `${end - r.pos} bytes left after the last field`);
  return message;
}

function nonZeroU32(r: Reader, what: string): number {
  const v = r.u32(what);
  if (v === 0) throw new ProtocolError('BAD_FIELD', `${what} must not be 0`);
  return v;
}

function decodeHello(r: Reader, flags: number): Hello {
  const deviceId = r.str8('deviceId', Limits.deviceIdBytes, isDeviceId);
  const firmwareVersion = r.str8('firmwareVersion', Limits.firmwareVersionBytes, isFreeText);
  const maxProtocolVersion = r.u8('maxProtocolVersion');
  if (maxProtocolVersion < 1) throw new ProtocolError('BAD_FIELD', 'maxProtocolVersion must be at least 1');
  const bootId = nonZeroU32(r, 'bootId');
  const resetReason = r.u8('resetReason');
  if (resetReason > 7) throw new ProtocolError('BAD_FIELD', `resetReason ${resetReason} is not defined`);
  return {
    type: 'hello',
    timeSynced: (flags & Flags.HELLO_TIME_SYNCED) !== 0,
    deviceId,
    firmwareVersion,
    maxProtocolVersion,
    bootId,
    resetReason,
    uptimeMs: r.u64('uptimeMs'),
    descriptorHash: r.u32('descriptorHash'),
    bufferedFrames: r.u32('bufferedFrames'),
    droppedFrames: r.u32('droppedFrames'),
  };
}

function decodeWelcome(r: Reader, flags: number): Welcome {
  const acceptedVersion = r.u8('acceptedVersion');
  if (acceptedVersion < 1) throw new ProtocolError('BAD_FIELD', 'acceptedVersion must be at least 1');
  const serverTimeMs = r.u64('serverTimeMs');
  const bootId = r.u32('lastAckBootId');
  const seq = r.u32('lastAckSeq');
  const hasLastAck = (flags & Flags.WELCOME_HAS_LAST_ACK) !== 0;
  if (!hasLastAck && (bootId !== 0 || seq !== 0)) {
    throw new ProtocolError('BAD_FIELD', 'lastAck fields must be 0 without HAS_LAST_ACK');
  }
  const sampleIntervalMs = r.u32('sampleIntervalMs');
  const heartbeatIntervalSec = r.u16('heartbeatIntervalSec');
  if (heartbeatIntervalSec < 1 || heartbeatIntervalSec > 3600) {
    throw new ProtocolError('BAD_FIELD', 'heartbeatIntervalSec must be 1..3600');
  }
  const maxFrameBytes = r.u16('maxFrameBytes');
  if (maxFrameBytes < HEADER_BYTES + CRC_BYTES || maxFrameBytes > MAX_FRAME_BYTES) {
    throw new ProtocolError('BAD_FIELD', 'maxFrameBytes must be 12..4096');
  }
  return {
    type: 'welcome',
    acceptedVersion,
    serverTimeMs,
    lastAck: hasLastAck ? { bootId, seq } : null,
    descriptorsKnown: (flags & Flags.WELCOME_DESCRIPTORS_KNOWN) !== 0,
    sampleIntervalMs,
    heartbeatIntervalSec,
    maxFrameBytes,
  };
}

function checkSampleType(t: number, what: string): SampleValueTypeId {
  if (t > F32) throw new ProtocolError('BAD_VALUE_TYPE', `${what} ${t} is not a sample value type`);
  return t as SampleValueTypeId;
}

function decodeDescriptors(r: Reader): Descriptors {
  const count = r.u8('count');
  if (count < 1 || count > Limits.maxChannels) throw new ProtocolError('BAD_FIELD', 'count must be 1..64');
  const channels: ChannelDescriptor[] = [];
  const keys = new Set<string>();
  let lastIndex = -1;
  for (let i = 0; i < count; i++) {
    const index = r.u8('channel index');
    if (index > Limits.maxChannelIndex) throw new ProtocolError('BAD_FIELD', 'channel index must be 0..127');
    if (index <= lastIndex) throw new ProtocolError('BAD_FIELD', 'channel indexes must be strictly ascending');
    lastIndex = index;
    const key = r.str8('channel key', Limits.channelKeyBytes, isChannelKey);
    if (keys.has(key)) throw new ProtocolError('BAD_FIELD', `channel key ${key} appears twice`);
    keys.add(key);
    const unit = r.str8('unit', Limits.unitBytes, isFreeText);
    const valueType = checkSampleType(r.u8('valueType'), 'valueType');
    const scaleExp = r.i8('scaleExp');
    checkScale(valueType, scaleExp);
    const periodMs = r.u32('periodMs');
    channels.push({ index, key, unit, valueType, scaleExp, periodMs });
  }
  return { type: 'descriptors', channels };
}

function checkScale(valueType: number, scaleExp: number): void {
  if (scaleExp < Limits.minScaleExp || scaleExp > Limits.maxScaleExp) {
    throw new ProtocolError('BAD_FIELD', 'scaleExp must be -9..9');
  }
  if ((valueType === ValueType.BOOL || valueType === ValueType.F32) && scaleExp !== 0) {
    throw new ProtocolError('BAD_FIELD', 'scaleExp must be 0 for bool and f32');
  }
}

function decodeTelemetry(r: Reader, flags: number): Telemetry {
  const bootId = nonZeroU32(r, 'bootId');
  const seq = nonZeroU32(r, 'seq');
  const descriptorHash = r.u32('descriptorHash');
  const baseTime = r.u64('baseTime');
  const blockCount = r.u8('blockCount');
  if (blockCount < 1 || blockCount > Limits.maxBlocks)
    throw new ProtocolError('BAD_FIELD', 'blockCount must be 1..128');
  // Sized once: pushing would grow the array to 16 slots on the first push (a second, larger allocation
  // for a typical frame's 8 blocks). Every slot is filled before the array is returned.
  const blocks: Block[] = new Array(blockCount);
  for (let b = 0; b < blockCount; b++) blocks[b] = decodeBlock(r);
  return {
    type: 'telemetry',
    unsynced: (flags & Flags.TELEMETRY_UNSYNCED) !== 0,
    bootId,
    seq,
    descriptorHash,
    baseTime,
    blocks,
  };
}

/**
 * One block [PROTO-3.4]: channel, value type, then `sampleCount` × (tag varint, value unless missing).
 * This is the decoder's hot loop, so it reads `bytes` directly instead of through Reader methods: one
 * bounds check per value, tags of one and two bytes (deltas up to 8 s) read inline, and no call per
 * sample.
 */
function decodeBlock(r: Reader): Block {
  const channel = r.u8('block channel');
  if (channel > MAX_CHANNEL_INDEX) throw new ProtocolError('BAD_FIELD', 'block channel must be 0..127');
  const valueType = checkSampleType(r.u8('block valueType'), 'block valueType');
  const n = r.u8('sampleCount');
  if (n === 0) throw new ProtocolError('BAD_FIELD', 'sampleCount must be 1..255');
  const deltasMs: number[] = new Array(n);
  // Two allocation sites: V8 tracks element kinds per site, so f32 blocks keep unboxed doubles instead
  // of inheriting the generic kind that booleans and nulls give the other blocks.
  const values: SampleValue[] = valueType === F32 ? new Array(n) : new Array(n);
  // Bytes of a value [PROTO-4]: 1 for bool, i8, u8; 2 for i16, u16; 4 for i32, u32, f32.
  const width = valueType < I16 ? 1 : valueType < I32 ? 2 : 4;
  const b = r.bytes;
  const end = r.end;
  let p = r.pos;
  for (let i = 0; i < n; i++) {
    // tag = deltaMs × 2 + missing, at most 2^32−1, so `>>> 1` and `& 1` are exact on it.
    let tag = p < end ? (b[p] as number) : 0x80;
    if (tag < 0x80) {
      p += 1;
    } else {
      const next = p + 1 < end ? (b[p + 1] as number) : 0;
      if (next !== 0 && next < 0x80) {
        // Two bytes, canonical (the second is 1..0x7f): deltas of 64 ms..8 s, the usual periods.
        tag = (tag & 0x7f) | (next << 7);
        p += 2;
      } else {
        // Longer, truncated or not canonical: the Reader's varint reads it or names the fault.
        r.pos = p;
        tag = r.varint('sample tag');
        p = r.pos;
      }
    }
    deltasMs[i] = tag >>> 1;
    if ((tag & 1) === 1) {
      values[i] = null;
      continue;
    }
    if (p + width > end) throw new ProtocolError('TRUNCATED', 'sample value runs past the payload');
    const b0 = b[p] as number;
    switch (valueType) {
      case BOOL:
        if (b0 > 1) throw new ProtocolError('BAD_FIELD', 'sample value must be 0 or 1');
        values[i] = b0 === 1;
        break;
      case I8:
        values[i] = (b0 << 24) >> 24;
        break;
      case U8:
        values[i] = b0;
        break;
      case I16:
        values[i] = ((b0 | ((b[p + 1] as number) << 8)) << 16) >> 16;
        break;
      case U16:
        values[i] = b0 | ((b[p + 1] as number) << 8);
        break;
      case I32:
        values[i] = b0 | ((b[p + 1] as number) << 8) | ((b[p + 2] as number) << 16) | ((b[p + 3] as number) << 24);
        break;
      case U32:
        values[i] =
          (b0 | ((b[p + 1] as number) << 8) | ((b[p + 2] as number) << 16) | ((b[p + 3] as number) << 24)) >>> 0;
        break;
      default:
        values[i] = f32At(b, p);
    }
    p += width;
  }
  r.pos = p;
  return { channel, valueType, deltasMs, values };
}

function decodeCommand(r: Reader): Command {
  const commandId = nonZeroU32(r, 'commandId');
  const name = r.str8('command name', Limits.commandNameBytes, isCommandName);
  const argCount = r.u8('argCount');
  if (argCount > Limits.maxCommandArgs) throw new ProtocolError('BAD_FIELD', 'argCount must be 0..16');
  const args: CommandArg[] = [];
  for (let i = 0; i < argCount; i++) {
    const key = r.str8('argument key', Limits.channelKeyBytes, isChannelKey);
    const valueType = r.u8('argument valueType');
    if (valueType === 8 || valueType > ValueType.STRING) {
      throw new ProtocolError('BAD_VALUE_TYPE', `argument value type ${valueType} is not defined`);
    }
    args.push({ key, valueType: valueType as CommandArg['valueType'], value: r.value(valueType, 'argument value') });
  }
  return { type: 'command', commandId, name, args };
}

function decodeCommandResult(r: Reader): CommandResult {
  const commandId = nonZeroU32(r, 'commandId');
  const status = r.u8('status');
  if (status > 4) throw new ProtocolError('BAD_FIELD', `status ${status} is not defined`);
  return { type: 'command_result', commandId, status, message: r.str8('message', Limits.messageBytes, isFreeText) };
}

// ───────────────────────────── encode ─────────────────────────────

const TYPE_IDS = {
  hello: MessageType.HELLO,
  welcome: MessageType.WELCOME,
  descriptors: MessageType.DESCRIPTORS,
  telemetry: MessageType.TELEMETRY,
  ack: MessageType.ACK,
  command: MessageType.COMMAND,
  command_accepted: MessageType.COMMAND_ACCEPTED,
  command_result: MessageType.COMMAND_RESULT,
  error: MessageType.ERROR,
} as const;

let spareWriter: Writer | null = null;

/**
 * Encodes a message into a new frame. Applies the same rules as decoding, so whatever encodes also
 * decodes; an invalid field throws BAD_FIELD, a frame over 4096 bytes TOO_LARGE.
 */
export function encodeFrame(message: Message): Uint8Array {
  // Reuses one 4 KiB scratch writer: allocating and zero-filling 4 KiB per frame cost more than the
  // encoding of a typical frame. The result is always a fresh copy; a re-entrant call (impossible with
  // plain message objects) would simply allocate its own writer.
  const w = spareWriter ?? new Writer(MAX_FRAME_BYTES);
  spareWriter = null;
  try {
    return encodeWith(w, message);
  } finally {
    spareWriter = w;
  }
}

function encodeWith(w: Writer, message: Message): Uint8Array {
  w.pos = HEADER_BYTES;
  const flags = writePayload(w, message);
  return sealFrame(w, TYPE_IDS[message.type], flags);
}

/**
 * Writes the header and CRC around the payload written at `w.bytes[8..w.pos)` and returns a copy of
 * the whole frame [PROTO-2]. Shared by the device and the enrollment encoders.
 */
export function sealFrame(w: Writer, type: number, flags: number): Uint8Array {
  const length = w.pos - HEADER_BYTES;
  if (w.pos + CRC_BYTES > MAX_FRAME_BYTES) throw new ProtocolError('TOO_LARGE', 'encoded frame exceeds 4096 bytes');
  const b = w.bytes;
  b[0] = MAGIC[0];
  b[1] = MAGIC[1];
  b[2] = PROTOCOL_VERSION;
  b[3] = type;
  b[4] = flags;
  b[5] = 0;
  w.view.setUint16(6, length, true);
  w.view.setUint32(w.pos, crc32(b, 0, w.pos), true);
  return b.slice(0, w.pos + CRC_BYTES);
}

/** The payload bytes of a DESCRIPTORS message, whose CRC-32 is the descriptor hash [PROTO-3.3.1]. */
export function descriptorPayload(channels: ChannelDescriptor[]): Uint8Array {
  const w = new Writer(MAX_FRAME_BYTES);
  writeDescriptors(w, { type: 'descriptors', channels });
  return w.bytes.slice(0, w.pos);
}

/** The descriptor-set hash devices put in HELLO and TELEMETRY [PROTO-3.3.1]. */
export function descriptorHash(channels: ChannelDescriptor[]): number {
  return crc32(descriptorPayload(channels));
}

function writePayload(w: Writer, m: Message): number {
  switch (m.type) {
    case 'hello':
      w.str8(m.deviceId, 'deviceId', Limits.deviceIdBytes, isDeviceId);
      w.str8(m.firmwareVersion, 'firmwareVersion', Limits.firmwareVersionBytes, isFreeText);
      w.u8(m.maxProtocolVersion, 'maxProtocolVersion');
      if (m.maxProtocolVersion < 1) throw new ProtocolError('BAD_FIELD', 'maxProtocolVersion must be at least 1');
      writeNonZeroU32(w, m.bootId, 'bootId');
      if (m.resetReason > 7) throw new ProtocolError('BAD_FIELD', 'resetReason must be 0..7');
      w.u8(m.resetReason, 'resetReason');
      w.u64(m.uptimeMs, 'uptimeMs');
      w.u32(m.descriptorHash, 'descriptorHash');
      w.u32(m.bufferedFrames, 'bufferedFrames');
      w.u32(m.droppedFrames, 'droppedFrames');
      return m.timeSynced ? Flags.HELLO_TIME_SYNCED : 0;
    case 'welcome': {
      if (m.acceptedVersion < 1) throw new ProtocolError('BAD_FIELD', 'acceptedVersion must be at least 1');
      w.u8(m.acceptedVersion, 'acceptedVersion');
      w.u64(m.serverTimeMs, 'serverTimeMs');
      w.u32(m.lastAck?.bootId ?? 0, 'lastAckBootId');
      w.u32(m.lastAck?.seq ?? 0, 'lastAckSeq');
      w.u32(m.sampleIntervalMs, 'sampleIntervalMs');
      if (m.heartbeatIntervalSec < 1 || m.heartbeatIntervalSec > 3600) {
        throw new ProtocolError('BAD_FIELD', 'heartbeatIntervalSec must be 1..3600');
      }
      w.u16(m.heartbeatIntervalSec, 'heartbeatIntervalSec');
      if (m.maxFrameBytes < HEADER_BYTES + CRC_BYTES || m.maxFrameBytes > MAX_FRAME_BYTES) {
        throw new ProtocolError('BAD_FIELD', 'maxFrameBytes must be 12..4096');
      }
      w.u16(m.maxFrameBytes, 'maxFrameBytes');
      return (m.lastAck ? Flags.WELCOME_HAS_LAST_ACK : 0) | (m.descriptorsKnown ? Flags.WELCOME_DESCRIPTORS_KNOWN : 0);
    }
    case 'descriptors':
      writeDescriptors(w, m);
      return 0;
    case 'telemetry':
      writeTelemetry(w, m);
      return m.unsynced ? Flags.TELEMETRY_UNSYNCED : 0;
    case 'ack':
      w.u32(m.bootId, 'bootId');
      w.u32(m.seq, 'seq');
      return 0;
    case 'command':
      writeNonZeroU32(w, m.commandId, 'commandId');
      w.str8(m.name, 'command name', Limits.commandNameBytes, isCommandName);
      if (m.args.length > Limits.maxCommandArgs) throw new ProtocolError('BAD_FIELD', 'argCount must be 0..16');
      w.u8(m.args.length, 'argCount');
      for (const arg of m.args) {
        w.str8(arg.key, 'argument key', Limits.channelKeyBytes, isChannelKey);
        w.u8(arg.valueType, 'argument valueType');
        w.value(arg.valueType, arg.value, 'argument value');
      }
      return 0;
    case 'command_accepted':
      writeNonZeroU32(w, m.commandId, 'commandId');
      return 0;
    case 'command_result':
      writeNonZeroU32(w, m.commandId, 'commandId');
      if (m.status > 4) throw new ProtocolError('BAD_FIELD', 'status must be 0..4');
      w.u8(m.status, 'status');
      w.str8(m.message, 'message', Limits.messageBytes, isFreeText);
      return 0;
    case 'error':
      w.u16(m.code, 'code');
      w.str8(m.message, 'message', Limits.messageBytes, isFreeText);
      return m.fatal ? Flags.ERROR_FATAL : 0;
    default:
      throw new ProtocolError('UNKNOWN_TYPE', `cannot encode message type ${(m as { type: unknown }).type}`);
  }
}

function writeNonZeroU32(w: Writer, v: number, what: string): void {
  if (v === 0) throw new ProtocolError('BAD_FIELD', `${what} must not be 0`);
  w.u32(v, what);
}

function writeDescriptors(w: Writer, m: Descriptors): void {
  const count = m.channels.length;
  if (count < 1 || count > Limits.maxChannels) throw new ProtocolError('BAD_FIELD', 'count must be 1..64');
  w.u8(count, 'count');
  const keys = new Set<string>();
  let lastIndex = -1;
  for (const ch of m.channels) {
    if (ch.index > Limits.maxChannelIndex || ch.index <= lastIndex) {
      throw new ProtocolError('BAD_FIELD', 'channel indexes must be 0..127 and strictly ascending');
    }
    lastIndex = ch.index;
    if (keys.has(ch.key)) throw new ProtocolError('BAD_FIELD', `channel key ${ch.key} appears twice`);
    keys.add(ch.key);
    w.u8(ch.index, 'channel index');
    w.str8(ch.key, 'channel key', Limits.channelKeyBytes, isChannelKey);
    w.str8(ch.unit, 'unit', Limits.unitBytes, isFreeText);
    checkSampleType(ch.valueType, 'valueType');
    w.u8(ch.valueType, 'valueType');
    checkScale(ch.valueType, ch.scaleExp);
    w.i8(ch.scaleExp, 'scaleExp');
    w.u32(ch.periodMs, 'periodMs');
  }
}

function writeTelemetry(w: Writer, m: Telemetry): void {
  writeNonZeroU32(w, m.bootId, 'bootId');
  writeNonZeroU32(w, m.seq, 'seq');
  w.u32(m.descriptorHash, 'descriptorHash');
  w.u64(m.baseTime, 'baseTime');
  const blockCount = m.blocks.length;
  if (blockCount < 1 || blockCount > Limits.maxBlocks)
    throw new ProtocolError('BAD_FIELD', 'blockCount must be 1..128');
  w.u8(blockCount, 'blockCount');
  for (const block of m.blocks) {
    if (block.channel > Limits.maxChannelIndex) throw new ProtocolError('BAD_FIELD', 'block channel must be 0..127');
    w.u8(block.channel, 'block channel');
    checkSampleType(block.valueType, 'block valueType');
    w.u8(block.valueType, 'block valueType');
    const n = block.deltasMs.length;
    if (n < 1 || n > Limits.maxSamplesPerBlock || block.values.length !== n) {
      throw new ProtocolError('BAD_FIELD', 'a block needs 1..255 samples and as many values as deltas');
    }
    w.u8(n, 'sampleCount');
    for (let i = 0; i < n; i++) {
      const delta = block.deltasMs[i] as number;
      if (!Number.isInteger(delta) || delta < 0 || delta > Limits.maxDeltaMs) {
        throw new ProtocolError('BAD_FIELD', 'deltaMs must be 0..2^31-1');
      }
      const value = block.values[i] as SampleValue;
      w.varint(delta * 2 + (value === null ? 1 : 0), 'sample tag');
      if (value !== null) w.value(block.valueType, value, 'sample value');
    }
  }
}
