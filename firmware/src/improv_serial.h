// The board's side of Improv Serial (the portable core's improv::Service does the protocol): bytes to
// the USB serial port, the Wi-Fi join through WifiLink, scans through the Arduino WiFi class.
#pragma once

#include <hub_improv.h>

#include "wifi_link.h"

class ImprovSerialPort : public esp32hub::improv::ImprovPort {
 public:
  /** `hostname`: the Wi-Fi hostname when Improv brings Wi-Fi up on a board that had none. */
  ImprovSerialPort(WifiLink& wifi, const char* hostname) : wifi_(wifi), hostname_(hostname) {}
  void write(const uint8_t* bytes, size_t len) override;
  void joinWifi(const char* ssid, const char* password) override;
  Join joinStatus() override;
  bool wifiConnected() override { return wifi_.up(); }
  uint8_t scanNetworks() override;
  bool scannedNetwork(uint8_t i, char* ssid, size_t cap, int16_t& rssi, bool& secured) override;
  void log(const char* line) override;

 private:
  WifiLink& wifi_;
  const char* hostname_;
};
