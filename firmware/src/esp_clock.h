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
   * boot, so uptime must keep counting across sleeps: until the wall clock is first set it is the RTC
   * counter (esp_clk_rtc_time(): runs through deep sleep, reset only at power-on); from then on it is
   * the wall clock minus the boot's start (kept in RTC memory), so it follows SNTP's corrections instead
   * of the RTC oscillator's drift (without a 32 kHz crystal: percent-level), and HELLO's uptime stays
   * consistent with the hub's clock [PROTO-3.4.3].
   */
  uint64_t uptimeMs() override;
  /** Deep-sleep mode; `resumed`: this is a wake of the same boot (keep its anchor). */
  void useRtcCounter(bool resumed);
  bool unixMs(uint64_t& out) override;
  void setUnixMs(uint64_t unixMs) override;
  uint32_t random32() override;

 private:
  bool sntpStarted_ = false;
  bool rtcCounter_ = false;
  bool wallUnix(uint64_t& out) const;
};
