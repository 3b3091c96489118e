#include "hub_session.h"

namespace esp32hub {

const char* linkStateName(LinkState s) {
  switch (s) {
    case LinkState::Offline:
      return "offline";
    case LinkState::Backoff:
      return "backoff";
    case LinkState::Connecting:
      return "connecting";
    case LinkState::AwaitWelcome:
      return "await-welcome";
    case LinkState::Ready:
      return "ready";
  }
  return "?";
}

namespace {

/** Appends `s` to buf[pos..cap-1], always NUL-terminating; returns the new length. */
size_t append(char* buf, size_t cap, size_t pos, const char* s) {
  while (*s != '\0' && pos + 1 < cap) buf[pos++] = *s++;
  buf[pos < cap ? pos : cap - 1] = '\0';
  return pos;
}

/** Appends an unsigned decimal (no printf: newlib-nano builds may lack 64-bit formats). */
size_t appendU64(char* buf, size_t cap, size_t pos, uint64_t v) {
  char digits[21];
  size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0 && pos + 1 < cap) buf[pos++] = digits[--n];
  buf[pos < cap ? pos : cap - 1] = '\0';
  return pos;
}

/** An integer-typed command argument, or false when absent/of another type. */
bool integerArg(const Command& c, const char* key, bool& present, int64_t& out) {
  const CommandArg* a = c.arg(key);
  present = a != nullptr;
  if (a == nullptr) return false;
  if (!isIntegerType(a->value.type)) return false;
  out = a->value.i;
  return true;
}

/**
 * Milliseconds from `since` to `t`, 0 when `since` is later. poll() reads the clock once, but the
 * handlers it calls stamp their own, later readings (flush() → pump() sets lastAckProgressAt_): an
 * unsigned `t - since` would then wrap to ~2^64 and fire every timeout at once.
 */
uint64_t elapsed(uint64_t since, uint64_t t) { return t > since ? t - since : 0; }

constexpr uint32_t kMinSampleIntervalMs = 100;        // [PROTO-3.6]
constexpr uint32_t kMaxSampleIntervalMs = 3600000;    // [PROTO-3.6]
constexpr uint32_t kDefaultIdentifyMs = 5000;         // [PROTO-3.6]
constexpr uint32_t kMaxIdentifyMs = 3600000;

}  // namespace

Session::Session(const SessionConfig& config, Transport& transport, Clock& clock, DeviceHooks& hooks, FrameQueue& outbox)
    : config_(config),
      transport_(transport),
      clock_(clock),
      hooks_(hooks),
      outbox_(outbox),
      backoff_(config.backoffBaseMs, config.backoffMaxMs, config.backoffJitterPercent) {}

Err Session::begin(const ChannelDescriptor* channels, uint8_t count) {
  bootId_ = config_.bootId;
  while (bootId_ == 0) bootId_ = clock_.random32();  // never 0 [PROTO-3.1]
  nextSeq_ = config_.firstSeq == 0 ? 1 : config_.firstSeq;
  state_ = LinkState::Offline;
  stateSince_ = now();
  Str id = Str::of(config_.deviceId);
  if (!matchesAlphabet(reinterpret_cast<const uint8_t*>(id.data), id.len, Alphabet::DeviceId)) return Err::BadField;
  HUB_TRY(setDescriptors(channels, count));
  previous_.count = 0;
  updateLimit();
  return Err::Ok;
}

Err Session::setDescriptors(const ChannelDescriptor* channels, uint8_t count) {
  if (count > kMaxChannels) return Err::BadField;
  uint32_t hash = 0;
  // Proves the whole DESCRIPTORS frame fits the scratch buffer before anything changes.
  size_t frameLen = 0;
  HUB_TRY(encodeDescriptors(channels, count, scratch_, sizeof scratch_, &frameLen));
  HUB_TRY(esp32hub::descriptorHash(channels, count, scratch_, sizeof scratch_, &hash));
  if (current_.count > 0 && hash == current_.hash) return Err::Ok;
  // Samples collected so far refer to the old set: queue them under its hash first.
  flush();
  if (current_.count > 0) previous_ = current_;
  for (uint8_t i = 0; i < count; i++) current_.channels[i] = channels[i];
  current_.count = count;
  current_.hash = hash;
  hash_ = hash;
  if (state_ == LinkState::Ready && !inWelcome_) {
    sendDescriptors(current_);
  } else {
    descriptorsDirty_ = true;
  }
  return Err::Ok;
}

void Session::setState(LinkState s) {
  if (s == state_) return;
  state_ = s;
  stateSince_ = now();
  hooks_.onLinkState(s);
}

void Session::log(const char* a, const char* b, uint64_t n) {
  char line[96];
  size_t pos = append(line, sizeof line, 0, a);
  if (b != nullptr) {
    pos = append(line, sizeof line, pos, " ");
    pos = append(line, sizeof line, pos, b);
  }
  if (n != UINT64_MAX) {
    pos = append(line, sizeof line, pos, " ");
    appendU64(line, sizeof line, pos, n);
  }
  hooks_.log(line);
}

void Session::setNetworkUp(bool up) {
  networkUp_ = up;
  if (up) {
    // The first attempt is immediate; after failures the pending backoff still applies.
    if (state_ == LinkState::Offline) setState(LinkState::Backoff);
    return;
  }
  if (state_ == LinkState::Connecting || state_ == LinkState::AwaitWelcome || state_ == LinkState::Ready) {
    transport_.close();
    stats_.disconnects++;
  }
  outbox_.rewind();
  setState(LinkState::Offline);
}

uint64_t Session::backoffRemainingMs() {
  uint64_t t = now();
  return state_ == LinkState::Backoff && nextAttemptAt_ > t ? nextAttemptAt_ - t : 0;
}

void Session::enterBackoff(const char* why) {
  outbox_.rewind();
  uint32_t delay = backoff_.next(clock_.random32());
  nextAttemptAt_ = now() + delay;
  log(why, "- reconnecting in ms", delay);
  setState(networkUp_ ? LinkState::Backoff : LinkState::Offline);
}

void Session::connectionLost(const char* why) {
  if (state_ != LinkState::Connecting && state_ != LinkState::AwaitWelcome && state_ != LinkState::Ready) return;
  transport_.close();
  stats_.disconnects++;
  enterBackoff(why);
}

void Session::poll() {
  uint64_t t = now();
  if (rebootPending_ && t >= rebootAt_) {
    rebootPending_ = false;
    hooks_.reboot();
  }
  if (!builder_.empty() && elapsed(batchStartedAt_, t) >= config_.maxBatchMs) flush();

  switch (state_) {
    case LinkState::Offline:
      break;
    case LinkState::Backoff:
      if (networkUp_ && t >= nextAttemptAt_) {
        setState(LinkState::Connecting);
        transport_.open();
      }
      break;
    case LinkState::Connecting:
      if (elapsed(stateSince_, t) >= config_.connectTimeoutMs) connectionLost("connect timeout");
      break;
    case LinkState::AwaitWelcome:
      if (elapsed(stateSince_, t) >= config_.welcomeTimeoutMs) connectionLost("no WELCOME");
      break;
    case LinkState::Ready:
      if (outbox_.inFlight() > 0 && elapsed(lastAckProgressAt_, t) >= config_.ackTimeoutMs) {
        // Frames went out and no ACK came back: send them again (the hub deduplicates [PROTO-3.4.2]).
        outbox_.rewind();
        stats_.replays++;
        lastAckProgressAt_ = t;
      }
      pump();
      break;
  }
}

// ───────────────────────────── transport events ─────────────────────────────

void Session::onTransportOpen() {
  if (state_ != LinkState::Connecting) return;
  stats_.connects++;
  outbox_.rewind();
  setState(LinkState::AwaitWelcome);
  sendHello();
}

void Session::onTransportClosed() {
  if (state_ != LinkState::Connecting && state_ != LinkState::AwaitWelcome && state_ != LinkState::Ready) return;
  stats_.disconnects++;
  enterBackoff("connection closed");
}

void Session::protocolViolation(uint16_t wireCode, const char* message) {
  ErrorMsg e;
  e.fatal = true;
  e.code = wireCode;
  e.message = Str::of(message);
  size_t len = 0;
  if (encode(e, scratch_, sizeof scratch_, &len) == Err::Ok) transport_.send(scratch_, len);
  connectionLost(message);
}

void Session::onTransportMessage(const uint8_t* frame, size_t len) {
  if (state_ != LinkState::AwaitWelcome && state_ != LinkState::Ready) return;
  Err err = decode(frame, len, decoded_);
  if (err != Err::Ok) {
    stats_.badFrames++;
    protocolViolation(errWireCode(err), errName(err));  // [PROTO-5.3], as the hub does
    return;
  }
  switch (decoded_.type) {
    case MsgType::Welcome:
      if (state_ != LinkState::AwaitWelcome) return protocolViolation(wire_error::kUnexpectedMessage, "WELCOME twice");
      handleWelcome(decoded_.welcome);
      return;
    case MsgType::Ack:
      handleAck(decoded_.ack);
      return;
    case MsgType::Command:
      if (state_ != LinkState::Ready) return protocolViolation(wire_error::kUnexpectedMessage, "COMMAND before WELCOME");
      handleCommand(decoded_.command);
      return;
    case MsgType::Error:
      handleHubError(decoded_.error);
      return;
    default:  // device-to-hub types
      protocolViolation(wire_error::kUnexpectedMessage, "unexpected message type");
      return;
  }
}

// ───────────────────────────── uplink ─────────────────────────────

bool Session::sendFrame(size_t len) {
  if (transport_.send(scratch_, len)) return true;
  connectionLost("send failed");
  return false;
}

bool Session::sendHello() {
  Hello h;
  uint64_t unix = 0;
  h.timeSynced = clock_.unixMs(unix);
  h.deviceId = Str::of(config_.deviceId);
  h.firmwareVersion = Str::of(config_.firmwareVersion);
  h.maxProtocolVersion = kProtocolVersion;
  h.bootId = bootId_;
  h.resetReason = static_cast<uint8_t>(config_.resetReason);
  h.uptimeMs = now();
  h.descriptorHash = current_.count > 0 ? hash_ : 0;
  h.bufferedFrames = outbox_.size();
  h.droppedFrames = outbox_.droppedSinceBoot();
  helloHash_ = h.descriptorHash;
  descriptorsDirty_ = false;
  size_t len = 0;
  Err err = encode(h, scratch_, sizeof scratch_, &len);
  if (err != Err::Ok) {
    log("cannot encode HELLO:", errName(err));
    connectionLost("bad HELLO");
    return false;
  }
  return sendFrame(len);
}

bool Session::sendDescriptors(const ChannelSet& set) {
  if (set.count == 0) return true;
  size_t len = 0;
  if (encodeDescriptors(set.channels, set.count, scratch_, sizeof scratch_, &len) != Err::Ok) return false;
  return sendFrame(len);
}

bool Session::sendResult(uint32_t commandId, CommandStatus status, const char* message, size_t messageLen) {
  CommandResult r;
  r.commandId = commandId;
  r.status = static_cast<uint8_t>(status);
  r.message.data = message;
  r.message.len = static_cast<uint8_t>(messageLen);
  size_t len = 0;
  if (encode(r, scratch_, sizeof scratch_, &len) != Err::Ok) return false;
  return sendFrame(len);
}

void Session::pump() {
  if (state_ != LinkState::Ready || now() < pausedUntil_) return;
  while (state_ == LinkState::Ready && outbox_.inFlight() < config_.maxInFlight && outbox_.hasUnsent()) {
    FrameQueue::Entry e = outbox_.nextUnsent();
    if (e.frame == nullptr) break;  // unreadable (FlashOutbox gave it up, counted)
    if (outbox_.inFlight() == 0) lastAckProgressAt_ = now();
    if (!transport_.send(e.frame, e.len)) {
      connectionLost("send failed");
      return;
    }
    outbox_.markSent();
    stats_.framesSent++;
  }
}

// ───────────────────────────── telemetry ─────────────────────────────

void Session::updateLimit() {
  size_t limit = config_.maxUplinkFrameBytes;
  if (hubMaxFrameBytes_ < limit) limit = hubMaxFrameBytes_;
  if (outbox_.maxFrameBytes() > 0 && outbox_.maxFrameBytes() < limit) limit = outbox_.maxFrameBytes();
  if (sizeof scratch_ < limit) limit = sizeof scratch_;
  builder_.setLimit(limit);
}

const ChannelDescriptor* Session::findChannel(uint8_t index) const {
  for (uint8_t i = 0; i < current_.count; i++)
    if (current_.channels[i].index == index) return &current_.channels[i];
  return nullptr;
}

bool Session::addSample(uint8_t channel, ValueType type, bool missing, const Value& value) {
  uint64_t t = 0;
  bool synced = clock_.unixMs(t);
  if (!synced) t = now();
  bool wasEmpty = builder_.empty();
  TelemetryBuilder::Add r = builder_.add(channel, type, t, synced, missing, value);
  if (r == TelemetryBuilder::Add::NeedsFlush) {
    flush();
    wasEmpty = true;
    r = builder_.add(channel, type, t, synced, missing, value);
  }
  if (r != TelemetryBuilder::Add::Added) {
    stats_.samplesRejected++;
    return false;
  }
  if (wasEmpty) batchStartedAt_ = now();
  return true;
}

bool Session::record(uint8_t channel, const Value& value) {
  const ChannelDescriptor* ch = findChannel(channel);
  if (ch == nullptr || ch->valueType != value.type) {
    stats_.samplesRejected++;
    return false;
  }
  return addSample(channel, ch->valueType, false, value);
}

bool Session::recordMissing(uint8_t channel) {
  const ChannelDescriptor* ch = findChannel(channel);
  if (ch == nullptr) {
    stats_.samplesRejected++;
    return false;
  }
  return addSample(channel, ch->valueType, true, Value());
}

bool Session::recordValue(uint8_t channel, double value) {
  const ChannelDescriptor* ch = findChannel(channel);
  if (ch == nullptr) {
    stats_.samplesRejected++;
    return false;
  }
  Value raw;
  if (!toRaw(value, ch->scaleExp, ch->valueType, raw)) return addSample(channel, ch->valueType, true, Value());
  return addSample(channel, ch->valueType, false, raw);
}

void Session::flush() {
  if (builder_.empty()) return;
  size_t len = 0;
  Err err = builder_.encode(bootId_, nextSeq_, hash_, scratch_, sizeof scratch_, &len);
  if (err != Err::Ok) {
    // Cannot happen (the builder tracks the exact size and checks every value); never wedge on it.
    log("cannot encode TELEMETRY:", errName(err));
    stats_.samplesRejected += builder_.sampleCount();
    builder_.clear();
    return;
  }
  if (!outbox_.push(scratch_, static_cast<uint16_t>(len), bootId_, nextSeq_)) {
    // Not kept (flash write failed twice, or power is going): counted in HELLO's droppedFrames.
    log("outbox could not keep frame", nullptr, nextSeq_);
  }
  nextSeq_++;  // per boot, +1 per TELEMETRY frame [PROTO-3.4]
  stats_.framesQueued++;
  builder_.clear();
  pump();
}

// ───────────────────────────── downlink ─────────────────────────────

void Session::handleWelcome(const Welcome& w) {
  inWelcome_ = true;
  if (w.hasLastAck) stats_.framesAcked += outbox_.ack(w.lastAckBootId, w.lastAckSeq);
  uint64_t unix = 0;
  if (!clock_.unixMs(unix)) clock_.setUnixMs(w.serverTimeMs);  // an unsynced device MAY [PROTO-3.2]
  hubMaxFrameBytes_ = w.maxFrameBytes;
  updateLimit();
  backoff_.reset();
  stats_.welcomes++;
  lastAckProgressAt_ = now();
  pausedUntil_ = 0;
  setState(LinkState::Ready);
  log("session ready, boot", nullptr, bootId_);
  if (w.sampleIntervalMs != 0) hooks_.applySampleInterval(w.sampleIntervalMs);  // may change the descriptors
  inWelcome_ = false;
  if (state_ != LinkState::Ready) return;
  if (!w.descriptorsKnown || descriptorsDirty_ || helloHash_ != hash_) {
    descriptorsDirty_ = false;
    if (!sendDescriptors(current_)) return;
  }
  outbox_.rewind();
  pump();
}

void Session::handleAck(const Ack& a) {
  uint16_t freed = outbox_.ack(a.bootId, a.seq);
  if (freed > 0) {
    stats_.framesAcked += freed;
    lastAckProgressAt_ = now();
  }
  pump();
}

void Session::handleHubError(const ErrorMsg& e) {
  stats_.hubErrors++;
  hooks_.onHubError(e.code, e.fatal, e.message);
  log(e.fatal ? "hub error (fatal)" : "hub error", nullptr, e.code);
  if (e.fatal) {
    connectionLost("fatal hub error");  // the hub closes after a fatal ERROR [PROTO-3.8]
    return;
  }
  if (e.code == wire_error::kUnknownDescriptors) {
    handleUnknownDescriptors();
  } else if (e.code == wire_error::kStorageFull) {
    // The hub kept nothing it did not ACK: replay later [PROTO-5.5].
    outbox_.rewind();
    stats_.replays++;
    pausedUntil_ = now() + config_.storageFullRetryMs;
  }
}

void Session::handleUnknownDescriptors() {
  // [PROTO-5.2]: the oldest unacknowledged frame was refused. Announce the set it refers to and replay.
  if (!outbox_.empty()) {
    FrameQueue::Entry e = outbox_.at(0);
    uint32_t frameHash = e.len >= 20 ? readU32le(e.frame + 16) : 0;  // TELEMETRY: bootId, seq, hash
    if (frameHash != hash_ && previous_.count > 0 && frameHash == previous_.hash) {
      if (!sendDescriptors(previous_)) return;
    } else if (frameHash != hash_) {
      // Queued under a set this boot no longer holds (changed twice while offline): it can never be
      // decoded, so it goes, counted as dropped, instead of blocking the outbox forever.
      uint16_t n = 0;
      while (n < outbox_.size()) {
        FrameQueue::Entry f = outbox_.at(n);
        uint32_t h = f.len >= 20 ? readU32le(f.frame + 16) : 0;
        if (h == hash_ || (previous_.count > 0 && h == previous_.hash)) break;
        n++;
      }
      outbox_.dropOldest(n);
      log("dropped frames of an unknown descriptor set:", nullptr, n);
    }
  }
  if (!sendDescriptors(current_)) return;
  outbox_.rewind();
  stats_.replays++;
  pump();
}

void Session::handleCommand(const Command& c) {
  stats_.commands++;
  for (const RecentCommand& r : recent_) {
    if (r.id != c.commandId) continue;
    // Seen before: not executed again; its RESULT is answered again when we have it [PROTO-3.6].
    stats_.duplicateCommands++;
    if (r.done) sendResult(r.id, static_cast<CommandStatus>(r.status), r.message, r.messageLen);
    return;
  }
  RecentCommand& slot = recent_[recentNext_];
  recentNext_ = static_cast<uint8_t>((recentNext_ + 1) % kRecentCommands);
  slot.id = c.commandId;
  slot.done = false;
  slot.messageLen = 0;

  CommandAccepted accepted;
  accepted.commandId = c.commandId;
  size_t len = 0;
  if (encode(accepted, scratch_, sizeof scratch_, &len) != Err::Ok || !sendFrame(len)) return;

  CommandStatus status = execute(c, slot.message, sizeof slot.message);
  if (status == kCommandDeferred) return;  // RESULT with completeCommand()
  slot.status = static_cast<uint8_t>(status);
  slot.messageLen = static_cast<uint8_t>(strlen(slot.message));
  slot.done = true;
  if (state_ == LinkState::Ready) sendResult(slot.id, status, slot.message, slot.messageLen);
  // RESULT first (when the link allows), then restart [PROTO-3.7].
  if (rebootPending_) rebootAt_ = now() + config_.rebootDelayMs;
}

bool Session::completeCommand(uint32_t commandId, CommandStatus status, const char* message, bool thenReboot) {
  bool sent = false;
  for (RecentCommand& r : recent_) {
    if (r.id != commandId || r.done) continue;
    r.status = static_cast<uint8_t>(status);
    r.message[0] = '\0';
    append(r.message, sizeof r.message, 0, message);
    r.messageLen = static_cast<uint8_t>(strlen(r.message));
    r.done = true;
    sent = state_ == LinkState::Ready && sendResult(r.id, status, r.message, r.messageLen);
    break;
  }
  if (thenReboot) {
    flush();
    rebootPending_ = true;
    rebootAt_ = now() + config_.rebootDelayMs;
  }
  return sent;
}

CommandStatus Session::execute(const Command& c, char* message, size_t cap) {
  message[0] = '\0';
  bool present = false;
  int64_t v = 0;
  if (c.name.equals("set_sample_interval")) {
    if (!integerArg(c, "interval_ms", present, v) || v < kMinSampleIntervalMs || v > kMaxSampleIntervalMs) {
      append(message, cap, 0, "interval_ms must be an integer 100..3600000");
      return CommandStatus::BadArguments;
    }
    CommandStatus s = hooks_.applySampleInterval(static_cast<uint32_t>(v));
    if (s == CommandStatus::Ok) {
      size_t pos = append(message, cap, 0, "sample interval ");
      pos = appendU64(message, cap, pos, static_cast<uint64_t>(v));
      append(message, cap, pos, " ms");
    }
    return s;
  }
  if (c.name.equals("identify")) {
    uint32_t durationMs = kDefaultIdentifyMs;  // duration_ms is optional
    bool ok = integerArg(c, "duration_ms", present, v);
    if (present && (!ok || v < 1 || v > kMaxIdentifyMs)) {
      append(message, cap, 0, "duration_ms must be an integer 1..3600000");
      return CommandStatus::BadArguments;
    }
    if (present) durationMs = static_cast<uint32_t>(v);
    CommandStatus s = hooks_.identify(durationMs);
    if (s == CommandStatus::Ok) {
      size_t pos = append(message, cap, 0, "identifying for ");
      pos = appendU64(message, cap, pos, durationMs);
      append(message, cap, pos, " ms");
    }
    return s;
  }
  if (c.name.equals("reboot")) {
    flush();  // what was sampled is queued (and kept, when the outbox lives in RTC memory)
    rebootPending_ = true;
    rebootAt_ = UINT64_MAX;  // armed once the RESULT is out
    append(message, cap, 0, "rebooting");
    return CommandStatus::Ok;
  }
  if (c.name.equals("send_descriptors")) {
    if (!sendDescriptors(current_)) return CommandStatus::Failed;
    append(message, cap, 0, "descriptors sent");
    return CommandStatus::Ok;
  }
  CommandStatus s = hooks_.onCommand(c, message, cap);
  if (s == CommandStatus::Unsupported && message[0] == '\0') append(message, cap, 0, "unknown command");
  return s;
}

}  // namespace esp32hub
