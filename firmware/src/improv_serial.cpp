#include "improv_serial.h"

#include <Arduino.h>
#include <WiFi.h>

void ImprovSerialPort::write(const uint8_t* bytes, size_t len) { Serial.write(bytes, len); }

void ImprovSerialPort::joinWifi(const char* ssid, const char* password) {
  if (wifi_.begun()) {
    wifi_.join(ssid, password);
  } else {
    wifi_.begin(ssid, password, hostname_);  // an unprovisioned board: Wi-Fi comes up now
  }
}

ImprovSerialPort::Join ImprovSerialPort::joinStatus() {
  if (wifi_.up()) return Join::Connected;
  wl_status_t s = WiFi.status();
  // A wrong password or an absent network; anything else keeps trying until the core's timeout.
  if (s == WL_CONNECT_FAILED || s == WL_NO_SSID_AVAIL) return Join::Failed;
  return Join::InProgress;
}

uint8_t ImprovSerialPort::scanNetworks() {
  int16_t n = WiFi.scanNetworks();  // blocks for the scan (a few seconds); sampling waits meanwhile
  return n < 0 ? 0 : static_cast<uint8_t>(n > 32 ? 32 : n);
}

bool ImprovSerialPort::scannedNetwork(uint8_t i, char* ssid, size_t cap, int16_t& rssi, bool& secured) {
  snprintf(ssid, cap, "%s", WiFi.SSID(i).c_str());
  rssi = static_cast<int16_t>(WiFi.RSSI(i));
  secured = WiFi.encryptionType(i) != WIFI_AUTH_OPEN;
  return true;
}

void ImprovSerialPort::log(const char* line) { Serial.println(line); }
