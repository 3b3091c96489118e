/**
 * Boot identity [PROTO-3.1]: a boot id must never repeat for a device, or the hub takes the new
 * boot's frames for replays of the old one (deduplicated by (device, bootId, seq) [PROTO-3.4.2]),
 * acknowledges them and stores nothing. The simulated board derives it as the firmware does, from two
 * independent sources, so that either alone suffices:
 *
 * - a boot counter kept in NVS, incremented and written before the id is drawn — distinct inputs on
 *   every boot even when the random source repeats (an ESP32 before its radio is up);
 * - fresh randomness from the operating system's CSPRNG — distinct ids even when the counter is lost
 *   (a new state directory, erased NVS, a run without `--state-dir`).
 *
 * The fleet seed plays no part: the same `--seed` gives the same sensor values, never the same boots.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Rng } from './rng.ts';

/** A source of random bytes. */
export type Entropy = (bytes: number) => Uint8Array;

export const cryptoEntropy: Entropy = (n) => randomBytes(n);

/** Seeded bytes, for deterministic tests only (two devices given the same stream collide on purpose). */
export function seededEntropy(rng: Rng): Entropy {
  return (n) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = rng.u32() & 0xff;
    return out;
  };
}

/**
 * The boot id for boot number `bootCounter`: the first 4 bytes (little-endian) of
 * SHA-256(deviceId ‖ bootCounter as u32 LE ‖ 8 random bytes); drawn again while it is 0 or `taken`
 * (an id still in the outbox, or the previous boot's).
 */
export function drawBootId(
  deviceId: string,
  bootCounter: number,
  entropy: Entropy,
  taken: (id: number) => boolean = () => false,
): number {
  for (;;) {
    const counter = Buffer.alloc(4);
    counter.writeUInt32LE(bootCounter >>> 0);
    const digest = createHash('sha256').update(deviceId).update(counter).update(entropy(8)).digest();
    const id = digest.readUInt32LE(0);
    if (id !== 0 && !taken(id)) return id;
  }
}
