#include "hub_telemetry.h"

#include <math.h>

namespace esp32hub {

void TelemetryBuilder::setLimit(size_t maxFrameBytes) {
  if (maxFrameBytes < 64) maxFrameBytes = 64;
  if (maxFrameBytes > kMaxFrameBytes) maxFrameBytes = kMaxFrameBytes;
  limit_ = maxFrameBytes;
}

void TelemetryBuilder::clear() {
  for (uint16_t i = 0; i < count_; i++) perChannel_[points_[i].channel] = 0;
  count_ = 0;
  channels_ = 0;
  size_ = kTelemetryFixedBytes;
  base_ = 0;
  synced_ = false;
}

uint32_t TelemetryBuilder::toBits(const Value& v) {
  switch (v.type) {
    case ValueType::Bool:
      return v.b ? 1u : 0u;
    case ValueType::F32: {
      uint32_t bits;
      memcpy(&bits, &v.f, sizeof bits);
      return bits;
    }
    default:
      return static_cast<uint32_t>(v.i);
  }
}

Value TelemetryBuilder::fromBits(ValueType t, uint32_t bits) {
  switch (t) {
    case ValueType::Bool:
      return Value::boolean(bits != 0);
    case ValueType::F32: {
      float f;
      memcpy(&f, &bits, sizeof f);
      return Value::f32(f);
    }
    case ValueType::I8:
      return Value::integer(t, static_cast<int8_t>(bits));
    case ValueType::I16:
      return Value::integer(t, static_cast<int16_t>(bits));
    case ValueType::I32:
      return Value::integer(t, static_cast<int32_t>(bits));
    default:
      return Value::integer(t, bits);
  }
}

TelemetryBuilder::Add TelemetryBuilder::add(uint8_t channel, ValueType type, uint64_t timeMs, bool synced, bool missing,
                                            const Value& value) {
  if (channel > limits::kMaxChannelIndex || !isSampleType(static_cast<uint8_t>(type))) return Add::Rejected;
  if (!missing && value.type != type) return Add::Rejected;
  if (!missing && isIntegerType(type)) {
    // Range-check now: a value the encoder would refuse must not poison a whole frame later.
    Value probe = value;
    uint8_t scratch[4];
    Writer w(scratch, sizeof scratch);
    if (w.value(probe) != Err::Ok) return Add::Rejected;
  }
  if (count_ > 0) {
    // One frame has one time domain and one base; a channel keeps one type within a frame.
    if (synced != synced_ || timeMs < base_ || timeMs - base_ > limits::kMaxDeltaMs) return Add::NeedsFlush;
    if (perChannel_[channel] > 0 && channelType_[channel] != static_cast<uint8_t>(type)) return Add::NeedsFlush;
    if (count_ >= kMaxSamples || perChannel_[channel] >= limits::kMaxSamplesPerBlock) return Add::NeedsFlush;
  }
  uint64_t base = count_ > 0 ? base_ : timeMs;
  auto delta = static_cast<uint32_t>(timeMs - base);
  size_t grow = varintSize(delta * 2 + (missing ? 1u : 0u));
  if (!missing) grow += valueSize(value);
  if (perChannel_[channel] == 0) grow += kBlockHeaderBytes;
  if (size_ + grow > limit_) return count_ > 0 ? Add::NeedsFlush : Add::Rejected;

  if (count_ == 0) {
    base_ = timeMs;
    synced_ = synced;
  }
  Point& p = points_[count_++];
  p.deltaMs = delta;
  p.bits = missing ? 0 : toBits(value);
  p.channel = channel;
  p.type = static_cast<uint8_t>(type);
  p.missing = missing ? 1 : 0;
  p.pad = 0;
  if (perChannel_[channel]++ == 0) {
    channels_++;
    channelType_[channel] = p.type;
  }
  size_ += grow;
  return Add::Added;
}

Err TelemetryBuilder::encode(uint32_t bootId, uint32_t seq, uint32_t descriptorHash, uint8_t* out, size_t cap,
                             size_t* outLen) const {
  if (count_ == 0) return Err::BadField;  // blockCount must be 1..128
  if (out == nullptr) return Err::TooLarge;
  Writer w(out, cap < kMaxFrameBytes ? cap : kMaxFrameBytes, kHeaderBytes);
  if (bootId == 0 || seq == 0) return Err::BadField;
  HUB_TRY(w.u32(bootId));
  HUB_TRY(w.u32(seq));
  HUB_TRY(w.u32(descriptorHash));
  HUB_TRY(w.u64(base_));
  HUB_TRY(w.u8(channels_));
  // Blocks in ascending channel index; within a block, samples in insertion order.
  for (uint16_t ch = 0; ch <= limits::kMaxChannelIndex; ch++) {
    uint8_t n = perChannel_[ch];
    if (n == 0) continue;
    HUB_TRY(w.u8(static_cast<uint8_t>(ch)));
    HUB_TRY(w.u8(channelType_[ch]));
    HUB_TRY(w.u8(n));
    for (uint16_t i = 0; i < count_; i++) {
      const Point& p = points_[i];
      if (p.channel != ch) continue;
      HUB_TRY(w.varint(p.deltaMs * 2 + p.missing));
      if (!p.missing) HUB_TRY(w.value(fromBits(static_cast<ValueType>(p.type), p.bits)));
    }
  }
  return finishFrame(MsgType::Telemetry, synced_ ? 0 : flags::kTelemetryUnsynced, out, cap, w.pos() - kHeaderBytes,
                     outLen);
}

bool toRaw(double value, int8_t scaleExp, ValueType type, Value& out) {
  if (!isfinite(value)) return false;
  if (type == ValueType::F32) {
    out = Value::f32(static_cast<float>(value));
    return true;
  }
  if (type == ValueType::Bool) {
    out = Value::boolean(value != 0.0);
    return true;
  }
  if (!isIntegerType(type)) return false;
  // value / 10^scaleExp as one multiplication or division by an exact power of ten (10^0..10^9 are exact
  // doubles), the same arithmetic as the simulator's Math.round(value * 100) for scale −2.
  static const double kPow10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};
  if (scaleExp < limits::kMinScaleExp || scaleExp > limits::kMaxScaleExp) return false;
  double scaled = scaleExp < 0 ? value * kPow10[-scaleExp] : value / kPow10[scaleExp];
  double rounded = floor(scaled + 0.5);
  double lo = 0, hi = 0;
  switch (type) {
    case ValueType::I8: lo = -128; hi = 127; break;
    case ValueType::U8: lo = 0; hi = 255; break;
    case ValueType::I16: lo = -32768; hi = 32767; break;
    case ValueType::U16: lo = 0; hi = 65535; break;
    case ValueType::I32: lo = -2147483648.0; hi = 2147483647.0; break;
    case ValueType::U32: lo = 0; hi = 4294967295.0; break;
    default: return false;
  }
  if (rounded < lo || rounded > hi) return false;
  out = Value::integer(type, static_cast<int64_t>(rounded));
  return true;
}

}  // namespace esp32hub
