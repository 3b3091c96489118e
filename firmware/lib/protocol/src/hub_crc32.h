// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320): the same function as zlib's crc32() and
// Node's zlib.crc32() [PROTO-2.6]. The 1 KiB table is built at compile time and lives in flash.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace esp32hub {

/**
 * Continues a CRC like zlib: `crc32(crc32(0, a), b) == crc32(0, a ++ b)`. Start with 0.
 */
uint32_t crc32(uint32_t crc, const uint8_t* data, size_t len);

inline uint32_t crc32(const uint8_t* data, size_t len) { return crc32(0, data, len); }

}  // namespace esp32hub
