// Wiring only: configuration in, components built, each one's loop() called. The protocol logic is the
// portable core (lib/protocol), tested on the host; everything here is a thin port of it to the board.
// One image for the fleet (docs/provisioning.md): the configuration comes from NVS (Improv Serial,
// enrollment), compiled-in values only fill what NVS lacks. The mode follows from it: no Wi-Fi → wait for
// Improv; Wi-Fi and hub URL but no token → enroll [PROTO-8]; a device id and token → the session.
// Nothing in loop() waits: every component keeps its own schedule against the clock, and the network
// (DNS, TCP connect, TLS handshake, sends) runs in its own task (net_task.h).
#include <Arduino.h>
#include <WiFi.h>
#include <bootloader_random.h>
#include <esp_random.h>
#include <hub_protocol.h>

#include "app_config.h"
#include "boot_identity.h"
#include "deep_sleep.h"
#include "device_hooks.h"
#include "esp_clock.h"
#include "flash_partition.h"
#include "improv_serial.h"
#include "net_task.h"
#include "ota_update.h"
#include "nvs_store.h"
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

char hardwareId[32];
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
#if !HUB_DEEP_SLEEP
OtaService ota(HUB_CA_CERT);  // docs/ota.md "Board"
#endif
bool wifiWasUp = false;

NvsStore nvs;
esp32hub::ConfigStore store(nvs);
ImprovSerialPort improvPort(wifi, hardwareId);
esp32hub::improv::Service* improv = nullptr;
esp32hub::HoldDetector resetButton(HUB_RESET_HOLD_MS);
uint64_t restartAt = 0;

enum class Mode : uint8_t { Unprovisioned, NoHub, Enroll, Device, Rejected };
Mode mode = Mode::Unprovisioned;

/** The hardware id `esp32-<12 lowercase hex of the MAC>`: the id a board enrolls with [PROTO-8.2.1]. */
const char* resolveHardwareId() {
  uint64_t mac = ESP.getEfuseMac();  // the factory MAC, first byte in the lowest 8 bits
  snprintf(hardwareId, sizeof hardwareId, "esp32-%012llx", static_cast<unsigned long long>(__builtin_bswap64(mac) >> 16));
  return hardwareId;
}

/** The compiled-in developer defaults (secrets.h, build flags). HUB_URL, else HUB_HOST/PORT/PATH/TLS. */
esp32hub::BuildDefaults buildDefaults() {
  static char url[esp32hub::cfglimits::kHubUrlMax + 1];
  if (HUB_URL[0] != '\0') {
    snprintf(url, sizeof url, "%s", HUB_URL);
  } else if (HUB_HOST[0] != '\0') {
    // HUB_PATH was the device endpoint: what precedes "/v1/device" is the hub's path prefix.
    String path(HUB_PATH);
    if (path.endsWith("/v1/device")) path = path.substring(0, path.length() - 10);
    snprintf(url, sizeof url, "%s://%s:%u%s", HUB_TLS ? "wss" : "ws", HUB_HOST, static_cast<unsigned>(HUB_PORT),
             path.c_str());
  }
  esp32hub::BuildDefaults d;
  d.wifiSsid = HUB_WIFI_SSID;
  d.wifiPassword = HUB_WIFI_PASSWORD;
  d.hubUrl = url;
  d.deviceId = HUB_DEVICE_ID[0] != '\0' ? HUB_DEVICE_ID : hardwareId;
  d.token = HUB_DEVICE_TOKEN;
  d.fleetSecret = HUB_FLEET_SECRET;
  return d;
}

/** Clears the configuration (NVS and the Wi-Fi driver's own copy) and restarts unprovisioned. */
[[noreturn]] void factoryReset() {
  Serial.println("[config] factory reset: configuration cleared, restarting");
  store.factoryReset();
  WiFi.disconnect(true, true);
  Serial.flush();
  ESP.restart();
  for (;;) delay(1000);
}

/** At start: a button already held goes on being watched until it is released or held long enough. */
void resetButtonAtStart() {
  pinMode(HUB_RESET_PIN, INPUT_PULLUP);
  if (digitalRead(HUB_RESET_PIN) != LOW) return;
  Serial.printf("[config] button held: keep holding %u s for a factory reset\n", HUB_RESET_HOLD_MS / 1000);
  for (;;) {
    bool down = digitalRead(HUB_RESET_PIN) == LOW;
    if (resetButton.update(down, millis())) factoryReset();
    if (!down) return;
    delay(10);
  }
}

/** In every mode: Improv Serial, the settings it changed (applied by a restart), the reset button. */
void serviceLoop(uint64_t now) {
  while (Serial.available() > 0) improv->onByte(static_cast<uint8_t>(Serial.read()), now);
  improv->poll(now);
  if (improv->takeChanged()) restartAt = now + HUB_APPLY_DELAY_MS;
  if (restartAt != 0 && now >= restartAt) {
    Serial.println("[config] new settings: restarting to apply them");
    Serial.flush();
    ESP.restart();
  }
  if (resetButton.update(digitalRead(HUB_RESET_PIN) == LOW, now)) factoryReset();
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
#if !HUB_DEEP_SLEEP
  ota.loop(now);
#endif
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
    wifi.begin(store.config().wifiSsid, store.config().wifiPassword, hardwareId);
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


// ───────────────────────────── enrollment [PROTO-8] ─────────────────────────────
#if !HUB_TRANSPORT_MQTT  // enrollment runs over WebSocket

struct EnrollHooks : esp32hub::EnrollHooks {
  bool storeCredentials(esp32hub::Str deviceId, esp32hub::Str token) override {
    bool ok = store.setCredentials(deviceId, token);
    Serial.printf("[enroll] approved as %s%s\n", store.config().deviceId, ok ? "" : ": could not store it");
    return ok;
  }
  void storeRejected() override {
    store.setEnrollRejected();
    Serial.println("[enroll] rejected by the hub: no more requests until a factory reset");
  }
  void onHubError(uint16_t code, bool fatal, esp32hub::Str message) override {
    Serial.printf("[hub] error %u%s: %.*s\n", code, fatal ? " (fatal)" : "", message.len, message.data);
  }
  void log(const char* line) override { Serial.println(line); }
};
EnrollHooks enrollHooks;
esp32hub::EnrollClient* enrollClient = nullptr;

uint32_t espRandom32(void*) { return esp_random(); }

/** Opens /v1/enroll of the stored hub URL through the network task. */
void startEnrollment() {
  const esp32hub::DeviceConfig& cfg = store.config();
  // Before Wi-Fi is up esp_random() is only pseudo-random: the key is drawn with the SAR ADC entropy
  // source on, as the boot key is (boot_identity.cpp).
  bootloader_random_enable();
  bool keyOk = store.ensureEnrollKey(espRandom32, nullptr);
  bootloader_random_disable();
  if (!keyOk) Serial.println("[enroll] the enroll key could not be stored: enrolling with an unsaved key");
  static esp32hub::HubUrl url;
  esp32hub::parseHubUrl(esp32hub::Str::of(cfg.hubUrl), url);
  static char path[esp32hub::cfglimits::kHubUrlMax + 16];
  snprintf(path, sizeof path, "%s%s", url.prefix, esp32hub::enroll::kPath);
  static esp32hub::EnrollConfig ec;
  ec.hardwareId = hardwareId;
  ec.enrollKey = cfg.enrollKey;
  ec.fleetSecret = cfg.fleetSecret;
  ec.model = HUB_CHIP_MODEL;
  ec.firmwareVersion = HUB_FIRMWARE_VERSION;
  static esp32hub::EnrollClient client(ec, net, espClock, enrollHooks);
  enrollClient = &client;
  WsTransport::Options link = {url.host,    url.port, path,        url.tls,          HUB_CA_CERT,
                               "",          esp32hub::enroll::kSubprotocol,             HUB_PING_INTERVAL_MS,
                               HUB_PONG_TIMEOUT_MS, HUB_MISSED_PONGS};
  if (!net.begin(link, client)) Serial.println("[boot] network task not started (out of memory)");
  Serial.printf("[enroll] hardware id %s: asking %s%s\n", hardwareId, cfg.hubUrl, esp32hub::enroll::kPath);
}

void enrollLoop(uint64_t now) {
  wifi.loop(now, espClock.random32());
  bool wifiUp = wifi.up();
  if (wifiUp != wifiWasUp) {
    wifiWasUp = wifiUp;
    enrollClient->setNetworkUp(wifiUp);
  }
  net.poll();
  enrollClient->poll();
  if (enrollClient->done()) {
    // The transport is configured once per boot (ws_transport.h): a restart connects to /v1/device.
    Serial.println("[enroll] done: restarting as a device");
    Serial.flush();
    ESP.restart();
  }
  esp32hub::EnrollState st = enrollClient->state();
  esp32hub::LinkState shown = st == esp32hub::EnrollState::Idle ? esp32hub::LinkState::Offline : esp32hub::LinkState::Connecting;
  led.loop(now, shown, wifiUp, st == esp32hub::EnrollState::Rejected);
}
#endif

// ───────────────────────────── the device session ─────────────────────────────

void startDevice() {
  const esp32hub::DeviceConfig& cfg = store.config();
  esp32hub::SessionConfig config;
  config.deviceId = cfg.deviceId;
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
  Serial.printf("[boot] device id %s, reset reason %u, boot id %lu\n", config.deviceId,
                static_cast<unsigned>(config.resetReason), static_cast<unsigned long>(config.bootId));
  setupOutbox(config.resetReason);

  sensors.begin(wifi);
#if HUB_DEEP_SLEEP
  sensors.restoreInterval(st->intervalMs);
  sensors.setTick(st->tick);
  sensors.startSchedule(st->nextDueMs);
#endif
  static esp32hub::Session s(config, net, espClock, hooks, *outbox);
  session = &s;
  hooks.attach(s);
#if !HUB_DEEP_SLEEP
  ota.begin(s, espClock.uptimeMs());  // a pending-verify image starts its health deadline now
  hooks.attachOta(ota);
#endif
  esp32hub::ChannelDescriptor channels[esp32hub::Session::kMaxChannels];
  esp32hub::Err err = s.begin(channels, sensors.descriptors(channels, esp32hub::Session::kMaxChannels));
  if (err != esp32hub::Err::Ok) Serial.printf("[boot] bad configuration: %s\n", esp32hub::errName(err));

#if HUB_TRANSPORT_MQTT
  MqttTransport::Options link = {HUB_MQTT_URI, cfg.deviceId, cfg.token, HUB_MQTT_TOPIC_PREFIX, HUB_CA_CERT,
                                 HUB_MQTT_KEEPALIVE_SEC};
#else
  static esp32hub::HubUrl url;
  esp32hub::parseHubUrl(esp32hub::Str::of(cfg.hubUrl), url);
  static char path[esp32hub::cfglimits::kHubUrlMax + 16];
  snprintf(path, sizeof path, "%s/v1/device", url.prefix);
  WsTransport::Options link = {url.host,  url.port,  path,  url.tls,  HUB_CA_CERT,  cfg.token,
                               esp32hub::kSubprotocol,  HUB_PING_INTERVAL_MS,  HUB_PONG_TIMEOUT_MS,  HUB_MISSED_PONGS};
#endif
  if (!net.begin(link, s)) Serial.println("[boot] network task not started (out of memory)");
#if HUB_DEEP_SLEEP
  deepSleepWake(*st, s);
#else
  wifi.begin(cfg.wifiSsid, cfg.wifiPassword, hardwareId);
#endif
}

}  // namespace

void setup() {
  Serial.begin(115200);
  resolveHardwareId();
  if (!nvs.begin()) Serial.println("[config] NVS not usable: nothing can be stored");
  store.load();
  store.applyBuildDefaults(buildDefaults());
  resetButtonAtStart();
  led.begin(HUB_LED_PIN, HUB_LED_RGB, HUB_LED_ACTIVE_LOW);

  const esp32hub::DeviceConfig& cfg = store.config();
  const esp32hub::ConfigSources& src = store.sources();
  Serial.printf("\n[boot] esp32hub firmware %s, hardware id %s\n", HUB_FIRMWARE_VERSION, hardwareId);
  // Never the password, the token or the fleet secret.
  Serial.printf("[config] wifi %s%s, hub %s%s, device id %s%s, fleet secret %s\n", cfg.hasWifi() ? cfg.wifiSsid : "(none)",
                src.wifiFromBuild ? " (build)" : "", cfg.hasHub() ? cfg.hubUrl : "(none)", src.hubFromBuild ? " (build)" : "",
                cfg.hasCredentials() ? cfg.deviceId : "(none)", src.credentialsFromBuild ? " (build)" : "",
                cfg.fleetSecret[0] != '\0' ? "set" : "none");
  if (src.invalidMask != 0) Serial.printf("[config] ignored invalid stored values (mask 0x%02x)\n", src.invalidMask);

  static esp32hub::improv::DeviceInfo info;
  info.firmwareVersion = HUB_FIRMWARE_VERSION;
  info.chip = HUB_CHIP_MODEL;
  info.hardwareId = hardwareId;
  info.wssAllowed = sizeof(HUB_CA_CERT) > 64;
  static esp32hub::improv::Service svc(improvPort, store, info);
  improv = &svc;

  if (cfg.hasCredentials() && (cfg.hasHub() || HUB_TRANSPORT_MQTT)) {
    mode = Mode::Device;
    startDevice();
  } else if (!cfg.hasWifi()) {
    mode = Mode::Unprovisioned;
    Serial.println("[config] not provisioned: send Wi-Fi and the hub URL over Improv Serial (docs/provisioning.md)");
  } else {
    wifi.begin(cfg.wifiSsid, cfg.wifiPassword, hardwareId);
    if (!cfg.hasHub()) {
      mode = Mode::NoHub;
      Serial.println("[config] no hub URL: send it over Improv Serial (SET_HUB)");
    } else if (cfg.enrollRejected) {
      mode = Mode::Rejected;
      Serial.println("[enroll] this board was rejected by the hub: factory reset to ask again");
    } else if (HUB_TRANSPORT_MQTT) {
      mode = Mode::NoHub;
      Serial.println("[enroll] enrollment runs over WebSocket: an MQTT build needs HUB_DEVICE_ID and HUB_DEVICE_TOKEN");
    } else {
#if !HUB_TRANSPORT_MQTT
      mode = Mode::Enroll;
      startEnrollment();
#endif
    }
  }
}

void loop() {
  uint64_t now = espClock.uptimeMs();
  serviceLoop(now);
  switch (mode) {
    case Mode::Device:
      linkLoop(now);
      sensors.loop(now, *session);
      break;
#if !HUB_TRANSPORT_MQTT
    case Mode::Enroll:
      enrollLoop(now);
      break;
#endif
    default:
      if (wifi.begun()) wifi.loop(now, espClock.random32());
      led.loop(now, esp32hub::LinkState::Offline, wifi.up(), mode == Mode::Rejected);
      break;
  }
}
