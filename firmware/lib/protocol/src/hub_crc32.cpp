#include "hub_crc32.h"

namespace esp32hub {

namespace {
struct Table {
  uint32_t v[256];
};

constexpr Table makeTable() {
  Table t{};
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t.v[n] = c;
  }
  return t;
}

constexpr Table kTable = makeTable();
static_assert(kTable.v[1] == 0x77073096u, "CRC-32 table");
}  // namespace

uint32_t crc32(uint32_t crc, const uint8_t* data, size_t len) {
  uint32_t c = ~crc;
  for (size_t i = 0; i < len; i++) c = kTable.v[(c ^ data[i]) & 0xff] ^ (c >> 8);
  return ~c;
}

}  // namespace esp32hub
