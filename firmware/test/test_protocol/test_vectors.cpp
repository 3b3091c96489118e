// Every golden vector of test/vectors/protocol-v1.json — the file the TypeScript tests read — against
// the C++ codec: valid vectors decode to their fields and re-encode byte for byte; malformed vectors fail
// with the same error code as the TypeScript codec. The file's SHA-256 and the counts go into the report
// for the drift check in test/unit/firmware-host.test.ts.
#include <unity.h>

#include "../support/json.h"
#include "../support/message_json.h"
#include "../support/sha256.h"
#include "suites.h"

using namespace esp32hub;

namespace {

testjson::Value gVectors;
bool gLoaded = false;

void test_vector_file_loads() {
  HostReport& r = hostReport();
  r.vectorsPath = repoPath("test/vectors/protocol-v1.json");
  std::string text = readFile(r.vectorsPath);
  r.vectorsSha256 = testsha::sha256Hex(text);
  gVectors = testjson::parse(text);
  gLoaded = true;
  TEST_ASSERT_EQUAL_INT(1, gVectors["protocol"].asInt());
  TEST_ASSERT_TRUE(gVectors["valid"].size() > 0);
  TEST_ASSERT_TRUE(gVectors["malformed"].size() > 0);
}

void test_valid_vectors_decode_and_reencode() {
  TEST_ASSERT_TRUE_MESSAGE(gLoaded, "vector file not loaded");
  HostReport& r = hostReport();
  int failed = 0;
  std::string firstFailure;
  for (const testjson::Value& v : gVectors["valid"].items) {
    r.valid++;
    const std::string& name = v["name"].asString();
    std::string problem;
    std::vector<uint8_t> frame = testmsg::fromHex(v["hex"].asString());
    Decoded d;
    Err err = decode(frame.data(), frame.size(), d);
    if (err != Err::Ok) {
      problem = std::string("decode failed: ") + errName(err);
    } else {
      testmsg::Diff diff = testmsg::compareDecoded(d, v["fields"]);
      if (!diff.ok()) problem = "decoded fields differ: " + diff.str();
    }
    if (problem.empty()) {
      std::vector<uint8_t> encoded;
      err = testmsg::encodeJson(v["fields"], encoded);
      if (err != Err::Ok) {
        problem = std::string("encode failed: ") + errName(err);
      } else if (encoded != frame) {
        problem = "encoded " + testmsg::toHex(encoded.data(), encoded.size());
      }
    }
    if (problem.empty()) {
      r.validPassed++;
      r.lines.push_back("valid " + name + " PASS");
    } else {
      failed++;
      if (firstFailure.empty()) firstFailure = name + ": " + problem;
      r.lines.push_back("valid " + name + " FAIL " + problem);
    }
  }
  TEST_ASSERT_TRUE_MESSAGE(failed == 0, firstFailure.c_str());
}

void test_malformed_vectors_fail_with_the_same_code() {
  TEST_ASSERT_TRUE_MESSAGE(gLoaded, "vector file not loaded");
  HostReport& r = hostReport();
  int failed = 0;
  std::string firstFailure;
  for (const testjson::Value& v : gVectors["malformed"].items) {
    r.malformed++;
    const std::string& name = v["name"].asString();
    const std::string& expected = v["error"].asString();
    std::vector<uint8_t> frame = testmsg::fromHex(v["hex"].asString());
    Decoded d;
    Err err = decode(frame.data(), frame.size(), d);
    if (expected == errName(err)) {
      r.malformedPassed++;
      r.lines.push_back("malformed " + name + " PASS");
    } else {
      failed++;
      std::string why = "expected " + expected + ", got " + errName(err);
      if (firstFailure.empty()) firstFailure = name + ": " + why;
      r.lines.push_back("malformed " + name + " FAIL " + why);
    }
  }
  TEST_ASSERT_TRUE_MESSAGE(failed == 0, firstFailure.c_str());
}

void test_descriptor_hash_of_every_descriptors_vector() {
  // [PROTO-3.3.1]: the hash is the CRC-32 of the payload; computing it from the decoded channels must
  // give the CRC of the payload bytes in the vector (the encoding is canonical).
  TEST_ASSERT_TRUE_MESSAGE(gLoaded, "vector file not loaded");
  int checked = 0;
  for (const testjson::Value& v : gVectors["valid"].items) {
    if (v["fields"]["type"].asString() != "descriptors") continue;
    std::vector<uint8_t> frame = testmsg::fromHex(v["hex"].asString());
    Decoded d;
    TEST_ASSERT_EQUAL_INT(static_cast<int>(Err::Ok), static_cast<int>(decode(frame.data(), frame.size(), d)));
    ChannelDescriptor chs[64];
    for (uint8_t i = 0; i < d.descriptors.count(); i++) chs[i] = d.descriptors.at(i);
    uint8_t scratch[kMaxFrameBytes];
    uint32_t hash = 0;
    TEST_ASSERT_EQUAL_INT(0, static_cast<int>(descriptorHash(chs, d.descriptors.count(), scratch, sizeof scratch, &hash)));
    TEST_ASSERT_EQUAL_HEX32(crc32(frame.data() + kHeaderBytes, frame.size() - kFrameOverheadBytes), hash);
    checked++;
  }
  TEST_ASSERT_TRUE(checked > 0);
}

}  // namespace

void run_vector_tests() {
  RUN_TEST(test_vector_file_loads);
  RUN_TEST(test_valid_vectors_decode_and_reencode);
  RUN_TEST(test_malformed_vectors_fail_with_the_same_code);
  RUN_TEST(test_descriptor_hash_of_every_descriptors_vector);
}
