// Coded errors: the frame-layer subset of server/errors.ts (the one catalogue, docs/errors.md) plus the
// session-layer wire codes the device reacts to. A host test prints this table and a vitest test
// compares it with server/errors.ts, so the two cannot drift.
#pragma once

#include <stdint.h>

namespace esp32hub {

/** Frame-layer error codes [PROTO-2.7]. `Ok` is success. */
enum class Err : uint8_t {
  Ok = 0,
  Truncated,
  BadMagic,
  BadVersion,
  TooLarge,
  BadLength,
  BadCrc,
  UnknownType,
  BadFlags,
  BadField,
  BadValueType,
};

constexpr uint8_t kFrameErrorCount = 10;

/** The catalogue name, e.g. "TRUNCATED" ("OK" for Err::Ok). */
const char* errName(Err e);
/** The u16 wire code carried in ERROR frames [PROTO-3.8]; 0 for Err::Ok. */
uint16_t errWireCode(Err e);
/** The WebSocket close code for the peer [PROTO-7]; 0 for Err::Ok. */
uint16_t errCloseCode(Err e);

/** Session- and storage-layer wire codes the device acts on (server/errors.ts). */
namespace wire_error {
constexpr uint16_t kUnexpectedMessage = 201;
constexpr uint16_t kDeviceMismatch = 202;
constexpr uint16_t kUnknownDescriptors = 203;
constexpr uint16_t kReplaced = 207;
constexpr uint16_t kRevoked = 208;
constexpr uint16_t kStorageFull = 300;
constexpr uint16_t kInternal = 301;
constexpr uint16_t kShuttingDown = 302;
}  // namespace wire_error

}  // namespace esp32hub

/** Propagates a non-Ok Err to the caller. */
#define HUB_TRY(expr)                                  \
  do {                                                 \
    ::esp32hub::Err hub_try_err_ = (expr);             \
    if (hub_try_err_ != ::esp32hub::Err::Ok) return hub_try_err_; \
  } while (0)
