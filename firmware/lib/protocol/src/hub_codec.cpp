#include "hub_codec.h"

#include "hub_crc32.h"

namespace esp32hub {

namespace {

/** Flag bits defined per type (index = type); 0xFF marks an undefined type [PROTO-2.4]. */
constexpr uint8_t kUndefined = 0xFF;
constexpr uint8_t kAllowedFlags[] = {
    kUndefined,                                                       // 0x00
    flags::kHelloTimeSynced,                                          // HELLO
    flags::kWelcomeHasLastAck | flags::kWelcomeDescriptorsKnown,      // WELCOME
    0,                                                                // DESCRIPTORS
    flags::kTelemetryUnsynced,                                        // TELEMETRY
    0,                                                                // ACK
    0,                                                                // COMMAND
    0,                                                                // COMMAND_ACCEPTED
    0,                                                                // COMMAND_RESULT
    flags::kErrorFatal,                                               // ERROR
};

Err nonZeroU32(Reader& r, uint32_t& out) {
  HUB_TRY(r.u32(out));
  return out == 0 ? Err::BadField : Err::Ok;
}

Err checkSampleType(uint8_t t) { return isSampleType(t) ? Err::Ok : Err::BadValueType; }

Err checkScale(uint8_t valueType, int8_t scaleExp) {
  if (scaleExp < limits::kMinScaleExp || scaleExp > limits::kMaxScaleExp) return Err::BadField;
  if ((valueType == static_cast<uint8_t>(ValueType::Bool) || valueType == static_cast<uint8_t>(ValueType::F32)) &&
      scaleExp != 0)
    return Err::BadField;
  return Err::Ok;
}

Err decodeHello(Reader& r, uint8_t fl, Hello& m) {
  m.timeSynced = (fl & flags::kHelloTimeSynced) != 0;
  HUB_TRY(r.str8(m.deviceId, limits::kDeviceIdBytes, Alphabet::DeviceId));
  HUB_TRY(r.str8(m.firmwareVersion, limits::kFirmwareVersionBytes, Alphabet::FreeText));
  HUB_TRY(r.u8(m.maxProtocolVersion));
  if (m.maxProtocolVersion < 1) return Err::BadField;
  HUB_TRY(nonZeroU32(r, m.bootId));
  HUB_TRY(r.u8(m.resetReason));
  if (m.resetReason > 7) return Err::BadField;
  HUB_TRY(r.u64(m.uptimeMs));
  HUB_TRY(r.u32(m.descriptorHash));
  HUB_TRY(r.u32(m.bufferedFrames));
  return r.u32(m.droppedFrames);
}

Err decodeWelcome(Reader& r, uint8_t fl, Welcome& m) {
  HUB_TRY(r.u8(m.acceptedVersion));
  if (m.acceptedVersion < 1) return Err::BadField;
  HUB_TRY(r.u64(m.serverTimeMs));
  HUB_TRY(r.u32(m.lastAckBootId));
  HUB_TRY(r.u32(m.lastAckSeq));
  m.hasLastAck = (fl & flags::kWelcomeHasLastAck) != 0;
  if (!m.hasLastAck && (m.lastAckBootId != 0 || m.lastAckSeq != 0)) return Err::BadField;
  m.descriptorsKnown = (fl & flags::kWelcomeDescriptorsKnown) != 0;
  HUB_TRY(r.u32(m.sampleIntervalMs));
  HUB_TRY(r.u16(m.heartbeatIntervalSec));
  if (m.heartbeatIntervalSec < limits::kMinHeartbeatSec || m.heartbeatIntervalSec > limits::kMaxHeartbeatSec)
    return Err::BadField;
  HUB_TRY(r.u16(m.maxFrameBytes));
  if (m.maxFrameBytes < kFrameOverheadBytes || m.maxFrameBytes > kMaxFrameBytes) return Err::BadField;
  return Err::Ok;
}

/** Reads one channel; `lastIndex` enforces strictly ascending indexes (-1 before the first). */
Err readChannel(Reader& r, int& lastIndex, ChannelDescriptor& ch) {
  HUB_TRY(r.u8(ch.index));
  if (ch.index > limits::kMaxChannelIndex) return Err::BadField;
  if (static_cast<int>(ch.index) <= lastIndex) return Err::BadField;
  lastIndex = ch.index;
  return Err::Ok;
}

Err readChannelRest(Reader& r, ChannelDescriptor& ch) {
  HUB_TRY(r.str8(ch.unit, limits::kUnitBytes, Alphabet::FreeText));
  uint8_t t;
  HUB_TRY(r.u8(t));
  HUB_TRY(checkSampleType(t));
  ch.valueType = static_cast<ValueType>(t);
  HUB_TRY(r.i8(ch.scaleExp));
  HUB_TRY(checkScale(t, ch.scaleExp));
  return r.u32(ch.periodMs);
}

Err decodeDescriptors(Reader& r, uint8_t& count) {
  HUB_TRY(r.u8(count));
  if (count < 1 || count > limits::kMaxChannels) return Err::BadField;
  // Keys seen so far (offset and length in the frame): duplicates are BAD_FIELD [PROTO-3.3]. Offsets
  // rather than views keep this at 192 bytes of stack.
  uint16_t keyPos[limits::kMaxChannels];
  uint8_t keyLen[limits::kMaxChannels];
  int lastIndex = -1;
  for (uint8_t i = 0; i < count; i++) {
    ChannelDescriptor ch;
    HUB_TRY(readChannel(r, lastIndex, ch));
    HUB_TRY(r.str8(ch.key, limits::kChannelKeyBytes, Alphabet::ChannelKey));
    auto pos = static_cast<uint16_t>(reinterpret_cast<const uint8_t*>(ch.key.data) - r.bytes());
    for (uint8_t k = 0; k < i; k++)
      if (keyLen[k] == ch.key.len && memcmp(r.bytes() + keyPos[k], ch.key.data, ch.key.len) == 0) return Err::BadField;
    keyPos[i] = pos;
    keyLen[i] = ch.key.len;
    HUB_TRY(readChannelRest(r, ch));
  }
  return Err::Ok;
}

Err decodeTelemetry(Reader& r, uint8_t fl, TelemetryView& m, size_t& blocksStart) {
  m.unsynced = (fl & flags::kTelemetryUnsynced) != 0;
  HUB_TRY(nonZeroU32(r, m.bootId));
  HUB_TRY(nonZeroU32(r, m.seq));
  HUB_TRY(r.u32(m.descriptorHash));
  HUB_TRY(r.u64(m.baseTime));
  HUB_TRY(r.u8(m.blockCount));
  if (m.blockCount < 1 || m.blockCount > limits::kMaxBlocks) return Err::BadField;
  blocksStart = r.pos();
  for (uint8_t b = 0; b < m.blockCount; b++) {
    uint8_t channel, type, n;
    HUB_TRY(r.u8(channel));
    if (channel > limits::kMaxChannelIndex) return Err::BadField;
    HUB_TRY(r.u8(type));
    HUB_TRY(checkSampleType(type));
    HUB_TRY(r.u8(n));
    if (n == 0) return Err::BadField;
    for (uint8_t i = 0; i < n; i++) {
      uint32_t tag;
      HUB_TRY(r.varint(tag));
      if ((tag & 1) == 0) {
        Value v;
        HUB_TRY(r.value(type, v));
      }
    }
  }
  return Err::Ok;
}

Err decodeCommand(Reader& r, Command& m) {
  HUB_TRY(nonZeroU32(r, m.commandId));
  HUB_TRY(r.str8(m.name, limits::kCommandNameBytes, Alphabet::CommandName));
  HUB_TRY(r.u8(m.argCount));
  if (m.argCount > limits::kMaxCommandArgs) return Err::BadField;
  for (uint8_t i = 0; i < m.argCount; i++) {
    CommandArg& a = m.args[i];
    HUB_TRY(r.str8(a.key, limits::kChannelKeyBytes, Alphabet::ChannelKey));
    uint8_t t;
    HUB_TRY(r.u8(t));
    if (t == 8 || t > static_cast<uint8_t>(ValueType::String)) return Err::BadValueType;
    HUB_TRY(r.value(t, a.value));
  }
  return Err::Ok;
}

Err decodeCommandResult(Reader& r, CommandResult& m) {
  HUB_TRY(nonZeroU32(r, m.commandId));
  HUB_TRY(r.u8(m.status));
  if (m.status > 4) return Err::BadField;
  return r.str8(m.message, limits::kMessageBytes, Alphabet::FreeText);
}

}  // namespace

Err readEnvelope(const uint8_t* b, size_t size, Envelope& out) {
  uint8_t type = 0;
  size_t body = 0;
  HUB_TRY(readEnvelopeBytes(b, size, type, body));
  if (type >= sizeof kAllowedFlags || kAllowedFlags[type] == kUndefined) return Err::UnknownType;
  uint8_t fl = b[4];
  if (b[5] != 0 || (fl & ~kAllowedFlags[type]) != 0) return Err::BadFlags;
  out.type = static_cast<MsgType>(type);
  out.flags = fl;
  out.payloadStart = kHeaderBytes;
  out.payloadEnd = body;
  return Err::Ok;
}

Err readEnvelopeBytes(const uint8_t* b, size_t size, uint8_t& type, size_t& payloadEnd) {
  if (size < kHeaderBytes) return Err::Truncated;
  if (b[0] != kMagic0 || b[1] != kMagic1) return Err::BadMagic;
  if (b[2] != kProtocolVersion) return Err::BadVersion;
  if (size > kMaxFrameBytes) return Err::TooLarge;
  size_t length = readU16le(b + 6);
  size_t total = kHeaderBytes + length + kCrcBytes;
  // A header declaring more than 4096 bytes can never become a valid frame [PROTO-2.7 step 4].
  if (total > kMaxFrameBytes) return Err::TooLarge;
  if (size < total) return Err::Truncated;
  if (size > total) return Err::BadLength;
  size_t body = kHeaderBytes + length;
  if (crc32(b, body) != readU32le(b + body)) return Err::BadCrc;
  type = b[3];
  payloadEnd = body;
  return Err::Ok;
}

Err decode(const uint8_t* frame, size_t len, Decoded& out) {
  Envelope env;
  HUB_TRY(readEnvelope(frame, len, env));
  out.type = env.type;
  out.flags = env.flags;
  Reader r(frame, env.payloadStart, env.payloadEnd);
  switch (env.type) {
    case MsgType::Hello:
      HUB_TRY(decodeHello(r, env.flags, out.hello));
      break;
    case MsgType::Welcome:
      HUB_TRY(decodeWelcome(r, env.flags, out.welcome));
      break;
    case MsgType::Descriptors:
      out.descriptors.bytes_ = frame;
      out.descriptors.start_ = env.payloadStart + 1;
      out.descriptors.end_ = env.payloadEnd;
      HUB_TRY(decodeDescriptors(r, out.descriptors.count_));
      break;
    case MsgType::Telemetry: {
      size_t blocksStart = 0;
      HUB_TRY(decodeTelemetry(r, env.flags, out.telemetry, blocksStart));
      out.telemetry.bytes_ = frame;
      out.telemetry.blocksStart_ = blocksStart;
      out.telemetry.end_ = env.payloadEnd;
      break;
    }
    case MsgType::Ack:
      HUB_TRY(r.u32(out.ack.bootId));
      HUB_TRY(r.u32(out.ack.seq));
      break;
    case MsgType::Command:
      HUB_TRY(decodeCommand(r, out.command));
      break;
    case MsgType::CommandAccepted:
      HUB_TRY(nonZeroU32(r, out.commandAccepted.commandId));
      break;
    case MsgType::CommandResult:
      HUB_TRY(decodeCommandResult(r, out.commandResult));
      break;
    case MsgType::Error:
      out.error.fatal = (env.flags & flags::kErrorFatal) != 0;
      HUB_TRY(r.u16(out.error.code));
      HUB_TRY(r.str8(out.error.message, limits::kMessageBytes, Alphabet::FreeText));
      break;
  }
  if (r.pos() != env.payloadEnd) return Err::BadLength;
  return Err::Ok;
}

ChannelDescriptor DescriptorsView::at(uint8_t i) const {
  Reader r(bytes_, start_, end_);
  ChannelDescriptor ch;
  int lastIndex = -1;
  for (uint8_t k = 0; k <= i; k++) {
    // The payload was validated by decode(): these reads cannot fail.
    (void)readChannel(r, lastIndex, ch);
    (void)r.str8(ch.key, limits::kChannelKeyBytes, Alphabet::ChannelKey);
    (void)readChannelRest(r, ch);
  }
  return ch;
}

bool TelemetryCursor::nextBlock(BlockHeader& out) {
  Sample skip;
  while (samplesLeft_ > 0) nextSample(skip);
  if (blocksLeft_ == 0) return false;
  blocksLeft_--;
  uint8_t type = 0;
  (void)r_.u8(out.channel);
  (void)r_.u8(type);
  (void)r_.u8(out.sampleCount);
  out.valueType = static_cast<ValueType>(type);
  type_ = out.valueType;
  samplesLeft_ = out.sampleCount;
  return true;
}

bool TelemetryCursor::nextSample(Sample& out) {
  if (samplesLeft_ == 0) return false;
  samplesLeft_--;
  uint32_t tag = 0;
  (void)r_.varint(tag);
  out.deltaMs = tag >> 1;
  out.missing = (tag & 1) != 0;
  out.value = Value();
  out.value.type = type_;
  if (!out.missing) (void)r_.value(static_cast<uint8_t>(type_), out.value);
  return true;
}

// ───────────────────────────── encode ─────────────────────────────

namespace {

size_t capOf(size_t cap) { return cap < kMaxFrameBytes ? cap : kMaxFrameBytes; }

Err writeNonZeroU32(Writer& w, uint32_t v) {
  if (v == 0) return Err::BadField;
  return w.u32(v);
}

Err writeDescriptorsPayload(Writer& w, const ChannelDescriptor* channels, size_t count) {
  if (count < 1 || count > limits::kMaxChannels) return Err::BadField;
  HUB_TRY(w.u8(static_cast<uint8_t>(count)));
  int lastIndex = -1;
  for (size_t i = 0; i < count; i++) {
    const ChannelDescriptor& ch = channels[i];
    if (ch.index > limits::kMaxChannelIndex || static_cast<int>(ch.index) <= lastIndex) return Err::BadField;
    lastIndex = ch.index;
    for (size_t k = 0; k < i; k++)
      if (channels[k].key == ch.key) return Err::BadField;
    HUB_TRY(w.u8(ch.index));
    HUB_TRY(w.str8(ch.key, limits::kChannelKeyBytes, Alphabet::ChannelKey));
    HUB_TRY(w.str8(ch.unit, limits::kUnitBytes, Alphabet::FreeText));
    auto t = static_cast<uint8_t>(ch.valueType);
    HUB_TRY(checkSampleType(t));
    HUB_TRY(w.u8(t));
    HUB_TRY(checkScale(t, ch.scaleExp));
    HUB_TRY(w.i8(ch.scaleExp));
    HUB_TRY(w.u32(ch.periodMs));
  }
  return Err::Ok;
}

}  // namespace

Err finishFrame(MsgType type, uint8_t fl, uint8_t* out, size_t cap, size_t payloadLen, size_t* outLen) {
  size_t body = kHeaderBytes + payloadLen;
  if (body + kCrcBytes > capOf(cap)) return Err::TooLarge;
  out[0] = kMagic0;
  out[1] = kMagic1;
  out[2] = kProtocolVersion;
  out[3] = static_cast<uint8_t>(type);
  out[4] = fl;
  out[5] = 0;
  writeU16le(out + 6, static_cast<uint16_t>(payloadLen));
  writeU32le(out + body, crc32(out, body));
  *outLen = body + kCrcBytes;
  return Err::Ok;
}

// Each encoder: a writer positioned after the header, the payload, then finishFrame.
#define HUB_ENCODE_BEGIN() \
  if (out == nullptr) return Err::TooLarge; \
  Writer w(out, capOf(cap), kHeaderBytes)
#define HUB_ENCODE_END(type, fl) return finishFrame(type, fl, out, cap, w.pos() - kHeaderBytes, outLen)

Err encode(const Hello& m, uint8_t* out, size_t cap, size_t* outLen) {
  HUB_ENCODE_BEGIN();
  HUB_TRY(w.str8(m.deviceId, limits::kDeviceIdBytes, Alphabet::DeviceId));
  HUB_TRY(w.str8(m.firmwareVersion, limits::kFirmwareVersionBytes, Alphabet::FreeText));
  HUB_TRY(w.u8(m.maxProtocolVersion));
  if (m.maxProtocolVersion < 1) return Err::BadField;
  HUB_TRY(writeNonZeroU32(w, m.bootId));
  if (m.resetReason > 7) return Err::BadField;
  HUB_TRY(w.u8(m.resetReason));
  HUB_TRY(w.u64(m.uptimeMs));
  HUB_TRY(w.u32(m.descriptorHash));
  HUB_TRY(w.u32(m.bufferedFrames));
  HUB_TRY(w.u32(m.droppedFrames));
  HUB_ENCODE_END(MsgType::Hello, m.timeSynced ? flags::kHelloTimeSynced : 0);
}

Err encode(const Welcome& m, uint8_t* out, size_t cap, size_t* outLen) {
  HUB_ENCODE_BEGIN();
  if (m.acceptedVersion < 1) return Err::BadField;
  HUB_TRY(w.u8(m.acceptedVersion));
  HUB_TRY(w.u64(m.serverTimeMs));
  // Without HAS_LAST_ACK the fields are written as 0, as the TS codec does for `lastAck: null`.
  HUB_TRY(w.u32(m.hasLastAck ? m.lastAckBootId : 0));
  HUB_TRY(w.u32(m.hasLastAck ? m.lastAckSeq : 0));
  HUB_TRY(w.u32(m.sampleIntervalMs));
  if (m.heartbeatIntervalSec < limits::kMinHeartbeatSec || m.heartbeatIntervalSec > limits::kMaxHeartbeatSec)
    return Err::BadField;
  HUB_TRY(w.u16(m.heartbeatIntervalSec));
  if (m.maxFrameBytes < kFrameOverheadBytes || m.maxFrameBytes > kMaxFrameBytes) return Err::BadField;
  HUB_TRY(w.u16(m.maxFrameBytes));
  uint8_t fl = (m.hasLastAck ? flags::kWelcomeHasLastAck : 0) | (m.descriptorsKnown ? flags::kWelcomeDescriptorsKnown : 0);
  HUB_ENCODE_END(MsgType::Welcome, fl);
}

Err encodeDescriptors(const ChannelDescriptor* channels, size_t count, uint8_t* out, size_t cap, size_t* outLen) {
  HUB_ENCODE_BEGIN();
  HUB_TRY(writeDescriptorsPayload(w, channels, count));
  HUB_ENCODE_END(MsgType::Descriptors, 0);
}

Err descriptorPayload(const ChannelDescriptor* channels, size_t count, uint8_t* out, size_t cap, size_t* outLen) {
  if (out == nullptr) return Err::TooLarge;
  Writer w(out, capOf(cap), 0);
  HUB_TRY(writeDescriptorsPayload(w, channels, count));
  *outLen = w.pos();
  return Err::Ok;
}

Err descriptorHash(const ChannelDescriptor* channels, size_t count, uint8_t* scratch, size_t scratchCap,
                   uint32_t* hash) {
  size_t n = 0;
  HUB_TRY(descriptorPayload(channels, count, scratch, scratchCap, &n));
  *hash = crc32(scratch, n);
  return Err::Ok;
}

Err encode(const Telemetry& m, uint8_t* out, size_t cap, size_t* outLen) {
  HUB_ENCODE_BEGIN();
  HUB_TRY(writeNonZeroU32(w, m.bootId));
  HUB_TRY(writeNonZeroU32(w, m.seq));
  HUB_TRY(w.u32(m.descriptorHash));
  HUB_TRY(w.u64(m.baseTime));
  if (m.blockCount < 1 || m.blockCount > limits::kMaxBlocks || m.blocks == nullptr) return Err::BadField;
  HUB_TRY(w.u8(m.blockCount));
  for (uint8_t b = 0; b < m.blockCount; b++) {
    const Block& block = m.blocks[b];
    if (block.channel > limits::kMaxChannelIndex) return Err::BadField;
    HUB_TRY(w.u8(block.channel));
    auto t = static_cast<uint8_t>(block.valueType);
    HUB_TRY(checkSampleType(t));
    HUB_TRY(w.u8(t));
    if (block.sampleCount < 1 || block.samples == nullptr) return Err::BadField;
    HUB_TRY(w.u8(block.sampleCount));
    for (uint8_t i = 0; i < block.sampleCount; i++) {
      const Sample& s = block.samples[i];
      if (s.deltaMs > limits::kMaxDeltaMs) return Err::BadField;
      HUB_TRY(w.varint(s.deltaMs * 2 + (s.missing ? 1 : 0)));
      if (!s.missing) {
        // A value of another type than its block's would not decode to itself.
        if (s.value.type != block.valueType) return Err::BadField;
        HUB_TRY(w.value(s.value));
      }
    }
  }
  HUB_ENCODE_END(MsgType::Telemetry, m.unsynced ? flags::kTelemetryUnsynced : 0);
}

Err encode(const Ack& m, uint8_t* out, size_t cap, size_t* outLen) {
  HUB_ENCODE_BEGIN();
  HUB_TRY(w.u32(m.bootId));
  HUB_TRY(w.u32(m.seq));
  HUB_ENCODE_END(MsgType::Ack, 0);
}

Err encode(const Command& m, uint8_t* out, size_t cap, size_t* outLen) {
  HUB_ENCODE_BEGIN();
  HUB_TRY(writeNonZeroU32(w, m.commandId));
  HUB_TRY(w.str8(m.name, limits::kCommandNameBytes, Alphabet::CommandName));
  if (m.argCount > limits::kMaxCommandArgs) return Err::BadField;
  HUB_TRY(w.u8(m.argCount));
  for (uint8_t i = 0; i < m.argCount; i++) {
    const CommandArg& a = m.args[i];
    HUB_TRY(w.str8(a.key, limits::kChannelKeyBytes, Alphabet::ChannelKey));
    HUB_TRY(w.u8(static_cast<uint8_t>(a.value.type)));
    HUB_TRY(w.value(a.value));
  }
  HUB_ENCODE_END(MsgType::Command, 0);
}

Err encode(const CommandAccepted& m, uint8_t* out, size_t cap, size_t* outLen) {
  HUB_ENCODE_BEGIN();
  HUB_TRY(writeNonZeroU32(w, m.commandId));
  HUB_ENCODE_END(MsgType::CommandAccepted, 0);
}

Err encode(const CommandResult& m, uint8_t* out, size_t cap, size_t* outLen) {
  HUB_ENCODE_BEGIN();
  HUB_TRY(writeNonZeroU32(w, m.commandId));
  if (m.status > 4) return Err::BadField;
  HUB_TRY(w.u8(m.status));
  HUB_TRY(w.str8(m.message, limits::kMessageBytes, Alphabet::FreeText));
  HUB_ENCODE_END(MsgType::CommandResult, 0);
}

Err encode(const ErrorMsg& m, uint8_t* out, size_t cap, size_t* outLen) {
  HUB_ENCODE_BEGIN();
  HUB_TRY(w.u16(m.code));
  HUB_TRY(w.str8(m.message, limits::kMessageBytes, Alphabet::FreeText));
  HUB_ENCODE_END(MsgType::Error, m.fatal ? flags::kErrorFatal : 0);
}

#undef HUB_ENCODE_BEGIN
#undef HUB_ENCODE_END

}  // namespace esp32hub
