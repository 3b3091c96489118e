// What the session asks of this board: the four commands [PROTO-3.6], link-state changes, hub errors,
// and the log (Serial).
#pragma once

#include <hub_session.h>

class Sensors;
class StatusLed;
class OtaService;

class DeviceHooks : public esp32hub::DeviceHooks {
 public:
  DeviceHooks(Sensors& sensors, StatusLed& led) : sensors_(sensors), led_(led) {}
  void attach(esp32hub::Session& session) { session_ = &session; }
  /** The `ota` command and the health check after an update (none: `ota` is unsupported). */
  void attachOta(OtaService& ota) { ota_ = &ota; }

  esp32hub::CommandStatus applySampleInterval(uint32_t intervalMs) override;
  esp32hub::CommandStatus identify(uint32_t durationMs) override;
  void reboot() override;
  esp32hub::CommandStatus onCommand(const esp32hub::Command& command, char* message, size_t cap) override;
  void onLinkState(esp32hub::LinkState state) override;
  void onHubError(uint16_t code, bool fatal, esp32hub::Str message) override;
  void log(const char* line) override;

  /** A fatal REVOKED or DEVICE_MISMATCH from the hub: shown like a refused token. */
  bool authRefused() const { return authRefused_; }
  /** Call from loop(): records the LED going off when identify ends. */
  void loop();

 private:
  Sensors& sensors_;
  StatusLed& led_;
  esp32hub::Session* session_ = nullptr;
  OtaService* ota_ = nullptr;
  bool ledRecordedOn_ = false;
  bool authRefused_ = false;
};
