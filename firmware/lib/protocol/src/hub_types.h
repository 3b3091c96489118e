// Protocol v1 constants and message shapes: the C++ twin of server/codec/types.ts.
// docs/protocol.md is the contract; clause ids such as [PROTO-3.2] cite it.
//
// Portable: no Arduino headers, no heap. Strings are (pointer, length) views: a decoded message points
// into the frame it came from, so it is valid only while that frame's buffer is.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

namespace esp32hub {

constexpr uint8_t kMagic0 = 0x45;  // 'E' [PROTO-2.1]
constexpr uint8_t kMagic1 = 0x53;  // 'S'
constexpr uint8_t kProtocolVersion = 1;  // [PROTO-2.2]
constexpr const char* kSubprotocol = "esp32hub.v1";  // [PROTO-1.1]
constexpr size_t kHeaderBytes = 8;
constexpr size_t kCrcBytes = 4;
constexpr size_t kFrameOverheadBytes = kHeaderBytes + kCrcBytes;
constexpr size_t kMaxFrameBytes = 4096;  // [PROTO-1.4]
constexpr size_t kRecommendedUplinkBytes = 1024;
/** Largest integer a JavaScript number holds exactly; u64 fields above it are BAD_FIELD [PROTO-2.1]. */
constexpr uint64_t kMaxSafeInteger = (uint64_t{1} << 53) - 1;

enum class MsgType : uint8_t {
  Hello = 0x01,
  Welcome = 0x02,
  Descriptors = 0x03,
  Telemetry = 0x04,
  Ack = 0x05,
  Command = 0x06,
  CommandAccepted = 0x07,
  CommandResult = 0x08,
  Error = 0x09,
};

/** Flag bits per message type [PROTO-2.4]; any other bit is BAD_FLAGS. */
namespace flags {
constexpr uint8_t kHelloTimeSynced = 0x01;
constexpr uint8_t kWelcomeHasLastAck = 0x01;
constexpr uint8_t kWelcomeDescriptorsKnown = 0x02;
constexpr uint8_t kTelemetryUnsynced = 0x01;
constexpr uint8_t kErrorFatal = 0x01;
}  // namespace flags

/** Value types [PROTO-4]. Type 8 is reserved; String (9) appears in command arguments only. */
enum class ValueType : uint8_t {
  Bool = 0,
  I8 = 1,
  U8 = 2,
  I16 = 3,
  U16 = 4,
  I32 = 5,
  U32 = 6,
  F32 = 7,
  String = 9,
};

/** HELLO resetReason [PROTO-3.1]. */
enum class ResetReason : uint8_t {
  Unknown = 0,
  PowerOn = 1,
  Software = 2,
  Panic = 3,
  Watchdog = 4,
  Brownout = 5,
  DeepSleep = 6,
  External = 7,
};

/** COMMAND_RESULT status [PROTO-3.7]. */
enum class CommandStatus : uint8_t {
  Ok = 0,
  Failed = 1,
  Unsupported = 2,
  BadArguments = 3,
  Busy = 4,
};

namespace limits {
constexpr uint8_t kDeviceIdBytes = 64;
constexpr uint8_t kFirmwareVersionBytes = 64;
constexpr uint8_t kChannelKeyBytes = 32;
constexpr uint8_t kUnitBytes = 16;
constexpr uint8_t kCommandNameBytes = 32;
constexpr uint8_t kMessageBytes = 200;
constexpr uint8_t kMaxChannels = 64;
constexpr uint8_t kMaxChannelIndex = 127;
constexpr uint8_t kMaxBlocks = 128;
constexpr uint8_t kMaxSamplesPerBlock = 255;
constexpr uint32_t kMaxDeltaMs = 0x7fffffff;
constexpr uint8_t kMaxCommandArgs = 16;
constexpr int8_t kMinScaleExp = -9;
constexpr int8_t kMaxScaleExp = 9;
constexpr uint16_t kMinHeartbeatSec = 1;
constexpr uint16_t kMaxHeartbeatSec = 3600;
}  // namespace limits

/** A byte string view (UTF-8 on the wire). Not NUL-terminated when it points into a frame. */
struct Str {
  const char* data = nullptr;
  uint8_t len = 0;

  /** A view of a NUL-terminated C string; longer than 255 bytes is clipped (and then fails validation). */
  static Str of(const char* s) {
    Str out;
    if (s == nullptr) return out;
    size_t n = strlen(s);
    out.data = s;
    out.len = static_cast<uint8_t>(n > 255 ? 255 : n);
    return out;
  }
  bool equals(const char* s) const {
    size_t n = strlen(s);
    return n == len && (len == 0 || memcmp(data, s, len) == 0);
  }
  bool operator==(const Str& o) const { return len == o.len && (len == 0 || memcmp(data, o.data, len) == 0); }
};

/**
 * A typed value [PROTO-4]. Integers of every width live in `i` (range-checked against `type` when
 * encoding); `b` for Bool, `f` for F32, `s` for String.
 */
struct Value {
  ValueType type = ValueType::U32;
  bool b = false;
  int64_t i = 0;
  float f = 0.0f;
  Str s;

  static Value boolean(bool v) {
    Value out;
    out.type = ValueType::Bool;
    out.b = v;
    return out;
  }
  static Value integer(ValueType t, int64_t v) {
    Value out;
    out.type = t;
    out.i = v;
    return out;
  }
  static Value f32(float v) {
    Value out;
    out.type = ValueType::F32;
    out.f = v;
    return out;
  }
  static Value string(Str v) {
    Value out;
    out.type = ValueType::String;
    out.s = v;
    return out;
  }
};

inline bool isIntegerType(ValueType t) { return t >= ValueType::I8 && t <= ValueType::U32; }
/** Types allowed in DESCRIPTORS and TELEMETRY: 0..7. */
inline bool isSampleType(uint8_t t) { return t <= static_cast<uint8_t>(ValueType::F32); }

// ───────────────────────────── messages ─────────────────────────────

struct Hello {  // [PROTO-3.1]
  bool timeSynced = false;
  Str deviceId;
  Str firmwareVersion;
  uint8_t maxProtocolVersion = kProtocolVersion;
  uint32_t bootId = 0;
  uint8_t resetReason = 0;
  uint64_t uptimeMs = 0;
  uint32_t descriptorHash = 0;
  uint32_t bufferedFrames = 0;
  uint32_t droppedFrames = 0;
};

struct Welcome {  // [PROTO-3.2]
  uint8_t acceptedVersion = kProtocolVersion;
  uint64_t serverTimeMs = 0;
  bool hasLastAck = false;
  uint32_t lastAckBootId = 0;
  uint32_t lastAckSeq = 0;
  bool descriptorsKnown = false;
  uint32_t sampleIntervalMs = 0;
  uint16_t heartbeatIntervalSec = 30;
  uint16_t maxFrameBytes = kMaxFrameBytes;
};

struct ChannelDescriptor {  // [PROTO-3.3]
  uint8_t index = 0;
  Str key;
  Str unit;
  ValueType valueType = ValueType::U32;
  int8_t scaleExp = 0;
  uint32_t periodMs = 0;
};

/** One TELEMETRY sample: `value.type` must equal its block's type unless `missing` [PROTO-3.4]. */
struct Sample {
  uint32_t deltaMs = 0;
  bool missing = false;
  Value value;
};

/** One channel's samples (encode input). */
struct Block {
  uint8_t channel = 0;
  ValueType valueType = ValueType::U32;
  uint8_t sampleCount = 0;
  const Sample* samples = nullptr;
};

/** TELEMETRY as an encoder input [PROTO-3.4]; decoding yields a TelemetryView instead (no copies). */
struct Telemetry {
  bool unsynced = false;
  uint32_t bootId = 0;
  uint32_t seq = 0;
  uint32_t descriptorHash = 0;
  uint64_t baseTime = 0;
  uint8_t blockCount = 0;
  const Block* blocks = nullptr;
};

struct Ack {  // [PROTO-3.5]
  uint32_t bootId = 0;
  uint32_t seq = 0;
};

struct CommandArg {
  Str key;
  Value value;
};

struct Command {  // [PROTO-3.6]
  uint32_t commandId = 0;
  Str name;
  uint8_t argCount = 0;
  CommandArg args[limits::kMaxCommandArgs];

  /** The argument named `key`, or nullptr. */
  const CommandArg* arg(const char* key) const {
    for (uint8_t i = 0; i < argCount; i++)
      if (args[i].key.equals(key)) return &args[i];
    return nullptr;
  }
};

struct CommandAccepted {  // [PROTO-3.7]
  uint32_t commandId = 0;
};

struct CommandResult {  // [PROTO-3.7]
  uint32_t commandId = 0;
  uint8_t status = 0;
  Str message;
};

struct ErrorMsg {  // [PROTO-3.8]
  bool fatal = false;
  uint16_t code = 0;
  Str message;
};

}  // namespace esp32hub
