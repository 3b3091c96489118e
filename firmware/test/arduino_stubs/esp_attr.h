#pragma once
#define RTC_DATA_ATTR __attribute__((section(".rtc.data")))
