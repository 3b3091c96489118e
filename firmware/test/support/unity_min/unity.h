// A minimal stand-in for ThrowTheSwitch Unity, used only by the host build (firmware/test/Makefile) so
// the tests build with nothing but g++. Under `pio test -e native` the real Unity is used instead: this
// directory is not on PlatformIO's include path. Only the subset of the Unity API the tests use is here,
// with Unity's output format ("file:line:test:PASS|FAIL: message", then "N Tests M Failures 0 Ignored").
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <string>

namespace unity_min {

struct Failure {
  std::string message;
  int line;
};

struct State {
  const char* file = "";
  unsigned tests = 0;
  unsigned failures = 0;
  const char* current = "";
};

inline State& state() {
  static State s;
  return s;
}

[[noreturn]] inline void fail(int line, const std::string& message) { throw Failure{message, line}; }

inline std::string u64s(uint64_t v) { return std::to_string(v); }
inline std::string i64s(int64_t v) { return std::to_string(v); }

inline void begin(const char* file) {
  state() = State();
  state().file = file;
}

inline void run(void (*fn)(), const char* name, int line) {
  State& s = state();
  s.tests++;
  s.current = name;
  try {
    fn();
    printf("%s:%d:%s:PASS\n", s.file, line, name);
  } catch (const Failure& f) {
    s.failures++;
    printf("%s:%d:%s:FAIL: %s\n", s.file, f.line, name, f.message.c_str());
  } catch (const std::exception& e) {
    s.failures++;
    printf("%s:%d:%s:FAIL: exception: %s\n", s.file, line, name, e.what());
  }
  fflush(stdout);
}

inline int end() {
  const State& s = state();
  printf("\n-----------------------\n%u Tests %u Failures 0 Ignored\n%s\n", s.tests, s.failures,
         s.failures == 0 ? "OK" : "FAIL");
  fflush(stdout);
  return static_cast<int>(s.failures);
}

inline void equalU(uint64_t e, uint64_t a, int line, const char* msg) {
  if (e != a) fail(line, "Expected " + u64s(e) + " Was " + u64s(a) + (msg ? std::string(". ") + msg : ""));
}
inline void equalI(int64_t e, int64_t a, int line, const char* msg) {
  if (e != a) fail(line, "Expected " + i64s(e) + " Was " + i64s(a) + (msg ? std::string(". ") + msg : ""));
}
inline void equalStr(const char* e, const char* a, int line, const char* msg) {
  if (strcmp(e, a) != 0)
    fail(line, std::string("Expected '") + e + "' Was '" + a + "'" + (msg ? std::string(". ") + msg : ""));
}
inline void equalBytes(const uint8_t* e, const uint8_t* a, size_t n, int line) {
  for (size_t i = 0; i < n; i++)
    if (e[i] != a[i]) fail(line, "Element " + u64s(i) + " Expected " + u64s(e[i]) + " Was " + u64s(a[i]));
}

}  // namespace unity_min

// Unity does not need these defined by the test in recent versions; they are declared for symmetry.
void setUp(void);
void tearDown(void);

#define UNITY_BEGIN() (unity_min::begin(__FILE__), 0)
#define UNITY_END() unity_min::end()
#define RUN_TEST(fn)                          \
  do {                                        \
    setUp();                                  \
    unity_min::run(fn, #fn, __LINE__);        \
    tearDown();                               \
  } while (0)

#define TEST_FAIL_MESSAGE(m) unity_min::fail(__LINE__, (m))
#define TEST_MESSAGE(m) (printf("%s:%d:%s:INFO: %s\n", unity_min::state().file, __LINE__, unity_min::state().current, (m)))
#define TEST_ASSERT_TRUE_MESSAGE(c, m) \
  do {                                 \
    if (!(c)) unity_min::fail(__LINE__, std::string("Expected TRUE Was FALSE. ") + (m)); \
  } while (0)
#define TEST_ASSERT_TRUE(c) \
  do {                      \
    if (!(c)) unity_min::fail(__LINE__, "Expected TRUE Was FALSE: " #c); \
  } while (0)
#define TEST_ASSERT_FALSE(c) \
  do {                       \
    if (c) unity_min::fail(__LINE__, "Expected FALSE Was TRUE: " #c); \
  } while (0)
#define TEST_ASSERT(c) TEST_ASSERT_TRUE(c)
#define TEST_ASSERT_EQUAL_INT(e, a) unity_min::equalI((int64_t)(e), (int64_t)(a), __LINE__, nullptr)
#define TEST_ASSERT_EQUAL_INT_MESSAGE(e, a, m) unity_min::equalI((int64_t)(e), (int64_t)(a), __LINE__, (m))
#define TEST_ASSERT_EQUAL(e, a) TEST_ASSERT_EQUAL_INT(e, a)
#define TEST_ASSERT_EQUAL_UINT(e, a) unity_min::equalU((uint64_t)(e), (uint64_t)(a), __LINE__, nullptr)
#define TEST_ASSERT_EQUAL_UINT8(e, a) TEST_ASSERT_EQUAL_UINT(e, a)
#define TEST_ASSERT_EQUAL_UINT16(e, a) TEST_ASSERT_EQUAL_UINT(e, a)
#define TEST_ASSERT_EQUAL_UINT32(e, a) TEST_ASSERT_EQUAL_UINT(e, a)
#define TEST_ASSERT_EQUAL_UINT64(e, a) TEST_ASSERT_EQUAL_UINT(e, a)
#define TEST_ASSERT_EQUAL_HEX32(e, a) TEST_ASSERT_EQUAL_UINT(e, a)
#define TEST_ASSERT_EQUAL_size_t(e, a) TEST_ASSERT_EQUAL_UINT(e, a)
#define TEST_ASSERT_EQUAL_UINT32_MESSAGE(e, a, m) unity_min::equalU((uint64_t)(e), (uint64_t)(a), __LINE__, (m))
#define TEST_ASSERT_EQUAL_STRING(e, a) unity_min::equalStr((e), (a), __LINE__, nullptr)
#define TEST_ASSERT_EQUAL_STRING_MESSAGE(e, a, m) unity_min::equalStr((e), (a), __LINE__, (m))
#define TEST_ASSERT_EQUAL_HEX8_ARRAY(e, a, n) unity_min::equalBytes((const uint8_t*)(e), (const uint8_t*)(a), (n), __LINE__)
#define TEST_ASSERT_UINT32_WITHIN(d, e, a)                                                      \
  do {                                                                                          \
    uint64_t e_ = (uint64_t)(e), a_ = (uint64_t)(a), d_ = (uint64_t)(d);                        \
    if ((a_ > e_ ? a_ - e_ : e_ - a_) > d_)                                                     \
      unity_min::fail(__LINE__, "Expected " + unity_min::u64s(e_) + " +/- " + unity_min::u64s(d_) + \
                                    " Was " + unity_min::u64s(a_));                             \
  } while (0)
#define TEST_ASSERT_GREATER_OR_EQUAL_UINT32(t, a)                                                \
  do {                                                                                           \
    if (!((uint64_t)(a) >= (uint64_t)(t)))                                                       \
      unity_min::fail(__LINE__, "Expected >= " + unity_min::u64s((uint64_t)(t)) + " Was " +     \
                                    unity_min::u64s((uint64_t)(a)));                             \
  } while (0)
#define TEST_ASSERT_LESS_OR_EQUAL_UINT32(t, a)                                                   \
  do {                                                                                           \
    if (!((uint64_t)(a) <= (uint64_t)(t)))                                                       \
      unity_min::fail(__LINE__, "Expected <= " + unity_min::u64s((uint64_t)(t)) + " Was " +     \
                                    unity_min::u64s((uint64_t)(a)));                             \
  } while (0)
