/**
 * The ingest's allocation-free TELEMETRY scan must accept exactly what the codec's `decodeFrame`
 * accepts, and measure the same things `checkTelemetry` measures on the decoded message. Checked over
 * every golden vector and over fuzzed mutations of the TELEMETRY vectors (CRC re-sealed, so payload
 * faults are exercised, not just BAD_CRC).
 */
import { readFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type ChannelDescriptor,
  type ChannelTable,
  decodeFrame,
  type Message,
  newTelemetryScan,
  scanTelemetry,
  type Telemetry,
  ValueType,
} from '../../server/codec/index.ts';
import { HubError } from '../../server/errors.ts';
import { checkTelemetry } from '../../server/pipeline/ingest.ts';

interface Vector {
  name: string;
  hex: string;
  error?: string;
}
const vectors = JSON.parse(readFileSync(new URL('../vectors/protocol-v1.json', import.meta.url), 'utf8')) as {
  valid: Vector[];
  malformed: Vector[];
};
const all = [...vectors.valid, ...vectors.malformed].map((v) => ({ ...v, bytes: Buffer.from(v.hex, 'hex') }));
const telemetryVectors = vectors.valid
  .filter((v) => v.name.startsWith('telemetry-'))
  .map((v) => Buffer.from(v.hex, 'hex'));

/** A descriptor table that agrees with every block of `t` (so the scan's counts can be compared). */
function tableFor(t: Telemetry): ChannelTable {
  const table: (ChannelDescriptor | undefined)[] = new Array(128);
  for (const b of t.blocks) {
    table[b.channel] ??= {
      index: b.channel,
      key: `c${b.channel}`,
      unit: '',
      valueType: b.valueType,
      scaleExp: 0,
      periodMs: 0,
    };
  }
  return table;
}

type Outcome = { ok: true; summary: object } | { ok: false; code: string | null };

function viaCodec(bytes: Uint8Array): Outcome {
  let m: Message;
  try {
    m = decodeFrame(bytes);
  } catch (err) {
    return { ok: false, code: (err as HubError).code };
  }
  if (m.type !== 'telemetry') return { ok: false, code: null };
  const table = tableFor(m);
  let shape: ReturnType<typeof checkTelemetry>;
  try {
    shape = checkTelemetry(
      m,
      table.filter((c): c is ChannelDescriptor => c !== undefined),
    );
  } catch (err) {
    // E.g. two blocks of one channel with different types: well-formed, but not one descriptor set.
    return { ok: true, summary: { mismatch: (err as HubError).code } };
  }
  return {
    ok: true,
    summary: {
      unsynced: m.unsynced,
      bootId: m.bootId,
      seq: m.seq,
      descriptorHash: m.descriptorHash,
      baseTime: m.baseTime,
      ...shape,
    },
  };
}

function viaScan(bytes: Uint8Array, reference: Outcome): Outcome {
  const out = newTelemetryScan();
  let decoded: Telemetry | null = null;
  try {
    decoded = (() => {
      const m = decodeFrame(bytes);
      return m.type === 'telemetry' ? m : null;
    })();
  } catch {
    decoded = null;
  }
  try {
    const ok = scanTelemetry(bytes, out, decoded ? tableFor(decoded) : undefined);
    if (!ok)
      return { ok: false, code: reference.ok ? 'scan rejected a frame the codec accepts' : (reference.code ?? null) };
  } catch (err) {
    return { ok: false, code: (err as HubError).code };
  }
  if (out.mismatch !== null) return { ok: true, summary: { mismatch: out.mismatch } };
  const { unsynced, bootId, seq, descriptorHash, baseTime, samples, missing, minDeltaMs, maxDeltaMs } = out;
  return {
    ok: true,
    summary: { unsynced, bootId, seq, descriptorHash, baseTime, samples, missing, minDeltaMs, maxDeltaMs },
  };
}

describe('scanTelemetry', () => {
  it('agrees with decodeFrame on every golden vector', () => {
    for (const v of all) {
      const reference = viaCodec(v.bytes);
      expect(viaScan(v.bytes, reference), v.name).toEqual(reference);
    }
  });

  it('agrees with decodeFrame on fuzzed TELEMETRY frames (one to four bytes changed, CRC re-sealed)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: telemetryVectors.length - 1 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.boolean(),
        (which, edits, reseal) => {
          const bytes = Buffer.from(telemetryVectors[which] as Buffer);
          for (const [pos, value] of edits) bytes[8 + (pos % Math.max(1, bytes.length - 12))] = value;
          if (reseal) bytes.writeUInt32LE(crc32(bytes.subarray(0, bytes.length - 4)), bytes.length - 4);
          const reference = viaCodec(bytes);
          expect(viaScan(bytes, reference)).toEqual(reference);
        },
      ),
      { numRuns: 20_000 },
    );
  });

  it('reports the first block that disagrees with the descriptor table, in block order', () => {
    const bytes = Buffer.from(telemetryVectors[0] as Buffer);
    const m = decodeFrame(bytes) as Telemetry;
    const table = [...tableFor(m)];
    const [first, second] = m.blocks;
    table[(second as Telemetry['blocks'][number]).channel] = undefined;
    table[(first as Telemetry['blocks'][number]).channel] = {
      index: 0,
      key: 'x',
      unit: '',
      valueType: first?.valueType === ValueType.F32 ? ValueType.I16 : ValueType.F32,
      scaleExp: 0,
      periodMs: 0,
    };
    const out = newTelemetryScan();
    expect(scanTelemetry(bytes, out, table)).toBe(true);
    expect(out.mismatch).toBe('TYPE_MISMATCH');
    expect(out.mismatchChannel).toBe(first?.channel);
    expect(() =>
      checkTelemetry(
        m,
        table.filter((c): c is ChannelDescriptor => c !== undefined),
      ),
    ).toThrow(HubError);
  });

  it('returns false for other message types without throwing', () => {
    const hello = vectors.valid.find((v) => v.name.startsWith('hello-')) as Vector;
    expect(scanTelemetry(Buffer.from(hello.hex, 'hex'), newTelemetryScan(), undefined)).toBe(false);
  });
});
