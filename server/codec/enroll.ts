/**
 * The enrollment frames of `/v1/enroll` [PROTO-8]: ENROLL (0x20), ENROLL_STATUS (0x21) and
 * ENROLL_CONFIRM (0x22), in the envelope of protocol v1 [PROTO-2]. Pure, like the device codec: no
 * I/O, no clock. These types are valid only on the enrollment endpoint (`decodeFrame` keeps answering
 * UNKNOWN_TYPE for them) and the device endpoint's types 0x01–0x08 are UNEXPECTED_MESSAGE here.
 */
import { ProtocolError } from '../errors.ts';
import { ALLOWED_FLAGS, readEnvelope, sealFrame } from './frame.ts';
import { type ErrorMessage, Flags, HEADER_BYTES, Limits, MAX_FRAME_BYTES, MessageType } from './types.ts';
import { isDeviceId, isFreeText, Reader, Writer } from './wire.ts';

/** The enrollment endpoint's path and subprotocol [PROTO-8.1.1]. */
export const ENROLL_PATH = '/v1/enroll';
export const ENROLL_SUBPROTOCOL = 'esp32hub.enroll.v1';

export const EnrollMessageType = { ENROLL: 0x20, ENROLL_STATUS: 0x21, ENROLL_CONFIRM: 0x22 } as const;

/** ENROLL_STATUS `status` [PROTO-8.2.2]. */
export const EnrollStatus = { PENDING: 0, APPROVED: 1, REJECTED: 2 } as const;
export type EnrollStatusId = (typeof EnrollStatus)[keyof typeof EnrollStatus];

export const EnrollLimits = {
  enrollKeyBytes: 16,
  fleetSecretBytes: 64,
  modelBytes: 32,
  tokenBytes: 64,
} as const;

/** ENROLL (board → hub) [PROTO-8.2.1]. */
export interface Enroll {
  type: 'enroll';
  hardwareId: string;
  /** 16 random bytes the board made once and keeps in NVS. */
  enrollKey: Uint8Array;
  /** Empty = none. Never logged. */
  fleetSecret: string;
  model: string;
  firmwareVersion: string;
}

/** ENROLL_STATUS (hub → board) [PROTO-8.2.2]. */
export interface EnrollStatusMessage {
  type: 'enroll_status';
  status: EnrollStatusId;
  /** Empty unless approved. */
  deviceId: string;
  /** The bearer token; empty unless approved. */
  token: string;
  message: string;
}

/** ENROLL_CONFIRM (board → hub), empty payload [PROTO-8.2.3]. */
export interface EnrollConfirm {
  type: 'enroll_confirm';
}

export type EnrollMessage = Enroll | EnrollStatusMessage | EnrollConfirm | ErrorMessage;

/** Types the envelope check accepts on `/v1/enroll`: the enrollment types, ERROR, and (to refuse them as
 * UNEXPECTED_MESSAGE rather than UNKNOWN_TYPE) the device endpoint's types. */
const ENROLL_ALLOWED_FLAGS: Readonly<Record<number, number>> = {
  ...ALLOWED_FLAGS,
  [EnrollMessageType.ENROLL]: 0,
  [EnrollMessageType.ENROLL_STATUS]: 0,
  [EnrollMessageType.ENROLL_CONFIRM]: 0,
};

// A token is printable ASCII without spaces (the hub's are `esp32hub_` + base64url).
const TOKEN_TEXT = /^[\x21-\x7e]*$/;
const isTokenText = (s: string): boolean => TOKEN_TEXT.test(s);

/** Decodes one frame received on `/v1/enroll`, or throws a ProtocolError [PROTO-2.7], [PROTO-8.1.3]. */
export function decodeEnrollFrame(bytes: Uint8Array): EnrollMessage {
  const { type, flags, start, end } = readEnvelope(bytes, ENROLL_ALLOWED_FLAGS);
  const r = new Reader(bytes, start, end);
  let message: EnrollMessage;
  switch (type) {
    case EnrollMessageType.ENROLL: {
      const hardwareId = r.str8('hardwareId', Limits.deviceIdBytes, isDeviceId);
      r.need(EnrollLimits.enrollKeyBytes, 'enrollKey');
      const enrollKey = bytes.slice(r.pos, r.pos + EnrollLimits.enrollKeyBytes);
      r.pos += EnrollLimits.enrollKeyBytes;
      message = {
        type: 'enroll',
        hardwareId,
        enrollKey,
        fleetSecret: r.str8('fleetSecret', EnrollLimits.fleetSecretBytes, isFreeText),
        model: r.str8('model', EnrollLimits.modelBytes, isFreeText),
        firmwareVersion: r.str8('firmwareVersion', Limits.firmwareVersionBytes, isFreeText),
      };
      break;
    }
    case EnrollMessageType.ENROLL_STATUS: {
      const status = r.u8('status');
      if (status > EnrollStatus.REJECTED) throw new ProtocolError('BAD_FIELD', `status ${status} is not defined`);
      const deviceId = r.str8('deviceId', Limits.deviceIdBytes, (s) => s === '' || isDeviceId(s));
      const token = r.str8('token', EnrollLimits.tokenBytes, isTokenText);
      checkApproval(status as EnrollStatusId, deviceId, token);
      message = {
        type: 'enroll_status',
        status: status as EnrollStatusId,
        deviceId,
        token,
        message: r.str8('message', Limits.messageBytes, isFreeText),
      };
      break;
    }
    case EnrollMessageType.ENROLL_CONFIRM:
      message = { type: 'enroll_confirm' };
      break;
    case MessageType.ERROR:
      message = {
        type: 'error',
        fatal: (flags & Flags.ERROR_FATAL) !== 0,
        code: r.u16('code'),
        message: r.str8('message', Limits.messageBytes, isFreeText),
      };
      break;
    default:
      throw new ProtocolError('UNEXPECTED_MESSAGE', `message type ${type} belongs to /v1/device, not /v1/enroll`);
  }
  if (r.pos !== end) throw new ProtocolError('BAD_LENGTH', `${end - r.pos} bytes left after the last field`);
  return message;
}

/** deviceId and token are set exactly when the status is approved [PROTO-8.2.2]. */
function checkApproval(status: EnrollStatusId, deviceId: string, token: string): void {
  const approved = status === EnrollStatus.APPROVED;
  if (approved && (deviceId === '' || token === '')) {
    throw new ProtocolError('BAD_FIELD', 'an approved ENROLL_STATUS carries a deviceId and a token');
  }
  if (!approved && (deviceId !== '' || token !== '')) {
    throw new ProtocolError('BAD_FIELD', 'deviceId and token must be empty unless the status is approved');
  }
}

/** Encodes an enrollment frame (or an ERROR) with the same rules as decoding. */
export function encodeEnrollFrame(message: EnrollMessage): Uint8Array {
  // Enrollment frames are small (< 400 bytes); the envelope's 4 KiB limit still applies.
  const w = new Writer(MAX_FRAME_BYTES);
  w.pos = HEADER_BYTES;
  switch (message.type) {
    case 'enroll': {
      w.str8(message.hardwareId, 'hardwareId', Limits.deviceIdBytes, isDeviceId);
      const key = message.enrollKey;
      if (!(key instanceof Uint8Array) || key.length !== EnrollLimits.enrollKeyBytes) {
        throw new ProtocolError('BAD_FIELD', `enrollKey must be ${EnrollLimits.enrollKeyBytes} bytes`);
      }
      w.bytes.set(key, w.pos);
      w.pos += key.length;
      w.str8(message.fleetSecret, 'fleetSecret', EnrollLimits.fleetSecretBytes, isFreeText);
      w.str8(message.model, 'model', EnrollLimits.modelBytes, isFreeText);
      w.str8(message.firmwareVersion, 'firmwareVersion', Limits.firmwareVersionBytes, isFreeText);
      return sealFrame(w, EnrollMessageType.ENROLL, 0);
    }
    case 'enroll_status':
      if (message.status > EnrollStatus.REJECTED) throw new ProtocolError('BAD_FIELD', 'status must be 0..2');
      checkApproval(message.status, message.deviceId, message.token);
      w.u8(message.status, 'status');
      w.str8(message.deviceId, 'deviceId', Limits.deviceIdBytes, (s) => s === '' || isDeviceId(s));
      w.str8(message.token, 'token', EnrollLimits.tokenBytes, isTokenText);
      w.str8(message.message, 'message', Limits.messageBytes, isFreeText);
      return sealFrame(w, EnrollMessageType.ENROLL_STATUS, 0);
    case 'enroll_confirm':
      return sealFrame(w, EnrollMessageType.ENROLL_CONFIRM, 0);
    case 'error':
      w.u16(message.code, 'code');
      w.str8(message.message, 'message', Limits.messageBytes, isFreeText);
      return sealFrame(w, MessageType.ERROR, message.fatal ? Flags.ERROR_FATAL : 0);
    default:
      throw new ProtocolError('UNKNOWN_TYPE', `cannot encode message type ${(message as { type: unknown }).type}`);
  }
}
