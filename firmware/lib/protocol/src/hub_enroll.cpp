#include "hub_enroll.h"

#include <string.h>

#include "hub_codec.h"
#include "hub_config.h"
#include "hub_wire.h"

namespace esp32hub {
namespace enroll {

namespace {

/** A str8 that is empty, or else valid for `valid`; read as free text first (length, UTF-8). */
Err optionalStr(Reader& r, Str& out, uint8_t max, bool (*valid)(Str)) {
  HUB_TRY(r.str8(out, max, Alphabet::FreeText));
  return out.len == 0 || valid(out) ? Err::Ok : Err::BadField;
}

Err writeOptional(Writer& w, Str s, uint8_t max, bool (*valid)(Str)) {
  if (s.len > 0 && !valid(s)) return Err::BadField;
  return w.str8(s, max, Alphabet::FreeText);
}

}  // namespace

Err encode(const Request& m, uint8_t* out, size_t cap, size_t* outLen) {
  if (out == nullptr) return Err::TooLarge;
  Writer w(out, cap, kHeaderBytes);
  HUB_TRY(w.str8(m.hardwareId, limits::kDeviceIdBytes, Alphabet::DeviceId));
  for (uint8_t b : m.enrollKey) HUB_TRY(w.u8(b));
  HUB_TRY(w.str8(m.fleetSecret, kFleetSecretBytes, Alphabet::FreeText));
  HUB_TRY(w.str8(m.model, kModelBytes, Alphabet::FreeText));
  HUB_TRY(w.str8(m.firmwareVersion, kFirmwareVersionBytes, Alphabet::FreeText));
  return finishFrame(static_cast<MsgType>(kTypeEnroll), 0, out, cap, w.pos() - kHeaderBytes, outLen);
}

Err encode(const StatusMsg& m, uint8_t* out, size_t cap, size_t* outLen) {
  if (out == nullptr) return Err::TooLarge;
  if (static_cast<uint8_t>(m.status) > 2) return Err::BadField;
  bool approved = m.status == Status::Approved;
  if (approved != (m.deviceId.len > 0) || approved != (m.token.len > 0)) return Err::BadField;
  Writer w(out, cap, kHeaderBytes);
  HUB_TRY(w.u8(static_cast<uint8_t>(m.status)));
  HUB_TRY(writeOptional(w, m.deviceId, limits::kDeviceIdBytes, validDeviceId));
  HUB_TRY(writeOptional(w, m.token, kTokenBytes, validToken));
  HUB_TRY(w.str8(m.message, kMessageBytes, Alphabet::FreeText));
  return finishFrame(static_cast<MsgType>(kTypeStatus), 0, out, cap, w.pos() - kHeaderBytes, outLen);
}

Err encodeConfirm(uint8_t* out, size_t cap, size_t* outLen) {
  if (out == nullptr) return Err::TooLarge;
  return finishFrame(static_cast<MsgType>(kTypeConfirm), 0, out, cap, 0, outLen);
}

Err decode(const uint8_t* frame, size_t len, Decoded& out) {
  out = Decoded();
  uint8_t type = 0;
  size_t end = 0;
  HUB_TRY(readEnvelopeBytes(frame, len, type, end));
  bool isError = type == static_cast<uint8_t>(MsgType::Error);
  if (!isError && type != kTypeEnroll && type != kTypeStatus && type != kTypeConfirm) return Err::UnknownType;
  uint8_t allowedFlags = isError ? flags::kErrorFatal : 0;
  if (frame[5] != 0 || (frame[4] & ~allowedFlags) != 0) return Err::BadFlags;
  out.type = type;
  Reader r(frame, kHeaderBytes, end);
  if (isError) {
    out.error.fatal = (frame[4] & flags::kErrorFatal) != 0;
    HUB_TRY(r.u16(out.error.code));
    HUB_TRY(r.str8(out.error.message, limits::kMessageBytes, Alphabet::FreeText));
  } else if (type == kTypeEnroll) {
    Request& q = out.request;
    HUB_TRY(r.str8(q.hardwareId, limits::kDeviceIdBytes, Alphabet::DeviceId));
    for (uint8_t& b : q.enrollKey) HUB_TRY(r.u8(b));
    HUB_TRY(r.str8(q.fleetSecret, kFleetSecretBytes, Alphabet::FreeText));
    HUB_TRY(r.str8(q.model, kModelBytes, Alphabet::FreeText));
    HUB_TRY(r.str8(q.firmwareVersion, kFirmwareVersionBytes, Alphabet::FreeText));
  } else if (type == kTypeStatus) {
    StatusMsg& s = out.status;
    uint8_t status = 0;
    HUB_TRY(r.u8(status));
    if (status > 2) return Err::BadField;
    s.status = static_cast<Status>(status);
    HUB_TRY(optionalStr(r, s.deviceId, limits::kDeviceIdBytes, validDeviceId));
    HUB_TRY(optionalStr(r, s.token, kTokenBytes, validToken));
    bool approved = s.status == Status::Approved;
    if (approved != (s.deviceId.len > 0) || approved != (s.token.len > 0)) return Err::BadField;
    HUB_TRY(r.str8(s.message, kMessageBytes, Alphabet::FreeText));
  }
  return r.pos() == end ? Err::Ok : Err::BadLength;
}

}  // namespace enroll

const char* enrollStateName(EnrollState s) {
  switch (s) {
    case EnrollState::Idle:
      return "idle";
    case EnrollState::Backoff:
      return "backoff";
    case EnrollState::Connecting:
      return "connecting";
    case EnrollState::AwaitStatus:
      return "await-status";
    case EnrollState::Pending:
      return "pending";
    case EnrollState::Confirming:
      return "confirming";
    case EnrollState::Enrolled:
      return "enrolled";
    case EnrollState::Rejected:
      return "rejected";
  }
  return "?";
}

namespace {
bool terminal(EnrollState s) { return s == EnrollState::Enrolled || s == EnrollState::Rejected; }
bool connected(EnrollState s) {
  return s == EnrollState::AwaitStatus || s == EnrollState::Pending || s == EnrollState::Confirming;
}
}  // namespace

void EnrollClient::setState(EnrollState s) {
  if (s == state_) return;
  state_ = s;
  hooks_.onEnrollState(s);
  log("[enroll] ", enrollStateName(s));
}

void EnrollClient::log(const char* a, const char* b) {
  char line[120];
  size_t n = strlen(a);
  if (n >= sizeof line) n = sizeof line - 1;
  memcpy(line, a, n);
  if (b != nullptr) {
    size_t m = strlen(b);
    if (n + m >= sizeof line) m = sizeof line - 1 - n;
    memcpy(line + n, b, m);
    n += m;
  }
  line[n] = '\0';
  hooks_.log(line);
}

void EnrollClient::setNetworkUp(bool up) {
  networkUp_ = up;
  if (terminal(state_)) return;
  if (!up) {
    if (state_ != EnrollState::Idle && state_ != EnrollState::Backoff) transport_.close();
    setState(EnrollState::Idle);
  } else if (state_ == EnrollState::Idle) {
    connect();
  }
}

void EnrollClient::connect() {
  attempts_++;
  setState(EnrollState::Connecting);
  transport_.open();
}

uint64_t EnrollClient::backoffRemainingMs() {
  if (state_ != EnrollState::Backoff) return 0;
  uint64_t t = now();
  return deadline_ > t ? deadline_ - t : 0;
}

void EnrollClient::retryLater(const char* why, bool longWait) {
  if (state_ != EnrollState::Backoff && state_ != EnrollState::Idle) transport_.close();
  uint32_t delay = backoff_.next(clock_.random32());
  if (longWait && delay < config_.backoffMaxMs) delay = config_.backoffMaxMs;
  deadline_ = now() + delay;
  log("[enroll] retrying later: ", why);
  setState(networkUp_ ? EnrollState::Backoff : EnrollState::Idle);
}

void EnrollClient::poll() {
  uint64_t t = now();
  switch (state_) {
    case EnrollState::Backoff:
      if (t >= deadline_) connect();
      break;
    case EnrollState::AwaitStatus:
      if (t >= deadline_) retryLater("no ENROLL_STATUS from the hub");
      break;
    case EnrollState::Confirming:
      if (t >= deadline_) {
        transport_.close();
        setState(EnrollState::Enrolled);
      }
      break;
    default:
      break;
  }
}

void EnrollClient::onTransportOpen() {
  if (state_ != EnrollState::Connecting) return;
  enroll::Request req;
  req.hardwareId = Str::of(config_.hardwareId);
  if (config_.enrollKey != nullptr) memcpy(req.enrollKey, config_.enrollKey, enroll::kKeyBytes);
  req.fleetSecret = Str::of(config_.fleetSecret);
  req.model = Str::of(config_.model);
  req.firmwareVersion = Str::of(config_.firmwareVersion);
  size_t len = 0;
  if (enroll::encode(req, frame_, sizeof frame_, &len) != Err::Ok) {
    // A configuration no hub would take (e.g. an id outside the alphabet): retrying cannot help soon.
    retryLater("the ENROLL frame could not be encoded (hardware id, secret, model or version invalid)", true);
    return;
  }
  if (!transport_.send(frame_, len)) {
    retryLater("ENROLL could not be sent");
    return;
  }
  deadline_ = now() + config_.statusTimeoutMs;
  setState(EnrollState::AwaitStatus);
}

void EnrollClient::onTransportClosed() {
  if (state_ == EnrollState::Confirming) {
    setState(EnrollState::Enrolled);  // the hub's close 1000 after CONFIRM [PROTO-8.2.3]
  } else if (state_ == EnrollState::Connecting || connected(state_)) {
    retryLater("connection closed");
  }
}

void EnrollClient::onTransportMessage(const uint8_t* frame, size_t len) {
  if (!connected(state_) || state_ == EnrollState::Confirming) return;
  enroll::Decoded d;
  Err e = enroll::decode(frame, len, d);
  if (e != Err::Ok) {
    log("[enroll] malformed frame from the hub: ", errName(e));
    retryLater("malformed frame");
    return;
  }
  if (d.type == enroll::kTypeStatus) {
    handleStatus(d.status);
  } else if (d.type == static_cast<uint8_t>(MsgType::Error)) {
    handleError(d.error);
  } else {
    retryLater("unexpected frame from the hub");
  }
}

void EnrollClient::handleStatus(const enroll::StatusMsg& s) {
  backoff_.reset();  // the hub answered: the next failure starts from the base delay again
  switch (s.status) {
    case enroll::Status::Pending:
      setState(EnrollState::Pending);
      return;
    case enroll::Status::Approved: {
      if (!hooks_.storeCredentials(s.deviceId, s.token)) {
        // No CONFIRM: the hub hands a new token over on the next attempt [PROTO-8.3.5].
        retryLater("the device id and token could not be stored");
        return;
      }
      size_t len = 0;
      enroll::encodeConfirm(frame_, sizeof frame_, &len);
      transport_.send(frame_, len);  // lost: the stored token works; the hub re-hands over at most
      deadline_ = now() + config_.confirmCloseMs;
      setState(EnrollState::Confirming);
      return;
    }
    case enroll::Status::Rejected:
      hooks_.storeRejected();
      transport_.close();
      setState(EnrollState::Rejected);
      return;
  }
}

void EnrollClient::handleError(const ErrorMsg& e) {
  hooks_.onHubError(e.code, e.fatal, e.message);
  switch (e.code) {
    case enroll::wire::kRejected:
      hooks_.storeRejected();
      transport_.close();
      setState(EnrollState::Rejected);
      return;
    case enroll::wire::kSecretInvalid:
    case enroll::wire::kKeyMismatch:
      // Needs an operator (or a new secret over Improv): keep trying, at the slowest pace.
      retryLater(e.code == enroll::wire::kSecretInvalid ? "fleet secret refused" : "enroll key refused", true);
      return;
    default:
      if (e.fatal) retryLater("the hub refused the request");
      // Non-fatal (e.g. ENROLL_PENDING_FULL before its close 1013): the close that follows retries.
      return;
  }
}

}  // namespace esp32hub
