/**
 * The binary batch the relay publishes on `<prefix>/cluster/v1/events/<instanceId>` (relay.ts,
 * docs/scaling.md "Live view and commands across instances"): one MQTT message holds the live events
 * of one instance over at most one flush period, as records back to back. Pure: no I/O, no clock.
 *
 * ```
 * batch   = "CR" u8 version(1) u8 reserved(0) str8 instanceId u32 seq record*
 * record  = u8 kind, then by kind (little-endian; str8 = u8 length + UTF-8, str16 = u16 length + UTF-8):
 *   1 FRAME        str8 device f64 receivedAtMs f64 timeOffsetMs u16 samples u16 length bytes   (a TELEMETRY frame)
 *   2 DESCRIPTORS  str8 device u16 length bytes                                                (a DESCRIPTORS frame)
 *   3 ONLINE       str8 device f64 atMs u32 bootId u8 timeSynced str8 firmwareVersion
 *   4 OFFLINE      str8 device f64 atMs str8 reason
 *   5 COMMAND      str8 device u32 commandId str8 name u8 state i32 status(-1: none) f64 atMs str16 message (0xffff: none)
 *   6 ALERT        str16 JSON of the alert event
 * ```
 *
 * Frames travel as the device sent them (the receiver decodes only what its live clients cover, as
 * for local frames); their descriptor set travels as the protocol's own DESCRIPTORS frame, sent
 * before a device's first relayed frame and again when it changes or every refresh period (relay.ts).
 * Limits come before allocation: every length is checked against what is left of the message.
 */
import type { CommandUpdate } from '../events.ts';

export const RELAY_BATCH_VERSION = 1;
const MAGIC_0 = 0x43; // 'C'
const MAGIC_1 = 0x52; // 'R'

export const RecordKind = {
  FRAME: 1,
  DESCRIPTORS: 2,
  ONLINE: 3,
  OFFLINE: 4,
  COMMAND: 5,
  ALERT: 6,
} as const;

const COMMAND_STATES: readonly CommandUpdate['state'][] = ['sent', 'accepted', 'done', 'timeout', 'failed'];

export type RelayRecord =
  | {
      kind: 'frame';
      deviceId: string;
      receivedAtMs: number;
      timeOffsetMs: number;
      samples: number;
      frame: Uint8Array;
    }
  | { kind: 'descriptors'; deviceId: string; frame: Uint8Array }
  | {
      kind: 'online';
      deviceId: string;
      atMs: number;
      bootId: number;
      timeSynced: boolean;
      firmwareVersion: string;
    }
  | { kind: 'offline'; deviceId: string; atMs: number; reason: string }
  | { kind: 'command'; update: CommandUpdate }
  | { kind: 'alert'; json: string };

export interface DecodedBatch {
  instanceId: string;
  seq: number;
  records: RelayRecord[];
}

/** A batch that is not one (bad magic or version, truncated, a bad field): counted by the receiver. */
export class RelayCodecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RelayCodecError';
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Builds one batch in a buffer of fixed capacity. `add*` return false (and write nothing) when the
 * record does not fit: the caller publishes the batch and starts the next one.
 */
export class BatchWriter {
  readonly #buf: Buffer;
  /** UTF-8 of recent device ids (one per frame record: encoded once, not per frame). */
  readonly #ids = new Map<string, Uint8Array>();
  #pos = 0;
  #headerEnd = 0;
  #records = 0;

  constructor(readonly capacity: number) {
    this.#buf = Buffer.allocUnsafe(capacity);
  }

  /** Starts a batch (drops whatever the writer held). */
  begin(instanceId: string, seq: number): void {
    const b = this.#buf;
    b[0] = MAGIC_0;
    b[1] = MAGIC_1;
    b[2] = RELAY_BATCH_VERSION;
    b[3] = 0;
    this.#pos = 4;
    if (!this.#str8(instanceId)) throw new RelayCodecError('instance id does not fit a batch');
    b.writeUInt32LE(seq >>> 0, this.#pos);
    this.#pos += 4;
    this.#headerEnd = this.#pos;
    this.#records = 0;
  }

  get records(): number {
    return this.#records;
  }

  get bytes(): number {
    return this.#pos;
  }

  /** A copy of the batch (the writer's buffer is reused). */
  take(): Buffer {
    return Buffer.from(this.#buf.subarray(0, this.#pos));
  }

  addFrame(deviceId: string, receivedAtMs: number, timeOffsetMs: number, samples: number, frame: Uint8Array): boolean {
    const start = this.#pos;
    if (!this.#u8(RecordKind.FRAME) || !this.#id(deviceId) || !this.#room(20 + frame.length)) return this.#undo(start);
    const b = this.#buf;
    b.writeDoubleLE(receivedAtMs, this.#pos);
    b.writeDoubleLE(timeOffsetMs, this.#pos + 8);
    b.writeUInt16LE(Math.min(samples, 0xffff), this.#pos + 16);
    b.writeUInt16LE(frame.length, this.#pos + 18);
    b.set(frame, this.#pos + 20);
    this.#pos += 20 + frame.length;
    return this.#done();
  }

  addDescriptors(deviceId: string, frame: Uint8Array): boolean {
    const start = this.#pos;
    if (!this.#u8(RecordKind.DESCRIPTORS) || !this.#str8(deviceId) || !this.#room(2 + frame.length)) {
      return this.#undo(start);
    }
    this.#buf.writeUInt16LE(frame.length, this.#pos);
    this.#buf.set(frame, this.#pos + 2);
    this.#pos += 2 + frame.length;
    return this.#done();
  }

  addOnline(deviceId: string, atMs: number, bootId: number, timeSynced: boolean, firmwareVersion: string): boolean {
    const start = this.#pos;
    if (!this.#u8(RecordKind.ONLINE) || !this.#str8(deviceId) || !this.#room(13)) return this.#undo(start);
    const b = this.#buf;
    b.writeDoubleLE(atMs, this.#pos);
    b.writeUInt32LE(bootId >>> 0, this.#pos + 8);
    b[this.#pos + 12] = timeSynced ? 1 : 0;
    this.#pos += 13;
    return this.#str8(firmwareVersion) ? this.#done() : this.#undo(start);
  }

  addOffline(deviceId: string, atMs: number, reason: string): boolean {
    const start = this.#pos;
    if (!this.#u8(RecordKind.OFFLINE) || !this.#str8(deviceId) || !this.#room(8)) return this.#undo(start);
    this.#buf.writeDoubleLE(atMs, this.#pos);
    this.#pos += 8;
    return this.#str8(reason) ? this.#done() : this.#undo(start);
  }

  addCommand(u: CommandUpdate): boolean {
    const start = this.#pos;
    if (!this.#u8(RecordKind.COMMAND) || !this.#str8(u.deviceId) || !this.#room(4)) return this.#undo(start);
    this.#buf.writeUInt32LE(u.commandId >>> 0, this.#pos);
    this.#pos += 4;
    if (!this.#str8(u.name) || !this.#room(13)) return this.#undo(start);
    const b = this.#buf;
    b[this.#pos] = COMMAND_STATES.indexOf(u.state);
    b.writeInt32LE(u.status ?? -1, this.#pos + 1);
    b.writeDoubleLE(u.atMs, this.#pos + 5);
    this.#pos += 13;
    const ok = u.message === undefined ? this.#room(2) && this.#u16(0xffff) : this.#str16(u.message);
    return ok ? this.#done() : this.#undo(start);
  }

  addAlert(json: string): boolean {
    const start = this.#pos;
    return this.#u8(RecordKind.ALERT) && this.#str16(json) ? this.#done() : this.#undo(start);
  }

  #done(): boolean {
    this.#records++;
    return true;
  }

  #undo(start: number): boolean {
    this.#pos = Math.max(start, this.#headerEnd);
    return false;
  }

  #room(n: number): boolean {
    return this.#pos + n <= this.capacity;
  }

  #u8(v: number): boolean {
    if (!this.#room(1)) return false;
    this.#buf[this.#pos++] = v;
    return true;
  }

  #u16(v: number): boolean {
    this.#buf.writeUInt16LE(v, this.#pos);
    this.#pos += 2;
    return true;
  }

  /** A device id (≤ 64 bytes [PROTO-2.8]) as str8, its bytes cached. */
  #id(deviceId: string): boolean {
    let bytes = this.#ids.get(deviceId);
    if (bytes === undefined) {
      bytes = encoder.encode(deviceId);
      if (bytes.length > 0xff) bytes = cutUtf8(bytes, 0xff);
      if (this.#ids.size >= 100_000) this.#ids.clear(); // bounded; refilled on demand
      this.#ids.set(deviceId, bytes);
    }
    if (!this.#room(1 + bytes.length)) return false;
    this.#buf[this.#pos] = bytes.length;
    this.#buf.set(bytes, this.#pos + 1);
    this.#pos += 1 + bytes.length;
    return true;
  }

  /** UTF-8 with a u8 length; longer strings are cut at 255 bytes (reasons and versions are short). */
  #str8(s: string): boolean {
    let bytes: Uint8Array = encoder.encode(s);
    if (bytes.length > 0xff) bytes = cutUtf8(bytes, 0xff);
    if (!this.#room(1 + bytes.length)) return false;
    this.#buf[this.#pos] = bytes.length;
    this.#buf.set(bytes, this.#pos + 1);
    this.#pos += 1 + bytes.length;
    return true;
  }

  #str16(s: string): boolean {
    let bytes: Uint8Array = encoder.encode(s);
    if (bytes.length > 0xfffe) bytes = cutUtf8(bytes, 0xfffe);
    if (!this.#room(2 + bytes.length)) return false;
    this.#buf.writeUInt16LE(bytes.length, this.#pos);
    this.#buf.set(bytes, this.#pos + 2);
    this.#pos += 2 + bytes.length;
    return true;
  }
}

/** Cuts UTF-8 bytes to at most `max` without splitting a character. */
function cutUtf8(bytes: Uint8Array, max: number): Uint8Array {
  let end = max;
  while (end > 0 && ((bytes[end] as number) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

/** Reads a batch. Frame bytes are views into `buf` (no copy). Throws {@link RelayCodecError}. */
export function decodeBatch(buf: Uint8Array): DecodedBatch {
  const r = new Reader(buf);
  if (r.u8() !== MAGIC_0 || r.u8() !== MAGIC_1) throw new RelayCodecError('not a relay batch (magic)');
  const version = r.u8();
  if (version !== RELAY_BATCH_VERSION) throw new RelayCodecError(`relay batch version ${version} not supported`);
  r.u8();
  const instanceId = r.str8();
  const seq = r.u32();
  const records: RelayRecord[] = [];
  while (!r.atEnd()) records.push(readRecord(r));
  return { instanceId, seq, records };
}

function readRecord(r: Reader): RelayRecord {
  const kind = r.u8();
  switch (kind) {
    case RecordKind.FRAME: {
      const deviceId = r.str8();
      const receivedAtMs = r.f64();
      const timeOffsetMs = r.f64();
      const samples = r.u16();
      const frame = r.bytes(r.u16());
      return { kind: 'frame', deviceId, receivedAtMs, timeOffsetMs, samples, frame };
    }
    case RecordKind.DESCRIPTORS: {
      const deviceId = r.str8();
      return { kind: 'descriptors', deviceId, frame: r.bytes(r.u16()) };
    }
    case RecordKind.ONLINE: {
      const deviceId = r.str8();
      const atMs = r.f64();
      const bootId = r.u32();
      const timeSynced = r.u8() === 1;
      return { kind: 'online', deviceId, atMs, bootId, timeSynced, firmwareVersion: r.str8() };
    }
    case RecordKind.OFFLINE: {
      const deviceId = r.str8();
      const atMs = r.f64();
      return { kind: 'offline', deviceId, atMs, reason: r.str8() };
    }
    case RecordKind.COMMAND: {
      const deviceId = r.str8();
      const commandId = r.u32();
      const name = r.str8();
      const state = COMMAND_STATES[r.u8()];
      if (state === undefined) throw new RelayCodecError('unknown command state');
      const status = r.i32();
      const atMs = r.f64();
      const length = r.u16();
      const update: CommandUpdate = { deviceId, commandId, name, state, atMs };
      if (status >= 0) update.status = status;
      if (length !== 0xffff) update.message = r.utf8(length);
      return { kind: 'command', update };
    }
    case RecordKind.ALERT:
      return { kind: 'alert', json: r.utf8(r.u16()) };
    default:
      throw new RelayCodecError(`unknown record kind ${kind}`);
  }
}

class Reader {
  #p = 0;
  readonly #view: DataView;
  constructor(private readonly b: Uint8Array) {
    this.#view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }
  atEnd(): boolean {
    return this.#p >= this.b.length;
  }
  #need(n: number): number {
    const p = this.#p;
    if (p + n > this.b.length) throw new RelayCodecError('relay batch truncated');
    this.#p = p + n;
    return p;
  }
  u8(): number {
    return this.b[this.#need(1)] as number;
  }
  u16(): number {
    return this.#view.getUint16(this.#need(2), true);
  }
  u32(): number {
    return this.#view.getUint32(this.#need(4), true);
  }
  i32(): number {
    return this.#view.getInt32(this.#need(4), true);
  }
  f64(): number {
    const v = this.#view.getFloat64(this.#need(8), true);
    if (!Number.isFinite(v)) throw new RelayCodecError('relay batch: time is not a finite number');
    return v;
  }
  bytes(n: number): Uint8Array {
    const p = this.#need(n);
    return this.b.subarray(p, p + n);
  }
  utf8(n: number): string {
    try {
      return decoder.decode(this.bytes(n));
    } catch (err) {
      if (err instanceof RelayCodecError) throw err;
      throw new RelayCodecError('relay batch: a string is not UTF-8');
    }
  }
  str8(): string {
    return this.utf8(this.u8());
  }
}
