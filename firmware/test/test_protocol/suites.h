// The host test program: every suite registers its Unity tests here; test_main.cpp runs them and prints
// a machine-readable report (ESP32HUB-REPORT {...}) that test/unit/firmware-host.test.ts checks.
#pragma once

#include <stdint.h>

#include <string>
#include <vector>

void run_codec_tests();
void run_vector_tests();
void run_shared_case_tests();
void run_outbox_tests();
void run_backoff_tests();
void run_telemetry_tests();
void run_session_tests();
void run_flash_outbox_tests();
void run_config_tests();
void run_improv_tests();
void run_enroll_tests();
void run_ota_tests();

/** Filled by the suites; printed as one JSON line at the end. */
struct HostReport {
  std::string vectorsPath;
  std::string vectorsSha256;
  int valid = 0;
  int validPassed = 0;
  int malformed = 0;
  int malformedPassed = 0;
  std::string sharedPath;
  std::string sharedSha256;
  int shared = 0;
  int sharedPassed = 0;
  /** Per-case outcome lines ("valid <name> PASS", "malformed <name> FAIL <why>"). */
  std::vector<std::string> lines;
};

HostReport& hostReport();

/** Absolute path of a repository file (ESP32HUB_REPO_ROOT from the environment or the build). */
std::string repoPath(const std::string& relative);
/** Whole file contents; throws when it cannot be read. */
std::string readFile(const std::string& path);
