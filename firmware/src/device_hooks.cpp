#include "device_hooks.h"

#include <Arduino.h>
#include <esp_timer.h>

#include "ota_update.h"
#include "sensors.h"
#include "status_led.h"

using esp32hub::CommandStatus;

CommandStatus DeviceHooks::applySampleInterval(uint32_t intervalMs) {
  sensors_.setInterval(intervalMs, *session_);
  return CommandStatus::Ok;
}

CommandStatus DeviceHooks::identify(uint32_t durationMs) {
  led_.identify(static_cast<uint64_t>(esp_timer_get_time() / 1000), durationMs);
  if (!ledRecordedOn_) {
    ledRecordedOn_ = true;
    sensors_.recordLed(true, *session_);
  }
  Serial.printf("[cmd] identify for %lu ms\n", static_cast<unsigned long>(durationMs));
  return CommandStatus::Ok;
}

void DeviceHooks::loop() {
  if (ledRecordedOn_ && !led_.identifying()) {
    ledRecordedOn_ = false;
    sensors_.recordLed(false, *session_);
  }
}

void DeviceHooks::reboot() {
  // The session has handed the RESULT to the transport and waited rebootDelayMs for it to leave.
  Serial.println("[cmd] rebooting");
  Serial.flush();
  ESP.restart();
}

CommandStatus DeviceHooks::onCommand(const esp32hub::Command& command, char* message, size_t cap) {
  if (!command.name.equals("ota")) return CommandStatus::Unsupported;
  if (ota_ == nullptr) {
    snprintf(message, cap, "no OTA in this build");
    return CommandStatus::Unsupported;
  }
  return ota_->onCommand(command, message, cap);
}

void DeviceHooks::onLinkState(esp32hub::LinkState state) {
  if (state == esp32hub::LinkState::Ready) authRefused_ = false;
  if (state == esp32hub::LinkState::Ready && ota_ != nullptr) ota_->onWelcome();  // the new image is healthy
  Serial.printf("[link] %s\n", esp32hub::linkStateName(state));
}

void DeviceHooks::onHubError(uint16_t code, bool fatal, esp32hub::Str message) {
  if (fatal && (code == esp32hub::wire_error::kRevoked || code == esp32hub::wire_error::kDeviceMismatch)) {
    authRefused_ = true;
  }
  Serial.printf("[hub] error %u%s: %.*s\n", code, fatal ? " (fatal)" : "", message.len, message.data);
}

void DeviceHooks::log(const char* line) { Serial.printf("[session] %s\n", line); }
