#include "esp_clock.h"

#include <Arduino.h>
#if __has_include(<esp_random.h>)
#include <esp_random.h>  // ESP-IDF 5
#else
#include <esp_system.h>  // ESP-IDF 4.4 (Arduino core 2.x)
#endif
#include <esp_private/esp_clk.h>
#include <esp_timer.h>
#include <sys/time.h>

namespace {
// A clock before 2024-01-01 has not been set: the RTC starts at 1970 after power-on.
constexpr time_t kMinValidEpochS = 1704067200;
}  // namespace

void EspClock::startSntp(const char* server) {
  if (sntpStarted_) return;
  sntpStarted_ = true;
  configTime(0, 0, server);  // UTC; the protocol carries Unix ms
}

uint64_t EspClock::uptimeMs() {
  if (rtcCounter_) return esp_clk_rtc_time() / 1000;
  return static_cast<uint64_t>(esp_timer_get_time() / 1000);
}

bool EspClock::unixMs(uint64_t& out) {
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  if (tv.tv_sec < kMinValidEpochS) return false;
  out = static_cast<uint64_t>(tv.tv_sec) * 1000u + static_cast<uint64_t>(tv.tv_usec / 1000);
  return true;
}

void EspClock::setUnixMs(uint64_t unixMs) {
  struct timeval tv;
  tv.tv_sec = static_cast<time_t>(unixMs / 1000);
  tv.tv_usec = static_cast<suseconds_t>((unixMs % 1000) * 1000);
  settimeofday(&tv, nullptr);  // SNTP, when it answers, corrects this
  Serial.printf("[clock] set from the hub's WELCOME: %llu\n", static_cast<unsigned long long>(unixMs));
}

// With Wi-Fi or Bluetooth running, esp_random() draws on RF noise: a true random source.
uint32_t EspClock::random32() { return esp_random(); }
