/**
 * Who handles an MQTT device's uplink when several hub instances read the same broker: the owner of
 * a device is the rendezvous-hash (highest random weight, HRW) winner among the live members
 * (membership.ts). Every instance computes it alone from the same member list, with no coordination:
 *
 * - stable: the owner depends only on the device id and the set of members (not their order);
 * - balanced: each of N members owns about 1/N of the devices (test/unit/cluster-ownership.test.ts);
 * - minimal movement: when a member joins, only the devices it now wins move (to it); when one
 *   leaves, only its devices move (spread over the others). Devices never move between two members
 *   that both stayed.
 *
 * Cost: one 32-bit hash of the device id per member per message (no allocation), a few tens of
 * nanoseconds; the member seeds are hashed once per membership change.
 */

/** A member as HRW sees it: its id and the hash seed derived from it. */
export interface HrwMember {
  readonly id: string;
  readonly seed: number;
}

/** Seeds for `ids` (sorted by id, so ties are broken by the smaller id whatever the input order). */
export function hrwMembers(ids: Iterable<string>): HrwMember[] {
  return [...new Set(ids)].sort().map((id) => ({ id, seed: murmur3(id, 0x9747b28c) }));
}

/** The HRW winner for `key` among `members`, or null when there are none. */
export function hrwOwner(key: string, members: readonly HrwMember[]): string | null {
  let best: string | null = null;
  let bestScore = -1;
  for (const m of members) {
    const score = murmur3(key, m.seed);
    // Members are sorted by id: on equal scores the first (smaller id) keeps the device.
    if (score > bestScore) {
      bestScore = score;
      best = m.id;
    }
  }
  return best;
}

/** MurmurHash3 (x86, 32-bit) of a string's UTF-16 code units, unsigned. */
export function murmur3(text: string, seed: number): number {
  let h = seed >>> 0;
  const n = text.length;
  let i = 0;
  // Two code units (ids are ASCII) per 32-bit block.
  for (; i + 1 < n; i += 2) {
    let k = (text.charCodeAt(i) & 0xffff) | ((text.charCodeAt(i + 1) & 0xffff) << 16);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < n) {
    let k = text.charCodeAt(i) & 0xffff;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= n * 2;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
