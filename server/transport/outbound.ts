/**
 * Frames the hub sends often, built without the general encoder's 4 KiB scratch buffer. The bytes are
 * identical to `encodeFrame({ type: 'ack', ... })` (a unit test holds them to it).
 */
import { crc32 } from 'node:zlib';
import { encodeFrame, MAGIC, MessageType, PROTOCOL_VERSION } from '../codec/index.ts';
import { ERRORS, type ErrorCode } from '../errors.ts';

/** ACK [PROTO-3.5]: 8-byte header, bootId u32, seq u32, CRC-32. */
export function encodeAck(bootId: number, seq: number): Buffer {
  const b = Buffer.allocUnsafe(ACK_BYTES);
  writeAck(b, 0, bootId, seq);
  return b;
}

/** Bytes of an ACK frame. */
export const ACK_BYTES = 20;

/**
 * An ACK as one unmasked binary WebSocket message (RFC 6455 §5.2: FIN + binary opcode, 7-bit length):
 * the bytes `ws.send(encodeAck(…))` puts on the wire, built in one buffer so that the link can write
 * it to the socket in one call (gateway.ts).
 */
export function encodeWsAck(bootId: number, seq: number): Buffer {
  const b = Buffer.allocUnsafe(2 + ACK_BYTES);
  b[0] = 0x82;
  b[1] = ACK_BYTES;
  writeAck(b, 2, bootId, seq);
  return b;
}

function writeAck(b: Buffer, at: number, bootId: number, seq: number): void {
  b[at] = MAGIC[0];
  b[at + 1] = MAGIC[1];
  b[at + 2] = PROTOCOL_VERSION;
  b[at + 3] = MessageType.ACK;
  b[at + 4] = 0;
  b[at + 5] = 0;
  b.writeUInt16LE(8, at + 6);
  b.writeUInt32LE(bootId >>> 0, at + 8);
  b.writeUInt32LE(seq >>> 0, at + 12);
  b.writeUInt32LE(crc32(b.subarray(at, at + 16)), at + 16);
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
