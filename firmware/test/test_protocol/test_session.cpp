// The session state machine [PROTO-5] against scripted fakes: connect → HELLO → WELCOME → DESCRIPTORS
// → TELEMETRY, ACK frees, replay after reconnect, commands and duplicate ids, backoff, downlink errors.
#include <unity.h>

#include <algorithm>
#include <string>
#include <vector>

#include "hub_protocol.h"
#include "suites.h"

using namespace esp32hub;

namespace {

struct SentFrame {
  std::vector<uint8_t> bytes;
  Decoded msg;
};

struct FakeTransport : Transport {
  int opens = 0;
  int closes = 0;
  bool failSends = false;
  std::vector<SentFrame> sent;
  void open() override { opens++; }
  void close() override { closes++; }
  bool send(const uint8_t* frame, size_t len) override {
    if (failSends) return false;
    sent.push_back(SentFrame{std::vector<uint8_t>(frame, frame + len), Decoded()});
    SentFrame& f = sent.back();
    TEST_ASSERT_TRUE_MESSAGE(decode(f.bytes.data(), f.bytes.size(), f.msg) == Err::Ok, "the device sent a bad frame");
    return true;
  }
  /** Sent frames of one type, in order. */
  std::vector<const SentFrame*> of(MsgType t) const {
    std::vector<const SentFrame*> out;
    for (const SentFrame& f : sent)
      if (f.msg.type == t) out.push_back(&f);
    return out;
  }
  std::vector<uint32_t> telemetrySeqs() const {
    std::vector<uint32_t> out;
    for (const SentFrame* f : of(MsgType::Telemetry)) out.push_back(f->msg.telemetry.seq);
    return out;
  }
};

struct FakeClock : Clock {
  uint64_t uptime = 1000;
  bool synced = false;
  uint64_t unix = 0;  // at uptime `setAt`
  uint64_t setAt = 0;
  uint32_t rng = 42;
  /** Milliseconds that pass at every read, like a real clock while the CPU is busy elsewhere. */
  uint64_t tickPerRead = 0;
  uint64_t uptimeMs() override {
    uptime += tickPerRead;
    return uptime;
  }
  bool unixMs(uint64_t& out) override {
    if (!synced) return false;
    out = unix + (uptime - setAt);
    return true;
  }
  void setUnixMs(uint64_t ms) override {
    synced = true;
    unix = ms;
    setAt = uptime;
  }
  uint32_t random32() override {
    rng = rng * 1664525u + 1013904223u;
    return rng;
  }
};

struct FakeHooks : DeviceHooks {
  std::vector<uint32_t> intervals;
  std::vector<uint32_t> identifies;
  int reboots = 0;
  std::vector<LinkState> states;
  std::vector<uint16_t> hubErrors;
  Session* session = nullptr;
  bool changeDescriptorsOnInterval = false;
  CommandStatus applySampleInterval(uint32_t ms) override {
    intervals.push_back(ms);
    if (changeDescriptorsOnInterval && session != nullptr) {
      ChannelDescriptor d[4];
      uint8_t n = boardDescriptors(0x70, ms, d, 4);  // rssi, heap, uptime: periods follow the interval
      session->setDescriptors(d, n);
    }
    return CommandStatus::Ok;
  }
  CommandStatus identify(uint32_t ms) override {
    identifies.push_back(ms);
    return CommandStatus::Ok;
  }
  void reboot() override { reboots++; }
  std::vector<uint32_t> deferred;  // commands named "long_job": answered later with completeCommand
  CommandStatus onCommand(const Command& c, char* message, size_t cap) override {
    if (!c.name.equals("long_job")) return DeviceHooks::onCommand(c, message, cap);
    deferred.push_back(c.commandId);
    return kCommandDeferred;
  }
  void onLinkState(LinkState s) override { states.push_back(s); }
  void onHubError(uint16_t code, bool, Str) override { hubErrors.push_back(code); }
};

/** A device wired to fakes, plus the hub side's frames. */
struct Rig {
  OutboxStorage<16, 512> mem;
  Outbox outbox;
  FakeTransport transport;
  FakeClock clock;
  FakeHooks hooks;
  SessionConfig config;
  Session* session = nullptr;
  ChannelDescriptor channels[8];
  uint8_t channelCount = 0;
  uint8_t buf[kMaxFrameBytes];

  explicit Rig(uint16_t slots = 16) {
    outbox.format(mem.bytes, sizeof mem.bytes, slots, 512);
    config.deviceId = "dev-test";
    config.firmwareVersion = "1.0.0-test";
    config.resetReason = ResetReason::PowerOn;
    channelCount = boardDescriptors(0x70, 10000, channels, 8);
    session = new Session(config, transport, clock, hooks, outbox);
    hooks.session = session;
    TEST_ASSERT_TRUE(session->begin(channels, channelCount) == Err::Ok);
  }
  ~Rig() { delete session; }

  void advance(uint64_t ms) {
    clock.uptime += ms;
    session->poll();
  }
  /** Network up, poll, transport opens: HELLO goes out. */
  void connect() {
    session->setNetworkUp(true);
    session->poll();
    TEST_ASSERT_TRUE(session->state() == LinkState::Connecting);
    session->onTransportOpen();
    TEST_ASSERT_TRUE(session->state() == LinkState::AwaitWelcome);
  }
  void deliver(size_t len) { session->onTransportMessage(buf, len); }
  void welcome(bool descriptorsKnown, bool hasLastAck = false, uint32_t ackBoot = 0, uint32_t ackSeq = 0,
               uint32_t intervalMs = 0) {
    Welcome w;
    w.serverTimeMs = 1767225600000ull;
    w.descriptorsKnown = descriptorsKnown;
    w.hasLastAck = hasLastAck;
    w.lastAckBootId = ackBoot;
    w.lastAckSeq = ackSeq;
    w.sampleIntervalMs = intervalMs;
    w.heartbeatIntervalSec = 30;
    w.maxFrameBytes = 4096;
    size_t len = 0;
    TEST_ASSERT_TRUE(encode(w, buf, sizeof buf, &len) == Err::Ok);
    deliver(len);
  }
  void ack(uint32_t boot, uint32_t seq) {
    Ack a;
    a.bootId = boot;
    a.seq = seq;
    size_t len = 0;
    encode(a, buf, sizeof buf, &len);
    deliver(len);
  }
  void command(uint32_t id, const char* name, const char* argKey = nullptr, int64_t arg = 0,
               ValueType argType = ValueType::U32) {
    Command c;
    c.commandId = id;
    c.name = Str::of(name);
    if (argKey != nullptr) {
      c.argCount = 1;
      c.args[0].key = Str::of(argKey);
      c.args[0].value = Value::integer(argType, arg);
    }
    size_t len = 0;
    TEST_ASSERT_TRUE(encode(c, buf, sizeof buf, &len) == Err::Ok);
    deliver(len);
  }
  void hubError(uint16_t code, bool fatal) {
    ErrorMsg e;
    e.code = code;
    e.fatal = fatal;
    e.message = Str::of("x");
    size_t len = 0;
    encode(e, buf, sizeof buf, &len);
    deliver(len);
  }
  /** One sampling round: uptime and heap, queued as one frame. */
  void sample(uint32_t heap) {
    session->record(channel::kUptimeS, Value::integer(ValueType::U32, static_cast<int64_t>(clock.uptime / 1000)));
    session->record(channel::kHeapFree, Value::integer(ValueType::U32, heap));
    session->flush();
  }
};

void test_connect_hello_welcome_descriptors_then_telemetry() {
  Rig rig;
  rig.sample(200000);  // collected before the link is up: waits in the outbox
  rig.sample(200004);
  TEST_ASSERT_EQUAL_UINT(2, rig.outbox.size());
  rig.connect();
  auto hello = rig.transport.of(MsgType::Hello);
  TEST_ASSERT_EQUAL_UINT(1, hello.size());
  const Hello& h = hello[0]->msg.hello;
  TEST_ASSERT_TRUE(h.deviceId.equals("dev-test") && h.firmwareVersion.equals("1.0.0-test"));
  TEST_ASSERT_EQUAL_UINT32(rig.session->bootId(), h.bootId);
  TEST_ASSERT_TRUE(h.bootId != 0);
  TEST_ASSERT_EQUAL_UINT(1, h.resetReason);
  TEST_ASSERT_FALSE(h.timeSynced);
  TEST_ASSERT_EQUAL_HEX32(rig.session->descriptorHash(), h.descriptorHash);
  TEST_ASSERT_EQUAL_UINT32(2, h.bufferedFrames);
  TEST_ASSERT_EQUAL_UINT32(0, h.droppedFrames);
  TEST_ASSERT_EQUAL_UINT(0, rig.transport.of(MsgType::Telemetry).size());  // nothing before WELCOME

  rig.welcome(false);
  TEST_ASSERT_TRUE(rig.session->state() == LinkState::Ready);
  // Order on the wire: HELLO, DESCRIPTORS, then the queued frames oldest first.
  TEST_ASSERT_TRUE(rig.transport.sent[1].msg.type == MsgType::Descriptors);
  TEST_ASSERT_EQUAL_UINT(3, rig.transport.sent[1].msg.descriptors.count());
  auto seqs = rig.transport.telemetrySeqs();
  TEST_ASSERT_EQUAL_UINT(2, seqs.size());
  TEST_ASSERT_EQUAL_UINT32(1, seqs[0]);
  TEST_ASSERT_EQUAL_UINT32(2, seqs[1]);
  // Frames built before WELCOME were unsynced (uptime base); the hub's time then set the clock.
  TEST_ASSERT_TRUE(rig.transport.of(MsgType::Telemetry)[0]->msg.telemetry.unsynced);
  TEST_ASSERT_TRUE(rig.clock.synced);
  rig.advance(10000);
  rig.sample(199000);
  const TelemetryView& t3 = rig.transport.of(MsgType::Telemetry).back()->msg.telemetry;
  TEST_ASSERT_EQUAL_UINT32(3, t3.seq);
  TEST_ASSERT_FALSE(t3.unsynced);
  TEST_ASSERT_EQUAL_UINT64(1767225600000ull + 10000, t3.baseTime);
  TEST_ASSERT_EQUAL_HEX32(rig.session->descriptorHash(), t3.descriptorHash);
}

void test_descriptors_known_are_not_sent_again() {
  Rig rig;
  rig.connect();
  rig.welcome(true);
  TEST_ASSERT_EQUAL_UINT(0, rig.transport.of(MsgType::Descriptors).size());
}

void test_ack_frees_the_outbox_cumulatively() {
  Rig rig;
  rig.connect();
  rig.welcome(true);
  for (int i = 0; i < 5; i++) rig.sample(1000);
  TEST_ASSERT_EQUAL_UINT(5, rig.outbox.size());
  rig.ack(rig.session->bootId(), 3);
  TEST_ASSERT_EQUAL_UINT(2, rig.outbox.size());
  rig.ack(rig.session->bootId(), 5);
  TEST_ASSERT_TRUE(rig.outbox.empty());
  TEST_ASSERT_EQUAL_UINT32(5, rig.session->stats().framesAcked);
}

void test_in_flight_window_is_bounded() {
  Rig rig;  // maxInFlight 8 (the default)
  for (int i = 0; i < 8; i++) rig.sample(1000);
  rig.connect();
  rig.welcome(true);
  rig.sample(1000);  // a 9th while 8 are in flight: waits in the outbox
  TEST_ASSERT_EQUAL_UINT(8, rig.transport.of(MsgType::Telemetry).size());
  rig.ack(rig.session->bootId(), 4);  // room for more
  auto seqs = rig.transport.telemetrySeqs();
  TEST_ASSERT_EQUAL_UINT(9, seqs.size());
  TEST_ASSERT_EQUAL_UINT32(9, seqs.back());
}

void test_disconnect_then_replay_of_unacknowledged_frames_in_order() {
  Rig rig;
  rig.connect();
  rig.welcome(true);
  for (int i = 0; i < 4; i++) rig.sample(1000);
  rig.ack(rig.session->bootId(), 2);
  rig.session->onTransportClosed();  // the link drops with seq 3 and 4 unacknowledged
  TEST_ASSERT_TRUE(rig.session->state() == LinkState::Backoff);
  rig.sample(1000);  // seq 5 while offline
  uint64_t wait = rig.session->backoffRemainingMs();
  TEST_ASSERT_TRUE(wait >= 800 && wait <= 1200);  // first retry: 1 s ± 20 %
  rig.advance(wait - 1);
  TEST_ASSERT_EQUAL_INT(1, rig.transport.opens);
  rig.advance(1);
  TEST_ASSERT_EQUAL_INT(2, rig.transport.opens);
  rig.transport.sent.clear();
  rig.session->onTransportOpen();
  TEST_ASSERT_EQUAL_UINT32(3, rig.transport.of(MsgType::Hello)[0]->msg.hello.bufferedFrames);
  // The hub stored seq 3 but its ACK was lost: WELCOME's last ack says so.
  rig.welcome(true, true, rig.session->bootId(), 3);
  auto seqs = rig.transport.telemetrySeqs();
  TEST_ASSERT_EQUAL_UINT(2, seqs.size());
  TEST_ASSERT_EQUAL_UINT32(4, seqs[0]);
  TEST_ASSERT_EQUAL_UINT32(5, seqs[1]);
  // Replayed frames are the stored bytes: same (boot, seq), same timestamps.
  TEST_ASSERT_EQUAL_UINT32(rig.session->bootId(), rig.transport.of(MsgType::Telemetry)[0]->msg.telemetry.bootId);
}

void test_backoff_grows_and_resets_after_a_session() {
  Rig rig;
  rig.connect();
  uint64_t waits[5];
  for (int i = 0; i < 5; i++) {
    rig.session->onTransportClosed();  // handshake refused, e.g. HTTP 401 or no route
    waits[i] = rig.session->backoffRemainingMs();
    rig.advance(waits[i]);
    TEST_ASSERT_TRUE(rig.session->state() == LinkState::Connecting);
  }
  const uint64_t nominal[] = {1000, 2000, 4000, 8000, 16000};
  for (int i = 0; i < 5; i++) {
    TEST_ASSERT_GREATER_OR_EQUAL_UINT32(nominal[i] * 8 / 10, waits[i]);
    TEST_ASSERT_LESS_OR_EQUAL_UINT32(nominal[i] * 12 / 10, waits[i]);
  }
  rig.session->onTransportOpen();
  rig.welcome(true);
  rig.session->onTransportClosed();
  TEST_ASSERT_LESS_OR_EQUAL_UINT32(1200, rig.session->backoffRemainingMs());
}

void test_timeouts_give_up_and_back_off() {
  Rig rig;
  rig.session->setNetworkUp(true);
  rig.session->poll();
  rig.advance(rig.config.connectTimeoutMs);  // never opened
  TEST_ASSERT_TRUE(rig.session->state() == LinkState::Backoff);
  TEST_ASSERT_EQUAL_INT(1, rig.transport.closes);
  rig.advance(rig.session->backoffRemainingMs());
  rig.session->onTransportOpen();
  rig.advance(rig.config.welcomeTimeoutMs);  // no WELCOME [PROTO-5.1]
  TEST_ASSERT_TRUE(rig.session->state() == LinkState::Backoff);
  TEST_ASSERT_EQUAL_INT(2, rig.transport.closes);
}

void test_network_down_goes_offline_without_backoff() {
  Rig rig;
  rig.connect();
  rig.welcome(true);
  rig.session->setNetworkUp(false);
  TEST_ASSERT_TRUE(rig.session->state() == LinkState::Offline);
  rig.advance(120000);
  TEST_ASSERT_EQUAL_INT(1, rig.transport.opens);
  rig.session->setNetworkUp(true);
  rig.session->poll();
  TEST_ASSERT_EQUAL_INT(2, rig.transport.opens);
}

void test_commands_accepted_result_and_duplicates() {
  Rig rig;
  rig.connect();
  rig.welcome(true);
  rig.command(41, "set_sample_interval", "interval_ms", 5000);
  TEST_ASSERT_EQUAL_UINT(1, rig.hooks.intervals.size());
  TEST_ASSERT_EQUAL_UINT32(5000, rig.hooks.intervals[0]);
  auto accepted = rig.transport.of(MsgType::CommandAccepted);
  auto results = rig.transport.of(MsgType::CommandResult);
  TEST_ASSERT_EQUAL_UINT(1, accepted.size());
  TEST_ASSERT_EQUAL_UINT(1, results.size());
  TEST_ASSERT_EQUAL_UINT32(41, accepted[0]->msg.commandAccepted.commandId);
  TEST_ASSERT_EQUAL_UINT(0, results[0]->msg.commandResult.status);
  TEST_ASSERT_TRUE(accepted[0] < results[0]);  // ACCEPTED before RESULT
  TEST_ASSERT_TRUE(results[0]->msg.commandResult.message.equals("sample interval 5000 ms"));

  // The same id again (the hub retried after a lost RESULT): not executed again, RESULT answered again.
  rig.command(41, "set_sample_interval", "interval_ms", 5000);
  TEST_ASSERT_EQUAL_UINT(1, rig.hooks.intervals.size());
  TEST_ASSERT_EQUAL_UINT(1, rig.transport.of(MsgType::CommandAccepted).size());
  TEST_ASSERT_EQUAL_UINT(2, rig.transport.of(MsgType::CommandResult).size());
  TEST_ASSERT_EQUAL_UINT32(1, rig.session->stats().duplicateCommands);

  rig.command(42, "set_sample_interval", "interval_ms", 50);  // below 100 ms
  TEST_ASSERT_EQUAL_UINT(3, rig.transport.of(MsgType::CommandResult).back()->msg.commandResult.status);
  rig.command(43, "set_sample_interval", "interval_ms", 5000, ValueType::Bool);  // wrong type
  TEST_ASSERT_EQUAL_UINT(3, rig.transport.of(MsgType::CommandResult).back()->msg.commandResult.status);
  rig.command(44, "identify");
  TEST_ASSERT_EQUAL_UINT32(5000, rig.hooks.identifies.back());  // default duration
  rig.command(45, "identify", "duration_ms", 1500);
  TEST_ASSERT_EQUAL_UINT32(1500, rig.hooks.identifies.back());
  rig.command(46, "self_destruct");
  TEST_ASSERT_EQUAL_UINT(2, rig.transport.of(MsgType::CommandResult).back()->msg.commandResult.status);
  size_t before = rig.transport.of(MsgType::Descriptors).size();
  rig.command(47, "send_descriptors");
  TEST_ASSERT_EQUAL_UINT(before + 1, rig.transport.of(MsgType::Descriptors).size());
  TEST_ASSERT_EQUAL_UINT(0, rig.transport.of(MsgType::CommandResult).back()->msg.commandResult.status);
  TEST_ASSERT_TRUE(rig.transport.sent.back().msg.type == MsgType::CommandResult);  // DESCRIPTORS, then RESULT
}

void test_deferred_command_result_follows_later_and_answers_duplicates() {
  Rig rig;
  rig.connect();
  rig.welcome(true);
  rig.command(51, "long_job");
  TEST_ASSERT_EQUAL_UINT(1, rig.hooks.deferred.size());
  TEST_ASSERT_EQUAL_UINT(1, rig.transport.of(MsgType::CommandAccepted).size());
  TEST_ASSERT_EQUAL_UINT(0, rig.transport.of(MsgType::CommandResult).size());  // not yet
  rig.command(51, "long_job");  // a duplicate while it runs: not run again, no RESULT yet
  TEST_ASSERT_EQUAL_UINT(1, rig.hooks.deferred.size());
  TEST_ASSERT_EQUAL_UINT(0, rig.transport.of(MsgType::CommandResult).size());
  TEST_ASSERT_TRUE(rig.session->completeCommand(51, CommandStatus::Ok, "rebooting", true));
  auto results = rig.transport.of(MsgType::CommandResult);
  TEST_ASSERT_EQUAL_UINT(1, results.size());
  TEST_ASSERT_EQUAL_UINT32(51, results[0]->msg.commandResult.commandId);
  TEST_ASSERT_TRUE(results[0]->msg.commandResult.message.equals("rebooting"));
  rig.command(51, "long_job");  // the hub retries: the RESULT again
  TEST_ASSERT_EQUAL_UINT(2, rig.transport.of(MsgType::CommandResult).size());
  TEST_ASSERT_FALSE(rig.session->completeCommand(51, CommandStatus::Failed, "again", false));  // done already
  TEST_ASSERT_EQUAL_UINT(2, rig.transport.of(MsgType::CommandResult).size());
  rig.advance(rig.config.rebootDelayMs - 1);
  TEST_ASSERT_EQUAL_INT(0, rig.hooks.reboots);
  rig.advance(1);
  TEST_ASSERT_EQUAL_INT(1, rig.hooks.reboots);
}

void test_reboot_answers_first_then_restarts() {
  Rig rig;
  rig.connect();
  rig.welcome(true);
  rig.sample(1000);
  rig.session->record(channel::kHeapFree, Value::integer(ValueType::U32, 5));  // collected, not yet queued
  rig.command(7, "reboot");
  TEST_ASSERT_EQUAL_INT(0, rig.hooks.reboots);
  TEST_ASSERT_TRUE(rig.transport.sent.back().msg.type == MsgType::CommandResult);
  TEST_ASSERT_EQUAL_UINT(2, rig.outbox.size());  // the pending sample was queued first
  rig.advance(rig.config.rebootDelayMs - 1);
  TEST_ASSERT_EQUAL_INT(0, rig.hooks.reboots);
  rig.advance(1);
  TEST_ASSERT_EQUAL_INT(1, rig.hooks.reboots);
}

void test_interval_change_announces_new_descriptors_before_new_frames() {
  Rig rig;
  rig.hooks.changeDescriptorsOnInterval = true;
  rig.connect();
  rig.welcome(true);
  uint32_t oldHash = rig.session->descriptorHash();
  rig.session->record(channel::kHeapFree, Value::integer(ValueType::U32, 5));  // under the old set
  rig.command(9, "set_sample_interval", "interval_ms", 2000);
  uint32_t newHash = rig.session->descriptorHash();
  TEST_ASSERT_TRUE(oldHash != newHash);
  auto tel = rig.transport.of(MsgType::Telemetry);
  TEST_ASSERT_EQUAL_UINT(1, tel.size());
  TEST_ASSERT_EQUAL_HEX32(oldHash, tel[0]->msg.telemetry.descriptorHash);
  auto desc = rig.transport.of(MsgType::Descriptors);
  TEST_ASSERT_EQUAL_UINT(1, desc.size());
  TEST_ASSERT_EQUAL_UINT32(20000, desc[0]->msg.descriptors.at(2).periodMs);  // uptime: 10 ticks × 2 s
  rig.sample(6);
  TEST_ASSERT_EQUAL_HEX32(newHash, rig.transport.of(MsgType::Telemetry).back()->msg.telemetry.descriptorHash);
}

void test_unknown_descriptors_resends_and_replays() {
  Rig rig;
  rig.connect();
  rig.welcome(true);  // the hub claimed to know them...
  rig.sample(1);
  rig.sample(2);
  rig.transport.sent.clear();
  rig.hubError(wire_error::kUnknownDescriptors, false);  // ...but refused seq 1 [PROTO-5.2]
  TEST_ASSERT_TRUE(rig.session->state() == LinkState::Ready);
  TEST_ASSERT_TRUE(rig.transport.sent[0].msg.type == MsgType::Descriptors);
  auto seqs = rig.transport.telemetrySeqs();
  TEST_ASSERT_EQUAL_UINT(2, seqs.size());
  TEST_ASSERT_EQUAL_UINT32(1, seqs[0]);
}

void test_storage_full_pauses_then_replays() {
  Rig rig;
  rig.connect();
  rig.welcome(true);
  rig.sample(1);
  rig.transport.sent.clear();
  rig.hubError(wire_error::kStorageFull, false);  // [PROTO-5.5]
  rig.sample(2);
  TEST_ASSERT_EQUAL_UINT(0, rig.transport.of(MsgType::Telemetry).size());
  rig.advance(rig.config.storageFullRetryMs);
  auto seqs = rig.transport.telemetrySeqs();
  TEST_ASSERT_EQUAL_UINT(2, seqs.size());
  TEST_ASSERT_EQUAL_UINT32(1, seqs[0]);
}

void test_missing_ack_triggers_a_resend() {
  Rig rig;
  rig.connect();
  rig.welcome(true);
  rig.sample(1);
  rig.advance(rig.config.ackTimeoutMs - 1);
  TEST_ASSERT_EQUAL_UINT(1, rig.transport.of(MsgType::Telemetry).size());
  rig.advance(1);
  TEST_ASSERT_EQUAL_UINT(2, rig.transport.of(MsgType::Telemetry).size());
}

void test_bad_downlink_frames_are_answered_and_closed() {
  Rig rig;
  rig.connect();
  rig.welcome(true);
  uint8_t junk[12] = {0x45, 0x53, 0x01, 0x05, 0, 0, 0, 0, 0, 0, 0, 0};  // ACK with a bad CRC
  rig.session->onTransportMessage(junk, sizeof junk);
  const SentFrame& err = rig.transport.sent.back();
  TEST_ASSERT_TRUE(err.msg.type == MsgType::Error);
  TEST_ASSERT_TRUE(err.msg.error.fatal);
  TEST_ASSERT_EQUAL_UINT(105, err.msg.error.code);  // BAD_CRC
  TEST_ASSERT_EQUAL_INT(1, rig.transport.closes);
  TEST_ASSERT_TRUE(rig.session->state() == LinkState::Backoff);
  TEST_ASSERT_EQUAL_UINT32(1, rig.session->stats().badFrames);

  // A second WELCOME, or a device-to-hub type, is a protocol violation (UNEXPECTED_MESSAGE).
  rig.advance(rig.session->backoffRemainingMs());
  rig.session->onTransportOpen();
  rig.welcome(true);
  rig.welcome(true);
  TEST_ASSERT_EQUAL_UINT(201, rig.transport.sent.back().msg.error.code);
  TEST_ASSERT_TRUE(rig.session->state() == LinkState::Backoff);
}

void test_fatal_hub_error_closes_and_backs_off() {
  Rig rig;
  rig.connect();
  rig.welcome(true);
  rig.hubError(wire_error::kRevoked, true);
  TEST_ASSERT_TRUE(rig.session->state() == LinkState::Backoff);
  TEST_ASSERT_EQUAL_UINT(1, rig.hooks.hubErrors.size());
  TEST_ASSERT_EQUAL_UINT(208, rig.hooks.hubErrors[0]);
}

void test_send_failure_counts_as_a_lost_link() {
  Rig rig;
  rig.connect();
  rig.welcome(true);
  rig.transport.failSends = true;
  rig.sample(1);
  TEST_ASSERT_TRUE(rig.session->state() == LinkState::Backoff);
  TEST_ASSERT_EQUAL_UINT(1, rig.outbox.size());  // kept for the replay
}

void test_dropped_frames_are_reported_in_hello() {
  Rig rig(4);
  for (int i = 0; i < 7; i++) rig.sample(1);
  rig.connect();
  const Hello& h = rig.transport.of(MsgType::Hello)[0]->msg.hello;
  TEST_ASSERT_EQUAL_UINT32(4, h.bufferedFrames);
  TEST_ASSERT_EQUAL_UINT32(3, h.droppedFrames);
  rig.welcome(true);
  auto seqs = rig.transport.telemetrySeqs();
  TEST_ASSERT_EQUAL_UINT32(4, seqs[0]);  // the oldest three went
}

void test_link_states_reported_in_order() {
  Rig rig;
  rig.connect();
  rig.welcome(true);
  rig.session->onTransportClosed();
  const LinkState expected[] = {LinkState::Backoff, LinkState::Connecting, LinkState::AwaitWelcome, LinkState::Ready,
                                LinkState::Backoff};
  TEST_ASSERT_EQUAL_UINT(5, rig.hooks.states.size());
  for (int i = 0; i < 5; i++) TEST_ASSERT_EQUAL_STRING(linkStateName(expected[i]), linkStateName(rig.hooks.states[i]));
}

}  // namespace

// A clock that moves between two reads inside one poll() (a loaded CPU: the process is preempted between
// them). poll() read the time once, then flush() → pump() stamped "last ACK progress" with a LATER
// reading; `t - lastAckProgressAt` wrapped around to ~2^64 ≥ ackTimeoutMs, so the frame just sent was
// taken as unacknowledged for 30 s and sent a second time at once. The firmware end-to-end test saw
// that as a repeated seq in the uplink when another process used the CPUs.
void test_a_clock_that_moves_during_poll_does_not_resend() {
  Rig rig;
  rig.connect();
  rig.welcome(true);
  rig.clock.tickPerRead = 1;
  for (int i = 0; i < 20; i++) {
    rig.session->record(channel::kHeapFree, Value::integer(ValueType::U32, 1000 + i));
    rig.session->poll();  // maxBatchMs 0: the sample is queued and sent from poll()
    rig.session->poll();
    rig.ack(rig.session->bootId(), rig.session->lastSeq());
  }
  auto seqs = rig.transport.telemetrySeqs();
  TEST_ASSERT_EQUAL_UINT(20, seqs.size());
  for (size_t i = 0; i < seqs.size(); i++) TEST_ASSERT_EQUAL_UINT32(i + 1, seqs[i]);
  TEST_ASSERT_EQUAL_UINT32(0, rig.session->stats().replays);
}

// [PROTO-3.1.1] bootIdFor(counter, key): a permutation of the counters, never 0; another key (another
// device, or the same one after its NVS was erased) gives unrelated ids.
void test_boot_ids_never_repeat_and_never_zero() {
  const uint64_t keys[] = {0x0123456789ABCDEFull, 0xFEDCBA9876543210ull};
  std::vector<uint32_t> ids[2];
  for (int k = 0; k < 2; k++) {
    for (uint32_t c = 1; c <= 300000; c++) ids[k].push_back(bootIdFor(c, keys[k]));
    std::vector<uint32_t> sorted = ids[k];
    std::sort(sorted.begin(), sorted.end());
    TEST_ASSERT_TRUE(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
    TEST_ASSERT_TRUE(sorted.front() != 0);
  }
  uint32_t same = 0;
  for (size_t i = 0; i < ids[0].size(); i++) same += ids[0][i] == ids[1][i] ? 1 : 0;
  TEST_ASSERT_TRUE(same < 3);
  // Consecutive boots do not give neighbouring ids (the hub sees unrelated numbers).
  TEST_ASSERT_TRUE(ids[0][1] - ids[0][0] != 1);

  // The session takes the id it is given, and starts its seq where it is told (deep sleep resume).
  Rig rig;
  SessionConfig cfg = rig.config;
  cfg.bootId = bootIdFor(7, keys[0]);
  cfg.firstSeq = 42;
  Session s(cfg, rig.transport, rig.clock, rig.hooks, rig.outbox);
  TEST_ASSERT_TRUE(s.begin(rig.channels, rig.channelCount) == Err::Ok);
  TEST_ASSERT_EQUAL_UINT32(bootIdFor(7, keys[0]), s.bootId());
  s.record(channel::kHeapFree, Value::integer(ValueType::U32, 5));
  s.flush();
  TEST_ASSERT_EQUAL_UINT32(42, s.lastSeq());
}

void run_session_tests() {
  RUN_TEST(test_boot_ids_never_repeat_and_never_zero);
  RUN_TEST(test_a_clock_that_moves_during_poll_does_not_resend);
  RUN_TEST(test_connect_hello_welcome_descriptors_then_telemetry);
  RUN_TEST(test_descriptors_known_are_not_sent_again);
  RUN_TEST(test_ack_frees_the_outbox_cumulatively);
  RUN_TEST(test_in_flight_window_is_bounded);
  RUN_TEST(test_disconnect_then_replay_of_unacknowledged_frames_in_order);
  RUN_TEST(test_backoff_grows_and_resets_after_a_session);
  RUN_TEST(test_timeouts_give_up_and_back_off);
  RUN_TEST(test_network_down_goes_offline_without_backoff);
  RUN_TEST(test_commands_accepted_result_and_duplicates);
  RUN_TEST(test_reboot_answers_first_then_restarts);
  RUN_TEST(test_deferred_command_result_follows_later_and_answers_duplicates);
  RUN_TEST(test_interval_change_announces_new_descriptors_before_new_frames);
  RUN_TEST(test_unknown_descriptors_resends_and_replays);
  RUN_TEST(test_storage_full_pauses_then_replays);
  RUN_TEST(test_missing_ack_triggers_a_resend);
  RUN_TEST(test_bad_downlink_frames_are_answered_and_closed);
  RUN_TEST(test_fatal_hub_error_closes_and_backs_off);
  RUN_TEST(test_send_failure_counts_as_a_lost_link);
  RUN_TEST(test_dropped_frames_are_reported_in_hello);
  RUN_TEST(test_link_states_reported_in_order);
}
