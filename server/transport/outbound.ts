/**
 * Frames the hub sends often, built without the general encoder's 4 KiB scratch buffer. The bytes are
 * identical to `encodeFrame({ type: 'ack', ... })` (a unit test holds them to it).
 */
import { crc32 } from 'node:zlib';
import { encodeFrame, MAGIC, MessageType, PROTOCOL_VERSION } from '../codec/index.ts';
import { ERRORS, type ErrorCode } from '../errors.ts';

/** ACK [PROTO-3.5]: 8-byte header, bootId u32, seq u32, CRC-32. */
export function encodeAck(bootId: number, seq: number): Buffer {
  const b = Buffer.allocUnsafe(20);
  b[0] = MAGIC[0];
  b[1] = MAGIC[1];
  b[2] = PROTOCOL_VERSION;
  b[3] = MessageType.ACK;
  b[4] = 0;
  b[5] = 0;
  b.writeUInt16LE(8, 6);
  b.writeUInt32LE(bootId >>> 0, 8);
  b.writeUInt32LE(seq >>> 0, 12);
  b.writeUInt32LE(crc32(b.subarray(0, 16)), 16);
  return b;
}

/** ERROR [PROTO-3.8] with the catalogue's wire code; FATAL when the code closes the connection. */
export function encodeError(code: ErrorCode, message: string): Uint8Array {
  const clean = sanitizeMessage(message);
  return encodeFrame({ type: 'error', fatal: ERRORS[code].close !== null, code: ERRORS[code].wire, message: clean });
}

/** Free text for ERROR messages: no control characters, at most 200 bytes of UTF-8 [PROTO-2.8]. */
function sanitizeMessage(message: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
  let s = message.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
  while (Buffer.byteLength(s) > 200) s = s.slice(0, -1);
  return s;
}
