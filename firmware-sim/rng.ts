/**
 * Seeded pseudo-random numbers for the simulator. Everything random a simulated device does (sensor
 * noise, boot delays, backoff jitter, scenario events) comes from an `Rng` derived from the fleet
 * seed — except its boot ids, which must never repeat across runs (boot-id.ts) — so the same seed
 * with the same clock and a seeded boot-id entropy gives the same frames byte for byte.
 *
 * Generator: sfc32 (Chris Doty-Humphrey's Small Fast Counter), seeded through splitmix32. It passes
 * PractRand to multi-terabyte sizes, needs only 32-bit integer math and is far cheaper per draw than
 * a cryptographic source; none of this is security-relevant.
 */

/** splitmix32 finaliser: spreads a 32-bit input over all output bits. */
function mix32(x: number): number {
  let z = (x + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** FNV-1a over a label, so streams can be named (`fork('sensors')`) rather than numbered. */
function hashLabel(label: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < label.length; i++) {
    h ^= label.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare: number | null = null;
  /** The seed this stream was built from; `fork` derives children from it, not from the state. */
  readonly seed: number;

  constructor(seed: number) {
    this.seed = seed >>> 0;
    this.a = mix32(this.seed);
    this.b = mix32(this.a ^ 0x6a09e667);
    this.c = mix32(this.b ^ 0xbb67ae85);
    this.d = 1;
    // Discard the first outputs: sfc32 needs a few rounds to decorrelate close seeds.
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** An independent stream named by `label` (and an optional index), unaffected by draws on this one. */
  fork(label: string, index = 0): Rng {
    return new Rng(mix32(this.seed ^ mix32(hashLabel(label) ^ mix32(index))));
  }

  /** Uniform 32-bit unsigned integer. */
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.u32() / 0x1_0000_0000;
  }

  /** Uniform in [min, max). */
  uniform(min: number, max: number): number {
    return min + (max - min) * this.next();
  }

  /** Uniform integer in [min, max] (inclusive). */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** Standard normal deviate (Marsaglia polar method; the second deviate is kept for the next call). */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u: number;
    let v: number;
    let s: number;
    do {
      u = this.next() * 2 - 1;
      v = this.next() * 2 - 1;
      s = u * u + v * v;
    } while (s >= 1 || s === 0);
    const f = Math.sqrt((-2 * Math.log(s)) / s);
    this.spare = v * f;
    return u * f;
  }

  /** Exponentially distributed wait with the given mean (for Poisson event arrivals). */
  exponential(mean: number): number {
    return -Math.log(1 - this.next()) * mean;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    const item = items[Math.floor(this.next() * items.length)];
    if (item === undefined) throw new RangeError('pick() needs a non-empty array');
    return item;
  }

  /** A non-zero u32 different from `avoid` (boot ids [PROTO-3.1], command ids). */
  nonZeroU32(avoid = 0): number {
    for (;;) {
      const v = this.u32();
      if (v !== 0 && v !== avoid) return v;
    }
  }
}
