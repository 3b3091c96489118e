// ESP-IDF 4.4 components/esp_hw_support/include/esp_private/esp_clk.h (the RTC counter, which keeps
// running in deep sleep).
#pragma once
#include <stdint.h>
uint64_t esp_clk_rtc_time(void);
