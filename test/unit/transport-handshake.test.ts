/** Handshake helpers and hand-built outbound frames. */
import { describe, expect, it } from 'vitest';
import * as ws from 'ws';
import { decodeFrame, encodeFrame } from '../../server/codec/index.ts';
import { ERRORS } from '../../server/errors.ts';
import { bearerToken, offeredSubprotocols, requestPath, TokenBucket } from '../../server/transport/handshake.ts';
import { encodeAck, encodeError, encodeWsAck } from '../../server/transport/outbound.ts';

describe('TokenBucket', () => {
  it('allows a burst of one second, then refills at the rate', () => {
    let now = 0;
    const b = new TokenBucket(5, () => now);
    const burst = Array.from({ length: 7 }, () => b.take());
    expect(burst).toEqual([true, true, true, true, true, false, false]);
    now += 200; // one token
    expect(b.take()).toBe(true);
    expect(b.take()).toBe(false);
    now += 10_000; // never more than the burst
    expect(Array.from({ length: 6 }, () => b.take()).filter(Boolean)).toHaveLength(5);
  });
});

describe('header parsing', () => {
  it('reads Bearer tokens only', () => {
    expect(bearerToken('Bearer abc.DEF_123')).toBe('abc.DEF_123');
    expect(bearerToken('bearer   tok  ')).toBe('tok');
    expect(bearerToken('Basic dXNlcjpwYXNz')).toBeNull();
    expect(bearerToken('Bearer')).toBeNull();
    expect(bearerToken('Bearer a b')).toBeNull();
    expect(bearerToken(undefined)).toBeNull();
  });
  it('splits offered subprotocols', () => {
    expect([...offeredSubprotocols('foo, esp32hub.v1 ,bar')]).toEqual(['foo', 'esp32hub.v1', 'bar']);
    expect(offeredSubprotocols(undefined).size).toBe(0);
  });
  it('strips the query string from paths', () => {
    expect(requestPath('/v1/device?x=1')).toBe('/v1/device');
    expect(requestPath(undefined)).toBe('/');
  });
});

/** ws's frame builder (exported by the module, not declared by its types). */
const { Sender } = ws as unknown as {
  Sender: { frame(data: Buffer, options: Record<string, unknown>): Buffer[] };
};

describe('outbound frames', () => {
  it('builds ACK frames byte-identical to the codec', () => {
    for (const [bootId, seq] of [
      [1, 1],
      [0xffffffff, 0xffffffff],
      [123456789, 42],
    ] as const) {
      expect(new Uint8Array(encodeAck(bootId, seq))).toEqual(encodeFrame({ type: 'ack', bootId, seq }));
    }
  });
  it('builds the WebSocket-framed ACK byte-identical to what ws sends for it (unmasked, server side)', () => {
    for (const [bootId, seq] of [
      [1, 1],
      [0xffffffff, 0xffffffff],
      [7, 123456],
    ] as const) {
      const ack = encodeAck(bootId, seq);
      const wire = Buffer.concat(
        Sender.frame(ack, { fin: true, opcode: 2, mask: false, readOnly: false, rsv1: false }),
      );
      expect(new Uint8Array(encodeWsAck(bootId, seq))).toEqual(new Uint8Array(wire));
    }
  });
  it('builds ERROR frames with the catalogue wire code, FATAL when the code closes', () => {
    expect(decodeFrame(encodeError('BAD_CRC', 'x'))).toEqual({
      type: 'error',
      fatal: true,
      code: ERRORS.BAD_CRC.wire,
      message: 'x',
    });
    expect(decodeFrame(encodeError('STORAGE_FULL', 'full'))).toMatchObject({ fatal: false, code: 300 });
    const long = decodeFrame(encodeError('INTERNAL', `a\nb${'é'.repeat(300)}`));
    expect(long.type === 'error' && Buffer.byteLength(long.message) <= 200 && !long.message.includes('\n')).toBe(true);
  });
});
