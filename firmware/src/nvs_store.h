// esp32hub::KeyValueStore over NVS (arduino-esp32 Preferences), namespace "esp32hub-cfg": the board's
// run-time configuration (docs/provisioning.md). The boot counter lives in its own namespace
// ("esp32hub", boot_identity.cpp), so a factory reset never repeats a boot id.
#pragma once

#include <Preferences.h>
#include <hub_config.h>

class NvsStore : public esp32hub::KeyValueStore {
 public:
  static constexpr const char* kNamespace = "esp32hub-cfg";
  /** Opens the namespace (created on first use); false when NVS is not usable. */
  bool begin() {
    open_ = prefs_.begin(kNamespace, false);
    return open_;
  }
  int get(const char* key, uint8_t* out, size_t cap) override {
    if (!open_ || !prefs_.isKey(key)) return -1;
    size_t n = prefs_.getBytesLength(key);
    if (n > cap) return -1;
    if (n == 0) return 0;
    return prefs_.getBytes(key, out, cap) == n ? static_cast<int>(n) : -1;
  }
  bool put(const char* key, const uint8_t* data, size_t len) override {
    if (!open_) return false;
    // An empty value (open network's password) is stored as a zero-length blob.
    return prefs_.putBytes(key, data, len) == len && (len > 0 || prefs_.isKey(key));
  }
  bool remove(const char* key) override { return open_ && (!prefs_.isKey(key) || prefs_.remove(key)); }
  bool clear() override { return open_ && prefs_.clear(); }

 private:
  Preferences prefs_;
  bool open_ = false;
};
