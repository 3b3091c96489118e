// The sdkconfig options src/ reads. CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE: set in the Arduino core's
// precompiled ESP-IDF (esp32-arduino-lib-builder configs/defconfig.common); src/ota_update.cpp refuses
// to build without it.
#pragma once
#define CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE 1
#define CONFIG_APP_ROLLBACK_ENABLE CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE
