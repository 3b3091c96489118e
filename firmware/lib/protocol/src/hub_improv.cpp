#include "hub_improv.h"

#include <string.h>

namespace esp32hub {
namespace improv {

namespace {

constexpr uint8_t kMagic[6] = {'I', 'M', 'P', 'R', 'O', 'V'};

/** Reads a u8-length-prefixed string at `pos`; false when it runs past `end` or exceeds `max`. */
bool takeStr(const uint8_t* data, size_t& pos, size_t end, size_t max, Str& out) {
  if (pos >= end) return false;
  size_t n = data[pos];
  if (n > max || pos + 1 + n > end) return false;
  out.data = reinterpret_cast<const char*>(data + pos + 1);
  out.len = static_cast<uint8_t>(n);
  pos += 1 + n;
  return true;
}

/** Decimal text of `v` into `out` (room for "-32768"); its length. */
uint8_t decimal(int16_t v, char* out) {
  char tmp[6];
  uint8_t n = 0;
  uint32_t mag = v < 0 ? static_cast<uint32_t>(-static_cast<int32_t>(v)) : static_cast<uint32_t>(v);
  do {
    tmp[n++] = static_cast<char>('0' + mag % 10);
    mag /= 10;
  } while (mag > 0);
  uint8_t len = 0;
  if (v < 0) out[len++] = '-';
  while (n > 0) out[len++] = tmp[--n];
  return len;
}

}  // namespace

uint8_t checksum(const uint8_t* bytes, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i < len; i++) sum += bytes[i];
  return static_cast<uint8_t>(sum & 0xFF);
}

Parser::Result Parser::feed(uint8_t byte, uint64_t nowMs) {
  if (pos_ > 0 && nowMs - lastMs_ > kByteGapMs) {
    if (pos_ > sizeof kMagic) truncated_++;  // a real packet had begun: it never finished
    pos_ = 0;
  }
  lastMs_ = nowMs;
  if (pos_ < sizeof kMagic) {
    if (byte == kMagic[pos_]) {
      buf_[pos_++] = byte;
    } else {
      // "IMPROV" overlaps itself only at its first letter: a mismatch may start a new header.
      pos_ = 0;
      if (byte == kMagic[0]) buf_[pos_++] = byte;
    }
    return Result::None;
  }
  if (pos_ == sizeof kMagic && byte != kVersion) {
    pos_ = byte == kMagic[0] ? 1 : 0;  // not a packet we speak (or log text that spelled IMPROV)
    if (pos_ == 1) buf_[0] = byte;
    return Result::None;
  }
  buf_[pos_++] = byte;
  if (pos_ < kHeaderBytes) return Result::None;
  size_t total = kHeaderBytes + buf_[8] + 1;
  if (pos_ < total) return Result::None;
  pos_ = 0;
  return checksum(buf_, total - 1) == buf_[total - 1] ? Result::Packet : Result::BadChecksum;
}

size_t encodePacket(uint8_t type, const uint8_t* data, size_t len, uint8_t* out, size_t cap) {
  if (len > kMaxDataBytes || kHeaderBytes + len + 1 > cap) return 0;
  memcpy(out, kMagic, sizeof kMagic);
  out[6] = kVersion;
  out[7] = type;
  out[8] = static_cast<uint8_t>(len);
  if (len > 0) memcpy(out + kHeaderBytes, data, len);
  out[kHeaderBytes + len] = checksum(out, kHeaderBytes + len);
  return kHeaderBytes + len + 1;
}

size_t encodeState(State s, uint8_t* out, size_t cap) {
  uint8_t b = static_cast<uint8_t>(s);
  return encodePacket(static_cast<uint8_t>(PacketType::CurrentState), &b, 1, out, cap);
}

size_t encodeError(Error e, uint8_t* out, size_t cap) {
  uint8_t b = static_cast<uint8_t>(e);
  return encodePacket(static_cast<uint8_t>(PacketType::ErrorState), &b, 1, out, cap);
}

size_t encodeRpcResult(uint8_t command, const Str* strings, size_t count, uint8_t* out, size_t cap) {
  size_t body = 0;
  for (size_t i = 0; i < count; i++) body += 1 + strings[i].len;
  if (2 + body > kMaxDataBytes || kHeaderBytes + 2 + body + 1 > cap) return 0;
  // Built in place behind the header (no second buffer), then the header and checksum around it.
  uint8_t* data = out + kHeaderBytes;
  data[0] = command;
  data[1] = static_cast<uint8_t>(body);
  size_t pos = 2;
  for (size_t i = 0; i < count; i++) {
    data[pos++] = strings[i].len;
    if (strings[i].len > 0) memcpy(data + pos, strings[i].data, strings[i].len);
    pos += strings[i].len;
  }
  memcpy(out, kMagic, sizeof kMagic);
  out[6] = kVersion;
  out[7] = static_cast<uint8_t>(PacketType::RpcResult);
  out[8] = static_cast<uint8_t>(pos);
  out[kHeaderBytes + pos] = checksum(out, kHeaderBytes + pos);
  return kHeaderBytes + pos + 1;
}

size_t encodeRpcCommand(uint8_t command, const uint8_t* data, size_t len, uint8_t* out, size_t cap) {
  if (len + 2 > kMaxDataBytes || kHeaderBytes + 2 + len + 1 > cap) return 0;
  uint8_t body[kMaxDataBytes];
  body[0] = command;
  body[1] = static_cast<uint8_t>(len);
  if (len > 0) memcpy(body + 2, data, len);
  return encodePacket(static_cast<uint8_t>(PacketType::Rpc), body, len + 2, out, cap);
}

Error parseRpc(const uint8_t* data, uint8_t len, RpcCommand& out) {
  out = RpcCommand();
  if (len < 2 || data[1] != len - 2) return Error::InvalidRpc;
  out.command = data[0];
  out.data = data + 2;
  out.len = data[1];
  return Error::None;
}

Error parseWifiSettings(const RpcCommand& c, WifiSettings& out) {
  out = WifiSettings();
  size_t pos = 0;
  if (!takeStr(c.data, pos, c.len, cfglimits::kSsidMax, out.ssid) || out.ssid.len == 0) return Error::InvalidRpc;
  if (!takeStr(c.data, pos, c.len, cfglimits::kPasswordMax, out.password)) return Error::InvalidRpc;
  if (pos != c.len || !validSsid(out.ssid) || !validWifiPassword(out.password)) return Error::InvalidRpc;
  return Error::None;
}

Error parseSetHub(const RpcCommand& c, SetHub& out) {
  out = SetHub();
  if (c.len == 0) {
    out.query = true;
    return Error::None;
  }
  size_t pos = 0;
  if (!takeStr(c.data, pos, c.len, cfglimits::kHubUrlMax, out.url) || out.url.len == 0) return Error::InvalidRpc;
  if (pos < c.len) {
    if (!takeStr(c.data, pos, c.len, cfglimits::kFleetSecretMax, out.secret)) return Error::InvalidRpc;
    out.hasSecret = true;
  }
  return pos == c.len ? Error::None : Error::InvalidRpc;
}

// ───────────────────────────── the service ─────────────────────────────

State Service::state() {
  if (joining_) return State::Provisioning;
  if (config_.config().hasWifi() && port_.wifiConnected()) return State::Provisioned;
  return State::Authorized;
}

void Service::onByte(uint8_t byte, uint64_t nowMs) {
  switch (parser_.feed(byte, nowMs)) {
    case Parser::Result::None:
      return;
    case Parser::Result::BadChecksum:
      port_.log("[improv] packet with a bad checksum dropped");
      sendError(Error::InvalidRpc);
      return;
    case Parser::Result::Packet:
      break;
  }
  if (parser_.type() != static_cast<uint8_t>(PacketType::Rpc)) return;  // the board's own types: not for us
  RpcCommand c;
  Error e = parseRpc(parser_.data(), parser_.dataLen(), c);
  if (e != Error::None) {
    sendError(e);
    return;
  }
  handle(c, nowMs);
}

void Service::handle(const RpcCommand& c, uint64_t nowMs) {
  sendError(Error::None);  // the standard: every command first clears the error state
  switch (c.command) {
    case cmd::kWifiSettings: {
      WifiSettings w;
      if (parseWifiSettings(c, w) != Error::None) {
        sendError(Error::InvalidRpc);
        return;
      }
      memcpy(joinSsid_, w.ssid.data, w.ssid.len);
      joinSsid_[w.ssid.len] = '\0';
      if (w.password.len > 0) memcpy(joinPassword_, w.password.data, w.password.len);
      joinPassword_[w.password.len] = '\0';
      joining_ = true;
      joinStartMs_ = nowMs;
      port_.log("[improv] joining the network sent over Improv");
      sendState(State::Provisioning);
      port_.joinWifi(joinSsid_, joinPassword_);
      return;
    }
    case cmd::kCurrentState: {
      State s = state();
      sendState(s);
      if (s == State::Provisioned) sendRedirect(cmd::kCurrentState);
      return;
    }
    case cmd::kDeviceInfo: {
      Str info[4] = {Str::of(info_.firmwareName), Str::of(info_.firmwareVersion), Str::of(info_.chip),
                     Str::of(info_.hardwareId)};
      sendResult(cmd::kDeviceInfo, info, 4);
      return;
    }
    case cmd::kScanNetworks:
      handleScan();
      return;
    case cmd::kSetHub:
      handleSetHub(c);
      return;
    default:
      sendError(Error::UnknownRpc);
      return;
  }
}

void Service::poll(uint64_t nowMs) {
  if (!joining_) return;
  ImprovPort::Join j = port_.joinStatus();
  if (j == ImprovPort::Join::Connected) {
    joining_ = false;
    if (!config_.setWifi(Str::of(joinSsid_), Str::of(joinPassword_))) {
      port_.log("[improv] joined, but the settings could not be stored");
      sendError(Error::Unknown);
      sendState(state());
      return;
    }
    port_.log("[improv] joined; Wi-Fi settings stored");
    changed_ = true;
    sendState(State::Provisioned);
    sendRedirect(cmd::kWifiSettings);
    return;
  }
  if (j == ImprovPort::Join::Failed || nowMs - joinStartMs_ >= kJoinTimeoutMs) {
    joining_ = false;
    port_.log("[improv] could not join the network sent over Improv");
    sendError(Error::UnableToConnect);
    const DeviceConfig& cfg = config_.config();
    if (cfg.hasWifi()) port_.joinWifi(cfg.wifiSsid, cfg.wifiPassword);  // back to the stored network
    sendState(state());
  }
}

void Service::handleSetHub(const RpcCommand& c) {
  SetHub h;
  if (parseSetHub(c, h) != Error::None) {
    sendError(Error::InvalidRpc);
    return;
  }
  if (!h.query) {
    HubUrl u;
    if (!parseHubUrl(h.url, u)) {
      port_.log("[improv] SET_HUB: not a ws:// or wss:// hub URL");
      sendError(Error::InvalidRpc);
      return;
    }
    if (u.tls && !info_.wssAllowed) {
      port_.log("[improv] SET_HUB: wss:// needs a build with the hub's CA certificate (HUB_CA_CERT)");
      sendError(Error::InvalidRpc);
      return;
    }
    if (h.hasSecret && !validFleetSecret(h.secret)) {
      sendError(Error::InvalidRpc);
      return;
    }
    const DeviceConfig& before = config_.config();
    char normal[cfglimits::kHubUrlMax + 1];
    normalizeHubUrl(h.url, normal, sizeof normal);
    bool differs = strcmp(normal, before.hubUrl) != 0 || (h.hasSecret && !h.secret.equals(before.fleetSecret));
    if (!config_.setHubUrl(h.url) || (h.hasSecret && !config_.setFleetSecret(h.secret))) {
      port_.log("[improv] SET_HUB: could not store the hub settings");
      sendError(Error::Unknown);
      return;
    }
    if (differs) {
      port_.log("[improv] hub URL stored");
      changed_ = true;
    }
  }
  char page[kPageUrlCap];
  Str result[2] = {Str{page, static_cast<uint8_t>(pageUrl(page))}, Str::of(info_.hardwareId)};
  sendResult(cmd::kSetHub, result, 2);
}

void Service::handleScan() {
  uint8_t count = port_.scanNetworks();
  for (uint8_t i = 0; i < count; i++) {
    char ssid[cfglimits::kSsidMax + 1];
    int16_t rssi = 0;
    bool secured = false;
    if (!port_.scannedNetwork(i, ssid, sizeof ssid, rssi, secured) || ssid[0] == '\0') continue;  // hidden
    char rssiText[8];
    Str row[3] = {Str::of(ssid), Str{rssiText, decimal(rssi, rssiText)}, Str::of(secured ? "YES" : "NO")};
    sendResult(cmd::kScanNetworks, row, 3);
  }
  sendResult(cmd::kScanNetworks, nullptr, 0);  // the end of the list
}

size_t Service::pageUrl(char (&out)[kPageUrlCap]) {
  const DeviceConfig& cfg = config_.config();
  const char* id = cfg.deviceId[0] != '\0' ? cfg.deviceId : info_.hardwareId;
  return cfg.hasHub() ? hubPageUrl(cfg.hubUrl, id, out, sizeof out) : 0;
}

void Service::sendRedirect(uint8_t command) {
  char page[kPageUrlCap];
  size_t n = pageUrl(page);
  Str url{page, static_cast<uint8_t>(n)};
  sendResult(command, &url, n > 0 ? 1 : 0);
}

// Every packet the board writes is followed by a newline: Improv clients (the JavaScript SDK) look for
// packets at the start of a line, and the serial monitor stays readable.
void Service::sendState(State s) {
  size_t n = encodeState(s, out_, sizeof out_ - 1);
  out_[n] = '\n';
  port_.write(out_, n + 1);
}

void Service::sendError(Error e) {
  size_t n = encodeError(e, out_, sizeof out_ - 1);
  out_[n] = '\n';
  port_.write(out_, n + 1);
}

void Service::sendResult(uint8_t command, const Str* strings, size_t count) {
  size_t n = encodeRpcResult(command, strings, count, out_, sizeof out_ - 1);
  if (n == 0) {
    port_.log("[improv] result too long for one packet");
    sendError(Error::Unknown);
    return;
  }
  out_[n] = '\n';
  port_.write(out_, n + 1);
}

}  // namespace improv
}  // namespace esp32hub
