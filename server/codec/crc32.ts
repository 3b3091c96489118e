/**
 * CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320; the same value as `zlib.crc32`) of
 * `bytes[start..end)` [PROTO-2.6].
 *
 * Why not always `zlib.crc32`: each call crosses into C++ and needs a `subarray` view, which costs more
 * than hashing a typical frame (~200 bytes; ≤ 1 KiB recommended) in JavaScript with slice-by-8 tables.
 * Past SHORT_INPUT_BYTES (about where the two cross on a 2-core x64 VM, Node 20) zlib is faster, so
 * long inputs still go there. bench/codec.bench.ts measures the effect; test/unit/codec.test.ts checks
 * both paths against zlib.
 */
import { crc32 as zlibCrc32 } from 'node:zlib';

/** Inputs up to this size are hashed in JavaScript. */
export const SHORT_INPUT_BYTES = 320;

/** TABLE[k * 256 + n]: the CRC of byte n followed by k zero bytes (slice-by-8). */
const TABLE = new Int32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  TABLE[n] = c;
}
for (let n = 0; n < 256; n++) {
  for (let k = 1; k < 8; k++) {
    const prev = TABLE[(k - 1) * 256 + n] as number;
    TABLE[k * 256 + n] = (prev >>> 8) ^ (TABLE[prev & 0xff] as number);
  }
}

export function crc32(bytes: Uint8Array, start = 0, end: number = bytes.length): number {
  if (end - start > SHORT_INPUT_BYTES) return zlibCrc32(bytes.subarray(start, end));
  const t = TABLE;
  const b = bytes;
  let c = -1;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    const x =
      c ^
      ((b[i] as number) | ((b[i + 1] as number) << 8) | ((b[i + 2] as number) << 16) | ((b[i + 3] as number) << 24));
    c =
      (t[1792 + (x & 0xff)] as number) ^
      (t[1536 + ((x >>> 8) & 0xff)] as number) ^
      (t[1280 + ((x >>> 16) & 0xff)] as number) ^
      (t[1024 + (x >>> 24)] as number) ^
      (t[768 + (b[i + 4] as number)] as number) ^
      (t[512 + (b[i + 5] as number)] as number) ^
      (t[256 + (b[i + 6] as number)] as number) ^
      (t[b[i + 7] as number] as number);
  }
  for (; i < end; i++) c = (t[(c ^ (b[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return ~c >>> 0;
}
