#include "wifi_link.h"

#include <Arduino.h>
#include <WiFi.h>

#include <atomic>

namespace {
// Written by the Wi-Fi event task, read by the loop task.
std::atomic<bool> gotIp{false};
std::atomic<bool> lost{false};
}  // namespace

void WifiLink::begin(const char* ssid, const char* password, const char* hostname) {
  ssid_ = ssid;
  password_ = password;
  begun_ = true;
  WiFi.onEvent([](WiFiEvent_t, WiFiEventInfo_t) { gotIp = true; }, ARDUINO_EVENT_WIFI_STA_GOT_IP);
  WiFi.onEvent(
      [](WiFiEvent_t, WiFiEventInfo_t) {
        gotIp = false;
        lost = true;
      },
      ARDUINO_EVENT_WIFI_STA_DISCONNECTED);
  WiFi.onEvent([](WiFiEvent_t, WiFiEventInfo_t) { gotIp = false; }, ARDUINO_EVENT_WIFI_STA_LOST_IP);
  WiFi.mode(WIFI_STA);
  WiFi.setHostname(hostname);
  WiFi.setAutoReconnect(false);  // reconnects follow our backoff instead
  WiFi.begin(ssid_, password_);  // returns at once; the result comes as an event
  Serial.printf("[wifi] connecting to %s\n", ssid_);
}

void WifiLink::loop(uint64_t nowMs, uint32_t random32) {
  bool isUp = gotIp;
  if (isUp != wasUp_) {
    wasUp_ = isUp;
    if (isUp) {
      backoff_.reset();
      Serial.printf("[wifi] up: %s, RSSI %d dBm\n", WiFi.localIP().toString().c_str(), WiFi.RSSI());
    } else {
      Serial.println("[wifi] down");
    }
  }
  if (isUp) return;
  if (lost.exchange(false)) nextAttemptAt_ = nowMs + backoff_.next(random32);
  if (nextAttemptAt_ != 0 && nowMs >= nextAttemptAt_) {
    nextAttemptAt_ = nowMs + backoff_.next(random32);  // if this attempt fails silently, try again
    WiFi.disconnect();
    WiFi.begin(ssid_, password_);
  }
}

void WifiLink::join(const char* ssid, const char* password) {
  ssid_ = ssid;
  password_ = password;
  backoff_.reset();
  nextAttemptAt_ = 0;
  lost = false;
  WiFi.disconnect();
  WiFi.begin(ssid_, password_);
  Serial.printf("[wifi] connecting to %s\n", ssid_);
}

bool WifiLink::up() const { return gotIp; }

int8_t WifiLink::rssi() const { return static_cast<int8_t>(WiFi.RSSI()); }
