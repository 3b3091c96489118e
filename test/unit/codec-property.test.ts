/**
 * Property tests of the codec with fast-check: valid messages round-trip byte-identically, and any input
 * at all decodes to a message or fails with a coded ProtocolError. Bounded runs (a few seconds); the
 * 1 M-case run is `npm run fuzz`.
 */

import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame, f32Value, type Message, scaledValue } from '../../server/codec/index.ts';
import { ERRORS, type ErrorCode, ProtocolError } from '../../server/errors.ts';
import { arbMessage, hasNaN } from '../fuzz/arbitraries.ts';
import { buildCorpus, runFuzz } from '../fuzz/engine.ts';

const FRAME_CODES = Object.keys(ERRORS).filter((c) => ERRORS[c as ErrorCode].layer === 'frame');

type Outcome = { ok: true; message: Message } | { ok: false; code: string };
/** Decodes, and turns the only allowed failure (a ProtocolError) into its code; anything else throws. */
function outcome(bytes: Uint8Array): Outcome {
  try {
    return { ok: true, message: decodeFrame(bytes) };
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    return { ok: false, code: err.code };
  }
}

/** Rewrites the length field and CRC after an edit, so the payload parser is the one exercised. */
function refit(bytes: Uint8Array): Uint8Array {
  const out = Uint8Array.from(bytes);
  const view = new DataView(out.buffer);
  view.setUint16(6, out.length - 12, true);
  view.setUint32(out.length - 4, crc32(out.subarray(0, out.length - 4)), true);
  return out;
}

function expectCodedOrCanonical(bytes: Uint8Array): void {
  const o = outcome(bytes);
  if (o.ok) {
    // The decoder accepts canonical encodings only: what decodes re-encodes to the same bytes.
    if (!hasNaN(o.message)) expect(Buffer.from(encodeFrame(o.message))).toEqual(Buffer.from(bytes));
  } else {
    expect(FRAME_CODES).toContain(o.code);
  }
}

describe('round trip', () => {
  it('encode → decode gives the message back, and re-encoding gives the same bytes', () => {
    fc.assert(
      fc.property(arbMessage, (message) => {
        const bytes = encodeFrame(message);
        expect(bytes.length).toBeLessThanOrEqual(4096);
        const decoded = decodeFrame(bytes);
        expect(decoded).toEqual(message);
        expect(Buffer.from(encodeFrame(decoded))).toEqual(Buffer.from(bytes));
      }),
      { numRuns: 1000 },
    );
  });

  it('decodes a frame at any byte offset of a larger buffer (Buffer pools, ws messages)', () => {
    fc.assert(
      fc.property(arbMessage, fc.nat(64), (message, offset) => {
        const bytes = encodeFrame(message);
        const big = new Uint8Array(offset + bytes.length + 7).fill(0xa5);
        big.set(bytes, offset);
        expect(decodeFrame(big.subarray(offset, offset + bytes.length))).toEqual(message);
      }),
      { numRuns: 200 },
    );
  });
});

describe('truncation and trailing bytes [PROTO-2.7]', () => {
  it('every strict prefix of a valid frame is TRUNCATED', () => {
    fc.assert(
      fc.property(arbMessage, fc.double({ min: 0, max: 1, noNaN: true }), (message, at) => {
        const bytes = encodeFrame(message);
        const cut = Math.min(bytes.length - 1, Math.floor(at * bytes.length));
        expect(outcome(bytes.subarray(0, cut))).toEqual({ ok: false, code: 'TRUNCATED' });
      }),
      { numRuns: 500 },
    );
  });

  it('a payload cut short with length and CRC fixed is TRUNCATED, not BAD_CRC', () => {
    fc.assert(
      fc.property(arbMessage, fc.double({ min: 0, max: 1, noNaN: true }), (message, at) => {
        const bytes = encodeFrame(message);
        const payloadLength = bytes.length - 12;
        fc.pre(payloadLength > 0);
        const keep = Math.min(payloadLength - 1, Math.floor(at * payloadLength));
        const shorter = refit(new Uint8Array([...bytes.subarray(0, 8 + keep), 0, 0, 0, 0]));
        expect(outcome(shorter)).toEqual({ ok: false, code: 'TRUNCATED' });
      }),
      { numRuns: 500 },
    );
  });

  it('bytes after the last field, with length and CRC fixed, are BAD_LENGTH (or TOO_LARGE past 4096)', () => {
    fc.assert(
      fc.property(arbMessage, fc.uint8Array({ minLength: 1, maxLength: 8 }), (message, extra) => {
        const bytes = encodeFrame(message);
        const longer = refit(new Uint8Array([...bytes.subarray(0, bytes.length - 4), ...extra, 0, 0, 0, 0]));
        expect(outcome(longer)).toEqual({ ok: false, code: longer.length > 4096 ? 'TOO_LARGE' : 'BAD_LENGTH' });
      }),
      { numRuns: 300 },
    );
  });
});

describe('arbitrary input only ever yields a message or a coded ProtocolError', () => {
  it('random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 80 }), expectCodedOrCanonical), { numRuns: 2000 });
  });

  it('random payloads behind a valid header and CRC', () => {
    const header = fc.record({ type: fc.integer({ min: 0, max: 11 }), flags: fc.constantFrom(0, 1, 2, 3, 0x80) });
    fc.assert(
      fc.property(header, fc.uint8Array({ maxLength: 96 }), ({ type, flags }, payload) => {
        const bytes = new Uint8Array([0x45, 0x53, 1, type, flags, 0, 0, 0, ...payload, 0, 0, 0, 0]);
        expectCodedOrCanonical(refit(bytes));
      }),
      { numRuns: 2000 },
    );
  });

  it('valid frames with bytes overwritten, inserted or deleted, then CRC-fixed', () => {
    const edit = fc.record({
      kind: fc.constantFrom('set', 'flip', 'insert', 'delete'),
      at: fc.double({ min: 0, max: 1, noNaN: true }),
      byte: fc.integer({ min: 0, max: 255 }),
    });
    fc.assert(
      fc.property(arbMessage, fc.array(edit, { minLength: 1, maxLength: 4 }), (message, edits) => {
        const bytes = [...encodeFrame(message)];
        for (const e of edits) {
          // Edit the payload only: the envelope stays valid so the payload parser sees the damage.
          const payloadLength = bytes.length - 12;
          const i = 8 + Math.floor(e.at * Math.max(1, payloadLength));
          if (e.kind === 'set') bytes[i] = e.byte;
          else if (e.kind === 'flip') bytes[i] = (bytes[i] ?? 0) ^ (1 << (e.byte & 7));
          else if (e.kind === 'insert') bytes.splice(i, 0, e.byte);
          else if (payloadLength > 0) bytes.splice(i, 1);
        }
        expectCodedOrCanonical(refit(Uint8Array.from(bytes)));
      }),
      { numRuns: 2000 },
    );
  });

  it('a bounded run of the fuzz engine reaches every frame-layer code and finds nothing uncoded', () => {
    const stats = runFuzz({ cases: 20_000, seed: 7, corpus: buildCorpus(7, 300) });
    expect(stats.failures).toEqual([]);
    expect(stats.uncoded).toBe(0);
    expect(stats.nonCanonical).toBe(0);
    expect(Object.keys(stats.byCode).sort()).toEqual([...FRAME_CODES].sort());
    // The CRC-fixed strategies must get past the envelope, or they would only ever test BAD_CRC.
    expect(stats.byStrategy['mutated-crc-fixed'].decoded).toBeGreaterThan(0);
    expect(stats.byStrategy.structured.decoded).toBeGreaterThan(0);
  });
});

describe('scaledValue', () => {
  it('is the double nearest to raw × 10^scaleExp written in decimal', () => {
    fc.assert(
      fc.property(fc.integer({ min: -0x8000_0000, max: 0xffff_ffff }), fc.integer({ min: -9, max: 9 }), (raw, exp) => {
        expect(scaledValue(raw, exp)).toBe(Number(`${raw}e${exp}`));
      }),
      { numRuns: 5000 },
    );
  });
});

/** Reference for `f32Value`, from its definition: the fewest significant digits that read back as `f`. */
function shortestF32(f: number): number {
  for (let digits = 1; digits <= 9; digits++) {
    const d = Number(f.toPrecision(digits));
    if (Math.fround(d) === f) return d;
  }
  throw new Error(`no 9-digit decimal reads back as ${f}`);
}

describe('f32Value', () => {
  const check = (f: number) => {
    const v = f32Value(f);
    expect(Math.fround(v)).toBe(f); // the same binary32: nothing the device sent is changed
    expect(String(v).length).toBeLessThanOrEqual(String(shortestF32(f)).length); // and as short as it gets
  };
  it('reads every finite binary32 back as itself, as the shortest decimal', () => {
    fc.assert(
      fc.property(fc.float({ noNaN: true, noDefaultInfinity: true }), (x) => check(Math.fround(x))),
      { numRuns: 20_000 },
    );
  });
  it('a decimal of up to 6 significant digits stored as f32 comes out as written', () => {
    fc.assert(
      fc.property(fc.integer({ min: -200_000, max: 200_000 }), fc.integer({ min: 0, max: 4 }), (m, k) => {
        // At most 6 significant digits: binary32 (24 bits, ~7.2 digits) tells every such decimal apart.
        const written = m / 10 ** k;
        expect(f32Value(Math.fround(written))).toBe(written);
      }),
      { numRuns: 5000 },
    );
  });
});
