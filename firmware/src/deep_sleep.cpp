#include "deep_sleep.h"

#include <Arduino.h>
#include <esp_attr.h>
#include <esp_sleep.h>
#include <hub_crc32.h>
#include <stddef.h>
#include <string.h>

namespace {

constexpr uint32_t kMagic = 0x534C5031;  // "SLP1"
RTC_DATA_ATTR SleepState rtcState;

uint32_t stateCrc(const SleepState& s) {
  return esp32hub::crc32(reinterpret_cast<const uint8_t*>(&s), offsetof(SleepState, crc));
}

}  // namespace

SleepState* resumeFromSleep(bool deepSleepWake) {
  if (!deepSleepWake || rtcState.magic != kMagic || rtcState.crc != stateCrc(rtcState) || rtcState.bootId == 0) {
    return nullptr;
  }
  return &rtcState;
}

SleepState& freshSleepState(uint32_t bootId, uint32_t intervalMs) {
  memset(&rtcState, 0, sizeof rtcState);
  rtcState.magic = kMagic;
  rtcState.bootId = bootId;
  rtcState.nextSeq = 1;
  rtcState.intervalMs = intervalMs;
  return rtcState;
}

void sleepFor(SleepState& s, uint64_t sleepMs) {
  s.crc = stateCrc(s);
  Serial.printf("[sleep] %llu ms\n", static_cast<unsigned long long>(sleepMs));
  Serial.flush();
  esp_sleep_enable_timer_wakeup(sleepMs * 1000u);
  esp_deep_sleep_start();
}
