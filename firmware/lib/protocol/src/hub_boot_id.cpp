#include "hub_boot_id.h"

namespace esp32hub {

namespace {

/** Round function of the Feistel network: any function of (half, key, round) keeps it a permutation. */
uint16_t roundFn(uint16_t half, uint64_t key, uint32_t round) {
  uint32_t x = half ^ static_cast<uint32_t>(key >> (16 * (round & 3u))) ^ (round * 0x9E3779B9u);
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return static_cast<uint16_t>(x);
}

/** A 6-round balanced Feistel network on 32 bits: a bijection for every key. */
uint32_t permute(uint32_t v, uint64_t key) {
  auto left = static_cast<uint16_t>(v >> 16);
  auto right = static_cast<uint16_t>(v);
  for (uint32_t round = 0; round < 6; round++) {
    uint16_t next = static_cast<uint16_t>(left ^ roundFn(right, key, round));
    left = right;
    right = next;
  }
  return (static_cast<uint32_t>(left) << 16) | right;
}

}  // namespace

uint32_t bootIdFor(uint32_t counter, uint64_t key) {
  // Cycle walking: a permutation restricted to the non-zero values stays a permutation of them.
  uint32_t id = permute(counter, key);
  while (id == 0) id = permute(id, key);
  return id;
}

}  // namespace esp32hub
