// Wiring only: configuration in, components built, each one's loop() called. The protocol logic is the
// portable core (lib/protocol), tested on the host; everything here is a thin port of it to the board.
// Nothing in loop() waits: every component keeps its own schedule against the clock.
#include <Arduino.h>
#include <hub_protocol.h>

#include "app_config.h"
#include "device_hooks.h"
#include "esp_clock.h"
#include "reset_reason.h"
#include "sensors.h"
#include "status_led.h"
#include "wifi_link.h"
#include "ws_transport.h"

namespace {

// The outbox's bytes. In RTC memory (RTC_NOINIT_ATTR) they survive deep sleep and software, panic and
// watchdog resets; restore() keeps only what passes its header and frame CRC checks.
#if HUB_OUTBOX_IN_RTC
RTC_NOINIT_ATTR esp32hub::OutboxStorage<HUB_OUTBOX_SLOTS, HUB_OUTBOX_SLOT_BYTES> outboxMemory;
#else
esp32hub::OutboxStorage<HUB_OUTBOX_SLOTS, HUB_OUTBOX_SLOT_BYTES> outboxMemory;
#endif

char deviceId[32];
esp32hub::Outbox outbox;
EspClock espClock;  // not `clock`: that is a C library function
WifiLink wifi;
WsTransport transport;
StatusLed led;
Sensors sensors;
DeviceHooks hooks(sensors, led);
esp32hub::Session* session = nullptr;
bool wifiWasUp = false;

const char* resolveDeviceId() {
  if (HUB_DEVICE_ID[0] != '\0') return HUB_DEVICE_ID;
  uint64_t mac = ESP.getEfuseMac();  // the factory MAC, first byte in the lowest 8 bits
  snprintf(deviceId, sizeof deviceId, "esp32-%012llx", static_cast<unsigned long long>(__builtin_bswap64(mac) >> 16));
  return deviceId;
}

}  // namespace

void setup() {
  Serial.begin(115200);
  esp32hub::SessionConfig config;
  config.deviceId = resolveDeviceId();
  config.firmwareVersion = HUB_FIRMWARE_VERSION;
  config.resetReason = protocolResetReason(esp_reset_reason());
  config.maxUplinkFrameBytes = HUB_OUTBOX_SLOT_BYTES;
  config.maxBatchMs = HUB_BATCH_MS;
  Serial.printf("\n[boot] esp32hub firmware %s, device id %s, reset reason %u\n", HUB_FIRMWARE_VERSION,
                config.deviceId, static_cast<unsigned>(config.resetReason));

  uint16_t kept = 0;
  if (HUB_OUTBOX_IN_RTC && config.resetReason != esp32hub::ResetReason::PowerOn) {
    kept = outbox.restore(outboxMemory.bytes, sizeof outboxMemory.bytes, HUB_OUTBOX_SLOTS, HUB_OUTBOX_SLOT_BYTES);
  } else {
    outbox.format(outboxMemory.bytes, sizeof outboxMemory.bytes, HUB_OUTBOX_SLOTS, HUB_OUTBOX_SLOT_BYTES);
  }
  Serial.printf("[boot] outbox: %u slots of %u bytes, %u frames kept\n", HUB_OUTBOX_SLOTS, HUB_OUTBOX_SLOT_BYTES, kept);

  led.begin(HUB_LED_PIN, HUB_LED_RGB, HUB_LED_ACTIVE_LOW);
  sensors.begin(wifi);
  static esp32hub::Session s(config, transport, espClock, hooks, outbox);
  session = &s;
  hooks.attach(s);
  esp32hub::ChannelDescriptor channels[esp32hub::Session::kMaxChannels];
  esp32hub::Err err = s.begin(channels, sensors.descriptors(channels, esp32hub::Session::kMaxChannels));
  if (err != esp32hub::Err::Ok) Serial.printf("[boot] bad configuration: %s\n", esp32hub::errName(err));

  WsTransport::Options ws = {HUB_HOST, HUB_PORT,  HUB_PATH,           HUB_TLS != 0,      HUB_CA_CERT,
                             HUB_DEVICE_TOKEN, HUB_PING_INTERVAL_MS, HUB_PONG_TIMEOUT_MS, HUB_MISSED_PONGS};
  transport.begin(ws, s);
  wifi.begin(HUB_WIFI_SSID, HUB_WIFI_PASSWORD, config.deviceId);
}

void loop() {
  uint64_t now = espClock.uptimeMs();
  wifi.loop(now, espClock.random32());
  bool wifiUp = wifi.up();
  if (wifiUp != wifiWasUp) {
    wifiWasUp = wifiUp;
    if (wifiUp) espClock.startSntp(HUB_NTP_SERVER);
    session->setNetworkUp(wifiUp);
  }
  transport.loop();
  session->poll();
  sensors.loop(now, *session);
  hooks.loop();
  led.loop(now, session->state(), wifiUp, transport.authRefused() || hooks.authRefused());
}
