#include "hub_errors.h"

namespace esp32hub {

namespace {
struct ErrSpec {
  const char* name;
  uint16_t wire;
  uint16_t close;
};

// Same order as enum Err; values from server/errors.ts (checked by test/unit/firmware-host.test.ts).
constexpr ErrSpec kSpecs[] = {
    {"OK", 0, 0},
    {"TRUNCATED", 100, 1007},
    {"BAD_MAGIC", 101, 1002},
    {"BAD_VERSION", 102, 1003},
    {"TOO_LARGE", 103, 1009},
    {"BAD_LENGTH", 104, 1007},
    {"BAD_CRC", 105, 1007},
    {"UNKNOWN_TYPE", 106, 1003},
    {"BAD_FLAGS", 107, 1002},
    {"BAD_FIELD", 108, 1007},
    {"BAD_VALUE_TYPE", 109, 1007},
};
static_assert(sizeof(kSpecs) / sizeof(kSpecs[0]) == kFrameErrorCount + 1, "one spec per Err");

const ErrSpec& spec(Err e) {
  auto i = static_cast<uint8_t>(e);
  return kSpecs[i <= kFrameErrorCount ? i : 0];
}
}  // namespace

const char* errName(Err e) { return spec(e).name; }
uint16_t errWireCode(Err e) { return spec(e).wire; }
uint16_t errCloseCode(Err e) { return spec(e).close; }

}  // namespace esp32hub
