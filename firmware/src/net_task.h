// The network in its own FreeRTOS task, so DNS, the TCP connect and the TLS handshake — which block
// inside arduinoWebSockets — never stall sampling in the main loop.
//
// The session stays in the main loop. This class is its Transport, and none of its calls waits: open()
// and send() put a command on the uplink queue (send() copies the frame; false when the queue is full,
// which the session treats as a lost link and later replays), close() sets an atomic the task reads. The task takes the commands, drives the link (WsTransport or MqttTransport)
// and puts what happens (open, closed, a downlink frame) on the downlink queue; poll(), from the main
// loop, hands those to the session. Every open() starts a new generation: events of an older
// connection are dropped, so a late "closed" never ends the connection that replaced it.
#pragma once

#include <atomic>

#include <freertos/FreeRTOS.h>
#include <freertos/queue.h>
#include <freertos/task.h>
#include <hub_ports.h>

#include "app_config.h"
#if HUB_TRANSPORT_MQTT
#include "mqtt_transport.h"
using HubLink = MqttTransport;  // [PROTO-1.6]
#else
#include "ws_transport.h"
using HubLink = WsTransport;
#endif

class NetTask : public esp32hub::Transport, private HubLink::Listener {
 public:
  static constexpr size_t kUpFrameBytes = 1024;    // the largest uplink frame (the outbox's limit)
  static constexpr size_t kDownFrameBytes = 2048;  // downlink frames the device takes (WELCOME, ACK, COMMAND)
  static constexpr uint8_t kUpDepth = 12;          // ≥ maxInFlight (8) + HELLO, DESCRIPTORS, RESULTs
  static constexpr uint8_t kDownDepth = 4;

  /**
   * Creates the queues and starts the task (priority 1, 12 KiB stack: mbedTLS needs it). `listener` is
   * the Session (/v1/device) or the EnrollClient (/v1/enroll).
   */
  bool begin(const HubLink::Options& options, esp32hub::TransportListener& listener);
  void open() override;
  void close() override;
  bool send(const uint8_t* frame, size_t len) override;
  /** Main loop: delivers what the network task reported to the session. Never blocks. */
  void poll();
  bool authRefused() const { return ws_.authRefused(); }

 private:
  enum Kind : uint8_t { kOpen, kSend, kOpened, kClosed, kMessage };
  struct UpItem {
    uint8_t kind;
    uint32_t generation;
    uint16_t len;
    uint8_t data[kUpFrameBytes];
  };
  struct DownItem {
    uint8_t kind;
    uint32_t generation;
    uint16_t len;
    uint8_t data[kDownFrameBytes];
  };

  static void taskMain(void* self);
  void run();
  void report(uint8_t kind, const uint8_t* data, size_t len);
  void onLinkOpen() override { report(kOpened, nullptr, 0); }
  void onLinkClosed() override { report(kClosed, nullptr, 0); }
  void onLinkMessage(const uint8_t* frame, size_t len) override { report(kMessage, frame, len); }

  HubLink ws_;  // WsTransport, or MqttTransport with HUB_TRANSPORT_MQTT
  esp32hub::TransportListener* session_ = nullptr;
  QueueHandle_t up_ = nullptr;
  QueueHandle_t down_ = nullptr;
  uint32_t generation_ = 0;      // main loop: the connection the session wants
  std::atomic<uint32_t> closed_{0};  // main loop → task: the generation the session closed (no queue: never waits)
  uint32_t taskGeneration_ = 0;  // network task: the connection the link is on
  UpItem upScratch_{};           // main loop's item being filled
  UpItem taskUp_{};              // network task's item being handled
  DownItem taskDown_{};          // network task's item being reported
  DownItem downScratch_{};       // main loop's item being delivered
};
