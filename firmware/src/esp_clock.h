// esp32hub::Clock on the ESP32: esp_timer for uptime (64-bit µs, no 49-day millis() wrap), the system
// time for Unix ms (set by SNTP, or from the hub's WELCOME until SNTP answers), esp_random() for bootId
// and backoff jitter.
#pragma once

#include <hub_ports.h>

class EspClock : public esp32hub::Clock {
 public:
  /** Starts SNTP (non-blocking: lwIP's SNTP client runs in its own task). Call once Wi-Fi is up. */
  void startSntp(const char* server);
  uint64_t uptimeMs() override;
  bool unixMs(uint64_t& out) override;
  void setUnixMs(uint64_t unixMs) override;
  uint32_t random32() override;

 private:
  bool sntpStarted_ = false;
};
