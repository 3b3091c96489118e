#include "boot_identity.h"

#include <Arduino.h>
#include <Preferences.h>
#include <bootloader_random.h>
#include <esp_random.h>
#include <hub_boot_id.h>

uint32_t nextBootId() {
  uint64_t key = 0;
  Preferences nvs;
  bool opened = nvs.begin("esp32hub", false);
  if (opened) key = nvs.getULong64("bootkey", 0);
  if (key == 0) {
    // Before Wi-Fi is up esp_random() is only pseudo-random: switch the SAR ADC entropy source on for
    // the draw (ESP-IDF "Random Number Generation"), then off again so the ADC and radio are free.
    bootloader_random_enable();
    while (key == 0) esp_fill_random(&key, sizeof key);
    bootloader_random_disable();
    if (opened && nvs.putULong64("bootkey", key) == 0) opened = false;
  }
  uint32_t counter = opened ? nvs.getUInt("boots", 0) + 1 : 0;
  if (opened && nvs.putUInt("boots", counter) == 0) opened = false;
  if (opened) nvs.end();
  if (!opened || counter == 0) {
    // No NVS (or it is full): a random id from the same entropy source; a repeat then has the odds of
    // random 32-bit ids. Said once at boot.
    Serial.println("[boot] NVS not writable: boot id is random, not counted");
    uint32_t id = 0;
    bootloader_random_enable();
    while (id == 0) id = esp_random();
    bootloader_random_disable();
    return id;
  }
  Serial.printf("[boot] boot %lu\n", static_cast<unsigned long>(counter));
  return esp32hub::bootIdFor(counter, key);
}
