// Boot identity that never repeats on a device [PROTO-3.1.1]: bootId = a keyed permutation of the boot
// counter. The counter lives in NVS and goes up by one at every real boot (before the id is used); the
// 64-bit key is drawn once from the hardware random number generator (with its entropy source on) and
// kept in NVS next to the counter. Distinct counters give distinct ids (a permutation of the 32-bit
// space, with 0 walked around), so a device repeats an id only after 2^32 − 1 boots; the key makes the
// ids of different devices, and of a device whose NVS was erased, unrelated (a repeat then has the
// birthday odds of random 32-bit ids, 1 in 2^32 per pair of boots).
#pragma once

#include <stdint.h>

namespace esp32hub {

/** The bootId of boot number `counter` (≥ 1) under `key`: never 0, distinct for distinct counters. */
uint32_t bootIdFor(uint32_t counter, uint64_t key);

}  // namespace esp32hub
