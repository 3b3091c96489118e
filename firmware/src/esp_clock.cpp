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

#include <esp_attr.h>

namespace {
// A clock before 2024-01-01 has not been set: the RTC starts at 1970 after power-on.
constexpr time_t kMinValidEpochS = 1704067200;
// Deep-sleep mode: Unix ms at which this boot started (0 until the wall clock was first set).
RTC_DATA_ATTR uint64_t bootStartUnixMs;
}  // namespace

void EspClock::useRtcCounter(bool resumed) {
  rtcCounter_ = true;
  if (!resumed) bootStartUnixMs = 0;
}

bool EspClock::wallUnix(uint64_t& out) const {
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  if (tv.tv_sec < kMinValidEpochS) return false;
  out = static_cast<uint64_t>(tv.tv_sec) * 1000u + static_cast<uint64_t>(tv.tv_usec / 1000);
  return true;
}

void EspClock::startSntp(const char* server) {
  if (sntpStarted_) return;
  sntpStarted_ = true;
  configTime(0, 0, server);  // UTC; the protocol carries Unix ms
}

uint64_t EspClock::uptimeMs() {
  if (!rtcCounter_) return static_cast<uint64_t>(esp_timer_get_time() / 1000);
  uint64_t rtc = esp_clk_rtc_time() / 1000;
  uint64_t wall = 0;
  if (!wallUnix(wall)) return rtc;
  if (bootStartUnixMs == 0 && wall > rtc) bootStartUnixMs = wall - rtc;  // first set: continuous here
  return wall > bootStartUnixMs ? wall - bootStartUnixMs : rtc;
}

bool EspClock::unixMs(uint64_t& out) { return wallUnix(out); }

void EspClock::setUnixMs(uint64_t unixMs) {
  struct timeval tv;
  tv.tv_sec = static_cast<time_t>(unixMs / 1000);
  tv.tv_usec = static_cast<suseconds_t>((unixMs % 1000) * 1000);
  settimeofday(&tv, nullptr);  // SNTP, when it answers, corrects this
  Serial.printf("[clock] set from the hub's WELCOME: %llu\n", static_cast<unsigned long long>(unixMs));
}

// With Wi-Fi or Bluetooth running, esp_random() draws on RF noise: a true random source.
uint32_t EspClock::random32() { return esp_random(); }
