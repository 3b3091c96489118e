// Improv Wi-Fi over serial (the open standard of ESP Web Tools and Home Assistant): the packet parser,
// the encoder and the RPC handling, plus this firmware's vendor command 0x80 SET_HUB
// (docs/provisioning.md [PROV-IMPROV-HUB]). Held to firmware/test/improv-cases.json.
//
// Packet: "IMPROV", version 1, type, data length, data, checksum (low byte of the sum of every
// preceding byte). An RPC command's data is: command, command data length, command data.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "hub_config.h"
#include "hub_types.h"

namespace esp32hub {
namespace improv {

constexpr uint8_t kVersion = 1;
constexpr size_t kHeaderBytes = 9;  // "IMPROV", version, type, length
constexpr size_t kMaxDataBytes = 255;
constexpr size_t kMaxPacketBytes = kHeaderBytes + kMaxDataBytes + 1;
/** A packet whose next byte does not come within this gap is dropped (truncated). */
constexpr uint32_t kByteGapMs = 1000;
/** A Wi-Fi join that has not succeeded within this is reported "unable to connect". */
constexpr uint32_t kJoinTimeoutMs = 20000;  // below the Improv JavaScript SDK's 30 s RPC timeout

enum class PacketType : uint8_t { CurrentState = 0x01, ErrorState = 0x02, Rpc = 0x03, RpcResult = 0x04 };

enum class State : uint8_t {
  Stopped = 0x00,
  AwaitingAuthorization = 0x01,
  Authorized = 0x02,  // ready for credentials
  Provisioning = 0x03,
  Provisioned = 0x04,
};

enum class Error : uint8_t {
  None = 0x00,
  InvalidRpc = 0x01,
  UnknownRpc = 0x02,
  UnableToConnect = 0x03,
  NotAuthorized = 0x04,
  BadHostname = 0x05,
  Unknown = 0xFF,
};

namespace cmd {
constexpr uint8_t kWifiSettings = 0x01;
constexpr uint8_t kCurrentState = 0x02;
constexpr uint8_t kDeviceInfo = 0x03;
constexpr uint8_t kScanNetworks = 0x04;
/** Vendor extension: the hub URL and optional fleet secret [PROV-IMPROV-HUB]. */
constexpr uint8_t kSetHub = 0x80;
}  // namespace cmd

/** The checksum of `len` bytes: the low byte of their sum. */
uint8_t checksum(const uint8_t* bytes, size_t len);

/**
 * A byte-stream parser: finds "IMPROV" packets among anything else on the line (boot messages, log
 * lines), checks version and checksum. Feed it every received byte.
 */
class Parser {
 public:
  enum class Result : uint8_t {
    None,         // nothing complete yet (or a byte outside any packet)
    Packet,       // a whole, checksum-valid packet: type(), data(), dataLen()
    BadChecksum,  // a whole packet whose checksum did not match (dropped)
  };
  Result feed(uint8_t byte, uint64_t nowMs);
  uint8_t type() const { return buf_[7]; }
  const uint8_t* data() const { return buf_ + kHeaderBytes; }
  uint8_t dataLen() const { return buf_[8]; }
  /** Partial packets dropped because the next byte did not come within kByteGapMs. */
  uint32_t truncated() const { return truncated_; }

 private:
  uint8_t buf_[kMaxPacketBytes] = {};
  size_t pos_ = 0;
  uint64_t lastMs_ = 0;
  uint32_t truncated_ = 0;
};

/** Writes a whole packet of `type` around `data`; 0 when `len` > 255 or it does not fit `cap`. */
size_t encodePacket(uint8_t type, const uint8_t* data, size_t len, uint8_t* out, size_t cap);
size_t encodeState(State s, uint8_t* out, size_t cap);
size_t encodeError(Error e, uint8_t* out, size_t cap);
/** An RPC result: command, data length, then each string as u8 length + bytes; 0 when > 255 bytes. */
size_t encodeRpcResult(uint8_t command, const Str* strings, size_t count, uint8_t* out, size_t cap);
/** An RPC command packet (what a client sends): for tests and tools. */
size_t encodeRpcCommand(uint8_t command, const uint8_t* data, size_t len, uint8_t* out, size_t cap);

/** An RPC command split out of a packet's data. */
struct RpcCommand {
  uint8_t command = 0;
  const uint8_t* data = nullptr;
  uint8_t len = 0;
};
/** Error::None, or InvalidRpc when the data is shorter than 2 bytes or its length byte does not add up. */
Error parseRpc(const uint8_t* data, uint8_t len, RpcCommand& out);

struct WifiSettings {
  Str ssid;
  Str password;
};
/** Command 0x01: ssid (1–32 bytes), password (empty or 8–64): exactly, nothing after. */
Error parseWifiSettings(const RpcCommand& c, WifiSettings& out);

struct SetHub {
  bool query = false;      // no data: only answer
  Str url;                 // not yet validated as a URL
  bool hasSecret = false;  // the optional second string was present
  Str secret;
};
/** Command 0x80: empty (query), or url (1–128 bytes) [+ fleet secret (0–64 bytes)]: exactly. */
Error parseSetHub(const RpcCommand& c, SetHub& out);

/** What the Improv service asks of the board. */
class ImprovPort {
 public:
  enum class Join : uint8_t { InProgress, Connected, Failed };
  virtual ~ImprovPort() = default;
  /** Writes bytes to the serial port. */
  virtual void write(const uint8_t* bytes, size_t len) = 0;
  /** Starts joining this network (returns at once); progress through joinStatus(). */
  virtual void joinWifi(const char* ssid, const char* password) = 0;
  virtual Join joinStatus() = 0;
  virtual bool wifiConnected() = 0;
  /** Scans (may block a few seconds on the board); returns how many networks were found. */
  virtual uint8_t scanNetworks() = 0;
  /** Network i of the last scan: its SSID into `ssid` (NUL-terminated), RSSI, whether it needs a password. */
  virtual bool scannedNetwork(uint8_t i, char* ssid, size_t cap, int16_t& rssi, bool& secured) = 0;
  virtual void log(const char* line) { (void)line; }
};

struct DeviceInfo {
  const char* firmwareName = "esp32hub";
  const char* firmwareVersion = "";
  const char* chip = "";        // e.g. "ESP32", "ESP32-C3"
  const char* hardwareId = "";  // also Improv's "device name"
  /** `wss://` hub URLs are accepted only when the build has a CA certificate. */
  bool wssAllowed = false;
};

/**
 * The Improv Serial service: feed it the serial port's bytes (`onByte`) and call `poll` from the loop.
 * Wi-Fi credentials are stored only once the board has joined the network with them; the hub URL at
 * once. `takeChanged()` tells the board to apply a new configuration (reconnect).
 */
class Service {
 public:
  Service(ImprovPort& port, ConfigStore& config, const DeviceInfo& info) : port_(port), config_(config), info_(info) {}
  void onByte(uint8_t byte, uint64_t nowMs);
  void poll(uint64_t nowMs);
  State state();
  /**
   * True once after the stored Wi-Fi or hub settings changed; never while a Wi-Fi join is under way (a
   * board that applied a new hub URL by restarting would cut the join short, and lose the network).
   */
  bool takeChanged() {
    if (joining_) return false;
    bool c = changed_;
    changed_ = false;
    return c;
  }

 private:
  void handle(const RpcCommand& c, uint64_t nowMs);
  void sendState(State s);
  void sendError(Error e);
  void sendResult(uint8_t command, const Str* strings, size_t count);
  /** The result of a successful provisioning: [hub page URL] or nothing when no hub URL is set. */
  void sendRedirect(uint8_t command);
  void handleSetHub(const RpcCommand& c);
  static constexpr size_t kPageUrlCap = cfglimits::kHubUrlMax + 16 + cfglimits::kDeviceIdMax;
  /** The hub page URL of this board (device id, else hardware id); 0 without a hub URL. */
  size_t pageUrl(char (&out)[kPageUrlCap]);
  void handleScan();

  ImprovPort& port_;
  ConfigStore& config_;
  DeviceInfo info_;
  Parser parser_;
  bool joining_ = false;
  uint64_t joinStartMs_ = 0;
  char joinSsid_[cfglimits::kSsidMax + 1] = {};
  char joinPassword_[cfglimits::kPasswordMax + 1] = {};
  bool changed_ = false;
  uint8_t out_[kMaxPacketBytes + 1] = {};  // + the newline
};

}  // namespace improv
}  // namespace esp32hub
