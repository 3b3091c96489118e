// Wi-Fi station link: event-driven, non-blocking, with its own reconnect backoff (the same Backoff as
// the hub connection, 1 s doubling to 60 s ± 20 %). Events arrive on the Wi-Fi task; loop() reads them.
#pragma once

#include <hub_backoff.h>
#include <stdint.h>

class WifiLink {
 public:
  void begin(const char* ssid, const char* password, const char* hostname);
  /** Switches to another network (Improv provisioning); `begin` must have run. Strings must stay valid. */
  void join(const char* ssid, const char* password);
  /** `begin` has run (a board without Wi-Fi settings leaves the radio off until Improv sends some). */
  bool begun() const { return begun_; }
  /** Call from loop(): retries the association when it was lost. */
  void loop(uint64_t nowMs, uint32_t random32);
  /** Associated and holding an IP address. */
  bool up() const;
  int8_t rssi() const;

 private:
  const char* ssid_ = "";
  const char* password_ = "";
  esp32hub::Backoff backoff_;
  uint64_t nextAttemptAt_ = 0;
  bool wasUp_ = false;
  bool begun_ = false;
};
