// Self-enrollment, the board's side [PROTO-8]: the frames of `/v1/enroll` (ENROLL 0x20, ENROLL_STATUS
// 0x21, ENROLL_CONFIRM 0x22, and ERROR 0x09 for refusals) in the codec's style, and the state machine
// that takes a board with Wi-Fi and a hub URL but no token to a stored device id and token.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "hub_backoff.h"
#include "hub_errors.h"
#include "hub_ports.h"
#include "hub_types.h"

namespace esp32hub {
namespace enroll {

constexpr const char* kSubprotocol = "esp32hub.enroll.v1";
constexpr const char* kPath = "/v1/enroll";
constexpr uint8_t kTypeEnroll = 0x20;
constexpr uint8_t kTypeStatus = 0x21;
constexpr uint8_t kTypeConfirm = 0x22;
constexpr size_t kKeyBytes = 16;
constexpr uint8_t kFleetSecretBytes = 64;
constexpr uint8_t kModelBytes = 32;
constexpr uint8_t kFirmwareVersionBytes = 64;
constexpr uint8_t kTokenBytes = 64;
constexpr uint8_t kMessageBytes = 200;

/** The refusals of [PROTO-8.3] (server/errors.ts). */
namespace wire {
constexpr uint16_t kSecretInvalid = 800;
constexpr uint16_t kRejected = 801;
constexpr uint16_t kPendingFull = 802;
constexpr uint16_t kKeyMismatch = 803;
}  // namespace wire

enum class Status : uint8_t { Pending = 0, Approved = 1, Rejected = 2 };

/** ENROLL [PROTO-8.2.1]. */
struct Request {
  Str hardwareId;
  uint8_t enrollKey[kKeyBytes] = {};
  Str fleetSecret;
  Str model;
  Str firmwareVersion;
};

/** ENROLL_STATUS [PROTO-8.2.2]: deviceId and token only (and then both) when approved. */
struct StatusMsg {
  Status status = Status::Pending;
  Str deviceId;
  Str token;
  Str message;
};

struct Decoded {
  uint8_t type = 0;
  Request request;
  StatusMsg status;
  ErrorMsg error;
};

Err encode(const Request& m, uint8_t* out, size_t cap, size_t* outLen);
Err encode(const StatusMsg& m, uint8_t* out, size_t cap, size_t* outLen);
Err encodeConfirm(uint8_t* out, size_t cap, size_t* outLen);
/**
 * Decodes a frame of the enrollment endpoint: the envelope checks of [PROTO-2.7], then the type (0x09,
 * 0x20–0x22; any other is UNKNOWN_TYPE here), flags (0, ERROR: fatal) and fields. Strings point into `frame`.
 */
Err decode(const uint8_t* frame, size_t len, Decoded& out);

}  // namespace enroll

/** Where enrollment is (the log and the LED). */
enum class EnrollState : uint8_t {
  Idle,         // no network, or not started
  Backoff,      // waiting before the next attempt [PROTO-5.6]
  Connecting,   // the transport is opening /v1/enroll
  AwaitStatus,  // ENROLL sent, no ENROLL_STATUS yet
  Pending,      // the hub keeps the request for an operator: wait on the open socket
  Confirming,   // id and token stored, ENROLL_CONFIRM sent: waiting for the hub's close
  Enrolled,     // done: connect to /v1/device with the stored id and token
  Rejected,     // the hub rejected this board: nothing more until a factory reset
};

const char* enrollStateName(EnrollState s);

/** What enrollment asks of the board. */
class EnrollHooks {
 public:
  virtual ~EnrollHooks() = default;
  /** Stores the handed-over id and token (NVS). False when they could not be stored: no CONFIRM then. */
  virtual bool storeCredentials(Str deviceId, Str token) = 0;
  /** Stores the rejection, so that the board does not enroll again until a factory reset. */
  virtual void storeRejected() = 0;
  virtual void onEnrollState(EnrollState s) { (void)s; }
  /** An ERROR frame from the hub (fatal ones precede a close). */
  virtual void onHubError(uint16_t code, bool fatal, Str message) {
    (void)code;
    (void)fatal;
    (void)message;
  }
  /** One line of diagnostics (no newline); never carries the token, the secret or the key. */
  virtual void log(const char* line) { (void)line; }
};

struct EnrollConfig {
  const char* hardwareId = "";
  const uint8_t* enrollKey = nullptr;  // 16 bytes
  const char* fleetSecret = "";
  const char* model = "";
  const char* firmwareVersion = "";
  uint32_t backoffBaseMs = 1000;
  uint32_t backoffMaxMs = 60000;
  /** No ENROLL_STATUS this long after ENROLL: the attempt failed. */
  uint32_t statusTimeoutMs = 15000;
  /** After ENROLL_CONFIRM the hub closes (1000); the board closes itself after this at the latest. */
  uint32_t confirmCloseMs = 5000;
};

/**
 * The enrollment state machine [PROTO-8.4]. Drive it like the Session: setNetworkUp, poll from the loop,
 * and the transport's three events. It opens the transport (the board's glue points it at
 * `<hub URL>/v1/enroll` with subprotocol esp32hub.enroll.v1 and no Authorization header).
 */
class EnrollClient : public TransportListener {
 public:
  EnrollClient(const EnrollConfig& config, Transport& transport, Clock& clock, EnrollHooks& hooks)
      : config_(config),
        transport_(transport),
        clock_(clock),
        hooks_(hooks),
        backoff_(config.backoffBaseMs, config.backoffMaxMs) {}

  void setNetworkUp(bool up);
  void poll();
  void onTransportOpen() override;
  void onTransportClosed() override;
  void onTransportMessage(const uint8_t* frame, size_t len) override;

  EnrollState state() const { return state_; }
  bool done() const { return state_ == EnrollState::Enrolled; }
  uint32_t attempts() const { return attempts_; }
  uint64_t backoffRemainingMs();

 private:
  uint64_t now() { return clock_.uptimeMs(); }
  void setState(EnrollState s);
  void connect();
  /** Closes the connection and waits: the normal backoff, or the longest one (`longWait`). */
  void retryLater(const char* why, bool longWait = false);
  void handleStatus(const enroll::StatusMsg& s);
  void handleError(const ErrorMsg& e);
  void log(const char* a, const char* b = nullptr);

  EnrollConfig config_;
  Transport& transport_;
  Clock& clock_;
  EnrollHooks& hooks_;
  Backoff backoff_;
  EnrollState state_ = EnrollState::Idle;
  bool networkUp_ = false;
  uint64_t deadline_ = 0;  // Backoff: next attempt; AwaitStatus: status timeout; Confirming: close
  uint32_t attempts_ = 0;
  uint8_t frame_[512] = {};
};

}  // namespace esp32hub
