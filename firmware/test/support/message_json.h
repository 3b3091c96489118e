// Golden-vector `fields` (the message as the TypeScript decodeFrame returns it, test/vectors/README.md)
// to C++ messages and back: encode a JSON message with the C++ codec, and compare a C++ decode with the
// JSON fields. Test-only: uses the heap.
#pragma once

#include <math.h>
#include <stdio.h>

#include <deque>
#include <string>
#include <vector>

#include "hub_protocol.h"
#include "json.h"

namespace testmsg {

using namespace esp32hub;
using testjson::Value;

inline std::string toHex(const uint8_t* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  s.reserve(n * 2);
  for (size_t i = 0; i < n; i++) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

inline std::vector<uint8_t> fromHex(const std::string& hex) {
  std::vector<uint8_t> out;
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw std::runtime_error("bad hex");
  };
  if (hex.size() % 2 != 0) throw std::runtime_error("odd hex length");
  for (size_t i = 0; i < hex.size(); i += 2) out.push_back(static_cast<uint8_t>(nib(hex[i]) * 16 + nib(hex[i + 1])));
  return out;
}

/** Owns the strings and arrays C++ messages point to while they are encoded. */
struct Arena {
  std::deque<std::string> strings;
  std::deque<std::vector<Sample>> samples;
  std::deque<std::vector<Block>> blocks;
  std::deque<std::vector<ChannelDescriptor>> channels;

  Str str(const std::string& s) {
    strings.push_back(s);
    Str out;
    out.data = strings.back().data();
    out.len = static_cast<uint8_t>(s.size() > 255 ? 255 : s.size());
    return out;
  }
};

/** An f32 from JSON: a number, or "NaN" / "Infinity" / "-Infinity" / "-0" (README, f32 convention). */
inline float f32FromJson(const Value& v) {
  if (v.isString()) {
    const std::string& s = v.text;
    if (s == "NaN") return NAN;
    if (s == "Infinity") return INFINITY;
    if (s == "-Infinity") return -INFINITY;
    if (s == "-0") return -0.0f;
    throw std::runtime_error("bad f32 string: " + s);
  }
  return static_cast<float>(v.num);
}

inline esp32hub::Value valueFromJson(uint8_t type, const Value& v, Arena& arena) {
  auto t = static_cast<ValueType>(type);
  switch (t) {
    case ValueType::Bool:
      return esp32hub::Value::boolean(v.asBool());
    case ValueType::F32:
      return esp32hub::Value::f32(f32FromJson(v));
    case ValueType::String:
      return esp32hub::Value::string(arena.str(v.asString()));
    default: {
      esp32hub::Value out = esp32hub::Value::integer(t, v.asInt());
      out.type = t;  // also for unknown types: the encoder names them BAD_VALUE_TYPE
      return out;
    }
  }
}

inline ChannelDescriptor channelFromJson(const Value& c, Arena& arena) {
  ChannelDescriptor ch;
  ch.index = static_cast<uint8_t>(c["index"].asInt());
  ch.key = arena.str(c["key"].asString());
  ch.unit = arena.str(c["unit"].asString());
  ch.valueType = static_cast<ValueType>(c["valueType"].asInt());
  ch.scaleExp = static_cast<int8_t>(c["scaleExp"].asInt());
  ch.periodMs = static_cast<uint32_t>(c["periodMs"].asU64());
  return ch;
}

/** Encodes a JSON message with the C++ codec. */
inline Err encodeJson(const Value& f, std::vector<uint8_t>& out) {
  Arena arena;
  out.assign(kMaxFrameBytes, 0);
  size_t len = 0;
  Err err = Err::Ok;
  const std::string& type = f["type"].asString();
  if (type == "hello") {
    Hello m;
    m.timeSynced = f["timeSynced"].asBool();
    m.deviceId = arena.str(f["deviceId"].asString());
    m.firmwareVersion = arena.str(f["firmwareVersion"].asString());
    m.maxProtocolVersion = static_cast<uint8_t>(f["maxProtocolVersion"].asInt());
    m.bootId = static_cast<uint32_t>(f["bootId"].asU64());
    m.resetReason = static_cast<uint8_t>(f["resetReason"].asInt());
    m.uptimeMs = f["uptimeMs"].asU64();
    m.descriptorHash = static_cast<uint32_t>(f["descriptorHash"].asU64());
    m.bufferedFrames = static_cast<uint32_t>(f["bufferedFrames"].asU64());
    m.droppedFrames = static_cast<uint32_t>(f["droppedFrames"].asU64());
    err = encode(m, out.data(), out.size(), &len);
  } else if (type == "welcome") {
    Welcome m;
    m.acceptedVersion = static_cast<uint8_t>(f["acceptedVersion"].asInt());
    m.serverTimeMs = f["serverTimeMs"].asU64();
    const Value& la = f["lastAck"];
    m.hasLastAck = !la.isNull();
    if (m.hasLastAck) {
      m.lastAckBootId = static_cast<uint32_t>(la["bootId"].asU64());
      m.lastAckSeq = static_cast<uint32_t>(la["seq"].asU64());
    }
    m.descriptorsKnown = f["descriptorsKnown"].asBool();
    m.sampleIntervalMs = static_cast<uint32_t>(f["sampleIntervalMs"].asU64());
    m.heartbeatIntervalSec = static_cast<uint16_t>(f["heartbeatIntervalSec"].asInt());
    m.maxFrameBytes = static_cast<uint16_t>(f["maxFrameBytes"].asInt());
    err = encode(m, out.data(), out.size(), &len);
  } else if (type == "descriptors") {
    arena.channels.emplace_back();
    auto& chs = arena.channels.back();
    for (const Value& c : f["channels"].items) chs.push_back(channelFromJson(c, arena));
    err = encodeDescriptors(chs.data(), chs.size(), out.data(), out.size(), &len);
  } else if (type == "telemetry") {
    Telemetry m;
    m.unsynced = f["unsynced"].asBool();
    m.bootId = static_cast<uint32_t>(f["bootId"].asU64());
    m.seq = static_cast<uint32_t>(f["seq"].asU64());
    m.descriptorHash = static_cast<uint32_t>(f["descriptorHash"].asU64());
    m.baseTime = f["baseTime"].asU64();
    arena.blocks.emplace_back();
    auto& blocks = arena.blocks.back();
    for (const Value& b : f["blocks"].items) {
      Block block;
      block.channel = static_cast<uint8_t>(b["channel"].asInt());
      auto t = static_cast<uint8_t>(b["valueType"].asInt());
      block.valueType = static_cast<ValueType>(t);
      arena.samples.emplace_back();
      auto& samples = arena.samples.back();
      const Value& deltas = b["deltasMs"];
      const Value& values = b["values"];
      for (size_t i = 0; i < deltas.size(); i++) {
        Sample s;
        s.deltaMs = static_cast<uint32_t>(deltas[i].asU64());
        s.missing = values[i].isNull();
        if (!s.missing) s.value = valueFromJson(t, values[i], arena);
        samples.push_back(s);
      }
      block.sampleCount = static_cast<uint8_t>(samples.size());
      block.samples = samples.data();
      blocks.push_back(block);
    }
    m.blockCount = static_cast<uint8_t>(blocks.size());
    m.blocks = blocks.data();
    err = encode(m, out.data(), out.size(), &len);
  } else if (type == "ack") {
    Ack m;
    m.bootId = static_cast<uint32_t>(f["bootId"].asU64());
    m.seq = static_cast<uint32_t>(f["seq"].asU64());
    err = encode(m, out.data(), out.size(), &len);
  } else if (type == "command") {
    Command m;
    m.commandId = static_cast<uint32_t>(f["commandId"].asU64());
    m.name = arena.str(f["name"].asString());
    const Value& args = f["args"];
    m.argCount = static_cast<uint8_t>(args.size());
    for (size_t i = 0; i < args.size() && i < limits::kMaxCommandArgs; i++) {
      m.args[i].key = arena.str(args[i]["key"].asString());
      m.args[i].value = valueFromJson(static_cast<uint8_t>(args[i]["valueType"].asInt()), args[i]["value"], arena);
    }
    err = encode(m, out.data(), out.size(), &len);
  } else if (type == "command_accepted") {
    CommandAccepted m;
    m.commandId = static_cast<uint32_t>(f["commandId"].asU64());
    err = encode(m, out.data(), out.size(), &len);
  } else if (type == "command_result") {
    CommandResult m;
    m.commandId = static_cast<uint32_t>(f["commandId"].asU64());
    m.status = static_cast<uint8_t>(f["status"].asInt());
    m.message = arena.str(f["message"].asString());
    err = encode(m, out.data(), out.size(), &len);
  } else if (type == "error") {
    ErrorMsg m;
    m.fatal = f["fatal"].asBool();
    m.code = static_cast<uint16_t>(f["code"].asInt());
    m.message = arena.str(f["message"].asString());
    err = encode(m, out.data(), out.size(), &len);
  } else {
    err = Err::UnknownType;
  }
  out.resize(err == Err::Ok ? len : 0);
  return err;
}

// ───────────────────────────── decode comparison ─────────────────────────────

/** Collects the first few differences between a C++ decode and the JSON fields. */
struct Diff {
  std::vector<std::string> problems;
  void add(const std::string& path, const std::string& expected, const std::string& actual) {
    if (problems.size() < 5) problems.push_back(path + ": expected " + expected + ", got " + actual);
  }
  bool ok() const { return problems.empty(); }
  std::string str() const {
    std::string s;
    for (const auto& p : problems) s += (s.empty() ? "" : "; ") + p;
    return s;
  }
};

inline std::string strOf(Str s) { return std::string(s.data == nullptr ? "" : s.data, s.len); }

inline void checkU(Diff& d, const std::string& path, const Value& expected, uint64_t actual) {
  if (!expected.isNumber() || expected.asU64() != actual) d.add(path, expected.isNumber() ? expected.text : "?", std::to_string(actual));
}
inline void checkI(Diff& d, const std::string& path, const Value& expected, int64_t actual) {
  if (!expected.isNumber() || expected.asInt() != actual) d.add(path, expected.isNumber() ? expected.text : "?", std::to_string(actual));
}
inline void checkB(Diff& d, const std::string& path, const Value& expected, bool actual) {
  if (!expected.isBool() || expected.b != actual) d.add(path, expected.isBool() ? (expected.b ? "true" : "false") : "?", actual ? "true" : "false");
}
inline void checkS(Diff& d, const std::string& path, const Value& expected, Str actual) {
  if (!expected.isString() || expected.text != strOf(actual)) d.add(path, "\"" + (expected.isString() ? expected.text : "?") + "\"", "\"" + strOf(actual) + "\"");
}

inline std::string describeF32(float f) {
  char buf[64];
  snprintf(buf, sizeof buf, "%.17g", static_cast<double>(f));
  return buf;
}

inline void checkValue(Diff& d, const std::string& path, const Value& expected, const esp32hub::Value& actual) {
  switch (actual.type) {
    case ValueType::Bool:
      checkB(d, path, expected, actual.b);
      return;
    case ValueType::F32: {
      float f = actual.f;
      bool same;
      if (expected.isString()) {
        const std::string& s = expected.text;
        same = (s == "NaN" && isnan(f)) || (s == "Infinity" && isinf(f) && f > 0) ||
               (s == "-Infinity" && isinf(f) && f < 0) || (s == "-0" && f == 0.0f && signbit(f));
      } else {
        // JSON numbers here hold the exact binary32 value; +0 is a number, −0 the string "-0".
        same = expected.isNumber() && !isnan(f) && static_cast<double>(f) == expected.num && !(f == 0.0f && signbit(f));
      }
      if (!same) d.add(path, expected.isString() ? expected.text : expected.text, describeF32(f));
      return;
    }
    case ValueType::String:
      checkS(d, path, expected, actual.s);
      return;
    default:
      checkI(d, path, expected, actual.i);
      return;
  }
}

inline const char* typeName(MsgType t) {
  switch (t) {
    case MsgType::Hello: return "hello";
    case MsgType::Welcome: return "welcome";
    case MsgType::Descriptors: return "descriptors";
    case MsgType::Telemetry: return "telemetry";
    case MsgType::Ack: return "ack";
    case MsgType::Command: return "command";
    case MsgType::CommandAccepted: return "command_accepted";
    case MsgType::CommandResult: return "command_result";
    case MsgType::Error: return "error";
  }
  return "?";
}

/** Compares every field of a decoded message with the vector's `fields`, including that no field is extra. */
inline Diff compareDecoded(const Decoded& m, const Value& f) {
  Diff d;
  std::string type = f["type"].asString();
  if (type != typeName(m.type)) {
    d.add("type", type, typeName(m.type));
    return d;
  }
  size_t expectedKeys = 0;
  switch (m.type) {
    case MsgType::Hello: {
      const Hello& h = m.hello;
      checkB(d, "timeSynced", f["timeSynced"], h.timeSynced);
      checkS(d, "deviceId", f["deviceId"], h.deviceId);
      checkS(d, "firmwareVersion", f["firmwareVersion"], h.firmwareVersion);
      checkU(d, "maxProtocolVersion", f["maxProtocolVersion"], h.maxProtocolVersion);
      checkU(d, "bootId", f["bootId"], h.bootId);
      checkU(d, "resetReason", f["resetReason"], h.resetReason);
      checkU(d, "uptimeMs", f["uptimeMs"], h.uptimeMs);
      checkU(d, "descriptorHash", f["descriptorHash"], h.descriptorHash);
      checkU(d, "bufferedFrames", f["bufferedFrames"], h.bufferedFrames);
      checkU(d, "droppedFrames", f["droppedFrames"], h.droppedFrames);
      expectedKeys = 11;
      break;
    }
    case MsgType::Welcome: {
      const Welcome& w = m.welcome;
      checkU(d, "acceptedVersion", f["acceptedVersion"], w.acceptedVersion);
      checkU(d, "serverTimeMs", f["serverTimeMs"], w.serverTimeMs);
      const Value& la = f["lastAck"];
      if (la.isNull() != !w.hasLastAck) {
        d.add("lastAck", la.isNull() ? "null" : "object", w.hasLastAck ? "object" : "null");
      } else if (w.hasLastAck) {
        checkU(d, "lastAck.bootId", la["bootId"], w.lastAckBootId);
        checkU(d, "lastAck.seq", la["seq"], w.lastAckSeq);
        if (la.size() != 2) d.add("lastAck", "2 keys", std::to_string(la.size()));
      }
      checkB(d, "descriptorsKnown", f["descriptorsKnown"], w.descriptorsKnown);
      checkU(d, "sampleIntervalMs", f["sampleIntervalMs"], w.sampleIntervalMs);
      checkU(d, "heartbeatIntervalSec", f["heartbeatIntervalSec"], w.heartbeatIntervalSec);
      checkU(d, "maxFrameBytes", f["maxFrameBytes"], w.maxFrameBytes);
      expectedKeys = 8;
      break;
    }
    case MsgType::Descriptors: {
      const Value& chs = f["channels"];
      if (chs.size() != m.descriptors.count()) d.add("channels.length", std::to_string(chs.size()), std::to_string(m.descriptors.count()));
      for (uint8_t i = 0; i < m.descriptors.count() && i < chs.size(); i++) {
        ChannelDescriptor c = m.descriptors.at(i);
        std::string p = "channels[" + std::to_string(i) + "].";
        checkU(d, p + "index", chs[i]["index"], c.index);
        checkS(d, p + "key", chs[i]["key"], c.key);
        checkS(d, p + "unit", chs[i]["unit"], c.unit);
        checkU(d, p + "valueType", chs[i]["valueType"], static_cast<uint8_t>(c.valueType));
        checkI(d, p + "scaleExp", chs[i]["scaleExp"], c.scaleExp);
        checkU(d, p + "periodMs", chs[i]["periodMs"], c.periodMs);
        if (chs[i].size() != 6) d.add(p, "6 keys", std::to_string(chs[i].size()));
      }
      expectedKeys = 2;
      break;
    }
    case MsgType::Telemetry: {
      const TelemetryView& t = m.telemetry;
      checkB(d, "unsynced", f["unsynced"], t.unsynced);
      checkU(d, "bootId", f["bootId"], t.bootId);
      checkU(d, "seq", f["seq"], t.seq);
      checkU(d, "descriptorHash", f["descriptorHash"], t.descriptorHash);
      checkU(d, "baseTime", f["baseTime"], t.baseTime);
      const Value& blocks = f["blocks"];
      if (blocks.size() != t.blockCount) d.add("blocks.length", std::to_string(blocks.size()), std::to_string(t.blockCount));
      TelemetryCursor cur = t.cursor();
      BlockHeader bh;
      size_t bi = 0;
      while (cur.nextBlock(bh) && bi < blocks.size()) {
        const Value& b = blocks[bi];
        std::string p = "blocks[" + std::to_string(bi) + "].";
        checkU(d, p + "channel", b["channel"], bh.channel);
        checkU(d, p + "valueType", b["valueType"], static_cast<uint8_t>(bh.valueType));
        const Value& deltas = b["deltasMs"];
        const Value& values = b["values"];
        if (deltas.size() != bh.sampleCount || values.size() != bh.sampleCount)
          d.add(p + "samples", std::to_string(deltas.size()), std::to_string(bh.sampleCount));
        Sample s;
        size_t si = 0;
        while (cur.nextSample(s) && si < deltas.size() && si < values.size()) {
          std::string sp = p + "[" + std::to_string(si) + "]";
          checkU(d, sp + ".deltaMs", deltas[si], s.deltaMs);
          if (s.missing != values[si].isNull()) {
            d.add(sp + ".value", values[si].isNull() ? "null" : values[si].text, s.missing ? "null" : "a value");
          } else if (!s.missing) {
            checkValue(d, sp + ".value", values[si], s.value);
          }
          si++;
        }
        if (b.size() != 4) d.add(p, "4 keys", std::to_string(b.size()));
        bi++;
      }
      expectedKeys = 7;
      break;
    }
    case MsgType::Ack:
      checkU(d, "bootId", f["bootId"], m.ack.bootId);
      checkU(d, "seq", f["seq"], m.ack.seq);
      expectedKeys = 3;
      break;
    case MsgType::Command: {
      const Command& c = m.command;
      checkU(d, "commandId", f["commandId"], c.commandId);
      checkS(d, "name", f["name"], c.name);
      const Value& args = f["args"];
      if (args.size() != c.argCount) d.add("args.length", std::to_string(args.size()), std::to_string(c.argCount));
      for (uint8_t i = 0; i < c.argCount && i < args.size(); i++) {
        std::string p = "args[" + std::to_string(i) + "].";
        checkS(d, p + "key", args[i]["key"], c.args[i].key);
        checkU(d, p + "valueType", args[i]["valueType"], static_cast<uint8_t>(c.args[i].value.type));
        checkValue(d, p + "value", args[i]["value"], c.args[i].value);
        if (args[i].size() != 3) d.add(p, "3 keys", std::to_string(args[i].size()));
      }
      expectedKeys = 4;
      break;
    }
    case MsgType::CommandAccepted:
      checkU(d, "commandId", f["commandId"], m.commandAccepted.commandId);
      expectedKeys = 2;
      break;
    case MsgType::CommandResult:
      checkU(d, "commandId", f["commandId"], m.commandResult.commandId);
      checkU(d, "status", f["status"], m.commandResult.status);
      checkS(d, "message", f["message"], m.commandResult.message);
      expectedKeys = 4;
      break;
    case MsgType::Error:
      checkB(d, "fatal", f["fatal"], m.error.fatal);
      checkU(d, "code", f["code"], m.error.code);
      checkS(d, "message", f["message"], m.error.message);
      expectedKeys = 4;
      break;
  }
  if (f.size() != expectedKeys) d.add("(keys)", std::to_string(expectedKeys), std::to_string(f.size()));
  return d;
}

}  // namespace testmsg
