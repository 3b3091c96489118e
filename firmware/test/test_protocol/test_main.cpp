// Host tests of the portable protocol core. Built with g++ by firmware/test/Makefile (run by `npm test`
// through test/unit/firmware-host.test.ts) and by `pio test -e native`. Unity API throughout.
#include <stdio.h>
#include <stdlib.h>
#include <unity.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "hub_protocol.h"
#include "suites.h"

#ifndef ESP32HUB_REPO_ROOT
#define ESP32HUB_REPO_ROOT ""
#endif

void setUp(void) {}
void tearDown(void) {}

HostReport& hostReport() {
  static HostReport r;
  return r;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string repoPath(const std::string& relative) {
  const char* env = getenv("ESP32HUB_REPO_ROOT");
  std::string root = env != nullptr && env[0] != '\0' ? env : ESP32HUB_REPO_ROOT;
  if (!root.empty()) return root + "/" + relative;
  // `pio test` runs from the PlatformIO project (firmware/); a plain run may start at the repository root.
  for (const char* prefix : {"../", "", "../../"}) {
    std::string p = std::string(prefix) + relative;
    if (std::ifstream(p).good()) return p;
  }
  return relative;
}

namespace {

std::string jsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

void printReport(int failures, int tests) {
  const HostReport& r = hostReport();
  for (const std::string& line : r.lines) printf("ESP32HUB-CASE %s\n", line.c_str());
  std::string errors;
  for (uint8_t i = 0; i <= esp32hub::kFrameErrorCount; i++) {
    auto e = static_cast<esp32hub::Err>(i);
    if (e == esp32hub::Err::Ok) continue;
    char buf[96];
    snprintf(buf, sizeof buf, "%s{\"code\":\"%s\",\"wire\":%u,\"close\":%u}", errors.empty() ? "" : ",",
             esp32hub::errName(e), esp32hub::errWireCode(e), esp32hub::errCloseCode(e));
    errors += buf;
  }
  printf(
      "ESP32HUB-REPORT {\"tests\":%d,\"failures\":%d,\"vectorsPath\":\"%s\",\"vectorsSha256\":\"%s\","
      "\"valid\":%d,\"validPassed\":%d,\"malformed\":%d,\"malformedPassed\":%d,"
      "\"sharedPath\":\"%s\",\"sharedSha256\":\"%s\",\"shared\":%d,\"sharedPassed\":%d,\"errors\":[%s]}\n",
      tests, failures, jsonEscape(r.vectorsPath).c_str(), r.vectorsSha256.c_str(), r.valid, r.validPassed,
      r.malformed, r.malformedPassed, jsonEscape(r.sharedPath).c_str(), r.sharedSha256.c_str(), r.shared,
      r.sharedPassed, errors.c_str());
  fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  (void)argc;
  (void)argv;
  UNITY_BEGIN();
  run_codec_tests();
  run_vector_tests();
  run_shared_case_tests();
  run_outbox_tests();
  run_backoff_tests();
  run_telemetry_tests();
  run_session_tests();
  run_flash_outbox_tests();
  run_config_tests();
  run_improv_tests();
  run_enroll_tests();
  run_ota_tests();
  int failures = UNITY_END();
#ifdef ESP32HUB_UNITY_MIN
  printReport(failures, static_cast<int>(unity_min::state().tests));
#else
  printReport(failures, -1);
#endif
  return failures == 0 ? 0 : 1;
}
