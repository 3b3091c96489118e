// Wiring only: configuration in, components built, each one's loop() called. The protocol logic is the
// portable core (lib/protocol), tested on the host; everything here is a thin port of it to the board.
// Nothing in loop() waits: every component keeps its own schedule against the clock, and the network
// (DNS, TCP connect, TLS handshake, sends) runs in its own task (net_task.h).
#include <Arduino.h>
#include <hub_protocol.h>

#include "app_config.h"
#include "boot_identity.h"
#include "deep_sleep.h"
#include "device_hooks.h"
#include "esp_clock.h"
#include "flash_partition.h"
#include "net_task.h"
#include "reset_reason.h"
#include "sensors.h"
#include "status_led.h"
#include "wifi_link.h"

namespace {

// The fallback outbox's bytes (no "outbox" partition, or HUB_OUTBOX_FLASH 0). In RTC memory
// (RTC_NOINIT_ATTR) they survive deep sleep and software, panic and watchdog resets; restore() keeps
// only what passes its header and frame CRC checks.
#if HUB_OUTBOX_IN_RTC
RTC_NOINIT_ATTR esp32hub::OutboxStorage<HUB_OUTBOX_SLOTS, HUB_OUTBOX_SLOT_BYTES> outboxMemory;
#else
esp32hub::OutboxStorage<HUB_OUTBOX_SLOTS, HUB_OUTBOX_SLOT_BYTES> outboxMemory;
#endif

char deviceId[32];
PartitionFlash flash;
esp32hub::FlashOutbox flashOutbox;
esp32hub::Outbox ramOutbox;
esp32hub::FrameQueue* outbox = &ramOutbox;
EspClock espClock;  // not `clock`: that is a C library function
WifiLink wifi;
NetTask net;
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

/** The flash outbox when the partition is there, else the RAM (or RTC) one. Returns the frames kept. */
uint32_t setupOutbox(esp32hub::ResetReason reason) {
  if (HUB_OUTBOX_FLASH) {
    if (flash.begin() && flashOutbox.mount(flash)) {
      outbox = &flashOutbox;
      Serial.printf("[boot] flash outbox: %lu sectors, %lu frames kept\n", static_cast<unsigned long>(flash.sectorCount()),
                    static_cast<unsigned long>(flashOutbox.count()));
      return flashOutbox.count();
    }
    Serial.println("[boot] no \"outbox\" partition (flash with partitions-4MB.csv): frames are kept in RAM only");
  }
  uint16_t kept = 0;
  if (HUB_OUTBOX_IN_RTC && reason != esp32hub::ResetReason::PowerOn) {
    kept = ramOutbox.restore(outboxMemory.bytes, sizeof outboxMemory.bytes, HUB_OUTBOX_SLOTS, HUB_OUTBOX_SLOT_BYTES);
  } else {
    ramOutbox.format(outboxMemory.bytes, sizeof outboxMemory.bytes, HUB_OUTBOX_SLOTS, HUB_OUTBOX_SLOT_BYTES);
  }
  Serial.printf("[boot] outbox: %u slots of %u bytes, %u frames kept\n", HUB_OUTBOX_SLOTS, HUB_OUTBOX_SLOT_BYTES, kept);
  return kept;
}

/** One turn of everything but sampling: Wi-Fi, the network task's news, the session, the LED. */
void linkLoop(uint64_t now) {
  wifi.loop(now, espClock.random32());
  bool wifiUp = wifi.up();
  if (wifiUp != wifiWasUp) {
    wifiWasUp = wifiUp;
    if (wifiUp) espClock.startSntp(HUB_NTP_SERVER);
    session->setNetworkUp(wifiUp);
  }
  net.poll();
  session->poll();
  hooks.loop();
  led.loop(now, session->state(), wifiUp, net.authRefused() || hooks.authRefused());
}

#if HUB_DEEP_SLEEP
/**
 * One wake: the due tick into the flash outbox; every N samples or M minutes a connection that flushes
 * the outbox (ticks that fall due meanwhile are sampled too); then sleep until the next tick.
 */
[[noreturn]] void deepSleepWake(SleepState& st, esp32hub::Session& s) {
  uint64_t now = espClock.uptimeMs();
  while (st.nextDueMs > now && st.nextDueMs - now < 50) now = espClock.uptimeMs();  // woke a little early
  sensors.loop(now, s);
  s.flush();  // in flash before anything else can go wrong
  st.samplesSinceConnect++;
  esp32hub::SleepPolicy policy;
  policy.flushEverySamples = HUB_SLEEP_FLUSH_SAMPLES;
  policy.flushEveryMs = HUB_SLEEP_FLUSH_MINUTES * 60000u;
  if (policy.shouldConnect(st.samplesSinceConnect, now - st.lastConnectMs)) {
    wifi.begin(HUB_WIFI_SSID, HUB_WIFI_PASSWORD, resolveDeviceId());
    uint64_t deadline = now + HUB_SLEEP_CONNECT_TIMEOUT_MS;
    bool flushed = false;
    while (!flushed && espClock.uptimeMs() < deadline) {
      uint64_t t = espClock.uptimeMs();
      linkLoop(t);
      sensors.loop(t, s);
      flushed = s.state() == esp32hub::LinkState::Ready && outbox->empty() && s.builder().empty();
      delay(5);
    }
    Serial.printf("[sleep] flush %s\n", flushed ? "done" : "gave up (frames stay in flash)");
    // Failed or not, the next try is N samples or M minutes away: no battery spent on a dead hub.
    st.samplesSinceConnect = 0;
    st.lastConnectMs = now;
    s.setNetworkUp(false);
  }
  s.flush();
  st.nextSeq = s.lastSeq() + 1;
  st.tick = sensors.tick();
  st.intervalMs = sensors.intervalMs();
  st.nextDueMs = sensors.nextDueMs();
  uint64_t t = espClock.uptimeMs();
  sleepFor(st, st.nextDueMs > t ? st.nextDueMs - t : 1);
}
#endif

}  // namespace

void setup() {
  Serial.begin(115200);
  esp32hub::SessionConfig config;
  config.deviceId = resolveDeviceId();
  config.firmwareVersion = HUB_FIRMWARE_VERSION;
  config.resetReason = protocolResetReason(esp_reset_reason());
  config.maxUplinkFrameBytes = HUB_OUTBOX_SLOT_BYTES;
  config.maxBatchMs = HUB_BATCH_MS;
#if HUB_DEEP_SLEEP
  SleepState* st = resumeFromSleep(config.resetReason == esp32hub::ResetReason::DeepSleep);
  espClock.useRtcCounter(st != nullptr);
  if (st != nullptr) {
    config.bootId = st->bootId;  // the same boot, continued [PROTO-3.1.1]
    config.firstSeq = st->nextSeq;
  } else {
    config.bootId = nextBootId();  // before Wi-Fi: its entropy source needs the radio off
    st = &freshSleepState(config.bootId, HUB_SAMPLE_INTERVAL_MS);
    st->nextDueMs = espClock.uptimeMs();
    st->lastConnectMs = st->nextDueMs;
    st->samplesSinceConnect = HUB_SLEEP_FLUSH_SAMPLES;  // connect on the first wake (clock, descriptors)
  }
#else
  config.bootId = nextBootId();  // before Wi-Fi: its entropy source needs the radio off
#endif
  Serial.printf("\n[boot] esp32hub firmware %s, device id %s, reset reason %u, boot id %lu\n", HUB_FIRMWARE_VERSION,
                config.deviceId, static_cast<unsigned>(config.resetReason), static_cast<unsigned long>(config.bootId));
  setupOutbox(config.resetReason);

  led.begin(HUB_LED_PIN, HUB_LED_RGB, HUB_LED_ACTIVE_LOW);
  sensors.begin(wifi);
#if HUB_DEEP_SLEEP
  sensors.restoreInterval(st->intervalMs);
  sensors.setTick(st->tick);
  sensors.startSchedule(st->nextDueMs);
#endif
  static esp32hub::Session s(config, net, espClock, hooks, *outbox);
  session = &s;
  hooks.attach(s);
  esp32hub::ChannelDescriptor channels[esp32hub::Session::kMaxChannels];
  esp32hub::Err err = s.begin(channels, sensors.descriptors(channels, esp32hub::Session::kMaxChannels));
  if (err != esp32hub::Err::Ok) Serial.printf("[boot] bad configuration: %s\n", esp32hub::errName(err));

#if HUB_TRANSPORT_MQTT
  MqttTransport::Options link = {HUB_MQTT_URI, resolveDeviceId(), HUB_DEVICE_TOKEN, HUB_MQTT_TOPIC_PREFIX, HUB_CA_CERT,
                                 HUB_MQTT_KEEPALIVE_SEC};
#else
  WsTransport::Options link = {HUB_HOST, HUB_PORT,  HUB_PATH,           HUB_TLS != 0,      HUB_CA_CERT,
                               HUB_DEVICE_TOKEN, HUB_PING_INTERVAL_MS, HUB_PONG_TIMEOUT_MS, HUB_MISSED_PONGS};
#endif
  if (!net.begin(link, s)) Serial.println("[boot] network task not started (out of memory)");
#if HUB_DEEP_SLEEP
  deepSleepWake(*st, s);
#else
  wifi.begin(HUB_WIFI_SSID, HUB_WIFI_PASSWORD, config.deviceId);
#endif
}

void loop() {
  uint64_t now = espClock.uptimeMs();
  linkLoop(now);
  sensors.loop(now, *session);
}
