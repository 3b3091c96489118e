// The device side of a protocol v1 session [PROTO-5], as an explicit state machine driven by events
// (transport open/closed/message, network up/down) and by poll() from the main loop. Nothing blocks and
// nothing allocates: frames are encoded into a fixed scratch buffer, telemetry waits in the Outbox.
//
//   Offline ──network up──▶ Backoff ──timer──▶ Connecting ──open──▶ AwaitWelcome ──WELCOME──▶ Ready
//      ▲                      ▲                    │                   │                       │
//      └──network down────────┴──── closed / timeout / fatal ERROR / bad frame ────────────────┘
//
// On WELCOME: apply the cumulative last ack, take the hub's time if unsynced, send DESCRIPTORS unless
// the hub knows them, then replay the outbox oldest first [PROTO-5]. ACKs free the outbox [PROTO-3.5].
// COMMANDs are answered with ACCEPTED then RESULT; a repeated id is not executed again [PROTO-3.6].
#pragma once

#include "hub_backoff.h"
#include "hub_codec.h"
#include "hub_frame_queue.h"
#include "hub_ports.h"
#include "hub_telemetry.h"

namespace esp32hub {

struct SessionConfig {
  /** Device id [PROTO-2.8]; must equal the id the hub issued the token for. */
  const char* deviceId = "";
  const char* firmwareVersion = "";
  ResetReason resetReason = ResetReason::Unknown;
  /**
   * This boot's id [PROTO-3.1.1]: bootIdFor(NVS boot counter, NVS key) on a board. 0 = draw one from
   * Clock::random32() (tests; a board must not, see docs/protocol.md).
   */
  uint32_t bootId = 0;
  /** First TELEMETRY seq of this boot: 1, or where the boot stood before a deep sleep (RTC memory). */
  uint32_t firstSeq = 1;
  /** Reconnect backoff [PROTO-5.6]. */
  uint32_t backoffBaseMs = 1000;
  uint32_t backoffMaxMs = 60000;
  uint8_t backoffJitterPercent = 20;
  /** Give up an attempt that has not opened (TCP + TLS + upgrade) by then. */
  uint32_t connectTimeoutMs = 20000;
  /** Give up when WELCOME has not arrived by then (the hub's own HELLO deadline is 10 s [PROTO-5.1]). */
  uint32_t welcomeTimeoutMs = 10000;
  /** With frames in flight and no ACK for this long, send the unacknowledged frames again. */
  uint32_t ackTimeoutMs = 30000;
  /** After a non-fatal STORAGE_FULL, wait this long before replaying [PROTO-5.5]. */
  uint32_t storageFullRetryMs = 5000;
  /** Frames sent and not yet acknowledged, at most. */
  uint16_t maxInFlight = 8;
  /** Uplink frame size limit (≤ 1024 recommended [PROTO-1.4]); also bounded by WELCOME and the outbox slot. */
  uint16_t maxUplinkFrameBytes = 1024;
  /** Queue the samples collected so far once the oldest is this old; 0 = at every poll(). */
  uint32_t maxBatchMs = 0;
  /** Between handing `reboot`'s RESULT to the transport and calling DeviceHooks::reboot. */
  uint32_t rebootDelayMs = 250;
};

struct SessionStats {
  uint32_t connects = 0;      // transport opened
  uint32_t welcomes = 0;      // sessions established
  uint32_t disconnects = 0;   // connections lost or given up
  uint32_t framesQueued = 0;  // TELEMETRY frames built
  uint32_t framesSent = 0;    // TELEMETRY sends, replays included
  uint32_t framesAcked = 0;   // freed by ACK (or WELCOME's last ack)
  uint32_t replays = 0;       // times unacknowledged frames were sent again
  uint32_t badFrames = 0;     // downlink frames that failed to decode
  uint32_t hubErrors = 0;     // ERROR frames received
  uint32_t commands = 0;      // COMMAND frames received
  uint32_t duplicateCommands = 0;
  uint32_t samplesRejected = 0;
};

class Session : public TransportListener {
 public:
  static constexpr uint8_t kMaxChannels = 16;
  static constexpr size_t kScratchBytes = 1024;
  static constexpr uint8_t kRecentCommands = 8;

  Session(const SessionConfig& config, Transport& transport, Clock& clock, DeviceHooks& hooks, FrameQueue& outbox);

  /**
   * Draws the bootId and sets the channel set. Keys and units must outlive the session (string
   * literals). The session starts Offline: call setNetworkUp(true) when the network is there.
   */
  Err begin(const ChannelDescriptor* channels, uint8_t count);
  /**
   * Replaces the channel set (e.g. its periods after an interval change): queues the samples collected
   * under the old set, recomputes the hash and announces the new set when connected.
   */
  Err setDescriptors(const ChannelDescriptor* channels, uint8_t count);

  void setNetworkUp(bool up);
  /** Timers, connection attempts, batching, sending. Call from the main loop; never blocks. */
  void poll();

  // Transport events.
  void onTransportOpen() override;
  void onTransportClosed() override;
  void onTransportMessage(const uint8_t* frame, size_t len) override;

  // Telemetry. The value's type must be the channel's; time comes from the clock.
  bool record(uint8_t channel, const Value& value);
  bool recordMissing(uint8_t channel);
  /** An engineering value (e.g. 23.45 °C) converted with the channel's scale; NaN or out of range → missing. */
  bool recordValue(uint8_t channel, double value);
  /** Queues the samples collected so far as one TELEMETRY frame. */
  void flush();
  /**
   * The RESULT of a command whose hook answered kCommandDeferred (sent now when the link is Ready, and
   * again for a duplicate COMMAND). `thenReboot`: restart rebootDelayMs later, as after `reboot`.
   * False when the RESULT could not be sent now.
   */
  bool completeCommand(uint32_t commandId, CommandStatus status, const char* message, bool thenReboot);

  LinkState state() const { return state_; }
  uint32_t bootId() const { return bootId_; }
  /** seq of the newest queued TELEMETRY frame (0 before the first). */
  uint32_t lastSeq() const { return nextSeq_ - 1; }
  uint32_t descriptorHash() const { return hash_; }
  const SessionStats& stats() const { return stats_; }
  const FrameQueue& outbox() const { return outbox_; }
  const TelemetryBuilder& builder() const { return builder_; }
  /** Milliseconds until the next connection attempt while in Backoff. */
  uint64_t backoffRemainingMs();

 private:
  struct RecentCommand {
    uint32_t id;
    bool done;
    uint8_t status;
    uint8_t messageLen;
    char message[48];
  };
  struct ChannelSet {
    ChannelDescriptor channels[kMaxChannels];
    uint8_t count = 0;
    uint32_t hash = 0;
  };

  uint64_t now() { return clock_.uptimeMs(); }
  void setState(LinkState s);
  void enterBackoff(const char* why);
  void connectionLost(const char* why);
  void protocolViolation(uint16_t wireCode, const char* message);
  bool sendFrame(size_t len);
  bool sendHello();
  bool sendDescriptors(const ChannelSet& set);
  bool sendResult(uint32_t commandId, CommandStatus status, const char* message, size_t messageLen);
  void pump();
  void updateLimit();
  const ChannelDescriptor* findChannel(uint8_t index) const;
  bool addSample(uint8_t channel, ValueType type, bool missing, const Value& value);
  void handleWelcome(const Welcome& w);
  void handleAck(const Ack& a);
  void handleCommand(const Command& c);
  CommandStatus execute(const Command& c, char* message, size_t cap);
  void handleHubError(const ErrorMsg& e);
  void handleUnknownDescriptors();
  void log(const char* a, const char* b = nullptr, uint64_t n = UINT64_MAX);

  SessionConfig config_;
  Transport& transport_;
  Clock& clock_;
  DeviceHooks& hooks_;
  FrameQueue& outbox_;
  Backoff backoff_;
  TelemetryBuilder builder_;

  LinkState state_ = LinkState::Offline;
  bool networkUp_ = false;
  uint32_t bootId_ = 0;
  uint32_t nextSeq_ = 1;
  uint32_t hash_ = 0;
  ChannelSet current_;
  ChannelSet previous_;
  uint32_t helloHash_ = 0;
  bool inWelcome_ = false;
  bool descriptorsDirty_ = false;
  uint16_t hubMaxFrameBytes_ = kMaxFrameBytes;

  uint64_t stateSince_ = 0;
  uint64_t nextAttemptAt_ = 0;
  uint64_t pausedUntil_ = 0;
  uint64_t lastAckProgressAt_ = 0;
  uint64_t batchStartedAt_ = 0;
  uint64_t rebootAt_ = 0;
  bool rebootPending_ = false;

  RecentCommand recent_[kRecentCommands] = {};
  uint8_t recentNext_ = 0;

  SessionStats stats_;
  Decoded decoded_;
  alignas(4) uint8_t scratch_[kScratchBytes];
};

}  // namespace esp32hub
