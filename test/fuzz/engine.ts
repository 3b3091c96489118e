/**
 * The codec fuzzer: feeds decodeFrame random bytes, mutated valid frames and grammar-built payloads, and
 * checks the contract of [PROTO-2.7]: decoding returns a message or throws a ProtocolError whose code is
 * a frame-layer code of the catalogue — nothing else, ever. A decoded message must also re-encode to the
 * same bytes (decoding accepts canonical encodings only), except where an f32 NaN was canonicalised.
 *
 * Deterministic for a given seed and corpus. Used by `npm run fuzz` (test/fuzz/run.ts, ≥ 1 M cases) and,
 * bounded, by test/unit/codec-fuzz.test.ts.
 */
import { readFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { decodeFrame, encodeFrame, type Message } from '../../server/codec/index.ts';
import { ERRORS, isErrorCode, ProtocolError } from '../../server/errors.ts';
import { arbMessage, hasNaN } from './arbitraries.ts';

export type Strategy = 'random-bytes' | 'random-payload' | 'mutated-raw' | 'mutated-crc-fixed' | 'structured';
export const STRATEGIES: readonly Strategy[] = [
  'random-bytes',
  'random-payload',
  'mutated-raw',
  'mutated-crc-fixed',
  'structured',
];

export interface FuzzFailure {
  kind: 'uncoded-exception' | 'not-re-encodable' | 'non-canonical-accepted';
  strategy: Strategy;
  hex: string;
  detail: string;
}

export interface FuzzStats {
  cases: number;
  /** Frames that decoded into a message. */
  decoded: number;
  /** Rejections per error code. */
  byCode: Record<string, number>;
  /** Cases and decoded frames per strategy. */
  byStrategy: Record<Strategy, { cases: number; decoded: number }>;
  /** Exceptions that are not a ProtocolError with a frame-layer catalogue code. Must be 0. */
  uncoded: number;
  /** Decoded frames that do not re-encode to themselves. Must be 0. */
  nonCanonical: number;
  /** The first failures, for reproduction (hex of the input). */
  failures: FuzzFailure[];
}

export interface FuzzOptions {
  cases: number;
  seed: number;
  /** Valid frames to mutate (e.g. fast-check samples and the golden vectors). */
  corpus: readonly Uint8Array[];
  /** Failures kept with their input; counting continues past it. */
  keepFailures?: number;
}

const FRAME_CODES = new Set(Object.keys(ERRORS).filter((code) => isErrorCode(code) && ERRORS[code].layer === 'frame'));

/** mulberry32: small, fast, good enough to drive a fuzzer, and reproducible from a seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Rng {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = prng(seed);
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  range(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }
  byte(): number {
    return this.int(256);
  }
}

const INTERESTING_U8 = [0, 1, 2, 7, 8, 9, 10, 0x3f, 0x40, 0x7f, 0x80, 0x81, 0xfe, 0xff];
const INTERESTING_U32 = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff];
/** Flag bits each type defines; types 1..9 [PROTO-2.4]. */
const DEFINED_FLAGS = [0, 0x01, 0x03, 0, 0x01, 0, 0, 0, 0, 0x01];

/** Header + payload + CRC with a consistent length field. */
function frameOf(type: number, flags: number, payload: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(12 + payload.length);
  out[0] = 0x45;
  out[1] = 0x53;
  out[2] = 1;
  out[3] = type;
  out[4] = flags;
  out.set(payload, 8);
  fixLengthAndCrc(out);
  return out;
}

/** Rewrites the length field and CRC so the envelope passes and the payload parser is exercised. */
function fixLengthAndCrc(bytes: Uint8Array): void {
  if (bytes.length < 12) return;
  const length = bytes.length - 12;
  if (length > 0xffff) return;
  bytes[6] = length & 0xff;
  bytes[7] = length >>> 8;
  const body = bytes.length - 4;
  const crc = crc32(bytes.subarray(0, body));
  bytes[body] = crc & 0xff;
  bytes[body + 1] = (crc >>> 8) & 0xff;
  bytes[body + 2] = (crc >>> 16) & 0xff;
  bytes[body + 3] = crc >>> 24;
}

// ───────────── strategies ─────────────

function randomBytes(rng: Rng): Uint8Array {
  const n = rng.chance(0.02) ? rng.range(4090, 4110) : rng.int(48);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.byte();
  // Half the time start with a plausible magic and version so later checks are reached.
  if (n >= 3 && rng.chance(0.5)) {
    out[0] = 0x45;
    out[1] = 0x53;
    out[2] = rng.chance(0.9) ? 1 : rng.byte();
  }
  return out;
}

function randomPayload(rng: Rng): Uint8Array {
  const type = rng.chance(0.95) ? rng.range(1, 9) : rng.byte();
  const flags = rng.chance(0.9) ? (DEFINED_FLAGS[type] ?? 0) & rng.byte() : rng.byte();
  const n = rng.chance(0.05) ? rng.int(4085) : rng.int(64);
  const payload = new Uint8Array(n);
  for (let i = 0; i < n; i++) payload[i] = rng.byte();
  return frameOf(type, flags, payload);
}

/** Applies 1–4 mutations: bit flips, interesting bytes, insertions, deletions, duplications, truncation. */
function mutate(rng: Rng, frame: Uint8Array, payloadOnly: boolean): Uint8Array {
  let bytes = Array.from(frame);
  const lo = payloadOnly ? 8 : 0;
  const spot = () => lo + rng.int(Math.max(1, bytes.length - 4 - lo));
  const rounds = rng.range(1, 4);
  for (let r = 0; r < rounds; r++) {
    switch (rng.int(8)) {
      case 0: // bit flip
        if (bytes.length > 0) {
          const i = spot();
          bytes[i] = ((bytes[i] ?? 0) ^ (1 << rng.int(8))) & 0xff;
        }
        break;
      case 1: // interesting byte
        if (bytes.length > 0) bytes[spot()] = rng.pick(INTERESTING_U8);
        break;
      case 2: {
        // interesting little-endian u32 (counts, ids, varint groups)
        const i = spot();
        const v = rng.pick(INTERESTING_U32);
        for (let k = 0; k < 4 && i + k < bytes.length; k++) bytes[i + k] = (v >>> (8 * k)) & 0xff;
        break;
      }
      case 3: {
        // insert random bytes
        const at = spot();
        const n = rng.range(1, 6);
        bytes.splice(at, 0, ...Array.from({ length: n }, () => rng.byte()));
        break;
      }
      case 4: {
        // delete a range
        const at = spot();
        bytes.splice(at, rng.range(1, 8));
        break;
      }
      case 5: {
        // duplicate a range (repeated blocks, fields, strings)
        const at = spot();
        const chunk = bytes.slice(at, at + rng.range(1, 24));
        bytes.splice(rng.int(bytes.length + 1), 0, ...chunk);
        break;
      }
      case 6: // truncate
        bytes = bytes.slice(0, rng.int(bytes.length + 1));
        break;
      default: // splice in continuation bytes (long / non-canonical varints)
        bytes.splice(spot(), 0, ...Array.from({ length: rng.range(1, 5) }, () => rng.pick([0x80, 0xff, 0x00])));
    }
  }
  return Uint8Array.from(bytes);
}

/** Grammar-built payloads: the fields of a real message type, each valid most of the time. */
class PayloadBuilder {
  readonly out: number[] = [];
  constructor(readonly rng: Rng) {}
  /** A valid value from `valid()` with probability 0.9, otherwise an edge case. */
  private choose(valid: () => number, edge: readonly number[]): number {
    return this.rng.chance(0.9) ? valid() : this.rng.pick(edge);
  }
  u8(min: number, max: number, edge: readonly number[] = INTERESTING_U8): number {
    const v = this.choose(() => this.rng.range(min, max), edge) & 0xff;
    this.out.push(v);
    return v;
  }
  i8(min: number, max: number): void {
    this.out.push(this.choose(() => this.rng.range(min, max), [-128, -10, 10, 127]) & 0xff);
  }
  u16(min: number, max: number): void {
    const v = this.choose(() => this.rng.range(min, max), [0, 1, 11, 12, 3600, 3601, 4096, 4097, 0xffff]);
    this.out.push(v & 0xff, (v >>> 8) & 0xff);
  }
  u32(nonZero = false): void {
    const v = this.choose(() => this.rng.int(2 ** 32) || (nonZero ? 1 : 0), INTERESTING_U32);
    for (let k = 0; k < 4; k++) this.out.push((v >>> (8 * k)) & 0xff);
  }
  u64(): void {
    const hi = this.choose(() => this.rng.int(0x20_0000), [0, 0x1f_ffff, 0x20_0000, 0xffff_ffff]);
    const lo = this.rng.int(2 ** 32);
    for (let k = 0; k < 4; k++) this.out.push((lo >>> (8 * k)) & 0xff);
    for (let k = 0; k < 4; k++) this.out.push((hi >>> (8 * k)) & 0xff);
  }
  varint(): void {
    const kind = this.rng.int(20);
    if (kind < 16) {
      let v = this.rng.chance(0.7) ? this.rng.int(256) : this.rng.int(2 ** 32);
      while (v >= 0x80) {
        this.out.push((v % 128) | 0x80);
        v = Math.floor(v / 128);
      }
      this.out.push(v);
    } else if (kind === 16)
      this.out.push(0x80, 0x00); // non-canonical
    else if (kind === 17)
      this.out.push(0x80, 0x80, 0x80, 0x80, 0x80, 0x01); // 6 bytes
    else if (kind === 18)
      this.out.push(0xff, 0xff, 0xff, 0xff, 0x1f); // > 32 bits
    else this.out.push(0xff, 0xff, 0xff, 0xff, 0x0f); // 2^32-1
  }
  /** A str8 drawn from an alphabet, or broken: bad UTF-8, controls, too long. */
  str(alphabet: string, maxBytes: number): void {
    const kind = this.rng.int(12);
    let bytes: number[];
    if (kind < 8) {
      const n = this.rng.range(kind === 0 ? 0 : 1, Math.min(maxBytes, 12));
      bytes = Array.from({ length: n }, () => alphabet.charCodeAt(this.rng.int(alphabet.length)));
    } else if (kind === 8) bytes = [...Buffer.from('é°µ✓🚀\uFEFF', 'utf8')].slice(0, this.rng.int(19));
    else if (kind === 9) bytes = Array.from({ length: this.rng.range(1, 6) }, () => this.rng.byte());
    else if (kind === 10) bytes = [0x61, this.rng.pick([0x00, 0x0a, 0x7f, 0xc2])];
    else bytes = Array.from({ length: maxBytes + 1 }, () => 0x61);
    this.out.push(bytes.length, ...bytes);
  }
  value(valueType: number): void {
    const sizes = [1, 1, 1, 2, 2, 4, 4, 4];
    if (valueType === 0) this.out.push(this.rng.chance(0.9) ? this.rng.int(2) : this.rng.byte());
    else if (valueType === 9) this.str('abc xyz', 200);
    else {
      const n = sizes[valueType] ?? this.rng.int(5);
      for (let k = 0; k < n; k++) this.out.push(this.rng.byte());
    }
  }
}

const DEVICE_ALPHABET = 'ABCXYZabcxyz0189._-';
const KEY_ALPHABET = 'abcxyz019_';
const TEXT_ALPHABET = 'abc XYZ 1.2-+/%°';

function structured(rng: Rng): Uint8Array {
  const type = rng.range(1, 9);
  const p = new PayloadBuilder(rng);
  switch (type) {
    case 1:
      p.str(DEVICE_ALPHABET, 64);
      p.str(TEXT_ALPHABET, 64);
      p.u8(1, 3);
      p.u32(true);
      p.u8(0, 7);
      p.u64();
      p.u32();
      p.u32();
      p.u32();
      break;
    case 2:
      p.u8(1, 1);
      p.u64();
      p.u32();
      p.u32();
      p.u32();
      p.u16(1, 3600);
      p.u16(12, 4096);
      break;
    case 3: {
      const count = p.u8(1, 6, [0, 64, 65, 255]);
      let index = rng.int(4);
      for (let i = 0; i < Math.min(count, 70); i++) {
        p.out.push(rng.chance(0.95) ? index : rng.byte());
        index += rng.range(1, 3);
        p.str(KEY_ALPHABET, 32);
        p.str(TEXT_ALPHABET, 16);
        const vt = p.u8(0, 7, [8, 9, 10, 255]);
        if (vt === 0 || vt === 7) p.i8(0, 0);
        else p.i8(-9, 9);
        p.u32();
      }
      break;
    }
    case 4: {
      p.u32(true);
      p.u32(true);
      p.u32();
      p.u64();
      const blocks = p.u8(1, 6, [0, 128, 129, 255]);
      for (let b = 0; b < Math.min(blocks, 130); b++) {
        p.u8(0, 127, [128, 255]);
        const vt = p.u8(0, 7, [8, 9, 255]);
        const n = p.u8(1, 12, [0, 255]);
        for (let i = 0; i < Math.min(n, 40); i++) {
          p.varint();
          // An odd tag (missing) carries no value; the builder does not track it, so sometimes the
          // value is there anyway and the decoder must notice the misalignment without crashing.
          if (rng.chance(0.9)) p.value(vt);
        }
      }
      break;
    }
    case 5:
      p.u32();
      p.u32();
      break;
    case 6: {
      p.u32(true);
      p.str(KEY_ALPHABET, 32);
      const args = p.u8(0, 4, [16, 17, 255]);
      for (let i = 0; i < Math.min(args, 20); i++) {
        p.str(KEY_ALPHABET, 32);
        const vt = p.u8(0, 9, [8, 10, 255]);
        p.value(vt);
      }
      break;
    }
    case 7:
      p.u32(true);
      break;
    case 8:
      p.u32(true);
      p.u8(0, 4, [5, 255]);
      p.str(TEXT_ALPHABET, 200);
      break;
    default:
      p.u16(0, 0xffff);
      p.str(TEXT_ALPHABET, 200);
  }
  let payload = p.out;
  if (rng.chance(0.05)) payload = payload.slice(0, rng.int(payload.length + 1));
  if (rng.chance(0.05)) payload = [...payload, rng.byte()];
  if (payload.length > 4084) payload = payload.slice(0, 4084);
  const flags = rng.chance(0.97) ? (DEFINED_FLAGS[type] ?? 0) & rng.byte() : rng.byte();
  return frameOf(type, flags, payload);
}

/**
 * Seeds for mutation: `samples` valid frames drawn by fast-check, plus every golden vector (valid and
 * malformed: a mutated malformed frame often becomes a near-valid one).
 */
export function buildCorpus(seed: number, samples: number): Uint8Array[] {
  const frames = fc.sample(arbMessage, { numRuns: samples, seed }).map((m) => encodeFrame(m));
  const vectors = JSON.parse(readFileSync(new URL('../vectors/protocol-v1.json', import.meta.url), 'utf8')) as {
    valid: { hex: string }[];
    malformed: { hex: string }[];
  };
  for (const v of [...vectors.valid, ...vectors.malformed]) frames.push(Uint8Array.from(Buffer.from(v.hex, 'hex')));
  return frames;
}

// ───────────── the check ─────────────

export function runFuzz(options: FuzzOptions): FuzzStats {
  const { cases, seed, corpus } = options;
  const keep = options.keepFailures ?? 20;
  if (corpus.length === 0) throw new Error('the fuzz corpus is empty');
  const rng = new Rng(seed);
  const stats: FuzzStats = {
    cases: 0,
    decoded: 0,
    byCode: {},
    byStrategy: Object.fromEntries(STRATEGIES.map((s) => [s, { cases: 0, decoded: 0 }])) as FuzzStats['byStrategy'],
    uncoded: 0,
    nonCanonical: 0,
    failures: [],
  };
  const fail = (kind: FuzzFailure['kind'], strategy: Strategy, bytes: Uint8Array, detail: string) => {
    if (stats.failures.length < keep)
      stats.failures.push({ kind, strategy, hex: Buffer.from(bytes).toString('hex'), detail });
  };

  for (let i = 0; i < cases; i++) {
    const roll = rng.next();
    let strategy: Strategy;
    let bytes: Uint8Array;
    if (roll < 0.1) {
      strategy = 'random-bytes';
      bytes = randomBytes(rng);
    } else if (roll < 0.2) {
      strategy = 'random-payload';
      bytes = randomPayload(rng);
    } else if (roll < 0.35) {
      strategy = 'mutated-raw';
      bytes = mutate(rng, rng.pick(corpus), false);
    } else if (roll < 0.7) {
      strategy = 'mutated-crc-fixed';
      bytes = mutate(rng, rng.pick(corpus), rng.chance(0.8));
      fixLengthAndCrc(bytes);
    } else {
      strategy = 'structured';
      bytes = structured(rng);
    }
    stats.cases++;
    const per = stats.byStrategy[strategy];
    per.cases++;

    let message: Message;
    try {
      message = decodeFrame(bytes);
    } catch (err) {
      if (err instanceof ProtocolError && FRAME_CODES.has(err.code)) {
        stats.byCode[err.code] = (stats.byCode[err.code] ?? 0) + 1;
      } else {
        stats.uncoded++;
        fail('uncoded-exception', strategy, bytes, err instanceof Error ? `${err.name}: ${err.message}` : String(err));
      }
      continue;
    }
    stats.decoded++;
    per.decoded++;
    let again: Uint8Array;
    try {
      again = encodeFrame(message);
    } catch (err) {
      stats.nonCanonical++;
      fail('not-re-encodable', strategy, bytes, String(err));
      continue;
    }
    if (Buffer.compare(again, bytes) !== 0 && !hasNaN(message)) {
      stats.nonCanonical++;
      fail('non-canonical-accepted', strategy, bytes, `re-encodes to ${Buffer.from(again).toString('hex')}`);
    }
  }
  return stats;
}
