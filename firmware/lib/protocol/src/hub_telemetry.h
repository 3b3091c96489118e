// Collects samples of mixed channels into the next TELEMETRY frame [PROTO-3.4], tracking the frame's
// exact encoded size so it never grows past the limit (1024 bytes recommended uplink [PROTO-1.4], the
// hub's WELCOME maxFrameBytes, the outbox slot).
//
// Layout rules (shared with the simulator, see firmware/test/shared-cases.json): one block per channel,
// blocks in ascending channel index, samples in the order they were added; baseTime is the first
// sample's time and every sample carries deltaMs = time − baseTime.
#pragma once

#include "hub_codec.h"

namespace esp32hub {

class TelemetryBuilder {
 public:
  static constexpr uint16_t kMaxSamples = 256;  // 12 bytes each: 3 KiB

  enum class Add : uint8_t {
    Added,
    /** The sample does not fit this frame (size, time domain or range, counts): flush, then add again. */
    NeedsFlush,
    /** The sample can never be added (bad channel index, or a value of another type). */
    Rejected,
  };

  /** Frame size limit in bytes (clamped to 64..4096). Takes effect for the next sample. */
  void setLimit(size_t maxFrameBytes);
  size_t limit() const { return limit_; }

  /**
   * Adds a sample at `timeMs` (Unix ms when `synced`, uptime ms otherwise). `missing` sends the
   * "missing" marker and ignores `value`; otherwise `value.type` must be `type`.
   */
  Add add(uint8_t channel, ValueType type, uint64_t timeMs, bool synced, bool missing, const Value& value);

  bool empty() const { return count_ == 0; }
  uint16_t sampleCount() const { return count_; }
  /** The exact size of the frame `encode` would write now. */
  size_t encodedSize() const { return size_; }
  uint64_t baseTime() const { return base_; }
  bool synced() const { return synced_; }

  /** Writes the frame. Does not clear the builder (call `clear` once the frame is safely queued). */
  Err encode(uint32_t bootId, uint32_t seq, uint32_t descriptorHash, uint8_t* out, size_t cap, size_t* outLen) const;
  void clear();

 private:
  struct Point {
    uint32_t deltaMs;
    uint32_t bits;  // raw value: integer (two's complement), float bits, or bool
    uint8_t channel;
    uint8_t type;
    uint8_t missing;
    uint8_t pad;
  };
  static uint32_t toBits(const Value& v);
  static Value fromBits(ValueType t, uint32_t bits);

  Point points_[kMaxSamples];
  uint8_t perChannel_[limits::kMaxChannelIndex + 1] = {};
  uint8_t channelType_[limits::kMaxChannelIndex + 1] = {};
  uint16_t count_ = 0;
  uint8_t channels_ = 0;
  size_t size_ = kTelemetryFixedBytes;
  size_t limit_ = kRecommendedUplinkBytes;
  uint64_t base_ = 0;
  bool synced_ = false;
};

/**
 * Raw fixed-point integer for an engineering value: value / 10^scaleExp, rounded like JavaScript's
 * Math.round (half up), as the simulator does. False when it does not fit `type` or is NaN/±Inf.
 */
bool toRaw(double value, int8_t scaleExp, ValueType type, Value& out);

}  // namespace esp32hub
