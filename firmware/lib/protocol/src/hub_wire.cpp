#include "hub_wire.h"

namespace esp32hub {

bool isValidUtf8(const uint8_t* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t b = s[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    size_t extra;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the first continuation byte
    if (b >= 0xC2 && b <= 0xDF) {
      extra = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      extra = 2;
      if (b == 0xE0) lo = 0xA0;  // no overlongs
      if (b == 0xED) hi = 0x9F;  // no surrogates U+D800..U+DFFF
    } else if (b >= 0xF0 && b <= 0xF4) {
      extra = 3;
      if (b == 0xF0) lo = 0x90;  // no overlongs
      if (b == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
    } else {
      return false;  // 0x80..0xC1 (continuation or overlong lead), 0xF5..0xFF
    }
    if (i + extra >= n) return false;  // sequence cut off by the end of the string
    uint8_t c = s[i + 1];
    if (c < lo || c > hi) return false;
    for (size_t k = 2; k <= extra; k++) {
      c = s[i + k];
      if (c < 0x80 || c > 0xBF) return false;
    }
    i += extra + 1;
  }
  return true;
}

namespace {
bool isDigit(uint8_t c) { return c >= '0' && c <= '9'; }
bool isLower(uint8_t c) { return c >= 'a' && c <= 'z'; }
bool isUpper(uint8_t c) { return c >= 'A' && c <= 'Z'; }
}  // namespace

bool matchesAlphabet(const uint8_t* s, size_t n, Alphabet a) {
  switch (a) {
    case Alphabet::DeviceId:
      if (n < 1 || n > limits::kDeviceIdBytes) return false;
      for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (!(isDigit(c) || isLower(c) || isUpper(c) || c == '.' || c == '_' || c == '-')) return false;
      }
      return true;
    case Alphabet::ChannelKey:
      if (n < 1 || n > limits::kChannelKeyBytes || !isLower(s[0])) return false;
      for (size_t i = 1; i < n; i++) {
        uint8_t c = s[i];
        if (!(isDigit(c) || isLower(c) || c == '_')) return false;
      }
      return true;
    case Alphabet::CommandName:
      if (n < 1 || n > limits::kCommandNameBytes) return false;
      for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (!(isDigit(c) || isLower(c) || c == '_')) return false;
      }
      return true;
    case Alphabet::FreeText:
      // C0 controls and DEL are single bytes; C1 controls U+0080..U+009F are C2 80..C2 9F.
      for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c < 0x20 || c == 0x7F) return false;
        if (c == 0xC2 && i + 1 < n && s[i + 1] >= 0x80 && s[i + 1] <= 0x9F) return false;
      }
      return true;
  }
  return false;
}

uint8_t varintSize(uint32_t v) {
  uint8_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

size_t valueSize(const Value& v) {
  switch (v.type) {
    case ValueType::Bool:
    case ValueType::I8:
    case ValueType::U8:
      return 1;
    case ValueType::I16:
    case ValueType::U16:
      return 2;
    case ValueType::I32:
    case ValueType::U32:
    case ValueType::F32:
      return 4;
    case ValueType::String:
      return 1 + static_cast<size_t>(v.s.len);
  }
  return 0;
}

// ───────────────────────────── Reader ─────────────────────────────

Err Reader::u8(uint8_t& out) {
  HUB_TRY(need(1));
  out = bytes_[pos_++];
  return Err::Ok;
}

Err Reader::i8(int8_t& out) {
  uint8_t v;
  HUB_TRY(u8(v));
  out = static_cast<int8_t>(v);
  return Err::Ok;
}

Err Reader::u16(uint16_t& out) {
  HUB_TRY(need(2));
  out = readU16le(bytes_ + pos_);
  pos_ += 2;
  return Err::Ok;
}

Err Reader::i16(int16_t& out) {
  uint16_t v;
  HUB_TRY(u16(v));
  out = static_cast<int16_t>(v);
  return Err::Ok;
}

Err Reader::u32(uint32_t& out) {
  HUB_TRY(need(4));
  out = readU32le(bytes_ + pos_);
  pos_ += 4;
  return Err::Ok;
}

Err Reader::i32(int32_t& out) {
  uint32_t v;
  HUB_TRY(u32(v));
  out = static_cast<int32_t>(v);
  return Err::Ok;
}

Err Reader::f32(float& out) {
  uint32_t bits;
  HUB_TRY(u32(bits));
  memcpy(&out, &bits, sizeof out);
  return Err::Ok;
}

Err Reader::u64(uint64_t& out) {
  HUB_TRY(need(8));
  uint32_t lo = readU32le(bytes_ + pos_);
  uint32_t hi = readU32le(bytes_ + pos_ + 4);
  pos_ += 8;
  if (hi > 0x1fffff) return Err::BadField;
  out = (static_cast<uint64_t>(hi) << 32) | lo;
  return Err::Ok;
}

Err Reader::bool8(bool& out) {
  uint8_t v;
  HUB_TRY(u8(v));
  if (v > 1) return Err::BadField;
  out = v == 1;
  return Err::Ok;
}

Err Reader::varint(uint32_t& out) {
  uint64_t result = 0;
  for (int i = 0; i < 5; i++) {
    if (pos_ >= end_) return Err::Truncated;
    uint8_t b = bytes_[pos_++];
    result |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
    if ((b & 0x80) == 0) {
      if (b == 0 && i > 0) return Err::BadField;  // a superfluous high group: not canonical
      if (result > 0xffffffffu) return Err::BadField;
      out = static_cast<uint32_t>(result);
      return Err::Ok;
    }
  }
  return Err::BadField;  // longer than 5 bytes
}

Err Reader::str8(Str& out, uint8_t maxBytes, Alphabet alphabet) {
  uint8_t n;
  HUB_TRY(u8(n));
  if (n > maxBytes) return Err::BadField;
  HUB_TRY(need(n));
  const uint8_t* s = bytes_ + pos_;
  if (!isValidUtf8(s, n)) return Err::BadField;
  pos_ += n;
  if (!matchesAlphabet(s, n, alphabet)) return Err::BadField;
  out.data = reinterpret_cast<const char*>(s);
  out.len = n;
  return Err::Ok;
}

Err Reader::value(uint8_t type, Value& out) {
  out = Value();
  switch (static_cast<ValueType>(type)) {
    case ValueType::Bool:
      out.type = ValueType::Bool;
      return bool8(out.b);
    case ValueType::I8: {
      int8_t v;
      HUB_TRY(i8(v));
      out = Value::integer(ValueType::I8, v);
      return Err::Ok;
    }
    case ValueType::U8: {
      uint8_t v;
      HUB_TRY(u8(v));
      out = Value::integer(ValueType::U8, v);
      return Err::Ok;
    }
    case ValueType::I16: {
      int16_t v;
      HUB_TRY(i16(v));
      out = Value::integer(ValueType::I16, v);
      return Err::Ok;
    }
    case ValueType::U16: {
      uint16_t v;
      HUB_TRY(u16(v));
      out = Value::integer(ValueType::U16, v);
      return Err::Ok;
    }
    case ValueType::I32: {
      int32_t v;
      HUB_TRY(i32(v));
      out = Value::integer(ValueType::I32, v);
      return Err::Ok;
    }
    case ValueType::U32: {
      uint32_t v;
      HUB_TRY(u32(v));
      out = Value::integer(ValueType::U32, v);
      return Err::Ok;
    }
    case ValueType::F32:
      out.type = ValueType::F32;
      return f32(out.f);
    case ValueType::String:
      out.type = ValueType::String;
      return str8(out.s, limits::kMessageBytes, Alphabet::FreeText);
  }
  return Err::BadValueType;
}

// ───────────────────────────── Writer ─────────────────────────────

Err Writer::u8(uint8_t v) {
  HUB_TRY(room(1));
  bytes_[pos_++] = v;
  return Err::Ok;
}

Err Writer::u16(uint16_t v) {
  HUB_TRY(room(2));
  writeU16le(bytes_ + pos_, v);
  pos_ += 2;
  return Err::Ok;
}

Err Writer::u32(uint32_t v) {
  HUB_TRY(room(4));
  writeU32le(bytes_ + pos_, v);
  pos_ += 4;
  return Err::Ok;
}

Err Writer::f32(float v) {
  uint32_t bits;
  if (v != v) {
    bits = 0x7FC00000u;  // canonical NaN [PROTO-2.1]
  } else {
    memcpy(&bits, &v, sizeof bits);
  }
  return u32(bits);
}

Err Writer::u64(uint64_t v) {
  if (v > kMaxSafeInteger) return Err::BadField;
  HUB_TRY(room(8));
  writeU32le(bytes_ + pos_, static_cast<uint32_t>(v));
  writeU32le(bytes_ + pos_ + 4, static_cast<uint32_t>(v >> 32));
  pos_ += 8;
  return Err::Ok;
}

Err Writer::varint(uint32_t v) {
  HUB_TRY(room(varintSize(v)));
  while (v >= 0x80) {
    bytes_[pos_++] = static_cast<uint8_t>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  bytes_[pos_++] = static_cast<uint8_t>(v);
  return Err::Ok;
}

Err Writer::str8(Str s, uint8_t maxBytes, Alphabet alphabet) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data);
  if (s.len > 0 && p == nullptr) return Err::BadField;
  if (!isValidUtf8(p, s.len)) return Err::BadField;
  if (!matchesAlphabet(p, s.len, alphabet)) return Err::BadField;
  if (s.len > maxBytes) return Err::BadField;
  HUB_TRY(u8(s.len));
  HUB_TRY(room(s.len));
  if (s.len > 0) memcpy(bytes_ + pos_, p, s.len);
  pos_ += s.len;
  return Err::Ok;
}

namespace {
Err checkRange(int64_t v, int64_t min, int64_t max) { return v < min || v > max ? Err::BadField : Err::Ok; }
}  // namespace

Err Writer::value(const Value& v) {
  switch (v.type) {
    case ValueType::Bool:
      return bool8(v.b);
    case ValueType::I8:
      HUB_TRY(checkRange(v.i, -0x80, 0x7f));
      return i8(static_cast<int8_t>(v.i));
    case ValueType::U8:
      HUB_TRY(checkRange(v.i, 0, 0xff));
      return u8(static_cast<uint8_t>(v.i));
    case ValueType::I16:
      HUB_TRY(checkRange(v.i, -0x8000, 0x7fff));
      return i16(static_cast<int16_t>(v.i));
    case ValueType::U16:
      HUB_TRY(checkRange(v.i, 0, 0xffff));
      return u16(static_cast<uint16_t>(v.i));
    case ValueType::I32:
      HUB_TRY(checkRange(v.i, INT32_MIN, INT32_MAX));
      return i32(static_cast<int32_t>(v.i));
    case ValueType::U32:
      HUB_TRY(checkRange(v.i, 0, UINT32_MAX));
      return u32(static_cast<uint32_t>(v.i));
    case ValueType::F32:
      return f32(v.f);
    case ValueType::String:
      return str8(v.s, limits::kMessageBytes, Alphabet::FreeText);
  }
  return Err::BadValueType;
}

}  // namespace esp32hub
