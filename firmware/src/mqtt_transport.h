// The device link over MQTT [PROTO-1.6] (HUB_TRANSPORT_MQTT 1), with the same interface as WsTransport so
// the network task and the session do not change: ESP-IDF's esp-mqtt client (part of the pinned platform:
// espressif32 6.10.0 = Arduino core 2.0.17 = ESP-IDF 4.4), MQTT 3.1.1.
//
// - One connection per open(): client id and username = the device id, password = its hub token, clean
//   session, keepalive HUB_MQTT_KEEPALIVE_SEC; the library's own reconnect is off (the session paces
//   attempts with its backoff, as over WebSocket).
// - Last will: a FATAL ERROR CONNECTION_LOST frame on `<prefix>/v1/<id>/up` (QoS 1, not retained), so the
//   hub ends the session as soon as the broker notices the board is gone. close() publishes that frame
//   itself while a session is live (a clean DISCONNECT suppresses the will).
// - The link "opens" once `.../down` is subscribed (QoS 1), before HELLO; frames go to `.../up` at QoS 1
//   (the broker's PUBACK is not the durability promise: the hub's ACK is, and the outbox keeps frames
//   until then). Frames on down that arrive before this connection's HELLO (an earlier session's) are
//   dropped.
// - mqtts:// only with a CA certificate (HUB_CA_CERT), never without certificate checks.
//
// esp-mqtt runs its own task; its events go through a small queue and reach the Listener from loop(), in
// the network task, like WsTransport's.
#pragma once

#include <atomic>
#include <stddef.h>
#include <stdint.h>

#include <freertos/FreeRTOS.h>
#include <freertos/queue.h>
#include <mqtt_client.h>

class MqttTransport {
 public:
  class Listener {
   public:
    virtual ~Listener() = default;
    virtual void onLinkOpen() = 0;
    virtual void onLinkClosed() = 0;
    virtual void onLinkMessage(const uint8_t* frame, size_t len) = 0;
  };

  struct Options {
    const char* uri;          // mqtt://host:port or mqtts://host:port
    const char* deviceId;     // client id, username, and the topics' id
    const char* token;        // password
    const char* topicPrefix;  // the hub's MQTT_TOPIC_PREFIX
    const char* caCert;       // PEM; required for mqtts://
    uint16_t keepaliveSec;
  };

  static constexpr size_t kMaxDownBytes = 2048;  // as NetTask::kDownFrameBytes
  static constexpr size_t kTopicBytes = 160;

  bool begin(const Options& options, Listener& listener);
  void open();
  void close();
  bool send(const uint8_t* frame, size_t len);
  void loop();
  bool active() const { return active_; }
  /** The broker refused the login (bad or revoked token) or the subscription: shown on the LED. */
  bool authRefused() const { return authRefused_.load(); }

 private:
  enum Kind : uint8_t { kOpened, kClosed, kMessage };
  struct Event {
    uint8_t kind;
    uint16_t len;
    uint8_t data[kMaxDownBytes];
  };

  static void onEvent(void* self, esp_event_base_t base, int32_t id, void* data);
  void handle(esp_mqtt_event_handle_t event);
  void push(uint8_t kind, const uint8_t* data, size_t len);
  void teardown();

  Options options_{};
  Listener* listener_ = nullptr;
  esp_mqtt_client_handle_t client_ = nullptr;
  QueueHandle_t events_ = nullptr;
  char up_[kTopicBytes] = {};
  char down_[kTopicBytes] = {};
  uint8_t will_[96] = {};
  size_t willLen_ = 0;
  bool active_ = false;
  bool tlsWithoutCa_ = false;
  bool helloSent_ = false;    // this connection published its HELLO
  bool sessionLive_ = false;  // WELCOME seen, no fatal ERROR since
  std::atomic<bool> connected_{false};
  std::atomic<bool> authRefused_{false};
  std::atomic<bool> stopping_{false};  // teardown under way: the event handler must not wait for the queue
  Event pushScratch_{};  // esp-mqtt task
  Event loopScratch_{};  // network task
};
