#include "status_led.h"

#include <Arduino.h>

namespace {
struct Shape {
  uint16_t periodMs;
  uint8_t blinks;
  uint16_t onMs;
  uint16_t gapMs;  // between blinks of one group
};

Shape shapeOf(StatusLed::Pattern p) {
  switch (p) {
    case StatusLed::Pattern::NoWifi:
      return {1000, 1, 100, 0};
    case StatusLed::Pattern::NoHub:
      return {2000, 2, 100, 200};
    case StatusLed::Pattern::AuthRefused:
      return {2000, 3, 60, 120};
    case StatusLed::Pattern::Ready:
      return {5000, 1, 30, 0};
    case StatusLed::Pattern::Identify:
      return {200, 1, 100, 0};
  }
  return {1000, 1, 100, 0};
}
}  // namespace

void StatusLed::begin(uint8_t pin, bool rgb, bool activeLow) {
  pin_ = pin;
  rgb_ = rgb;
  activeLow_ = activeLow;
  if (!rgb_) pinMode(pin_, OUTPUT);
  write(false);
}

void StatusLed::identify(uint64_t nowMs, uint32_t durationMs) { identifyUntil_ = nowMs + durationMs; }

void StatusLed::loop(uint64_t nowMs, esp32hub::LinkState link, bool wifiUp, bool authRefused) {
  if (identifyUntil_ != 0 && nowMs >= identifyUntil_) identifyUntil_ = 0;
  Pattern want;
  if (identifyUntil_ != 0) {
    want = Pattern::Identify;
  } else if (!wifiUp) {
    want = Pattern::NoWifi;
  } else if (link == esp32hub::LinkState::Ready) {
    want = Pattern::Ready;
  } else if (authRefused) {
    want = Pattern::AuthRefused;
  } else {
    want = Pattern::NoHub;
  }
  if (want != pattern_) {
    pattern_ = want;
    patternStart_ = nowMs;
  }
  Shape s = shapeOf(pattern_);
  uint32_t t = static_cast<uint32_t>((nowMs - patternStart_) % s.periodMs);
  uint32_t slot = s.onMs + s.gapMs;
  bool on = t / slot < s.blinks && t % slot < s.onMs;
  if (on != on_) write(on);
}

void StatusLed::write(bool on) {
  on_ = on;
  if (rgb_) {
#if defined(ESP_ARDUINO_VERSION_MAJOR) && (ESP_ARDUINO_VERSION_MAJOR >= 3)
    rgbLedWrite(pin_, 0, 0, on ? 40 : 0);  // dim blue
#else
    neopixelWrite(pin_, 0, 0, on ? 40 : 0);
#endif
  } else {
    digitalWrite(pin_, (on != activeLow_) ? HIGH : LOW);
  }
}
