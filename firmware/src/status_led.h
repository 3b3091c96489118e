// The status LED: one blink pattern per link state (see README "LED"), plus `identify`. Non-blocking:
// loop() compares millis() with the pattern, nothing waits.
#pragma once

#include <hub_ports.h>
#include <stdint.h>

class StatusLed {
 public:
  enum class Pattern : uint8_t {
    NoWifi,       // 1 blink / 1 s
    NoHub,        // 2 blinks / 2 s: Wi-Fi up, hub unreachable (backoff, connecting, waiting for WELCOME)
    AuthRefused,  // 3 fast blinks / 2 s: the hub refused the token (HTTP 401/403, REVOKED, DEVICE_MISMATCH)
    Ready,        // a short blip / 5 s: streaming
    Identify,     // 5 Hz blinking for the identify command's duration
  };

  void begin(uint8_t pin, bool rgb, bool activeLow);
  /** Chooses the pattern from the link state; `identify` overrides it until it ends. */
  void loop(uint64_t nowMs, esp32hub::LinkState link, bool wifiUp, bool authRefused);
  void identify(uint64_t nowMs, uint32_t durationMs);
  bool identifying() const { return identifyUntil_ != 0; }

 private:
  void write(bool on);
  uint8_t pin_ = 0;
  bool rgb_ = false;
  bool activeLow_ = false;
  bool on_ = false;
  Pattern pattern_ = Pattern::NoWifi;
  uint64_t patternStart_ = 0;
  uint64_t identifyUntil_ = 0;
};
