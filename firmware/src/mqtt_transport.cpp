#include "app_config.h"

#if HUB_TRANSPORT_MQTT

#include "mqtt_transport.h"

#include <Arduino.h>
#include <hub_codec.h>
#include <string.h>

namespace {
constexpr uint16_t kConnectionLost = 210;  // CONNECTION_LOST [PROTO-3.8], docs/errors.md
}

bool MqttTransport::begin(const Options& options, Listener& listener) {
  options_ = options;
  listener_ = &listener;
  snprintf(up_, sizeof up_, "%s/v1/%s/up", options.topicPrefix, options.deviceId);
  snprintf(down_, sizeof down_, "%s/v1/%s/down", options.topicPrefix, options.deviceId);
  esp32hub::ErrorMsg lost;
  lost.fatal = true;
  lost.code = kConnectionLost;
  lost.message = esp32hub::Str::of("connection lost");
  if (esp32hub::encode(lost, will_, sizeof will_, &willLen_) != esp32hub::Err::Ok) return false;
  if (strncmp(options.uri, "mqtts://", 8) == 0 && (options.caCert == nullptr || options.caCert[0] == '\0')) {
    Serial.println("[mqtt] mqtts:// needs a CA certificate (HUB_CA_CERT): not connecting");
    tlsWithoutCa_ = true;
  }
  events_ = xQueueCreate(3, sizeof(Event));
  return events_ != nullptr;
}

void MqttTransport::open() {
  teardown();
  if (tlsWithoutCa_) {
    listener_->onLinkClosed();
    return;
  }
  helloSent_ = false;
  sessionLive_ = false;
  esp_mqtt_client_config_t cfg = {};
  cfg.uri = options_.uri;
  cfg.client_id = options_.deviceId;
  cfg.username = options_.deviceId;
  cfg.password = options_.token;
  cfg.keepalive = options_.keepaliveSec;
  cfg.disable_clean_session = false;
  cfg.disable_auto_reconnect = true;
  cfg.lwt_topic = up_;
  cfg.lwt_msg = reinterpret_cast<const char*>(will_);
  cfg.lwt_msg_len = static_cast<int>(willLen_);
  cfg.lwt_qos = 1;
  cfg.lwt_retain = 0;
  cfg.buffer_size = static_cast<int>(kMaxDownBytes);
  if (strncmp(options_.uri, "mqtts://", 8) == 0) cfg.cert_pem = options_.caCert;
  client_ = esp_mqtt_client_init(&cfg);
  if (client_ == nullptr) {
    Serial.println("[mqtt] client not created (out of memory)");
    listener_->onLinkClosed();
    return;
  }
  esp_mqtt_client_register_event(client_, static_cast<esp_mqtt_event_id_t>(ESP_EVENT_ANY_ID), onEvent, this);
  active_ = true;
  Serial.printf("[mqtt] connecting to %s as %s\n", options_.uri, options_.deviceId);
  if (esp_mqtt_client_start(client_) != ESP_OK) {
    teardown();
    listener_->onLinkClosed();
  }
}

void MqttTransport::close() {
  if (client_ != nullptr && sessionLive_ && connected_.load()) {
    // Ending on purpose: tell the hub, since the clean DISCONNECT below suppresses the will [PROTO-1.6].
    esp_mqtt_client_publish(client_, up_, reinterpret_cast<const char*>(will_), static_cast<int>(willLen_), 1, 0);
  }
  active_ = false;
  teardown();
}

bool MqttTransport::send(const uint8_t* frame, size_t len) {
  if (!active_ || !connected_.load() || len < esp32hub::kHeaderBytes) return false;
  if (frame[3] == static_cast<uint8_t>(esp32hub::MsgType::Hello)) {
    helloSent_ = true;
    sessionLive_ = false;
  }
  // Into the library's outbox (its task writes it): never blocks the network task on the socket.
  return esp_mqtt_client_enqueue(client_, up_, reinterpret_cast<const char*>(frame), static_cast<int>(len), 1, 0, true) >= 0;
}

void MqttTransport::loop() {
  while (events_ != nullptr && xQueueReceive(events_, &loopScratch_, 0) == pdTRUE) {
    if (!active_) continue;
    switch (loopScratch_.kind) {
      case kOpened:
        authRefused_.store(false);
        Serial.println("[mqtt] connected");
        listener_->onLinkOpen();
        break;
      case kMessage: {
        if (!helloSent_) break;  // an earlier session's frame
        const uint8_t type = loopScratch_.data[3];
        if (type == static_cast<uint8_t>(esp32hub::MsgType::Welcome)) sessionLive_ = true;
        if (type == static_cast<uint8_t>(esp32hub::MsgType::Error)) {
          esp32hub::Decoded d;
          if (esp32hub::decode(loopScratch_.data, loopScratch_.len, d) == esp32hub::Err::Ok && d.error.fatal) {
            sessionLive_ = false;  // the hub ended the session; the session closes this link
          }
        }
        listener_->onLinkMessage(loopScratch_.data, loopScratch_.len);
        break;
      }
      case kClosed:
        active_ = false;
        teardown();
        Serial.println("[mqtt] disconnected");
        listener_->onLinkClosed();
        return;
      default:
        break;
    }
  }
}

void MqttTransport::teardown() {
  connected_.store(false);
  if (client_ != nullptr) {
    stopping_.store(true);
    esp_mqtt_client_stop(client_);  // sends DISCONNECT when connected; its task ends: no more events
    esp_mqtt_client_destroy(client_);
    client_ = nullptr;
    stopping_.store(false);
  }
  if (events_ != nullptr) xQueueReset(events_);  // whatever the old connection still reported
}

void MqttTransport::onEvent(void* self, esp_event_base_t, int32_t, void* data) {
  static_cast<MqttTransport*>(self)->handle(static_cast<esp_mqtt_event_handle_t>(data));
}

// In esp-mqtt's task.
void MqttTransport::handle(esp_mqtt_event_handle_t event) {
  switch (event->event_id) {
    case MQTT_EVENT_CONNECTED:
      // Subscribe before anything is published: the hub's WELCOME must find the subscription [PROTO-1.6].
      esp_mqtt_client_subscribe(event->client, down_, 1);
      break;
    case MQTT_EVENT_SUBSCRIBED:
      if (event->data_len >= 1 && static_cast<uint8_t>(event->data[0]) == 0x80) {
        authRefused_.store(true);  // SUBACK failure: the broker's ACL refuses this device its down topic
        Serial.println("[mqtt] subscription refused");
        push(kClosed, nullptr, 0);
        break;
      }
      connected_.store(true);
      push(kOpened, nullptr, 0);
      break;
    case MQTT_EVENT_DATA:
      if (event->topic_len != static_cast<int>(strlen(down_)) || strncmp(event->topic, down_, strlen(down_)) != 0) break;
      if (event->total_data_len != event->data_len || event->data_len > static_cast<int>(kMaxDownBytes)) {
        Serial.printf("[mqtt] downlink message of %d bytes dropped\n", event->total_data_len);
        break;
      }
      push(kMessage, reinterpret_cast<const uint8_t*>(event->data), static_cast<size_t>(event->data_len));
      break;
    case MQTT_EVENT_ERROR:
      if (event->error_handle != nullptr && event->error_handle->error_type == MQTT_ERROR_TYPE_CONNECTION_REFUSED &&
          (event->error_handle->connect_return_code == MQTT_CONNECTION_REFUSE_BAD_USERNAME ||
           event->error_handle->connect_return_code == MQTT_CONNECTION_REFUSE_NOT_AUTHORIZED)) {
        authRefused_.store(true);
        Serial.println("[mqtt] login refused (token revoked or wrong?)");
      }
      break;
    case MQTT_EVENT_DISCONNECTED:
      connected_.store(false);
      push(kClosed, nullptr, 0);
      break;
    default:
      break;
  }
}

void MqttTransport::push(uint8_t kind, const uint8_t* data, size_t len) {
  pushScratch_.kind = kind;
  pushScratch_.len = static_cast<uint16_t>(len);
  if (len > 0) memcpy(pushScratch_.data, data, len);
  // Waits for the network task when it is behind (the broker's messages are simply read later), but
  // never while teardown() stops this task.
  while (xQueueSend(events_, &pushScratch_, pdMS_TO_TICKS(100)) != pdTRUE) {
    if (stopping_.load()) return;
  }
}

#endif  // HUB_TRANSPORT_MQTT
