// esp_reset_reason() → HELLO's resetReason [PROTO-3.1].
#pragma once

#include <esp_system.h>
#include <hub_types.h>

inline esp32hub::ResetReason protocolResetReason(esp_reset_reason_t r) {
  using esp32hub::ResetReason;
  switch (r) {
    case ESP_RST_POWERON:
      return ResetReason::PowerOn;
    case ESP_RST_SW:
      return ResetReason::Software;
    case ESP_RST_PANIC:
      return ResetReason::Panic;
    case ESP_RST_INT_WDT:
    case ESP_RST_TASK_WDT:
    case ESP_RST_WDT:
      return ResetReason::Watchdog;
    case ESP_RST_BROWNOUT:
      return ResetReason::Brownout;
    case ESP_RST_DEEPSLEEP:
      return ResetReason::DeepSleep;
    case ESP_RST_EXT:
      return ResetReason::External;
    default:
      return ResetReason::Unknown;
  }
}
