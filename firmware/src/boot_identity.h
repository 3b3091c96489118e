// This boot's id on the board [PROTO-3.1.1]: bootIdFor(counter, key) (lib/protocol/src/hub_boot_id.h).
// NVS namespace "esp32hub": "boots" (u32, incremented and written before the id is used) and "bootkey"
// (u64, drawn once from the hardware random number generator with its entropy source switched on).
// Call in setup() before Wi-Fi starts (bootloader_random_enable() must not run with the radio on).
// A deep-sleep wake is not a new boot: it keeps its id (deep_sleep.h).
#pragma once

#include <stdint.h>

uint32_t nextBootId();
