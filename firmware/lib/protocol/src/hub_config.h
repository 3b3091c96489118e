// The board's run-time configuration (docs/provisioning.md "Configuration in NVS"): Wi-Fi, the hub URL,
// the device id and token, the enrollment key and fleet secret. One image for the whole fleet: these are
// set over Improv Serial and by enrollment and kept in a key-value store (NVS on the board, a directory
// of files in host_device, a map in the tests). Every value is validated when it is set and again when
// it is read back: a value that fails (a corrupted or foreign NVS entry) counts as absent.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "hub_types.h"

namespace esp32hub {

/** A small persistent key-value store (the board's NVS namespace). Keys are ≤ 15 characters. */
class KeyValueStore {
 public:
  virtual ~KeyValueStore() = default;
  /** Copies the value of `key` into `out`; its length, or −1 when absent or longer than `cap`. */
  virtual int get(const char* key, uint8_t* out, size_t cap) = 0;
  /** Stores (replaces) the value; false when it could not be written. */
  virtual bool put(const char* key, const uint8_t* data, size_t len) = 0;
  /** Removes the key (absent already is success). */
  virtual bool remove(const char* key) = 0;
  /** Removes every key of this store (factory reset). */
  virtual bool clear() = 0;
};

/** The NVS keys (namespace `esp32hub-cfg`). */
namespace cfgkey {
constexpr const char* kWifiSsid = "wifi_ssid";
constexpr const char* kWifiPassword = "wifi_pass";
constexpr const char* kHubUrl = "hub_url";
constexpr const char* kDeviceId = "device_id";
constexpr const char* kToken = "token";
constexpr const char* kEnrollKey = "enroll_key";
constexpr const char* kFleetSecret = "fleet_secret";
constexpr const char* kEnrollRejected = "enroll_rej";
}  // namespace cfgkey

namespace cfglimits {
constexpr size_t kSsidMax = 32;          // 802.11
constexpr size_t kPasswordMax = 64;      // WPA2: 8–63 characters, or 64 hex digits
constexpr size_t kHubUrlMax = 128;
constexpr size_t kDeviceIdMax = 64;      // [PROTO-2.8]
constexpr size_t kTokenMax = 64;         // [PROTO-8.2.2]
constexpr size_t kFleetSecretMax = 64;   // [PROTO-8.2.1]
constexpr size_t kEnrollKeyBytes = 16;   // [PROTO-8.2.1]
}  // namespace cfglimits

/** 1–32 bytes, no NUL. */
bool validSsid(Str s);
/** Empty (open network) or 8–64 bytes without control characters. */
bool validWifiPassword(Str s);
/** The device id alphabet [PROTO-2.8], 1–64 bytes. */
bool validDeviceId(Str s);
/** Printable ASCII (0x21–0x7E), 1–64 bytes. */
bool validToken(Str s);
/** 0–64 bytes of UTF-8 free text. */
bool validFleetSecret(Str s);

/** A parsed hub base URL: `ws[s]://HOST[:PORT][/PREFIX]`. */
struct HubUrl {
  bool tls = false;
  char host[cfglimits::kHubUrlMax + 1] = {};
  uint16_t port = 0;                            // the URL's port, else 80 (ws) / 443 (wss)
  char prefix[cfglimits::kHubUrlMax + 1] = {};  // "" or "/…" without a trailing slash
};

/**
 * Parses and validates a hub URL: scheme ws or wss, a host of letters, digits, `.`, `-` (or an IPv4
 * address), an optional port 1–65535, an optional path prefix; printable ASCII, ≤ 128 bytes, no user
 * info, query or fragment. A trailing `/` is dropped. False when it is not one.
 */
bool parseHubUrl(Str url, HubUrl& out);
/** The canonical form (what is stored): the URL without a trailing `/`; false when invalid. */
bool normalizeHubUrl(Str url, char* out, size_t cap);
/** `ws[s]://HOST:PORT/PREFIX` + `path` (e.g. "/v1/enroll"); 0 when it does not fit. */
size_t hubEndpointUrl(const char* hubUrl, const char* path, char* out, size_t cap);
/** The dashboard page of board `id`: `http[s]://HOST[:PORT][/PREFIX]/#/device/ID`; 0 when invalid or too long. */
size_t hubPageUrl(const char* hubUrl, const char* id, char* out, size_t cap);

/** Everything the board keeps. C strings; empty = not set. */
struct DeviceConfig {
  char wifiSsid[cfglimits::kSsidMax + 1] = {};
  char wifiPassword[cfglimits::kPasswordMax + 1] = {};
  char hubUrl[cfglimits::kHubUrlMax + 1] = {};
  char deviceId[cfglimits::kDeviceIdMax + 1] = {};
  char token[cfglimits::kTokenMax + 1] = {};
  char fleetSecret[cfglimits::kFleetSecretMax + 1] = {};
  uint8_t enrollKey[cfglimits::kEnrollKeyBytes] = {};
  bool hasEnrollKey = false;
  bool enrollRejected = false;

  bool hasWifi() const { return wifiSsid[0] != '\0'; }
  bool hasHub() const { return hubUrl[0] != '\0'; }
  /** A device id AND a token: the board connects to /v1/device; otherwise it enrolls. */
  bool hasCredentials() const { return deviceId[0] != '\0' && token[0] != '\0'; }
};

/** Compiled-in values (include/secrets.h, build flags) for developers; empty strings = none. */
struct BuildDefaults {
  const char* wifiSsid = "";
  const char* wifiPassword = "";
  const char* hubUrl = "";
  const char* deviceId = "";
  const char* token = "";
  const char* fleetSecret = "";
};

/** Where each value of the effective configuration came from. */
struct ConfigSources {
  bool wifiFromBuild = false;
  bool hubFromBuild = false;
  bool credentialsFromBuild = false;
  bool fleetSecretFromBuild = false;
  /** Keys whose stored value failed validation (ignored); bit i = the i-th key of cfgkey, in order. */
  uint8_t invalidMask = 0;
};

/**
 * The configuration over a KeyValueStore. `load` reads and validates every key; the setters validate,
 * write the store, and update `config()` only when the write succeeded.
 */
class ConfigStore {
 public:
  explicit ConfigStore(KeyValueStore& kv) : kv_(kv) {}

  /** Reads the store. A value that fails validation counts as absent (ConfigSources::invalidMask). */
  void load();
  /**
   * Fills what the store does not hold from compiled-in defaults, field group by field group: Wi-Fi
   * (SSID + password), the hub URL, the credentials (id + token, only together), the fleet secret. A
   * default that fails validation is ignored. Nothing is written to the store.
   */
  void applyBuildDefaults(const BuildDefaults& d);
  const DeviceConfig& config() const { return cfg_; }
  const ConfigSources& sources() const { return src_; }

  bool setWifi(Str ssid, Str password);
  /** Stores the hub URL (normalized). A different URL than before forgets the device id and token. */
  bool setHubUrl(Str url);
  /** Stores or (empty) removes the fleet secret. */
  bool setFleetSecret(Str secret);
  /** The id and token enrollment handed over [PROTO-8.4]; clears a rejection. */
  bool setCredentials(Str deviceId, Str token);
  /** Marks the board rejected by the hub: it enrolls no more until a factory reset [PROTO-8.4]. */
  bool setEnrollRejected();
  /** The 128-bit enrollment key, made once from `random32` and stored; false when it cannot be stored. */
  bool ensureEnrollKey(uint32_t (*random32)(void*), void* ctx);
  /** Clears every key (factory reset); the in-memory configuration becomes empty. */
  bool factoryReset();

 private:
  bool putStr(const char* key, Str s);
  KeyValueStore& kv_;
  DeviceConfig cfg_;
  ConfigSources src_;
};

/**
 * The factory-reset button: `update` is called with the button's level on every loop; it returns true
 * once when the button has been held down without a break for `holdMs`. The button must be released
 * before it can fire again (a board that boots with the button stuck resets once, not in a loop).
 */
class HoldDetector {
 public:
  explicit HoldDetector(uint32_t holdMs = 5000) : holdMs_(holdMs) {}
  bool update(bool pressed, uint64_t nowMs);
  /** How long the current press has lasted (0 when released): for LED feedback. */
  uint64_t heldMs(uint64_t nowMs) const { return pressed_ ? nowMs - since_ : 0; }
  bool fired() const { return fired_; }

 private:
  uint32_t holdMs_;
  bool pressed_ = false;
  bool fired_ = false;
  uint64_t since_ = 0;
};

}  // namespace esp32hub
