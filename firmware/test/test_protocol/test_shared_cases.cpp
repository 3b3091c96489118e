// The cases shared with the simulator (firmware/test/shared-cases.json): the firmware's board table,
// telemetry builder and codec must produce the bytes the simulator produces for the same inputs
// (test/unit/firmware-shared-cases.test.ts checks the TypeScript side of the same file).
#include <unity.h>

#include "../support/json.h"
#include "../support/message_json.h"
#include "../support/sha256.h"
#include "suites.h"

using namespace esp32hub;

namespace {

testjson::Value gCases;

uint32_t maskOf(const testjson::Value& channels) {
  uint32_t mask = 0;
  for (const testjson::Value& c : channels.items) mask |= uint32_t{1} << c.asInt();
  return mask;
}

const testjson::Value* findCase(const std::string& name) {
  for (const testjson::Value& c : gCases["cases"].items)
    if (c["name"].asString() == name) return &c;
  return nullptr;
}

uint8_t boardSet(const testjson::Value& c, ChannelDescriptor* out) {
  return boardDescriptors(maskOf(c["channels"]), static_cast<uint32_t>(c["sampleIntervalMs"].asU64()), out, 32);
}

uint32_t hashOfSet(const std::string& name) {
  const testjson::Value* set = findCase(name);
  if (set == nullptr) throw std::runtime_error("no descriptor set " + name);
  ChannelDescriptor chs[32];
  uint8_t n = boardSet(*set, chs);
  uint8_t scratch[kMaxFrameBytes];
  uint32_t hash = 0;
  if (descriptorHash(chs, n, scratch, sizeof scratch, &hash) != Err::Ok) throw std::runtime_error("hash failed");
  return hash;
}

/** What the firmware produces for a case ("" and a reason on failure). */
std::string encodeCase(const testjson::Value& c, std::string& why) {
  const std::string& kind = c["kind"].asString();
  uint8_t buf[kMaxFrameBytes];
  size_t len = 0;
  if (kind == "board-descriptors") {
    ChannelDescriptor chs[32];
    uint8_t n = boardSet(c, chs);
    if (n != c["channels"].size()) why = "the board table lacks a channel";
    Err err = encodeDescriptors(chs, n, buf, sizeof buf, &len);
    if (err != Err::Ok) why = errName(err);
    return testmsg::toHex(buf, len);
  }
  if (kind == "telemetry") {
    TelemetryBuilder b;
    bool synced = !c["unsynced"].asBool();
    for (const testjson::Value& s : c["samples"].items) {
      const ChannelSpec* spec = findChannelSpec(static_cast<uint8_t>(s["channel"].asInt()));
      if (spec == nullptr) {
        why = "channel not in the board table";
        return "";
      }
      bool missing = s["value"].isNull();
      testmsg::Arena arena;
      Value v = missing ? Value() : testmsg::valueFromJson(static_cast<uint8_t>(spec->valueType), s["value"], arena);
      if (b.add(spec->index, spec->valueType, s["timeMs"].asU64(), synced, missing, v) != TelemetryBuilder::Add::Added) {
        why = "the builder did not take a sample";
        return "";
      }
    }
    Err err = b.encode(static_cast<uint32_t>(c["bootId"].asU64()), static_cast<uint32_t>(c["seq"].asU64()),
                       hashOfSet(c["descriptorSet"].asString()), buf, sizeof buf, &len);
    if (err != Err::Ok) why = errName(err);
    if (len != b.encodedSize()) why = "encodedSize() disagrees with the frame";
    return testmsg::toHex(buf, len);
  }
  if (kind == "message") {
    testjson::Value fields = c["fields"];
    if (const testjson::Value* set = c.find("descriptorSet")) {
      for (auto& m : fields.members)
        if (m.first == "descriptorHash") {
          m.second.text = std::to_string(hashOfSet(set->asString()));
          m.second.num = static_cast<double>(hashOfSet(set->asString()));
        }
    }
    std::vector<uint8_t> out;
    Err err = testmsg::encodeJson(fields, out);
    if (err != Err::Ok) why = errName(err);
    return testmsg::toHex(out.data(), out.size());
  }
  why = "unknown kind " + kind;
  return "";
}

void test_shared_cases_produce_the_simulator_bytes() {
  HostReport& r = hostReport();
  r.sharedPath = repoPath("firmware/test/shared-cases.json");
  std::string text = readFile(r.sharedPath);
  r.sharedSha256 = testsha::sha256Hex(text);
  gCases = testjson::parse(text);
  int failed = 0;
  std::string first;
  for (const testjson::Value& c : gCases["cases"].items) {
    r.shared++;
    const std::string& name = c["name"].asString();
    std::string why;
    std::string hex = encodeCase(c, why);
    if (why.empty() && hex != c["hex"].asString()) why = "produced " + hex;
    if (why.empty()) {
      r.sharedPassed++;
      r.lines.push_back("shared " + name + " PASS");
    } else {
      failed++;
      if (first.empty()) first = name + ": " + why;
      r.lines.push_back("shared " + name + " FAIL " + why);
    }
  }
  TEST_ASSERT_TRUE(r.shared > 0);
  TEST_ASSERT_TRUE_MESSAGE(failed == 0, first.c_str());
}

}  // namespace

void run_shared_case_tests() { RUN_TEST(test_shared_cases_produce_the_simulator_bytes); }
