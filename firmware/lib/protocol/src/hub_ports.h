// The session's view of the world: a message transport, a clock, and the device's hooks. The Arduino
// layer implements them with arduinoWebSockets, esp_timer/SNTP and the board's LED and sensors; the
// host tests implement them with scripted fakes and, end to end, with a pipe to a real WebSocket.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "hub_types.h"

namespace esp32hub {

/**
 * One binary WebSocket message per frame [PROTO-1.3]. The implementation reports back through
 * Session::onTransportOpen / onTransportClosed / onTransportMessage.
 */
class Transport {
 public:
  virtual ~Transport() = default;
  /** Starts connecting (upgrade with subprotocol and Bearer token [PROTO-1.1, 1.2]). Must not block long. */
  virtual void open() = 0;
  /** Closes or aborts the connection. Need not report onTransportClosed (the session already knows). */
  virtual void close() = 0;
  /** Sends one frame as one binary message; false when it could not be handed to the network. */
  virtual bool send(const uint8_t* frame, size_t len) = 0;
};

/** Who hears the transport's events: the Session on /v1/device, the EnrollClient on /v1/enroll. */
class TransportListener {
 public:
  virtual ~TransportListener() = default;
  virtual void onTransportOpen() = 0;
  virtual void onTransportClosed() = 0;
  virtual void onTransportMessage(const uint8_t* frame, size_t len) = 0;
};

class Clock {
 public:
  virtual ~Clock() = default;
  /** Milliseconds since boot (monotonic, 64-bit: no 49-day wrap). */
  virtual uint64_t uptimeMs() = 0;
  /** Unix time in ms, or false when the clock is not set (no SNTP, no WELCOME yet). */
  virtual bool unixMs(uint64_t& out) = 0;
  /** Sets the wall clock from the hub's WELCOME when nothing better (SNTP) has set it [PROTO-3.2]. */
  virtual void setUnixMs(uint64_t unixMs) = 0;
  /** A uniformly random 32-bit value (bootId, backoff jitter). */
  virtual uint32_t random32() = 0;
};

/** Where the session is; drives the status LED and the log. */
enum class LinkState : uint8_t {
  Offline,       // no network (Wi-Fi down)
  Backoff,       // waiting before the next connection attempt [PROTO-5.6]
  Connecting,    // transport opening (TCP, TLS, HTTP upgrade)
  AwaitWelcome,  // HELLO sent, waiting for WELCOME [PROTO-5.1]
  Ready,         // WELCOME received: streaming telemetry, taking commands
};

const char* linkStateName(LinkState s);

/**
 * Not a wire status: DeviceHooks::onCommand returns it for a command that runs on after the hook returned
 * (`ota`): the session answers COMMAND_ACCEPTED now and COMMAND_RESULT when the device calls
 * Session::completeCommand.
 */
constexpr CommandStatus kCommandDeferred = static_cast<CommandStatus>(0xff);

/** What the session asks of the device. Every hook has a harmless default except the three commands. */
class DeviceHooks {
 public:
  virtual ~DeviceHooks() = default;
  /**
   * `set_sample_interval` [PROTO-3.6] or WELCOME's sampleIntervalMs (when not 0). The device may call
   * Session::setDescriptors from here when its channel periods change.
   */
  virtual CommandStatus applySampleInterval(uint32_t intervalMs) = 0;
  /** `identify`: blink the LED for `durationMs`. */
  virtual CommandStatus identify(uint32_t durationMs) = 0;
  /** `reboot`: called once the RESULT has been handed to the transport. Does not return on a device. */
  virtual void reboot() = 0;
  /** Any other command: answer UNSUPPORTED unless the device knows it. `message` may be set (≤ 63 bytes). */
  virtual CommandStatus onCommand(const Command& command, char* message, size_t messageCap) {
    (void)command;
    (void)message;
    (void)messageCap;
    return CommandStatus::Unsupported;
  }
  virtual void onLinkState(LinkState state) { (void)state; }
  /** An ERROR frame from the hub [PROTO-3.8] (fatal ones precede a close). */
  virtual void onHubError(uint16_t code, bool fatal, Str message) {
    (void)code;
    (void)fatal;
    (void)message;
  }
  /** One line of diagnostics (no newline). */
  virtual void log(const char* line) { (void)line; }
};

}  // namespace esp32hub
