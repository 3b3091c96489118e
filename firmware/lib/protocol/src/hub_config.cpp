#include "hub_config.h"

#include <string.h>

#include "hub_wire.h"

namespace esp32hub {

namespace {

bool printableAscii(Str s) {
  for (uint8_t i = 0; i < s.len; i++) {
    uint8_t c = static_cast<uint8_t>(s.data[i]);
    if (c < 0x21 || c > 0x7E) return false;
  }
  return true;
}

bool freeText(Str s) {
  const uint8_t* b = reinterpret_cast<const uint8_t*>(s.data);
  return s.len == 0 || (isValidUtf8(b, s.len) && matchesAlphabet(b, s.len, Alphabet::FreeText));
}

/** Appends to a NUL-terminated buffer; `ok` turns false (for good) when something did not fit. */
struct Cat {
  char* out;
  size_t cap;
  size_t n = 0;
  bool ok = true;
  Cat(char* o, size_t c) : out(o), cap(c) {
    if (cap > 0) out[0] = '\0';
    else ok = false;
  }
  void add(const char* s, size_t len) {
    if (!ok || n + len + 1 > cap) {
      ok = false;
      return;
    }
    memcpy(out + n, s, len);
    n += len;
    out[n] = '\0';
  }
  void add(const char* s) { add(s, strlen(s)); }
  size_t done() const { return ok ? n : 0; }
};

bool hostChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
}

/** Length of the URL without trailing slashes. */
size_t trimmedLength(Str url) {
  size_t n = url.len;
  while (n > 0 && url.data[n - 1] == '/') n--;
  return n;
}

bool copyStr(Str s, char* out, size_t cap) {
  if (static_cast<size_t>(s.len) + 1 > cap) return false;
  if (s.len > 0) memcpy(out, s.data, s.len);
  out[s.len] = '\0';
  return true;
}

}  // namespace

bool validSsid(Str s) {
  if (s.len < 1 || s.len > cfglimits::kSsidMax) return false;
  return memchr(s.data, 0, s.len) == nullptr;
}

bool validWifiPassword(Str s) {
  if (s.len == 0) return true;
  if (s.len < 8 || s.len > cfglimits::kPasswordMax) return false;
  return freeText(s);
}

bool validDeviceId(Str s) {
  const uint8_t* b = reinterpret_cast<const uint8_t*>(s.data);
  return s.len >= 1 && s.len <= cfglimits::kDeviceIdMax && matchesAlphabet(b, s.len, Alphabet::DeviceId);
}

bool validToken(Str s) { return s.len >= 1 && s.len <= cfglimits::kTokenMax && printableAscii(s); }

bool validFleetSecret(Str s) { return s.len <= cfglimits::kFleetSecretMax && freeText(s); }

bool parseHubUrl(Str url, HubUrl& out) {
  out = HubUrl();
  if (url.len < 1 || url.len > cfglimits::kHubUrlMax || !printableAscii(url)) return false;
  size_t pos;
  if (url.len >= 5 && memcmp(url.data, "ws://", 5) == 0) {
    pos = 5;
  } else if (url.len >= 6 && memcmp(url.data, "wss://", 6) == 0) {
    out.tls = true;
    pos = 6;
  } else {
    return false;
  }
  size_t end = trimmedLength(url);
  if (end <= pos) return false;
  for (size_t i = pos; i < end; i++) {
    char c = url.data[i];
    if (c == '@' || c == '?' || c == '#' || c == '\\') return false;
  }
  size_t hostStart = pos;
  while (pos < end && hostChar(url.data[pos])) pos++;
  size_t hostLen = pos - hostStart;
  if (hostLen == 0 || url.data[hostStart] == '.' || url.data[hostStart] == '-') return false;
  memcpy(out.host, url.data + hostStart, hostLen);
  out.host[hostLen] = '\0';
  out.port = out.tls ? 443 : 80;
  if (pos < end && url.data[pos] == ':') {
    pos++;
    uint32_t port = 0;
    size_t digits = 0;
    while (pos < end && url.data[pos] >= '0' && url.data[pos] <= '9' && digits < 6) {
      port = port * 10 + static_cast<uint32_t>(url.data[pos] - '0');
      pos++;
      digits++;
    }
    if (digits == 0 || digits > 5 || port == 0 || port > 65535) return false;
    out.port = static_cast<uint16_t>(port);
  }
  if (pos < end && url.data[pos] != '/') return false;
  size_t prefixLen = end - pos;
  memcpy(out.prefix, url.data + pos, prefixLen);
  out.prefix[prefixLen] = '\0';
  return true;
}

bool normalizeHubUrl(Str url, char* out, size_t cap) {
  HubUrl parsed;
  if (!parseHubUrl(url, parsed)) return false;
  Str trimmed{url.data, static_cast<uint8_t>(trimmedLength(url))};
  return copyStr(trimmed, out, cap);
}

size_t hubEndpointUrl(const char* hubUrl, const char* path, char* out, size_t cap) {
  HubUrl parsed;
  Str url = Str::of(hubUrl);
  Cat c(out, cap);
  if (!parseHubUrl(url, parsed)) return 0;
  c.add(url.data, trimmedLength(url));
  c.add(path);
  return c.done();
}

size_t hubPageUrl(const char* hubUrl, const char* id, char* out, size_t cap) {
  HubUrl parsed;
  Str url = Str::of(hubUrl);
  Cat c(out, cap);
  if (!parseHubUrl(url, parsed) || !validDeviceId(Str::of(id))) return 0;
  size_t schemeLen = parsed.tls ? 3 : 2;  // "wss" / "ws"
  c.add(parsed.tls ? "https" : "http");
  c.add(url.data + schemeLen, trimmedLength(url) - schemeLen);
  c.add("/#/device/");
  c.add(id);
  return c.done();
}

// ───────────────────────────── the store ─────────────────────────────

namespace {

/** Reads a string key; false when absent, too long or not passing `valid`. */
template <size_t N>
bool readStr(KeyValueStore& kv, const char* key, char (&out)[N], bool (*valid)(Str), bool& invalid) {
  out[0] = '\0';
  int n = kv.get(key, reinterpret_cast<uint8_t*>(out), N - 1);
  if (n < 0) {
    invalid = false;
    return false;
  }
  out[n] = '\0';
  Str s{out, static_cast<uint8_t>(n)};
  if (static_cast<size_t>(n) != strlen(out) || !valid(s)) {
    out[0] = '\0';
    invalid = true;
    return false;
  }
  invalid = false;
  return true;
}

bool validHubUrl(Str s) {
  HubUrl u;
  return parseHubUrl(s, u) && trimmedLength(s) == s.len;
}

bool anyPassword(Str s) { return validWifiPassword(s); }

}  // namespace

void ConfigStore::load() {
  cfg_ = DeviceConfig();
  src_ = ConfigSources();
  bool bad = false;
  uint8_t mask = 0;
  readStr(kv_, cfgkey::kWifiSsid, cfg_.wifiSsid, validSsid, bad);
  mask = static_cast<uint8_t>(mask | (bad ? 1u : 0u));
  if (cfg_.hasWifi()) {
    readStr(kv_, cfgkey::kWifiPassword, cfg_.wifiPassword, anyPassword, bad);
    mask = static_cast<uint8_t>(mask | (bad ? 2u : 0u));
    if (bad) cfg_.wifiSsid[0] = '\0';  // a network without its password is no network
  }
  readStr(kv_, cfgkey::kHubUrl, cfg_.hubUrl, validHubUrl, bad);
  mask = static_cast<uint8_t>(mask | (bad ? 4u : 0u));
  bool idOk = readStr(kv_, cfgkey::kDeviceId, cfg_.deviceId, validDeviceId, bad);
  mask = static_cast<uint8_t>(mask | (bad ? 8u : 0u));
  bool tokenOk = readStr(kv_, cfgkey::kToken, cfg_.token, validToken, bad);
  mask = static_cast<uint8_t>(mask | (bad ? 16u : 0u));
  if (!idOk || !tokenOk) {  // the two only together
    cfg_.deviceId[0] = '\0';
    cfg_.token[0] = '\0';
  }
  int n = kv_.get(cfgkey::kEnrollKey, cfg_.enrollKey, sizeof cfg_.enrollKey);
  cfg_.hasEnrollKey = n == static_cast<int>(cfglimits::kEnrollKeyBytes);
  if (n >= 0 && !cfg_.hasEnrollKey) mask = static_cast<uint8_t>(mask | 32u);
  readStr(kv_, cfgkey::kFleetSecret, cfg_.fleetSecret, validFleetSecret, bad);
  mask = static_cast<uint8_t>(mask | (bad ? 64u : 0u));
  uint8_t rejected = 0;
  cfg_.enrollRejected = kv_.get(cfgkey::kEnrollRejected, &rejected, 1) == 1 && rejected == 1;
  src_.invalidMask = mask;
}

void ConfigStore::applyBuildDefaults(const BuildDefaults& d) {
  Str ssid = Str::of(d.wifiSsid), pass = Str::of(d.wifiPassword);
  if (!cfg_.hasWifi() && validSsid(ssid) && validWifiPassword(pass)) {
    copyStr(ssid, cfg_.wifiSsid, sizeof cfg_.wifiSsid);
    copyStr(pass, cfg_.wifiPassword, sizeof cfg_.wifiPassword);
    src_.wifiFromBuild = true;
  }
  if (!cfg_.hasHub() && normalizeHubUrl(Str::of(d.hubUrl), cfg_.hubUrl, sizeof cfg_.hubUrl)) {
    src_.hubFromBuild = true;
  }
  Str id = Str::of(d.deviceId), token = Str::of(d.token);
  if (!cfg_.hasCredentials() && validDeviceId(id) && validToken(token)) {
    copyStr(id, cfg_.deviceId, sizeof cfg_.deviceId);
    copyStr(token, cfg_.token, sizeof cfg_.token);
    src_.credentialsFromBuild = true;
  }
  Str secret = Str::of(d.fleetSecret);
  if (cfg_.fleetSecret[0] == '\0' && secret.len > 0 && validFleetSecret(secret)) {
    copyStr(secret, cfg_.fleetSecret, sizeof cfg_.fleetSecret);
    src_.fleetSecretFromBuild = true;
  }
}

bool ConfigStore::putStr(const char* key, Str s) {
  return kv_.put(key, reinterpret_cast<const uint8_t*>(s.data), s.len);
}

bool ConfigStore::setWifi(Str ssid, Str password) {
  if (!validSsid(ssid) || !validWifiPassword(password)) return false;
  // Password first, SSID last: a power cut in between leaves at worst the old SSID with the new password
  // (the join fails, Improv asks again); never a new SSID with a stale password taken for set.
  if (!putStr(cfgkey::kWifiPassword, password) || !putStr(cfgkey::kWifiSsid, ssid)) return false;
  copyStr(ssid, cfg_.wifiSsid, sizeof cfg_.wifiSsid);
  copyStr(password, cfg_.wifiPassword, sizeof cfg_.wifiPassword);
  src_.wifiFromBuild = false;
  return true;
}

bool ConfigStore::setHubUrl(Str url) {
  char normal[cfglimits::kHubUrlMax + 1];
  if (!normalizeHubUrl(url, normal, sizeof normal)) return false;
  bool changed = strcmp(normal, cfg_.hubUrl) != 0;
  if (changed && cfg_.hasCredentials()) {
    // A board moved to another hub enrolls there: the old hub's id and token mean nothing to it.
    if (!kv_.remove(cfgkey::kToken) || !kv_.remove(cfgkey::kDeviceId)) return false;
    cfg_.deviceId[0] = '\0';
    cfg_.token[0] = '\0';
    src_.credentialsFromBuild = false;
  }
  if (changed && cfg_.enrollRejected) {  // the old hub's rejection does not bind the new one
    if (!kv_.remove(cfgkey::kEnrollRejected)) return false;
    cfg_.enrollRejected = false;
  }
  if (!putStr(cfgkey::kHubUrl, Str::of(normal))) return false;
  memcpy(cfg_.hubUrl, normal, sizeof normal);
  src_.hubFromBuild = false;
  return true;
}

bool ConfigStore::setFleetSecret(Str secret) {
  if (!validFleetSecret(secret)) return false;
  bool ok = secret.len == 0 ? kv_.remove(cfgkey::kFleetSecret) : putStr(cfgkey::kFleetSecret, secret);
  if (!ok) return false;
  copyStr(secret, cfg_.fleetSecret, sizeof cfg_.fleetSecret);
  src_.fleetSecretFromBuild = false;
  return true;
}

bool ConfigStore::setCredentials(Str deviceId, Str token) {
  if (!validDeviceId(deviceId) || !validToken(token)) return false;
  // Token first: load() accepts the two only together, so a cut in between keeps the old pair or none.
  if (!putStr(cfgkey::kToken, token) || !putStr(cfgkey::kDeviceId, deviceId)) return false;
  copyStr(deviceId, cfg_.deviceId, sizeof cfg_.deviceId);
  copyStr(token, cfg_.token, sizeof cfg_.token);
  src_.credentialsFromBuild = false;
  if (cfg_.enrollRejected && kv_.remove(cfgkey::kEnrollRejected)) cfg_.enrollRejected = false;
  return true;
}

bool ConfigStore::setEnrollRejected() {
  uint8_t one = 1;
  if (!kv_.put(cfgkey::kEnrollRejected, &one, 1)) return false;
  cfg_.enrollRejected = true;
  return true;
}

bool ConfigStore::ensureEnrollKey(uint32_t (*random32)(void*), void* ctx) {
  if (cfg_.hasEnrollKey) return true;
  uint8_t key[cfglimits::kEnrollKeyBytes];
  for (size_t i = 0; i < sizeof key; i += 4) writeU32le(key + i, random32(ctx));
  if (!kv_.put(cfgkey::kEnrollKey, key, sizeof key)) return false;
  memcpy(cfg_.enrollKey, key, sizeof key);
  cfg_.hasEnrollKey = true;
  return true;
}

bool ConfigStore::factoryReset() {
  bool ok = kv_.clear();
  cfg_ = DeviceConfig();
  src_ = ConfigSources();
  return ok;
}

bool HoldDetector::update(bool pressed, uint64_t nowMs) {
  if (!pressed) {
    pressed_ = false;
    fired_ = false;
    return false;
  }
  if (!pressed_) {
    pressed_ = true;
    since_ = nowMs;
  }
  if (!fired_ && nowMs - since_ >= holdMs_) {
    fired_ = true;
    return true;
  }
  return false;
}

}  // namespace esp32hub
