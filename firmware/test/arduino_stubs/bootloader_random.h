// ESP-IDF 4.4 components/bootloader_support/include/bootloader_random.h.
#pragma once
void bootloader_random_enable(void);
void bootloader_random_disable(void);
