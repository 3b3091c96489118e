/**
 * Generates test/vectors/enroll-v1.json, the golden vectors of the enrollment frames [PROTO-8.2]
 * (0x20 ENROLL, 0x21 ENROLL_STATUS, 0x22 ENROLL_CONFIRM and ERROR as sent on /v1/enroll). A file of its
 * own: these types are valid only on /v1/enroll, so they cannot sit among protocol-v1.json's vectors
 * (which every device-endpoint decoder must accept). Same schema as protocol-v1.json, plus: `enrollKey`
 * is 32 lowercase hex characters.
 *
 *   npx tsx test/vectors/generate-enroll.ts           # rewrite the file
 *   npx tsx test/vectors/generate-enroll.ts --check   # exit 1 when the committed file is stale
 *
 * Valid vectors are encoded by the codec; malformed ones are crafted byte by byte. The test
 * (test/unit/enroll-codec.test.ts) re-encodes every valid vector with an independent encoder.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { crc32 } from 'node:zlib';
import { decodeEnrollFrame, type EnrollMessage, encodeEnrollFrame } from '../../server/codec/index.ts';
import { type ErrorCode, ProtocolError } from '../../server/errors.ts';

export const ENROLL_VECTORS_PATH = fileURLToPath(new URL('./enroll-v1.json', import.meta.url));

export interface EnrollVectorFile {
  protocol: 1;
  endpoint: '/v1/enroll';
  conventions: Record<string, string>;
  valid: { name: string; description: string; fields: unknown; hex: string }[];
  malformed: { name: string; description: string; hex: string; error: ErrorCode }[];
}

const KEY = '00112233445566778899aabbccddeeff';

/** A message as JSON fields: the enroll key as hex. */
export function toFields(m: EnrollMessage): unknown {
  return m.type === 'enroll' ? { ...m, enrollKey: Buffer.from(m.enrollKey).toString('hex') } : m;
}

/** The inverse of {@link toFields}. */
export function fromFields(fields: unknown): EnrollMessage {
  const f = fields as Record<string, unknown>;
  return f.type === 'enroll'
    ? ({ ...f, enrollKey: new Uint8Array(Buffer.from(String(f.enrollKey), 'hex')) } as EnrollMessage)
    : (f as unknown as EnrollMessage);
}

const VALID: { name: string; description: string; message: EnrollMessage }[] = [
  {
    name: 'enroll-typical',
    description: 'A board with the firmware default hardware id, no fleet secret.',
    message: {
      type: 'enroll',
      hardwareId: 'esp32-a1b2c3d4e5f6',
      enrollKey: new Uint8Array(Buffer.from(KEY, 'hex')),
      fleetSecret: '',
      model: 'esp32',
      firmwareVersion: '1.4.0',
    },
  },
  {
    name: 'enroll-with-secret',
    description: 'With a fleet secret and a C3 model.',
    message: {
      type: 'enroll',
      hardwareId: 'esp32-0123456789ab',
      enrollKey: new Uint8Array(16).fill(0xa5),
      fleetSecret: 'fleet-secret-0123456789',
      model: 'esp32-c3',
      firmwareVersion: '1.4.0+g1234abc',
    },
  },
  {
    name: 'enroll-maximal',
    description: 'Every string at its maximum: 64-byte id, 64-byte secret, 32-byte model, 64-byte version.',
    message: {
      type: 'enroll',
      hardwareId: 'h'.repeat(64),
      enrollKey: new Uint8Array(16).fill(0xff),
      fleetSecret: 's'.repeat(64),
      model: 'm'.repeat(32),
      firmwareVersion: 'v'.repeat(64),
    },
  },
  {
    name: 'enroll-status-pending',
    description: 'The answer while an operator has not decided.',
    message: { type: 'enroll_status', status: 0, deviceId: '', token: '', message: 'waiting for approval' },
  },
  {
    name: 'enroll-status-approved',
    description: 'The hand-over: device id and a token of the hub (esp32hub_ + 43 base64url characters).',
    message: {
      type: 'enroll_status',
      status: 1,
      deviceId: 'greenhouse-1',
      token: `esp32hub_${'A'.repeat(20)}-_${'z'.repeat(21)}`,
      message: 'approved',
    },
  },
  {
    name: 'enroll-status-rejected',
    description: 'An operator rejected the board.',
    message: { type: 'enroll_status', status: 2, deviceId: '', token: '', message: 'rejected by an operator' },
  },
  { name: 'enroll-confirm', description: 'Empty payload.', message: { type: 'enroll_confirm' } },
  {
    name: 'enroll-error-secret-invalid',
    description: 'FATAL ERROR ENROLL_SECRET_INVALID (wire 800).',
    message: { type: 'error', fatal: true, code: 800, message: 'the fleet secret does not match' },
  },
  {
    name: 'enroll-error-pending-full',
    description: 'Non-fatal ERROR ENROLL_PENDING_FULL (wire 802), followed by close 1013.',
    message: { type: 'error', fatal: false, code: 802, message: 'the pending list is full; retry later' },
  },
];

/** A frame around `payload` with a correct length and CRC unless overridden. */
function frame(type: number, payload: number[] | Uint8Array, o: { flags?: number; crc?: number } = {}): Uint8Array {
  const p = Uint8Array.from(payload);
  const out = new Uint8Array(12 + p.length);
  const view = new DataView(out.buffer);
  out.set([0x45, 0x53, 1, type, o.flags ?? 0, 0]);
  view.setUint16(6, p.length, true);
  out.set(p, 8);
  view.setUint32(8 + p.length, o.crc ?? crc32(out.subarray(0, 8 + p.length)), true);
  return out;
}

const str8 = (s: string): number[] => {
  const b = [...Buffer.from(s, 'utf8')];
  return [b.length, ...b];
};
const key = [...Buffer.from(KEY, 'hex')];
const enrollPayload = (id: number[], k: number[], rest: number[]): number[] => [...id, ...k, ...rest];
const tail = [...str8(''), ...str8('esp32'), ...str8('1.0')];

const MALFORMED: { name: string; description: string; bytes: Uint8Array; error: ErrorCode }[] = [
  {
    name: 'enroll-hello-on-enroll-endpoint',
    description: 'A HELLO (device endpoint type 0x01, valid payload) sent to /v1/enroll.',
    bytes: frame(0x01, [...str8('a'), ...str8(''), 1, 1, 0, 0, 0, 1, ...new Array(8 + 12).fill(0)]),
    error: 'UNEXPECTED_MESSAGE',
  },
  {
    name: 'enroll-unknown-type-0x23',
    description: 'Type 0x23 is defined nowhere.',
    bytes: frame(0x23, []),
    error: 'UNKNOWN_TYPE',
  },
  {
    name: 'enroll-flags-set',
    description: 'ENROLL with flag bit 0 set (no flags are defined for it).',
    bytes: frame(0x20, enrollPayload(str8('a'), key, tail), { flags: 1 }),
    error: 'BAD_FLAGS',
  },
  {
    name: 'enroll-bad-crc',
    description: 'ENROLL with a zero CRC trailer.',
    bytes: frame(0x20, enrollPayload(str8('a'), key, tail), { crc: 0 }),
    error: 'BAD_CRC',
  },
  {
    name: 'enroll-empty-hardware-id',
    description: 'hardwareId of 0 bytes (1-64 required).',
    bytes: frame(0x20, enrollPayload(str8(''), key, tail)),
    error: 'BAD_FIELD',
  },
  {
    name: 'enroll-hardware-id-alphabet',
    description: 'hardwareId with a space (outside the device id alphabet).',
    bytes: frame(0x20, enrollPayload(str8('esp32 x'), key, tail)),
    error: 'BAD_FIELD',
  },
  {
    name: 'enroll-short-key',
    description: 'ENROLL whose payload ends inside the 16-byte enroll key.',
    bytes: frame(0x20, enrollPayload(str8('a'), key.slice(0, 10), [])),
    error: 'TRUNCATED',
  },
  {
    name: 'enroll-secret-too-long',
    description: 'fleetSecret of 65 bytes (at most 64).',
    bytes: frame(0x20, enrollPayload(str8('a'), key, [...str8('s'.repeat(65)), ...str8(''), ...str8('')])),
    error: 'BAD_FIELD',
  },
  {
    name: 'enroll-model-too-long',
    description: 'model of 33 bytes (at most 32).',
    bytes: frame(0x20, enrollPayload(str8('a'), key, [...str8(''), ...str8('m'.repeat(33)), ...str8('')])),
    error: 'BAD_FIELD',
  },
  {
    name: 'enroll-trailing-byte',
    description: 'ENROLL with one byte after firmwareVersion (length and CRC correct).',
    bytes: frame(0x20, enrollPayload(str8('a'), key, [...tail, 0])),
    error: 'BAD_LENGTH',
  },
  {
    name: 'enroll-status-3',
    description: 'ENROLL_STATUS with status 3 (0..2 defined).',
    bytes: frame(0x21, [3, ...str8(''), ...str8(''), ...str8('')]),
    error: 'BAD_FIELD',
  },
  {
    name: 'enroll-status-approved-without-token',
    description: 'Approved, with a device id but an empty token.',
    bytes: frame(0x21, [1, ...str8('dev-1'), ...str8(''), ...str8('')]),
    error: 'BAD_FIELD',
  },
  {
    name: 'enroll-status-pending-with-token',
    description: 'Pending, but carrying a token.',
    bytes: frame(0x21, [0, ...str8(''), ...str8('esp32hub_x'), ...str8('')]),
    error: 'BAD_FIELD',
  },
  {
    name: 'enroll-status-token-space',
    description: 'Approved with a token holding a space (printable ASCII without spaces).',
    bytes: frame(0x21, [1, ...str8('dev-1'), ...str8('a b'), ...str8('')]),
    error: 'BAD_FIELD',
  },
  {
    name: 'enroll-confirm-with-payload',
    description: 'ENROLL_CONFIRM with one payload byte (its payload is empty).',
    bytes: frame(0x22, [0]),
    error: 'BAD_LENGTH',
  },
];

export function buildEnrollVectors(): EnrollVectorFile {
  const valid = VALID.map((v) => {
    const bytes = encodeEnrollFrame(v.message);
    const back = decodeEnrollFrame(bytes);
    if (!isDeepStrictEqual(toFields(back), toFields(v.message))) throw new Error(`${v.name} does not round-trip`);
    return {
      name: v.name,
      description: v.description,
      fields: toFields(v.message),
      hex: Buffer.from(bytes).toString('hex'),
    };
  });
  const malformed = MALFORMED.map((m) => {
    try {
      decodeEnrollFrame(m.bytes);
    } catch (err) {
      if (err instanceof ProtocolError && err.code === m.error) {
        return { name: m.name, description: m.description, hex: Buffer.from(m.bytes).toString('hex'), error: m.error };
      }
      throw new Error(`${m.name}: expected ${m.error}, got ${(err as Error).message}`);
    }
    throw new Error(`${m.name}: decoded, expected ${m.error}`);
  });
  return {
    protocol: 1,
    endpoint: '/v1/enroll',
    conventions: {
      hex: 'The whole frame (header, payload, CRC trailer) as lowercase hex, no separators.',
      fields:
        'The message as decodeEnrollFrame returns it (server/codec/enroll.ts), with enrollKey as 32 lowercase hex characters.',
      error:
        'The code name from docs/errors.md of the first failing check in the order of [PROTO-2.7]; types 0x01-0x08 are UNEXPECTED_MESSAGE on /v1/enroll [PROTO-8.1.3].',
    },
    valid,
    malformed,
  };
}

export function renderEnrollVectors(): string {
  return `${JSON.stringify(buildEnrollVectors(), null, 2)}\n`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const text = renderEnrollVectors();
  if (process.argv.includes('--check')) {
    if (readFileSync(ENROLL_VECTORS_PATH, 'utf8') !== text) {
      console.error('enroll-v1.json is stale: run npx tsx test/vectors/generate-enroll.ts');
      process.exit(1);
    }
    console.log('enroll-v1.json is up to date');
  } else {
    writeFileSync(ENROLL_VECTORS_PATH, text);
    console.log(`wrote ${ENROLL_VECTORS_PATH}`);
  }
}
