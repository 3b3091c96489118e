/**
 * The ingest fast path for TELEMETRY [PROTO-3.4]: validates a frame and measures it (ids, base time,
 * sample counts, delta range, descriptor agreement) WITHOUT building the decoded message — no object
 * per block or sample, so a stored frame costs the hub no garbage. The raw frame is what the local log
 * keeps anyway; readers (forwarder, history, live) decode it with the codec when they need values.
 *
 * Contract with the codec: the scan accepts exactly the TELEMETRY frames `decodeFrame` accepts. It is
 * conservative by construction — on any fault it returns false WITHOUT naming it, and the caller runs
 * `decodeFrame` to obtain the canonical error code in the [PROTO-2.7] order. Tests hold the two together
 * over the golden vectors and fuzzed mutations (test/unit/pipeline-telemetry-scan.test.ts).
 */
import { readEnvelope } from './frame.ts';
import { type ChannelDescriptor, Flags, Limits, MessageType, ValueType } from './types.ts';

/** Channel index → descriptor (sparse, indexes 0..127), as built by the ingest for a descriptor set. */
export type ChannelTable = readonly (ChannelDescriptor | undefined)[];

/** What the scan found. Reused between calls (no allocation per frame): copy what you keep. */
export interface TelemetryScan {
  unsynced: boolean;
  bootId: number;
  seq: number;
  descriptorHash: number;
  baseTime: number;
  /** Samples with a value (f32 NaN/±Infinity count as missing, as in `telemetryToReadings`). */
  samples: number;
  missing: number;
  minDeltaMs: number;
  maxDeltaMs: number;
  /** First block disagreeing with the descriptor table (in block order), else null. */
  mismatch: 'UNKNOWN_CHANNEL' | 'TYPE_MISMATCH' | null;
  mismatchChannel: number;
  mismatchType: number;
}

export function newTelemetryScan(): TelemetryScan {
  return {
    unsynced: false,
    bootId: 0,
    seq: 0,
    descriptorHash: 0,
    baseTime: 0,
    samples: 0,
    missing: 0,
    minDeltaMs: 0,
    maxDeltaMs: 0,
    mismatch: null,
    mismatchChannel: 0,
    mismatchType: 0,
  };
}

/** Bytes of a sample value per TELEMETRY value type 0..7 [PROTO-4]. */
const SAMPLE_BYTES = [1, 1, 1, 2, 2, 4, 4, 4] as const;
const TWO_32 = 0x1_0000_0000;

/**
 * Scans `frame` into `out`. Throws the codec's ProtocolError for envelope faults (readEnvelope);
 * returns false for a frame that is not TELEMETRY or whose payload is malformed (decode it to learn
 * why), true for a well-formed TELEMETRY frame. Blocks are checked against `table` when given (look it
 * up with `peekDescriptorHash`); otherwise `mismatch` stays null.
 */
export function scanTelemetry(frame: Uint8Array, out: TelemetryScan, table: ChannelTable | undefined): boolean {
  const env = readEnvelope(frame);
  if (env.type !== MessageType.TELEMETRY) return false;
  const b = frame;
  const end = env.end;
  let p = env.start;
  // bootId u32, seq u32, descriptorHash u32, baseTime u64, blockCount u8 = 21 bytes.
  if (p + 21 > end) return false;
  const bootId = u32(b, p);
  const seq = u32(b, p + 4);
  const hash = u32(b, p + 8);
  const lo = u32(b, p + 12);
  const hi = u32(b, p + 16);
  const blockCount = b[p + 20] as number;
  if (bootId === 0 || seq === 0 || hi > 0x1fffff) return false;
  if (blockCount < 1 || blockCount > Limits.maxBlocks) return false;
  p += 21;
  let samples = 0;
  let missing = 0;
  let minDelta = Number.POSITIVE_INFINITY;
  let maxDelta = 0;
  out.mismatch = null;
  for (let blk = 0; blk < blockCount; blk++) {
    if (p + 3 > end) return false;
    const channel = b[p] as number;
    const valueType = b[p + 1] as number;
    const n = b[p + 2] as number;
    p += 3;
    if (channel > Limits.maxChannelIndex || valueType > ValueType.F32 || n === 0) return false;
    if (table !== undefined && out.mismatch === null) {
      const ch = table[channel];
      if (ch === undefined || ch.valueType !== valueType) {
        out.mismatch = ch === undefined ? 'UNKNOWN_CHANNEL' : 'TYPE_MISMATCH';
        out.mismatchChannel = channel;
        out.mismatchType = valueType;
      }
    }
    const width = SAMPLE_BYTES[valueType as 0] as number;
    for (let i = 0; i < n; i++) {
      // tag varint: canonical unsigned LEB128, ≤ 5 bytes, < 2^32 [PROTO-2.1].
      let tag: number;
      if (p >= end) return false;
      const t0 = b[p] as number;
      if (t0 < 0x80) {
        tag = t0;
        p++;
      } else {
        tag = 0;
        let mul = 1;
        let i2 = 0;
        for (;;) {
          if (i2 === 5 || p >= end) return false;
          const byte = b[p++] as number;
          tag += (byte & 0x7f) * mul;
          if ((byte & 0x80) === 0) {
            if (byte === 0) return false; // superfluous trailing group (i2 > 0 here)
            break;
          }
          mul *= 128;
          i2++;
        }
        if (tag >= TWO_32) return false;
      }
      const delta = tag >>> 1;
      if (delta < minDelta) minDelta = delta;
      if (delta > maxDelta) maxDelta = delta;
      if ((tag & 1) === 1) {
        missing++;
        continue;
      }
      if (p + width > end) return false;
      if (valueType === ValueType.BOOL) {
        if ((b[p] as number) > 1) return false;
        samples++;
      } else if (
        valueType === ValueType.F32 &&
        ((b[p + 3] as number) & 0x7f) === 0x7f &&
        ((b[p + 2] as number) & 0x80) !== 0
      ) {
        missing++; // exponent all ones: NaN or ±Infinity
      } else samples++;
      p += width;
    }
  }
  if (p !== end) return false;
  out.unsynced = (env.flags & Flags.TELEMETRY_UNSYNCED) !== 0;
  out.bootId = bootId;
  out.seq = seq;
  out.descriptorHash = hash;
  out.baseTime = hi * TWO_32 + lo;
  out.samples = samples;
  out.missing = missing;
  out.minDeltaMs = minDelta === Number.POSITIVE_INFINITY ? 0 : minDelta;
  out.maxDeltaMs = maxDelta;
  return true;
}

/**
 * The descriptor hash of a TELEMETRY frame (payload bytes 8..11), read without validation: meaningful
 * only if the frame turns out well-formed, which is all the scan needs it for.
 */
export function peekDescriptorHash(frame: Uint8Array): number {
  return frame.length >= 20 ? u32(frame, 16) : 0;
}

function u32(b: Uint8Array, p: number): number {
  return (
    ((b[p] as number) | ((b[p + 1] as number) << 8) | ((b[p + 2] as number) << 16) | ((b[p + 3] as number) << 24)) >>> 0
  );
}
