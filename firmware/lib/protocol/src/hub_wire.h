// Bounds-checked little-endian reader and writer over caller-owned bytes: the twin of
// server/codec/wire.ts. Every read checks its size against the end of the payload first, so a field
// past the end is TRUNCATED and never an out-of-bounds access [PROTO-2.7].
#pragma once

#include "hub_errors.h"
#include "hub_types.h"

namespace esp32hub {

/** Identifier alphabets [PROTO-2.8]. */
enum class Alphabet : uint8_t {
  DeviceId,     // 1–64 of A–Z a–z 0–9 . _ -
  ChannelKey,   // 1–32 of a–z 0–9 _, starting with a letter
  CommandName,  // 1–32 of a–z 0–9 _
  FreeText,     // no control characters (U+0000–U+001F, U+007F–U+009F)
};

/** Well-formed UTF-8 exactly as a fatal WHATWG TextDecoder accepts it (no overlongs, surrogates, > U+10FFFF). */
bool isValidUtf8(const uint8_t* s, size_t n);
/** `s` (valid UTF-8) matches the alphabet. */
bool matchesAlphabet(const uint8_t* s, size_t n, Alphabet a);
/** Bytes an unsigned LEB128 varint of `v` takes (1..5). */
uint8_t varintSize(uint32_t v);
/** Bytes a sample or argument value of type `t` takes on the wire (String: 1 + its length). */
size_t valueSize(const Value& v);

class Reader {
 public:
  Reader(const uint8_t* bytes, size_t pos, size_t end) : bytes_(bytes), pos_(pos), end_(end) {}

  size_t pos() const { return pos_; }
  size_t end() const { return end_; }
  const uint8_t* bytes() const { return bytes_; }

  Err u8(uint8_t& out);
  Err i8(int8_t& out);
  Err u16(uint16_t& out);
  Err i16(int16_t& out);
  Err u32(uint32_t& out);
  Err i32(int32_t& out);
  Err f32(float& out);
  /** u64; above 2^53−1 is BAD_FIELD (it could not be a JavaScript number). */
  Err u64(uint64_t& out);
  /** 0 or 1; anything else BAD_FIELD. */
  Err bool8(bool& out);
  /** Canonical unsigned LEB128, at most 5 bytes, ≤ 2^32−1; otherwise BAD_FIELD. */
  Err varint(uint32_t& out);
  /** u8 length + UTF-8 bytes: over `maxBytes` or outside the alphabet → BAD_FIELD. */
  Err str8(Str& out, uint8_t maxBytes, Alphabet alphabet);
  /** A value of the given type [PROTO-4]; unknown type → BAD_VALUE_TYPE. */
  Err value(uint8_t type, Value& out);

 private:
  Err need(size_t n) const { return pos_ + n > end_ ? Err::Truncated : Err::Ok; }
  const uint8_t* bytes_;
  size_t pos_;
  size_t end_;
};

class Writer {
 public:
  Writer(uint8_t* bytes, size_t capacity, size_t pos = 0) : bytes_(bytes), cap_(capacity), pos_(pos) {}

  size_t pos() const { return pos_; }
  uint8_t* bytes() const { return bytes_; }
  size_t capacity() const { return cap_; }

  Err u8(uint8_t v);
  Err i8(int8_t v) { return u8(static_cast<uint8_t>(v)); }
  Err u16(uint16_t v);
  Err i16(int16_t v) { return u16(static_cast<uint16_t>(v)); }
  Err u32(uint32_t v);
  Err i32(int32_t v) { return u32(static_cast<uint32_t>(v)); }
  /** IEEE binary32; any NaN is written as the canonical 0x7FC00000. */
  Err f32(float v);
  /** Above 2^53−1 → BAD_FIELD. */
  Err u64(uint64_t v);
  Err bool8(bool v) { return u8(v ? 1 : 0); }
  Err varint(uint32_t v);
  /** Alphabet, well-formedness and length are checked before anything is written. */
  Err str8(Str s, uint8_t maxBytes, Alphabet alphabet);
  /** A value of `v.type`: integers range-checked against the type (BAD_FIELD), unknown type BAD_VALUE_TYPE. */
  Err value(const Value& v);

 private:
  Err room(size_t n) const { return pos_ + n > cap_ ? Err::TooLarge : Err::Ok; }
  uint8_t* bytes_;
  size_t cap_;
  size_t pos_;
};

inline uint16_t readU16le(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t readU32le(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
inline void writeU16le(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline void writeU32le(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
  p[2] = static_cast<uint8_t>(v >> 16);
  p[3] = static_cast<uint8_t>(v >> 24);
}

}  // namespace esp32hub
