// The codec's own cases, beyond the golden vectors: CRC-32 known answers, UTF-8 and alphabet edges,
// varint canonicality, encoder refusals, and round trips of every message type.
#include <math.h>
#include <unity.h>

#include "hub_protocol.h"
#include "suites.h"

using namespace esp32hub;

namespace {

#define ASSERT_ERR(expected, actual) TEST_ASSERT_EQUAL_STRING(errName(expected), errName(actual))

const uint8_t* u(const char* s) { return reinterpret_cast<const uint8_t*>(s); }

void test_crc32_matches_zlib() {
  // The standard check value of CRC-32/ISO-HDLC (zlib.crc32(b"123456789")).
  TEST_ASSERT_EQUAL_HEX32(0xCBF43926u, crc32(u("123456789"), 9));
  TEST_ASSERT_EQUAL_HEX32(0u, crc32(u(""), 0));
  // Continuation like zlib: crc32(crc32(0, a), b) == crc32(0, a ++ b).
  TEST_ASSERT_EQUAL_HEX32(0xCBF43926u, crc32(crc32(u("1234"), 4), u("56789"), 5));
  TEST_ASSERT_EQUAL_HEX32(0x414FA339u, crc32(u("The quick brown fox jumps over the lazy dog"), 43));
}

void test_utf8_validation_matches_a_fatal_text_decoder() {
  TEST_ASSERT_TRUE(isValidUtf8(u("\xC2\xB0" "C"), 3));                 // °C
  TEST_ASSERT_TRUE(isValidUtf8(u("\xF0\x9F\x9A\x80"), 4));             // U+1F680
  TEST_ASSERT_TRUE(isValidUtf8(u("\xEF\xBB\xBF" "x"), 4));             // a BOM is content
  TEST_ASSERT_TRUE(isValidUtf8(u("\xF4\x8F\xBF\xBF"), 4));             // U+10FFFF
  TEST_ASSERT_FALSE(isValidUtf8(u("\xC0\x80"), 2));                    // overlong NUL
  TEST_ASSERT_FALSE(isValidUtf8(u("\xE0\x80\x80"), 3));                // overlong
  TEST_ASSERT_FALSE(isValidUtf8(u("\xED\xA0\x80"), 3));                // surrogate U+D800
  TEST_ASSERT_FALSE(isValidUtf8(u("\xF4\x90\x80\x80"), 4));            // above U+10FFFF
  TEST_ASSERT_FALSE(isValidUtf8(u("\xE2\x82"), 2));                    // cut off
  TEST_ASSERT_FALSE(isValidUtf8(u("\x80"), 1));                        // lone continuation
  TEST_ASSERT_FALSE(isValidUtf8(u("\xFF"), 1));
}

void test_alphabets() {
  TEST_ASSERT_TRUE(matchesAlphabet(u("esp32-kitchen_01.A"), 18, Alphabet::DeviceId));
  TEST_ASSERT_FALSE(matchesAlphabet(u(""), 0, Alphabet::DeviceId));
  TEST_ASSERT_FALSE(matchesAlphabet(u("a b"), 3, Alphabet::DeviceId));
  TEST_ASSERT_TRUE(matchesAlphabet(u("temp_c2"), 7, Alphabet::ChannelKey));
  TEST_ASSERT_FALSE(matchesAlphabet(u("2temp"), 5, Alphabet::ChannelKey));
  TEST_ASSERT_FALSE(matchesAlphabet(u("Temp"), 4, Alphabet::ChannelKey));
  TEST_ASSERT_TRUE(matchesAlphabet(u("2_reboot"), 8, Alphabet::CommandName));
  TEST_ASSERT_FALSE(matchesAlphabet(u("re-boot"), 7, Alphabet::CommandName));
  TEST_ASSERT_TRUE(matchesAlphabet(u(""), 0, Alphabet::FreeText));
  TEST_ASSERT_TRUE(matchesAlphabet(u("\xC2\xB5" "S/cm"), 6, Alphabet::FreeText));  // µ is C2 B5: not C1
  TEST_ASSERT_FALSE(matchesAlphabet(u("a\nb"), 3, Alphabet::FreeText));
  TEST_ASSERT_FALSE(matchesAlphabet(u("\x7F"), 1, Alphabet::FreeText));
  TEST_ASSERT_FALSE(matchesAlphabet(u("\xC2\x85"), 2, Alphabet::FreeText));  // NEL, a C1 control
}

void test_varint_canonical_bounds() {
  uint8_t buf[8];
  const uint32_t values[] = {0, 1, 127, 128, 16383, 16384, 0x7fffffff, 0xffffffffu};
  const uint8_t sizes[] = {1, 1, 1, 2, 2, 3, 5, 5};
  for (int i = 0; i < 8; i++) {
    Writer w(buf, sizeof buf);
    ASSERT_ERR(Err::Ok, w.varint(values[i]));
    TEST_ASSERT_EQUAL_UINT(sizes[i], w.pos());
    TEST_ASSERT_EQUAL_UINT(sizes[i], varintSize(values[i]));
    Reader r(buf, 0, w.pos());
    uint32_t back = 0;
    ASSERT_ERR(Err::Ok, r.varint(back));
    TEST_ASSERT_EQUAL_UINT32(values[i], back);
  }
  const uint8_t nonCanonical[] = {0x80, 0x00};
  uint32_t v = 0;
  Reader r1(nonCanonical, 0, 2);
  ASSERT_ERR(Err::BadField, r1.varint(v));
  const uint8_t tooLong[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
  Reader r2(tooLong, 0, 6);
  ASSERT_ERR(Err::BadField, r2.varint(v));
  const uint8_t over32[] = {0xff, 0xff, 0xff, 0xff, 0x1f};
  Reader r3(over32, 0, 5);
  ASSERT_ERR(Err::BadField, r3.varint(v));
  const uint8_t cut[] = {0x80};
  Reader r4(cut, 0, 1);
  ASSERT_ERR(Err::Truncated, r4.varint(v));
}

void test_every_message_round_trips() {
  uint8_t buf[kMaxFrameBytes];
  size_t len = 0;
  Decoded d;

  Hello h;
  h.timeSynced = true;
  h.deviceId = Str::of("dev-1");
  h.firmwareVersion = Str::of("0.1.0");
  h.bootId = 7;
  h.resetReason = 4;
  h.uptimeMs = kMaxSafeInteger;
  h.descriptorHash = 0xdeadbeef;
  h.bufferedFrames = 3;
  h.droppedFrames = 2;
  ASSERT_ERR(Err::Ok, encode(h, buf, sizeof buf, &len));
  ASSERT_ERR(Err::Ok, decode(buf, len, d));
  TEST_ASSERT_TRUE(d.type == MsgType::Hello);
  TEST_ASSERT_TRUE(d.hello.deviceId.equals("dev-1") && d.hello.timeSynced && d.hello.uptimeMs == kMaxSafeInteger);
  TEST_ASSERT_EQUAL_UINT32(2, d.hello.droppedFrames);

  Welcome w;
  w.hasLastAck = true;
  w.lastAckBootId = 7;
  w.lastAckSeq = 9;
  w.descriptorsKnown = true;
  w.serverTimeMs = 1767225600000ull;
  ASSERT_ERR(Err::Ok, encode(w, buf, sizeof buf, &len));
  ASSERT_ERR(Err::Ok, decode(buf, len, d));
  TEST_ASSERT_TRUE(d.welcome.hasLastAck && d.welcome.descriptorsKnown && d.welcome.lastAckSeq == 9);

  Sample s[3];
  s[0].value = Value::integer(ValueType::I16, -2345);
  s[1].deltaMs = 1000;
  s[1].missing = true;
  s[2].deltaMs = 2000;
  s[2].value = Value::integer(ValueType::I16, 32767);
  Block b;
  b.channel = 3;
  b.valueType = ValueType::I16;
  b.sampleCount = 3;
  b.samples = s;
  Telemetry t;
  t.unsynced = true;
  t.bootId = 7;
  t.seq = 1;
  t.baseTime = 5000;
  t.blockCount = 1;
  t.blocks = &b;
  ASSERT_ERR(Err::Ok, encode(t, buf, sizeof buf, &len));
  ASSERT_ERR(Err::Ok, decode(buf, len, d));
  TEST_ASSERT_TRUE(d.telemetry.unsynced && d.telemetry.blockCount == 1);
  TelemetryCursor c = d.telemetry.cursor();
  BlockHeader bh;
  Sample got;
  TEST_ASSERT_TRUE(c.nextBlock(bh));
  TEST_ASSERT_EQUAL_UINT(3, bh.sampleCount);
  TEST_ASSERT_TRUE(c.nextSample(got));
  TEST_ASSERT_EQUAL_INT(-2345, got.value.i);
  TEST_ASSERT_TRUE(c.nextSample(got));
  TEST_ASSERT_TRUE(got.missing);
  TEST_ASSERT_TRUE(c.nextSample(got));
  TEST_ASSERT_EQUAL_UINT32(2000, got.deltaMs);
  TEST_ASSERT_FALSE(c.nextSample(got));
  TEST_ASSERT_FALSE(c.nextBlock(bh));

  Command cmd;
  cmd.commandId = 5;
  cmd.name = Str::of("set_sample_interval");
  cmd.argCount = 2;
  cmd.args[0].key = Str::of("interval_ms");
  cmd.args[0].value = Value::integer(ValueType::U32, 5000);
  cmd.args[1].key = Str::of("note");
  cmd.args[1].value = Value::string(Str::of("hi"));
  ASSERT_ERR(Err::Ok, encode(cmd, buf, sizeof buf, &len));
  ASSERT_ERR(Err::Ok, decode(buf, len, d));
  TEST_ASSERT_TRUE(d.command.name.equals("set_sample_interval"));
  TEST_ASSERT_TRUE(d.command.arg("interval_ms") != nullptr && d.command.arg("interval_ms")->value.i == 5000);
  TEST_ASSERT_TRUE(d.command.arg("note")->value.s.equals("hi"));

  CommandResult res;
  res.commandId = 5;
  res.status = 3;
  res.message = Str::of("bad");
  ASSERT_ERR(Err::Ok, encode(res, buf, sizeof buf, &len));
  ASSERT_ERR(Err::Ok, decode(buf, len, d));
  TEST_ASSERT_EQUAL_UINT(3, d.commandResult.status);

  ErrorMsg e;
  e.fatal = true;
  e.code = 203;
  ASSERT_ERR(Err::Ok, encode(e, buf, sizeof buf, &len));
  ASSERT_ERR(Err::Ok, decode(buf, len, d));
  TEST_ASSERT_TRUE(d.error.fatal && d.error.code == 203);
}

void test_encoder_refuses_what_would_not_decode() {
  uint8_t buf[kMaxFrameBytes];
  size_t len = 0;
  Hello h;
  h.deviceId = Str::of("dev 1");  // space: not in the device id alphabet
  h.bootId = 1;
  ASSERT_ERR(Err::BadField, encode(h, buf, sizeof buf, &len));
  h.deviceId = Str::of("dev");
  h.bootId = 0;  // never 0
  ASSERT_ERR(Err::BadField, encode(h, buf, sizeof buf, &len));
  h.bootId = 1;
  h.uptimeMs = kMaxSafeInteger + 1;
  ASSERT_ERR(Err::BadField, encode(h, buf, sizeof buf, &len));
  h.uptimeMs = 0;
  h.resetReason = 8;
  ASSERT_ERR(Err::BadField, encode(h, buf, sizeof buf, &len));
  h.resetReason = 0;
  ASSERT_ERR(Err::TooLarge, encode(h, buf, 20, &len));  // capacity is the limit

  ChannelDescriptor ch[2];
  ch[0].index = 1;
  ch[0].key = Str::of("a");
  ch[1].index = 1;  // not strictly ascending
  ch[1].key = Str::of("b");
  ASSERT_ERR(Err::BadField, encodeDescriptors(ch, 2, buf, sizeof buf, &len));
  ch[1].index = 2;
  ch[1].key = Str::of("a");  // duplicate key
  ASSERT_ERR(Err::BadField, encodeDescriptors(ch, 2, buf, sizeof buf, &len));
  ch[1].key = Str::of("b");
  ch[1].valueType = ValueType::F32;
  ch[1].scaleExp = -1;  // only integers have a scale
  ASSERT_ERR(Err::BadField, encodeDescriptors(ch, 2, buf, sizeof buf, &len));
  ch[1].valueType = ValueType::String;  // not a sample type
  ch[1].scaleExp = 0;
  ASSERT_ERR(Err::BadValueType, encodeDescriptors(ch, 2, buf, sizeof buf, &len));

  Sample s;
  s.value = Value::integer(ValueType::U8, 256);
  Block b;
  b.valueType = ValueType::U8;
  b.sampleCount = 1;
  b.samples = &s;
  Telemetry t;
  t.bootId = 1;
  t.seq = 1;
  t.blockCount = 1;
  t.blocks = &b;
  ASSERT_ERR(Err::BadField, encode(t, buf, sizeof buf, &len));  // out of range for u8
  s.value = Value::integer(ValueType::U16, 1);
  ASSERT_ERR(Err::BadField, encode(t, buf, sizeof buf, &len));  // type differs from the block's
  s.value = Value::integer(ValueType::U8, 1);
  s.deltaMs = 0x80000000u;
  ASSERT_ERR(Err::BadField, encode(t, buf, sizeof buf, &len));  // delta above 2^31−1
}

void test_f32_nan_is_canonical_on_the_wire() {
  uint8_t buf[64];
  Writer w(buf, sizeof buf);
  uint32_t quiet = 0x7FC00001u;  // a NaN with payload
  float f;
  memcpy(&f, &quiet, sizeof f);
  ASSERT_ERR(Err::Ok, w.f32(f));
  TEST_ASSERT_EQUAL_HEX32(0x7FC00000u, readU32le(buf));
}

void test_envelope_checks_run_in_the_documented_order() {
  // [PROTO-2.7]: version before size, size before CRC, CRC before type, type before flags.
  uint8_t buf[kMaxFrameBytes + 16] = {};
  size_t len = 0;
  Ack a;
  a.bootId = 1;
  a.seq = 1;
  ASSERT_ERR(Err::Ok, encode(a, buf, sizeof buf, &len));
  Envelope env;
  ASSERT_ERR(Err::Truncated, readEnvelope(buf, 7, env));
  ASSERT_ERR(Err::Truncated, readEnvelope(buf, len - 1, env));
  ASSERT_ERR(Err::BadLength, readEnvelope(buf, len + 1, env));
  uint8_t bad[32];
  memcpy(bad, buf, len);
  bad[2] = 2;
  bad[len - 1] ^= 1;
  ASSERT_ERR(Err::BadVersion, readEnvelope(bad, len, env));
  memcpy(bad, buf, len);
  bad[3] = 0x0A;  // unknown type, CRC now wrong too
  ASSERT_ERR(Err::BadCrc, readEnvelope(bad, len, env));
  writeU32le(bad + len - 4, crc32(bad, len - 4));
  ASSERT_ERR(Err::UnknownType, readEnvelope(bad, len, env));
  memcpy(bad, buf, len);
  bad[5] = 1;  // reserved byte
  writeU32le(bad + len - 4, crc32(bad, len - 4));
  ASSERT_ERR(Err::BadFlags, readEnvelope(bad, len, env));
  // A header declaring more than 4096 bytes is TOO_LARGE before any byte of it arrived.
  memcpy(bad, buf, 8);
  writeU16le(bad + 6, 4085);
  ASSERT_ERR(Err::TooLarge, readEnvelope(bad, 8, env));
  ASSERT_ERR(Err::TooLarge, readEnvelope(buf, kMaxFrameBytes + 1, env));
}

void test_error_table_names_and_codes() {
  TEST_ASSERT_EQUAL_STRING("TRUNCATED", errName(Err::Truncated));
  TEST_ASSERT_EQUAL_UINT(100, errWireCode(Err::Truncated));
  TEST_ASSERT_EQUAL_UINT(1009, errCloseCode(Err::TooLarge));
  TEST_ASSERT_EQUAL_STRING("BAD_VALUE_TYPE", errName(Err::BadValueType));
  TEST_ASSERT_EQUAL_UINT(109, errWireCode(Err::BadValueType));
}

void test_board_channels_match_the_simulator_table() {
  // firmware-sim/sensors.ts CHANNELS; the shared cases prove the bytes, this keeps the table readable.
  TEST_ASSERT_EQUAL_STRING("temperature", findChannelSpec(channel::kTemperature)->key);
  TEST_ASSERT_EQUAL_STRING("uptime_s", findChannelSpec(channel::kUptimeS)->key);
  TEST_ASSERT_TRUE(findChannelSpec(channel::kLed)->valueType == ValueType::Bool);
  ChannelDescriptor out[16];
  uint8_t n = boardDescriptors((1u << channel::kRssiDbm) | (1u << channel::kUptimeS), 1000, out, 16);
  TEST_ASSERT_EQUAL_UINT(2, n);
  TEST_ASSERT_EQUAL_UINT32(2000, out[0].periodMs);   // rssi every 2nd tick
  TEST_ASSERT_EQUAL_UINT32(10000, out[1].periodMs);  // uptime every 10th tick
}

}  // namespace

void run_codec_tests() {
  RUN_TEST(test_crc32_matches_zlib);
  RUN_TEST(test_utf8_validation_matches_a_fatal_text_decoder);
  RUN_TEST(test_alphabets);
  RUN_TEST(test_varint_canonical_bounds);
  RUN_TEST(test_every_message_round_trips);
  RUN_TEST(test_encoder_refuses_what_would_not_decode);
  RUN_TEST(test_f32_nan_is_canonical_on_the_wire);
  RUN_TEST(test_envelope_checks_run_in_the_documented_order);
  RUN_TEST(test_error_table_names_and_codes);
  RUN_TEST(test_board_channels_match_the_simulator_table);
}
