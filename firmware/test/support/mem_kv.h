// An in-memory KeyValueStore for the host tests (the board's NVS namespace): can be told to fail writes.
#pragma once

#include <string.h>

#include <map>
#include <string>
#include <vector>

#include "hub_config.h"

struct MemKv : esp32hub::KeyValueStore {
  std::map<std::string, std::vector<uint8_t>> values;
  bool failWrites = false;
  int writes = 0;

  int get(const char* key, uint8_t* out, size_t cap) override {
    auto it = values.find(key);
    if (it == values.end() || it->second.size() > cap) return -1;
    if (!it->second.empty()) memcpy(out, it->second.data(), it->second.size());
    return static_cast<int>(it->second.size());
  }
  bool put(const char* key, const uint8_t* data, size_t len) override {
    if (failWrites) return false;
    writes++;
    values[key] = std::vector<uint8_t>(data, data + len);
    return true;
  }
  bool remove(const char* key) override {
    if (failWrites) return false;
    values.erase(key);
    return true;
  }
  bool clear() override {
    if (failWrites) return false;
    values.clear();
    return true;
  }
  void setStr(const char* key, const std::string& v) { values[key] = std::vector<uint8_t>(v.begin(), v.end()); }
  std::string str(const char* key) const {
    auto it = values.find(key);
    return it == values.end() ? std::string("<absent>") : std::string(it->second.begin(), it->second.end());
  }
};
