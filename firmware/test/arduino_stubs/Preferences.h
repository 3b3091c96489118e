// Subset of arduino-esp32 2.0.x libraries/Preferences/src/Preferences.h (NVS).
#pragma once
#include <stddef.h>
#include <stdint.h>

class Preferences {
 public:
  bool begin(const char* name, bool readOnly = false, const char* partition_label = NULL);
  void end();
  size_t putUInt(const char* key, uint32_t value);
  size_t putULong64(const char* key, uint64_t value);
  uint32_t getUInt(const char* key, uint32_t defaultValue = 0);
  uint64_t getULong64(const char* key, uint64_t defaultValue = 0);
  size_t putBytes(const char* key, const void* value, size_t len);
  size_t getBytesLength(const char* key);
  size_t getBytes(const char* key, void* buf, size_t maxLen);
  bool isKey(const char* key);
  bool remove(const char* key);
  bool clear();
};
