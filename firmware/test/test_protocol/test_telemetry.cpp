// The telemetry builder: canonical layout (blocks by channel index, samples in order), exact size
// tracking against the frame limit, and when a frame must be sealed.
#include <math.h>
#include <unity.h>

#include "hub_protocol.h"
#include "suites.h"

using namespace esp32hub;

namespace {

void test_builder_layout_equals_the_plain_encoder() {
  TelemetryBuilder b;
  const uint64_t t0 = 1767225600000ull;
  // Interleaved channels, added out of index order.
  b.add(4, ValueType::I8, t0, true, false, Value::integer(ValueType::I8, -61));
  b.add(0, ValueType::I16, t0, true, false, Value::integer(ValueType::I16, 2345));
  b.add(0, ValueType::I16, t0 + 1000, true, true, Value());
  b.add(7, ValueType::Bool, t0 + 1500, true, false, Value::boolean(true));
  b.add(0, ValueType::I16, t0 + 2000, true, false, Value::integer(ValueType::I16, -5));
  uint8_t got[256];
  size_t gotLen = 0;
  TEST_ASSERT_TRUE(b.encode(9, 3, 0x11223344u, got, sizeof got, &gotLen) == Err::Ok);
  TEST_ASSERT_EQUAL_UINT(b.encodedSize(), gotLen);

  Sample s0[3], s4[1], s7[1];
  s0[0].value = Value::integer(ValueType::I16, 2345);
  s0[1].deltaMs = 1000;
  s0[1].missing = true;
  s0[2].deltaMs = 2000;
  s0[2].value = Value::integer(ValueType::I16, -5);
  s4[0].value = Value::integer(ValueType::I8, -61);
  s7[0].deltaMs = 1500;
  s7[0].value = Value::boolean(true);
  Block blocks[3] = {{0, ValueType::I16, 3, s0}, {4, ValueType::I8, 1, s4}, {7, ValueType::Bool, 1, s7}};
  Telemetry t;
  t.bootId = 9;
  t.seq = 3;
  t.descriptorHash = 0x11223344u;
  t.baseTime = t0;
  t.blockCount = 3;
  t.blocks = blocks;
  uint8_t want[256];
  size_t wantLen = 0;
  TEST_ASSERT_TRUE(encode(t, want, sizeof want, &wantLen) == Err::Ok);
  TEST_ASSERT_EQUAL_UINT(wantLen, gotLen);
  TEST_ASSERT_EQUAL_HEX8_ARRAY(want, got, wantLen);
}

void test_frames_never_pass_the_limit() {
  TelemetryBuilder b;
  b.setLimit(200);
  uint64_t t = 5000;
  int frames = 0, samples = 0;
  uint8_t buf[256];
  for (int i = 0; i < 500; i++) {
    uint8_t ch = static_cast<uint8_t>(i % 9);
    Value v = Value::integer(ValueType::U32, 100000u + static_cast<uint32_t>(i));
    TelemetryBuilder::Add r = b.add(ch, ValueType::U32, t, false, false, v);
    if (r == TelemetryBuilder::Add::NeedsFlush) {
      size_t len = 0;
      TEST_ASSERT_TRUE(b.encode(1, static_cast<uint32_t>(frames + 1), 0, buf, sizeof buf, &len) == Err::Ok);
      TEST_ASSERT_LESS_OR_EQUAL_UINT32(200, len);
      TEST_ASSERT_EQUAL_UINT(b.encodedSize(), len);
      // Nearly full: the sample that did not fit needs at most 3 + 1 + 4 bytes.
      TEST_ASSERT_GREATER_OR_EQUAL_UINT32(200 - 8, len);
      Decoded d;
      TEST_ASSERT_TRUE(decode(buf, len, d) == Err::Ok);
      TEST_ASSERT_TRUE(d.telemetry.unsynced);
      samples += b.sampleCount();
      frames++;
      b.clear();
      r = b.add(ch, ValueType::U32, t, false, false, v);
    }
    TEST_ASSERT_TRUE(r == TelemetryBuilder::Add::Added);
    t += 250;
  }
  TEST_ASSERT_TRUE(frames >= 10);
  TEST_ASSERT_EQUAL_INT(500, samples + b.sampleCount());
}

void test_when_a_frame_must_be_sealed() {
  TelemetryBuilder b;
  TEST_ASSERT_TRUE(b.add(1, ValueType::U16, 10000, false, false, Value::integer(ValueType::U16, 1)) ==
                   TelemetryBuilder::Add::Added);
  // Another time domain (the clock got set), time before the base, a delta past 2^31−1.
  TEST_ASSERT_TRUE(b.add(1, ValueType::U16, 1767225600000ull, true, false, Value::integer(ValueType::U16, 2)) ==
                   TelemetryBuilder::Add::NeedsFlush);
  TEST_ASSERT_TRUE(b.add(1, ValueType::U16, 9999, false, false, Value::integer(ValueType::U16, 2)) ==
                   TelemetryBuilder::Add::NeedsFlush);
  TEST_ASSERT_TRUE(b.add(1, ValueType::U16, 10000 + 0x80000000ull, false, false, Value::integer(ValueType::U16, 2)) ==
                   TelemetryBuilder::Add::NeedsFlush);
  // A block holds at most 255 samples.
  for (int i = 1; i < 255; i++)
    TEST_ASSERT_TRUE(b.add(1, ValueType::U16, 10000, false, false, Value::integer(ValueType::U16, 3)) ==
                     TelemetryBuilder::Add::Added);
  TEST_ASSERT_TRUE(b.add(1, ValueType::U16, 10000, false, false, Value::integer(ValueType::U16, 3)) ==
                   TelemetryBuilder::Add::NeedsFlush);
  // Values that can never be sent are refused alone, without poisoning the frame.
  TEST_ASSERT_TRUE(b.add(2, ValueType::U8, 10000, false, false, Value::integer(ValueType::U8, 300)) ==
                   TelemetryBuilder::Add::Rejected);
  TEST_ASSERT_TRUE(b.add(2, ValueType::U8, 10000, false, false, Value::integer(ValueType::I8, 3)) ==
                   TelemetryBuilder::Add::Rejected);
  TEST_ASSERT_TRUE(b.add(200, ValueType::U8, 10000, false, false, Value::integer(ValueType::U8, 3)) ==
                   TelemetryBuilder::Add::Rejected);
  uint8_t buf[kMaxFrameBytes];
  size_t len = 0;
  TEST_ASSERT_TRUE(b.encode(1, 1, 0, buf, sizeof buf, &len) == Err::Ok);
}

void test_engineering_values_to_fixed_point() {
  Value v;
  TEST_ASSERT_TRUE(toRaw(23.45, -2, ValueType::I16, v));
  TEST_ASSERT_EQUAL_INT(2345, v.i);
  TEST_ASSERT_TRUE(toRaw(-0.005, -2, ValueType::I16, v));  // Math.round(-0.5) is -0 → 0
  TEST_ASSERT_EQUAL_INT(0, v.i);
  TEST_ASSERT_TRUE(toRaw(3.912, -3, ValueType::U16, v));
  TEST_ASSERT_EQUAL_INT(3912, v.i);
  TEST_ASSERT_TRUE(toRaw(1013.25, -2, ValueType::U32, v));
  TEST_ASSERT_EQUAL_INT(101325, v.i);
  TEST_ASSERT_TRUE(toRaw(-67.0, 0, ValueType::I8, v));
  TEST_ASSERT_EQUAL_INT(-67, v.i);
  TEST_ASSERT_TRUE(toRaw(12000, 3, ValueType::U8, v));  // 12 × 10^3
  TEST_ASSERT_EQUAL_INT(12, v.i);
  TEST_ASSERT_FALSE(toRaw(400.0, -2, ValueType::I16, v));  // 40000 does not fit i16
  TEST_ASSERT_FALSE(toRaw(-1.0, 0, ValueType::U32, v));
  TEST_ASSERT_FALSE(toRaw(NAN, -2, ValueType::I16, v));
  TEST_ASSERT_TRUE(toRaw(21.3, 0, ValueType::F32, v));
  TEST_ASSERT_TRUE(v.f == 21.3f);
}

}  // namespace

void run_telemetry_tests() {
  RUN_TEST(test_builder_layout_equals_the_plain_encoder);
  RUN_TEST(test_frames_never_pass_the_limit);
  RUN_TEST(test_when_a_frame_must_be_sealed);
  RUN_TEST(test_engineering_values_to_fixed_point);
}
