// A small, strict JSON reader for the host tests (RFC 8259: objects, arrays, strings with every escape
// including surrogate pairs, numbers, true/false/null). Test-only code: it uses the heap freely.
// Numbers keep their source text so integers up to 2^53 (u64 fields) are read exactly.
#pragma once

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace testjson {

struct Value {
  enum class Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool b = false;
  double num = 0;
  std::string text;  // String: the decoded UTF-8; Number: the source text
  std::vector<Value> items;
  std::vector<std::pair<std::string, Value>> members;  // in source order

  bool isNull() const { return kind == Kind::Null; }
  bool isString() const { return kind == Kind::String; }
  bool isNumber() const { return kind == Kind::Number; }
  bool isBool() const { return kind == Kind::Bool; }
  bool isArray() const { return kind == Kind::Array; }
  bool isObject() const { return kind == Kind::Object; }

  const Value* find(const std::string& key) const {
    for (const auto& m : members)
      if (m.first == key) return &m.second;
    return nullptr;
  }
  const Value& operator[](const std::string& key) const {
    const Value* v = find(key);
    if (v == nullptr) throw std::runtime_error("missing key: " + key);
    return *v;
  }
  const Value& operator[](size_t i) const { return items.at(i); }
  size_t size() const { return kind == Kind::Array ? items.size() : members.size(); }

  /** An integer number (no fraction/exponent), exactly. */
  int64_t asInt() const {
    if (kind == Kind::Bool) return b ? 1 : 0;
    if (kind != Kind::Number) throw std::runtime_error("not a number");
    if (text.find_first_of(".eE") != std::string::npos) {
      double d = num;
      if (d != static_cast<double>(static_cast<int64_t>(d))) throw std::runtime_error("not an integer: " + text);
      return static_cast<int64_t>(d);
    }
    return strtoll(text.c_str(), nullptr, 10);
  }
  uint64_t asU64() const {
    if (kind == Kind::Number && text.find_first_of(".eE-") == std::string::npos)
      return strtoull(text.c_str(), nullptr, 10);
    return static_cast<uint64_t>(asInt());
  }
  bool asBool() const {
    if (kind != Kind::Bool) throw std::runtime_error("not a boolean");
    return b;
  }
  const std::string& asString() const {
    if (kind != Kind::String) throw std::runtime_error("not a string");
    return text;
  }
};

class Parser {
 public:
  explicit Parser(const std::string& src) : s_(src) {}

  Value parseDocument() {
    Value v = parseValue();
    ws();
    if (p_ != s_.size()) error("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    throw std::runtime_error("JSON: " + what + " at offset " + std::to_string(p_));
  }
  void ws() {
    while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\t' || s_[p_] == '\n' || s_[p_] == '\r')) p_++;
  }
  char peek() const { return p_ < s_.size() ? s_[p_] : '\0'; }
  void expect(char c) {
    if (peek() != c) error(std::string("expected '") + c + "'");
    p_++;
  }
  bool literal(const char* lit) {
    size_t n = strlen(lit);
    if (s_.compare(p_, n, lit) == 0) {
      p_ += n;
      return true;
    }
    return false;
  }

  Value parseValue() {
    ws();
    Value v;
    char c = peek();
    if (c == '{') {
      v.kind = Value::Kind::Object;
      p_++;
      ws();
      if (peek() == '}') {
        p_++;
        return v;
      }
      for (;;) {
        ws();
        std::string key = parseString();
        ws();
        expect(':');
        Value item = parseValue();
        v.members.emplace_back(std::move(key), std::move(item));
        ws();
        if (peek() == ',') {
          p_++;
          continue;
        }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.kind = Value::Kind::Array;
      p_++;
      ws();
      if (peek() == ']') {
        p_++;
        return v;
      }
      for (;;) {
        v.items.push_back(parseValue());
        ws();
        if (peek() == ',') {
          p_++;
          continue;
        }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.kind = Value::Kind::String;
      v.text = parseString();
      return v;
    }
    if (literal("true")) {
      v.kind = Value::Kind::Bool;
      v.b = true;
      return v;
    }
    if (literal("false")) {
      v.kind = Value::Kind::Bool;
      return v;
    }
    if (literal("null")) return v;
    if (c == '-' || (c >= '0' && c <= '9')) {
      size_t start = p_;
      if (peek() == '-') p_++;
      if (peek() == '0') {
        p_++;
      } else if (peek() >= '1' && peek() <= '9') {
        while (peek() >= '0' && peek() <= '9') p_++;
      } else {
        error("bad number");
      }
      if (peek() == '.') {
        p_++;
        if (!(peek() >= '0' && peek() <= '9')) error("bad fraction");
        while (peek() >= '0' && peek() <= '9') p_++;
      }
      if (peek() == 'e' || peek() == 'E') {
        p_++;
        if (peek() == '+' || peek() == '-') p_++;
        if (!(peek() >= '0' && peek() <= '9')) error("bad exponent");
        while (peek() >= '0' && peek() <= '9') p_++;
      }
      v.kind = Value::Kind::Number;
      v.text = s_.substr(start, p_ - start);
      v.num = strtod(v.text.c_str(), nullptr);  // correctly rounded (glibc), like JSON.parse
      return v;
    }
    error("unexpected character");
  }

  unsigned hex4() {
    if (p_ + 4 > s_.size()) error("short \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
      char c = s_[p_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
      else error("bad \\u escape");
    }
    return v;
  }

  static void putUtf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string parseString() {
    expect('"');
    std::string out;
    for (;;) {
      if (p_ >= s_.size()) error("unterminated string");
      char c = s_[p_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) error("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (p_ >= s_.size()) error("unterminated escape");
      char e = s_[p_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.compare(p_, 2, "\\u") != 0) error("lone high surrogate");
            p_ += 2;
            unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) error("bad low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            error("lone low surrogate");
          }
          putUtf8(out, cp);
          break;
        }
        default:
          error("bad escape");
      }
    }
  }

  const std::string& s_;
  size_t p_ = 0;
};

inline Value parse(const std::string& src) { return Parser(src).parseDocument(); }

}  // namespace testjson
