// esp32hub::Clock on the ESP32: esp_timer for uptime (64-bit µs, no 49-day millis() wrap), the system
// time for Unix ms (set by SNTP, or from the hub's WELCOME until SNTP answers), esp_random() for bootId
// and backoff jitter.
#pragma once

#include <hub_ports.h>

class EspClock : public esp32hub::Clock {
 public:
  /** Starts SNTP (non-blocking: lwIP's SNTP client runs in its own task). Call once Wi-Fi is up. */
  void startSntp(const char* server);
  /**
   * Milliseconds since boot: esp_timer (µs since this start). In deep-sleep mode a wake resumes the
   * boot, so it is the RTC counter instead (esp_clk_rtc_time(): runs through deep sleep, reset only at
   * power-on): HELLO's uptime and UNSYNCED times keep counting across sleeps, on the same clock that
   * times the sleeps.
   */
  uint64_t uptimeMs() override;
  void useRtcCounter(bool on) { rtcCounter_ = on; }
  bool unixMs(uint64_t& out) override;
  void setUnixMs(uint64_t unixMs) override;
  uint32_t random32() override;

 private:
  bool sntpStarted_ = false;
  bool rtcCounter_ = false;
};
