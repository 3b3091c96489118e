// Enrollment [PROTO-8], the board's side: the frames against the hub's golden vectors
// (test/vectors/enroll-v1.json, made by test/vectors/generate-enroll.ts from the TypeScript codec), and
// the state machine with a scripted transport and clock: pending → approved → CONFIRM, rejection,
// refusals, drops and backoff.
#include <unity.h>

#include <string>
#include <vector>

#include "../support/json.h"
#include "../support/message_json.h"
#include "hub_enroll.h"
#include "suites.h"

using namespace esp32hub;

namespace {

std::string str(Str s) { return std::string(s.data == nullptr ? "" : s.data, s.len); }

const testjson::Value& vectors() {
  static testjson::Value v = testjson::parse(readFile(repoPath("test/vectors/enroll-v1.json")));
  return v;
}

void test_valid_enroll_vectors_decode_and_reencode() {
  int n = 0;
  for (const testjson::Value& v : vectors()["valid"].items) {
    const std::string name = v["name"].asString();
    std::vector<uint8_t> frame = testmsg::fromHex(v["hex"].asString());
    enroll::Decoded d;
    Err e = enroll::decode(frame.data(), frame.size(), d);
    TEST_ASSERT_EQUAL_STRING_MESSAGE("OK", errName(e), name.c_str());
    const testjson::Value& f = v["fields"];
    const std::string type = f["type"].asString();
    uint8_t buf[1024];
    size_t len = 0;
    if (type == "enroll") {
      TEST_ASSERT_EQUAL_INT(enroll::kTypeEnroll, d.type);
      TEST_ASSERT_EQUAL_STRING(f["hardwareId"].asString().c_str(), str(d.request.hardwareId).c_str());
      TEST_ASSERT_EQUAL_STRING(f["enrollKey"].asString().c_str(), testmsg::toHex(d.request.enrollKey, 16).c_str());
      TEST_ASSERT_EQUAL_STRING(f["fleetSecret"].asString().c_str(), str(d.request.fleetSecret).c_str());
      TEST_ASSERT_EQUAL_STRING(f["model"].asString().c_str(), str(d.request.model).c_str());
      TEST_ASSERT_EQUAL_STRING(f["firmwareVersion"].asString().c_str(), str(d.request.firmwareVersion).c_str());
      TEST_ASSERT_TRUE(enroll::encode(d.request, buf, sizeof buf, &len) == Err::Ok);
    } else if (type == "enroll_status") {
      TEST_ASSERT_EQUAL_INT(enroll::kTypeStatus, d.type);
      TEST_ASSERT_EQUAL_INT(f["status"].asInt(), static_cast<int>(d.status.status));
      TEST_ASSERT_EQUAL_STRING(f["deviceId"].asString().c_str(), str(d.status.deviceId).c_str());
      TEST_ASSERT_EQUAL_STRING(f["token"].asString().c_str(), str(d.status.token).c_str());
      TEST_ASSERT_EQUAL_STRING(f["message"].asString().c_str(), str(d.status.message).c_str());
      TEST_ASSERT_TRUE(enroll::encode(d.status, buf, sizeof buf, &len) == Err::Ok);
    } else if (type == "enroll_confirm") {
      TEST_ASSERT_EQUAL_INT(enroll::kTypeConfirm, d.type);
      TEST_ASSERT_TRUE(enroll::encodeConfirm(buf, sizeof buf, &len) == Err::Ok);
    } else if (type == "error") {
      TEST_ASSERT_EQUAL_INT(0x09, d.type);
      TEST_ASSERT_EQUAL_INT(f["code"].asInt(), d.error.code);
      TEST_ASSERT_EQUAL(f["fatal"].asBool(), d.error.fatal);
      TEST_ASSERT_EQUAL_STRING(f["message"].asString().c_str(), str(d.error.message).c_str());
      len = frame.size();  // ERROR is encoded by the main codec (its vectors: protocol-v1.json)
      memcpy(buf, frame.data(), len);
    } else {
      TEST_FAIL_MESSAGE(("unknown vector type " + type).c_str());
    }
    TEST_ASSERT_EQUAL_STRING_MESSAGE(v["hex"].asString().c_str(), testmsg::toHex(buf, len).c_str(), name.c_str());
    n++;
  }
  TEST_ASSERT_TRUE(n >= 9);
}

void test_malformed_enroll_vectors_fail_with_the_hubs_code() {
  int n = 0;
  for (const testjson::Value& v : vectors()["malformed"].items) {
    const std::string name = v["name"].asString();
    std::vector<uint8_t> frame = testmsg::fromHex(v["hex"].asString());
    enroll::Decoded d;
    Err e = enroll::decode(frame.data(), frame.size(), d);
    std::string expected = v["error"].asString();
    // UNEXPECTED_MESSAGE is the hub's session-layer answer to a device-endpoint type on /v1/enroll; the
    // board's decoder has no session layer and refuses such a frame as a type it does not know.
    if (expected == "UNEXPECTED_MESSAGE") expected = "UNKNOWN_TYPE";
    TEST_ASSERT_EQUAL_STRING_MESSAGE(expected.c_str(), errName(e), name.c_str());
    n++;
  }
  TEST_ASSERT_TRUE(n >= 15);
}

void test_encoders_refuse_what_the_decoder_would_refuse() {
  uint8_t buf[512];
  size_t len = 0;
  enroll::StatusMsg s;
  s.status = enroll::Status::Pending;
  s.token = Str::of("esp32hub_x");
  TEST_ASSERT_EQUAL_STRING("BAD_FIELD", errName(enroll::encode(s, buf, sizeof buf, &len)));
  s.status = enroll::Status::Approved;
  s.deviceId = Str::of("board-1");
  s.token = Str::of("has space");
  TEST_ASSERT_EQUAL_STRING("BAD_FIELD", errName(enroll::encode(s, buf, sizeof buf, &len)));
  enroll::Request q;
  q.hardwareId = Str::of("bad id");
  TEST_ASSERT_EQUAL_STRING("BAD_FIELD", errName(enroll::encode(q, buf, sizeof buf, &len)));
}

// ───────────────────────────── the state machine ─────────────────────────────

struct Net : Transport {
  int opens = 0;
  int closes = 0;
  bool failSends = false;
  std::vector<enroll::Decoded> sent;
  std::vector<std::vector<uint8_t>> raw;
  void open() override { opens++; }
  void close() override { closes++; }
  bool send(const uint8_t* frame, size_t len) override {
    if (failSends) return false;
    raw.emplace_back(frame, frame + len);
    enroll::Decoded d;
    TEST_ASSERT_TRUE_MESSAGE(enroll::decode(raw.back().data(), len, d) == Err::Ok, "the board sent a bad frame");
    sent.push_back(d);
    return true;
  }
};

struct ManualClock : Clock {
  uint64_t t = 1000;
  uint32_t rng = 7;
  uint64_t uptimeMs() override { return t; }
  bool unixMs(uint64_t&) override { return false; }
  void setUnixMs(uint64_t) override {}
  uint32_t random32() override { return rng = rng * 1664525u + 1013904223u; }
};

struct Hooks : EnrollHooks {
  bool storeOk = true;
  std::string id, token;
  int rejected = 0;
  std::vector<uint16_t> errors;
  std::vector<std::string> lines;
  bool storeCredentials(Str deviceId, Str t) override {
    if (!storeOk) return false;
    id = str(deviceId);
    token = str(t);
    return true;
  }
  void storeRejected() override { rejected++; }
  void onHubError(uint16_t code, bool, Str) override { errors.push_back(code); }
  void log(const char* line) override { lines.push_back(line); }
};

const uint8_t kKey[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

struct Rig {
  Net net;
  ManualClock clock;
  Hooks hooks;
  EnrollConfig cfg = makeConfig();
  EnrollClient client{cfg, net, clock, hooks};
  static EnrollConfig makeConfig() {
    EnrollConfig c;
    c.hardwareId = "esp32-a4cf12345678";
    c.enrollKey = kKey;
    c.fleetSecret = "";
    c.model = "esp32";
    c.firmwareVersion = "0.2.0";
    return c;
  }
  void status(enroll::Status st, const char* id = "", const char* token = "", const char* message = "") {
    enroll::StatusMsg m;
    m.status = st;
    m.deviceId = Str::of(id);
    m.token = Str::of(token);
    m.message = Str::of(message);
    uint8_t buf[512];
    size_t len = 0;
    TEST_ASSERT_TRUE(enroll::encode(m, buf, sizeof buf, &len) == Err::Ok);
    client.onTransportMessage(buf, len);
  }
  void error(uint16_t code, bool fatal) {
    ErrorMsg e;
    e.code = code;
    e.fatal = fatal;
    e.message = Str::of("refused");
    uint8_t buf[512];
    size_t len = 0;
    TEST_ASSERT_TRUE(encode(e, buf, sizeof buf, &len) == Err::Ok);
    client.onTransportMessage(buf, len);
  }
  /** Lets the backoff run out and the next attempt open. */
  void waitForAttempt() {
    uint64_t wait = client.backoffRemainingMs();
    clock.t += wait;
    client.poll();
  }
};

void test_pending_then_approved_stores_confirms_and_ends_enrolled() {
  Rig r;
  TEST_ASSERT_TRUE(r.client.state() == EnrollState::Idle);
  r.client.setNetworkUp(true);
  TEST_ASSERT_TRUE(r.client.state() == EnrollState::Connecting);
  TEST_ASSERT_EQUAL_INT(1, r.net.opens);
  r.client.onTransportOpen();
  TEST_ASSERT_TRUE(r.client.state() == EnrollState::AwaitStatus);
  TEST_ASSERT_EQUAL_INT(1, r.net.sent.size());
  const enroll::Request& q = r.net.sent[0].request;
  TEST_ASSERT_EQUAL_INT(enroll::kTypeEnroll, r.net.sent[0].type);
  TEST_ASSERT_EQUAL_STRING("esp32-a4cf12345678", str(q.hardwareId).c_str());
  TEST_ASSERT_EQUAL_HEX8_ARRAY(kKey, q.enrollKey, 16);
  TEST_ASSERT_EQUAL_STRING("", str(q.fleetSecret).c_str());
  TEST_ASSERT_EQUAL_STRING("esp32", str(q.model).c_str());
  TEST_ASSERT_EQUAL_STRING("0.2.0", str(q.firmwareVersion).c_str());
  r.status(enroll::Status::Pending, "", "", "waiting for approval");
  TEST_ASSERT_TRUE(r.client.state() == EnrollState::Pending);
  // Pending waits on the open socket for as long as it takes: no timeout, no new request.
  r.clock.t += 3600 * 1000;
  r.client.poll();
  TEST_ASSERT_TRUE(r.client.state() == EnrollState::Pending);
  TEST_ASSERT_EQUAL_INT(1, r.net.sent.size());
  TEST_ASSERT_EQUAL_INT(0, r.net.closes);
  r.status(enroll::Status::Approved, "greenhouse-1", "esp32hub_tok123", "approved");
  TEST_ASSERT_EQUAL_STRING("greenhouse-1", r.hooks.id.c_str());
  TEST_ASSERT_EQUAL_STRING("esp32hub_tok123", r.hooks.token.c_str());
  TEST_ASSERT_TRUE(r.client.state() == EnrollState::Confirming);
  TEST_ASSERT_EQUAL_INT(2, r.net.sent.size());
  TEST_ASSERT_EQUAL_INT(enroll::kTypeConfirm, r.net.sent[1].type);
  r.client.onTransportClosed();  // the hub's close 1000
  TEST_ASSERT_TRUE(r.client.state() == EnrollState::Enrolled);
  TEST_ASSERT_TRUE(r.client.done());
  // Nothing moves it any more.
  r.client.setNetworkUp(false);
  r.client.setNetworkUp(true);
  TEST_ASSERT_TRUE(r.client.state() == EnrollState::Enrolled);
  TEST_ASSERT_EQUAL_INT(1, r.net.opens);
  for (const std::string& line : r.hooks.lines) TEST_ASSERT_TRUE_MESSAGE(line.find("tok123") == std::string::npos, "token in the log");
}

void test_the_board_closes_itself_when_the_hub_does_not_after_confirm() {
  Rig r;
  r.client.setNetworkUp(true);
  r.client.onTransportOpen();
  r.status(enroll::Status::Approved, "board-1", "esp32hub_tok", "");
  r.clock.t += 4999;
  r.client.poll();
  TEST_ASSERT_TRUE(r.client.state() == EnrollState::Confirming);
  r.clock.t += 1;
  r.client.poll();
  TEST_ASSERT_TRUE(r.client.state() == EnrollState::Enrolled);
  TEST_ASSERT_EQUAL_INT(1, r.net.closes);
}

void test_credentials_that_cannot_be_stored_are_not_confirmed() {
  Rig r;
  r.hooks.storeOk = false;
  r.client.setNetworkUp(true);
  r.client.onTransportOpen();
  r.status(enroll::Status::Approved, "board-1", "esp32hub_tok", "");
  TEST_ASSERT_EQUAL_INT(1, r.net.sent.size());  // ENROLL only, no CONFIRM
  TEST_ASSERT_EQUAL_INT(1, r.net.closes);
  TEST_ASSERT_TRUE(r.client.state() == EnrollState::Backoff);
  // The next attempt asks again (the hub rotates and hands a new token over [PROTO-8.3.5]).
  r.hooks.storeOk = true;
  r.waitForAttempt();
  TEST_ASSERT_EQUAL_INT(2, r.net.opens);
  r.client.onTransportOpen();
  r.status(enroll::Status::Approved, "board-1", "esp32hub_tok2", "");
  TEST_ASSERT_EQUAL_STRING("esp32hub_tok2", r.hooks.token.c_str());
  TEST_ASSERT_TRUE(r.client.state() == EnrollState::Confirming);
}

void test_a_rejected_board_stops_until_a_factory_reset() {
  Rig r;
  r.client.setNetworkUp(true);
  r.client.onTransportOpen();
  r.status(enroll::Status::Pending);
  r.status(enroll::Status::Rejected, "", "", "rejected by an operator");
  TEST_ASSERT_TRUE(r.client.state() == EnrollState::Rejected);
  TEST_ASSERT_EQUAL_INT(1, r.hooks.rejected);
  TEST_ASSERT_EQUAL_INT(1, r.net.closes);
  r.error(enroll::wire::kRejected, true);  // what the hub sends after the status: ignored now
  r.client.onTransportClosed();
  r.clock.t += 24ull * 3600 * 1000;
  r.client.poll();
  r.client.setNetworkUp(false);
  r.client.setNetworkUp(true);
  TEST_ASSERT_TRUE(r.client.state() == EnrollState::Rejected);
  TEST_ASSERT_EQUAL_INT(1, r.net.opens);
  // The ERROR ENROLL_REJECTED alone (a later request of a rejected board) rejects too.
  Rig s;
  s.client.setNetworkUp(true);
  s.client.onTransportOpen();
  s.error(enroll::wire::kRejected, true);
  TEST_ASSERT_TRUE(s.client.state() == EnrollState::Rejected);
  TEST_ASSERT_EQUAL_INT(1, s.hooks.rejected);
}

void test_refusals_back_off_a_wrong_secret_at_the_slowest_pace() {
  Rig r;
  r.client.setNetworkUp(true);
  r.client.onTransportOpen();
  r.error(enroll::wire::kSecretInvalid, true);
  TEST_ASSERT_TRUE(r.client.state() == EnrollState::Backoff);
  TEST_ASSERT_EQUAL_INT(1, r.hooks.errors.size());
  TEST_ASSERT_EQUAL_UINT(800, r.hooks.errors[0]);
  TEST_ASSERT_TRUE(r.client.backoffRemainingMs() >= 60000);
  TEST_ASSERT_EQUAL_INT(0, r.hooks.rejected);
  // Pending list full: non-fatal, the hub's close 1013 follows; a normal backoff.
  Rig p;
  p.client.setNetworkUp(true);
  p.client.onTransportOpen();
  p.error(enroll::wire::kPendingFull, false);
  TEST_ASSERT_TRUE(p.client.state() == EnrollState::AwaitStatus);
  p.client.onTransportClosed();
  TEST_ASSERT_TRUE(p.client.state() == EnrollState::Backoff);
  TEST_ASSERT_TRUE(p.client.backoffRemainingMs() <= 1200);
}

void test_drops_reconnect_with_growing_backoff_and_ask_again() {
  Rig r;
  r.client.setNetworkUp(true);
  uint64_t previous = 0;
  for (int i = 0; i < 5; i++) {  // the hub is unreachable: each attempt fails
    r.client.onTransportClosed();
    TEST_ASSERT_TRUE(r.client.state() == EnrollState::Backoff);
    uint64_t wait = r.client.backoffRemainingMs();
    uint64_t nominal = 1000ull << i;
    TEST_ASSERT_TRUE(wait >= nominal * 8 / 10 && wait <= nominal * 12 / 10);
    TEST_ASSERT_TRUE(wait > previous);
    previous = wait;
    r.clock.t += wait - 1;
    r.client.poll();
    TEST_ASSERT_TRUE(r.client.state() == EnrollState::Backoff);
    r.clock.t += 1;
    r.client.poll();
    TEST_ASSERT_TRUE(r.client.state() == EnrollState::Connecting);
  }
  TEST_ASSERT_EQUAL_INT(6, r.net.opens);
  // Connected and pending, then the socket drops: back off from the base delay, and ENROLL again.
  r.client.onTransportOpen();
  r.status(enroll::Status::Pending);
  r.client.onTransportClosed();
  TEST_ASSERT_TRUE(r.client.backoffRemainingMs() <= 1200);
  r.waitForAttempt();
  r.client.onTransportOpen();
  TEST_ASSERT_EQUAL_INT(2, r.net.sent.size());
  TEST_ASSERT_EQUAL_INT(enroll::kTypeEnroll, r.net.sent[1].type);
}

void test_no_status_malformed_frames_and_lost_network() {
  Rig r;
  r.client.setNetworkUp(true);
  r.client.onTransportOpen();
  r.clock.t += 15000;
  r.client.poll();
  TEST_ASSERT_TRUE(r.client.state() == EnrollState::Backoff);
  TEST_ASSERT_EQUAL_INT(1, r.net.closes);
  r.waitForAttempt();
  r.client.onTransportOpen();
  uint8_t junk[12] = {'E', 'S', 1, 0x21, 0, 0, 0, 0, 0, 0, 0, 0};  // bad CRC
  r.client.onTransportMessage(junk, sizeof junk);
  TEST_ASSERT_TRUE(r.client.state() == EnrollState::Backoff);
  TEST_ASSERT_EQUAL_INT(2, r.net.closes);
  r.client.setNetworkUp(false);
  TEST_ASSERT_TRUE(r.client.state() == EnrollState::Idle);
  r.clock.t += 120000;
  r.client.poll();
  TEST_ASSERT_EQUAL_INT(2, r.net.opens);  // no attempt without a network
  r.client.setNetworkUp(true);
  TEST_ASSERT_EQUAL_INT(3, r.net.opens);
  // A send that fails right after the open is a failed attempt, not a wait for a status.
  r.net.failSends = true;
  r.client.onTransportOpen();
  TEST_ASSERT_TRUE(r.client.state() == EnrollState::Backoff);
}

void test_a_fleet_secret_goes_in_the_request() {
  Rig r;
  r.cfg.fleetSecret = "fleet-secret-0123456789";
  EnrollClient c(r.cfg, r.net, r.clock, r.hooks);
  c.setNetworkUp(true);
  c.onTransportOpen();
  TEST_ASSERT_EQUAL_STRING("fleet-secret-0123456789", str(r.net.sent[0].request.fleetSecret).c_str());
  for (const std::string& line : r.hooks.lines) TEST_ASSERT_TRUE(line.find("fleet-secret") == std::string::npos);
}

}  // namespace

void run_enroll_tests() {
  RUN_TEST(test_valid_enroll_vectors_decode_and_reencode);
  RUN_TEST(test_malformed_enroll_vectors_fail_with_the_hubs_code);
  RUN_TEST(test_encoders_refuse_what_the_decoder_would_refuse);
  RUN_TEST(test_pending_then_approved_stores_confirms_and_ends_enrolled);
  RUN_TEST(test_the_board_closes_itself_when_the_hub_does_not_after_confirm);
  RUN_TEST(test_credentials_that_cannot_be_stored_are_not_confirmed);
  RUN_TEST(test_a_rejected_board_stops_until_a_factory_reset);
  RUN_TEST(test_refusals_back_off_a_wrong_secret_at_the_slowest_pace);
  RUN_TEST(test_drops_reconnect_with_growing_backoff_and_ask_again);
  RUN_TEST(test_no_status_malformed_frames_and_lost_network);
  RUN_TEST(test_a_fleet_secret_goes_in_the_request);
}
