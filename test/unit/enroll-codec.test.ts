/**
 * The enrollment frames [PROTO-8.2] against their golden vectors (test/vectors/enroll-v1.json), against
 * an independent encoder written from docs/protocol.md §8 (Buffer writes, node:zlib CRC-32), and the
 * endpoint separation: 0x20-0x22 stay UNKNOWN_TYPE on the device codec.
 */
import { readFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeEnrollFrame, decodeFrame, encodeEnrollFrame } from '../../server/codec/index.ts';
import { ProtocolError } from '../../server/errors.ts';
import {
  ENROLL_VECTORS_PATH,
  type EnrollVectorFile,
  fromFields,
  renderEnrollVectors,
  toFields,
} from '../vectors/generate-enroll.ts';

const file = JSON.parse(readFileSync(ENROLL_VECTORS_PATH, 'utf8')) as EnrollVectorFile;

/** Independent encoder: the byte layout of docs/protocol.md §8.2 written with Buffer. */
function independent(fields: Record<string, unknown>): Buffer {
  const s8 = (s: unknown) => {
    const b = Buffer.from(String(s), 'utf8');
    return Buffer.concat([Buffer.from([b.length]), b]);
  };
  let type: number;
  let flags = 0;
  let payload: Buffer;
  switch (fields.type) {
    case 'enroll':
      type = 0x20;
      payload = Buffer.concat([
        s8(fields.hardwareId),
        Buffer.from(String(fields.enrollKey), 'hex'),
        s8(fields.fleetSecret),
        s8(fields.model),
        s8(fields.firmwareVersion),
      ]);
      break;
    case 'enroll_status':
      type = 0x21;
      payload = Buffer.concat([
        Buffer.from([fields.status as number]),
        s8(fields.deviceId),
        s8(fields.token),
        s8(fields.message),
      ]);
      break;
    case 'enroll_confirm':
      type = 0x22;
      payload = Buffer.alloc(0);
      break;
    default: {
      type = 0x09;
      flags = fields.fatal ? 1 : 0;
      const code = Buffer.alloc(2);
      code.writeUInt16LE(fields.code as number);
      payload = Buffer.concat([code, s8(fields.message)]);
    }
  }
  const head = Buffer.from([0x45, 0x53, 1, type, flags, 0, 0, 0]);
  head.writeUInt16LE(payload.length, 6);
  const body = Buffer.concat([head, payload]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32(body));
  return Buffer.concat([body, crc]);
}

describe('enroll-v1.json golden vectors [PROTO-8.2]', () => {
  it('is what the generator produces (not stale)', () => {
    expect(readFileSync(ENROLL_VECTORS_PATH, 'utf8')).toBe(renderEnrollVectors());
  });

  it('covers every enrollment type both ways and the refusals', () => {
    const types = new Set(file.valid.map((v) => (v.fields as { type: string }).type));
    expect([...types].sort()).toEqual(['enroll', 'enroll_confirm', 'enroll_status', 'error']);
    expect(new Set(file.malformed.map((m) => m.error))).toEqual(
      new Set(['UNEXPECTED_MESSAGE', 'UNKNOWN_TYPE', 'BAD_FLAGS', 'BAD_CRC', 'BAD_FIELD', 'TRUNCATED', 'BAD_LENGTH']),
    );
  });

  it.each(file.valid.map((v) => [v.name, v] as const))(
    '%s decodes to its fields and re-encodes byte for byte',
    (_n, v) => {
      const bytes = Buffer.from(v.hex, 'hex');
      expect(toFields(decodeEnrollFrame(bytes))).toEqual(v.fields);
      expect(Buffer.from(encodeEnrollFrame(fromFields(v.fields))).toString('hex')).toBe(v.hex);
      expect(independent(v.fields as Record<string, unknown>).toString('hex')).toBe(v.hex);
    },
  );

  it.each(file.malformed.map((m) => [m.name, m] as const))('%s is refused with its code', (_n, m) => {
    let code: string | undefined;
    try {
      decodeEnrollFrame(Buffer.from(m.hex, 'hex'));
    } catch (err) {
      expect(err).toBeInstanceOf(ProtocolError);
      code = (err as ProtocolError).code;
    }
    expect(code).toBe(m.error);
  });
});

describe('endpoint separation [PROTO-8.1.3]', () => {
  it('the device codec answers UNKNOWN_TYPE for every enrollment frame', () => {
    for (const v of file.valid.filter((x) => (x.fields as { type: string }).type !== 'error')) {
      expect(() => decodeFrame(Buffer.from(v.hex, 'hex')), v.name).toThrow(
        expect.objectContaining({ code: 'UNKNOWN_TYPE' }),
      );
    }
  });

  it('the encoder refuses what the decoder refuses', () => {
    const bad = [
      { type: 'enroll_status', status: 1, deviceId: 'x', token: '', message: '' },
      { type: 'enroll_status', status: 0, deviceId: '', token: 'esp32hub_x', message: '' },
      { type: 'enroll_status', status: 3, deviceId: '', token: '', message: '' },
      {
        type: 'enroll',
        hardwareId: 'a',
        enrollKey: new Uint8Array(15),
        fleetSecret: '',
        model: '',
        firmwareVersion: '',
      },
      {
        type: 'enroll',
        hardwareId: 'a b',
        enrollKey: new Uint8Array(16),
        fleetSecret: '',
        model: '',
        firmwareVersion: '',
      },
    ];
    for (const m of bad) {
      expect(() => encodeEnrollFrame(m as never), JSON.stringify(m)).toThrow(
        expect.objectContaining({ code: 'BAD_FIELD' }),
      );
    }
  });
});
