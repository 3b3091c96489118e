// Encode and decode protocol v1 frames: the twin of server/codec/frame.ts, held to the same golden
// vectors (test/vectors/protocol-v1.json). Pure: no I/O, no clock, no heap. Decoding either fills a
// `Decoded` or returns the first failing check's code, in the order of [PROTO-2.7].
#pragma once

#include "hub_errors.h"
#include "hub_types.h"
#include "hub_wire.h"

namespace esp32hub {

struct Decoded;

/** A checked frame envelope: type, flags and payload bounds. */
struct Envelope {
  MsgType type = MsgType::Hello;
  uint8_t flags = 0;
  size_t payloadStart = kHeaderBytes;
  size_t payloadEnd = kHeaderBytes;
};

/** Steps 1–8 of [PROTO-2.7]: size, magic, version, limits, length, CRC, type, flags. */
Err readEnvelope(const uint8_t* frame, size_t len, Envelope& out);
/**
 * Steps 1–6 of [PROTO-2.7] (size, magic, version, limits, length, CRC) for an endpoint with its own
 * type table (enrollment [PROTO-8.1.3]): the type byte and the end of the payload (it starts at 8).
 */
Err readEnvelopeBytes(const uint8_t* frame, size_t len, uint8_t& type, size_t& payloadEnd);

/** One channel of a decoded DESCRIPTORS payload; strings point into the frame. */
class DescriptorsView {
 public:
  uint8_t count() const { return count_; }
  /** Reads channel `i` (0-based) by walking the payload; `i < count()`. */
  ChannelDescriptor at(uint8_t i) const;

 private:
  friend Err decode(const uint8_t*, size_t, Decoded&);
  const uint8_t* bytes_ = nullptr;
  size_t start_ = 0;
  size_t end_ = 0;
  uint8_t count_ = 0;
};

/** A block header inside a decoded TELEMETRY frame. */
struct BlockHeader {
  uint8_t channel = 0;
  ValueType valueType = ValueType::U32;
  uint8_t sampleCount = 0;
};

/**
 * A decoded TELEMETRY frame. The frame was fully validated by `decode`, so iterating cannot fail:
 *   TelemetryCursor c = view.cursor();
 *   BlockHeader b; Sample s;
 *   while (c.nextBlock(b)) while (c.nextSample(s)) ...
 */
class TelemetryCursor;
class TelemetryView {
 public:
  bool unsynced = false;
  uint32_t bootId = 0;
  uint32_t seq = 0;
  uint32_t descriptorHash = 0;
  uint64_t baseTime = 0;
  uint8_t blockCount = 0;
  TelemetryCursor cursor() const;

 private:
  friend Err decode(const uint8_t*, size_t, Decoded&);
  friend class TelemetryCursor;
  const uint8_t* bytes_ = nullptr;
  size_t blocksStart_ = 0;
  size_t end_ = 0;
};

class TelemetryCursor {
 public:
  explicit TelemetryCursor(const TelemetryView& v)
      : r_(v.bytes_, v.blocksStart_, v.end_), blocksLeft_(v.blockCount) {}
  /** Moves to the next block (skipping unread samples of the current one); false after the last. */
  bool nextBlock(BlockHeader& out);
  /** The next sample of the current block; false after its last. */
  bool nextSample(Sample& out);

 private:
  Reader r_;
  uint8_t blocksLeft_;
  uint8_t samplesLeft_ = 0;
  ValueType type_ = ValueType::U32;
};

inline TelemetryCursor TelemetryView::cursor() const { return TelemetryCursor(*this); }

/** Any decoded message; only the member named by `type` is meaningful. */
struct Decoded {
  MsgType type = MsgType::Hello;
  uint8_t flags = 0;
  Hello hello;
  Welcome welcome;
  DescriptorsView descriptors;
  TelemetryView telemetry;
  Ack ack;
  Command command;
  CommandAccepted commandAccepted;
  CommandResult commandResult;
  ErrorMsg error;
};

/** Decodes one frame. Strings and views in `out` point into `frame`. */
Err decode(const uint8_t* frame, size_t len, Decoded& out);

// ───────────────────────────── encode ─────────────────────────────
// Each encoder writes one whole frame (header, payload, CRC) into `out` (capacity `cap`, at most 4096
// is used) and sets `*outLen`. The same rules as decoding apply, so whatever encodes also decodes:
// an invalid field is BAD_FIELD (BAD_VALUE_TYPE for an unknown type), a frame over the capacity TOO_LARGE.

Err encode(const Hello& m, uint8_t* out, size_t cap, size_t* outLen);
Err encode(const Welcome& m, uint8_t* out, size_t cap, size_t* outLen);
Err encodeDescriptors(const ChannelDescriptor* channels, size_t count, uint8_t* out, size_t cap, size_t* outLen);
Err encode(const Telemetry& m, uint8_t* out, size_t cap, size_t* outLen);
Err encode(const Ack& m, uint8_t* out, size_t cap, size_t* outLen);
Err encode(const Command& m, uint8_t* out, size_t cap, size_t* outLen);
Err encode(const CommandAccepted& m, uint8_t* out, size_t cap, size_t* outLen);
Err encode(const CommandResult& m, uint8_t* out, size_t cap, size_t* outLen);
Err encode(const ErrorMsg& m, uint8_t* out, size_t cap, size_t* outLen);

/** The DESCRIPTORS payload bytes (no header/CRC) [PROTO-3.3.1]. */
Err descriptorPayload(const ChannelDescriptor* channels, size_t count, uint8_t* out, size_t cap, size_t* outLen);
/**
 * The descriptor-set hash: CRC-32 of the DESCRIPTORS payload [PROTO-3.3.1]. `scratch` holds the payload
 * while it is hashed (64 channels fit in 4096 bytes).
 */
Err descriptorHash(const ChannelDescriptor* channels, size_t count, uint8_t* scratch, size_t scratchCap,
                   uint32_t* hash);

/** Writes header and CRC around a payload already written at out[8 .. 8+payloadLen). */
Err finishFrame(MsgType type, uint8_t flags, uint8_t* out, size_t cap, size_t payloadLen, size_t* outLen);

/** Exact encoded size of a TELEMETRY frame's fixed part (header + fields before the blocks + CRC). */
constexpr size_t kTelemetryFixedBytes = kFrameOverheadBytes + 4 + 4 + 4 + 8 + 1;
/** Exact encoded size of a block header. */
constexpr size_t kBlockHeaderBytes = 3;

}  // namespace esp32hub
