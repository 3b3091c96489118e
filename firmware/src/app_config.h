// Build-time configuration: include/secrets.h (git-ignored; copy include/secrets.example.h) or build
// flags, validated here so a misconfigured build fails at compile time, not on the bench.
#pragma once

#if __has_include("secrets.h")
#include "secrets.h"
#endif

// One image for the whole fleet: nothing here is required. Wi-Fi, the hub URL, the device id and token
// live in NVS and are set at run time (Improv Serial, enrollment; docs/provisioning.md). Values set here
// are developer defaults, used only while NVS lacks them (ConfigStore::applyBuildDefaults).
#ifndef HUB_WIFI_SSID
#define HUB_WIFI_SSID ""
#endif
#ifndef HUB_WIFI_PASSWORD
#define HUB_WIFI_PASSWORD ""
#endif
// The hub: HUB_URL ("ws://192.168.1.10:8080"), or the older HUB_HOST / HUB_PORT / HUB_PATH / HUB_TLS.
#ifndef HUB_URL
#define HUB_URL ""
#endif
#ifndef HUB_HOST
#define HUB_HOST ""
#endif
#ifndef HUB_DEVICE_TOKEN
#define HUB_DEVICE_TOKEN ""
#endif
// The fleet enrollment secret (the hub's ENROLL_FLEET_SECRET): boards that send it are approved at once.
#ifndef HUB_FLEET_SECRET
#define HUB_FLEET_SECRET ""
#endif
// Factory reset: hold this button (active low; GPIO 0 is the BOOT button of DevKits, GPIO 9 on the C3)
// for HUB_RESET_HOLD_MS, at start or at any time.
#ifndef HUB_RESET_PIN
#if CONFIG_IDF_TARGET_ESP32C3
#define HUB_RESET_PIN 9
#else
#define HUB_RESET_PIN 0
#endif
#endif
#ifndef HUB_RESET_HOLD_MS
#define HUB_RESET_HOLD_MS 5000
#endif
// New settings over Improv are applied by a restart this long after the last one (Wi-Fi and hub URL
// usually come one after the other).
// The model string of ENROLL [PROTO-8.2.1] and Improv's device information.
#ifndef HUB_CHIP_MODEL
#if CONFIG_IDF_TARGET_ESP32C3
#define HUB_CHIP_MODEL "esp32-c3"
#else
#define HUB_CHIP_MODEL "esp32"
#endif
#endif
// After an OTA update the new image must get the hub's WELCOME within this long, or it is rolled back
// (docs/ota.md "Board": OTA_HEALTH_DEADLINE).
#ifndef HUB_OTA_HEALTH_DEADLINE_MS
#define HUB_OTA_HEALTH_DEADLINE_MS 120000
#endif
#ifndef HUB_APPLY_DELAY_MS
#define HUB_APPLY_DELAY_MS 3000
#endif
#ifndef HUB_PORT
#define HUB_PORT 8080
#endif
#ifndef HUB_PATH
#define HUB_PATH "/v1/device"
#endif
#ifndef HUB_TLS
#define HUB_TLS 0
#endif
#ifndef HUB_CA_CERT
#define HUB_CA_CERT ""
#endif
#ifndef HUB_DEVICE_ID
#define HUB_DEVICE_ID ""
#endif
#ifndef HUB_NTP_SERVER
#define HUB_NTP_SERVER "pool.ntp.org"
#endif

// wss:// needs a CA: arduinoWebSockets' beginSslWithCA() with no CA silently calls setInsecure(), which
// would accept any certificate. Refuse to build that instead.
#if HUB_TLS
static_assert(sizeof(HUB_CA_CERT) > 64, "HUB_TLS is 1 but HUB_CA_CERT is empty: set the PEM of the hub's CA");
#endif

// Sampling and batching.
#ifndef HUB_SAMPLE_INTERVAL_MS
#define HUB_SAMPLE_INTERVAL_MS 10000  // default until the hub's WELCOME or a command says otherwise
#endif
#ifndef HUB_BATCH_MS
#define HUB_BATCH_MS 0  // 0: one frame per sample tick (live dashboards); e.g. 60000 to save airtime
#endif

// Deep-sleep mode for battery boards (README "Deep sleep"): sample on timer wakes into the flash outbox,
// connect and flush every HUB_SLEEP_FLUSH_SAMPLES samples or HUB_SLEEP_FLUSH_MINUTES minutes.
#ifndef HUB_DEEP_SLEEP
#define HUB_DEEP_SLEEP 0
#endif
#ifndef HUB_SLEEP_FLUSH_SAMPLES
#define HUB_SLEEP_FLUSH_SAMPLES 30
#endif
#ifndef HUB_SLEEP_FLUSH_MINUTES
#define HUB_SLEEP_FLUSH_MINUTES 15
#endif
#ifndef HUB_SLEEP_CONNECT_TIMEOUT_MS
#define HUB_SLEEP_CONNECT_TIMEOUT_MS 30000  // give up a flush (no Wi-Fi, no hub) and sleep; frames stay
#endif

// Transport: 0 = WebSocket to the hub (HUB_HOST, HUB_PORT, HUB_PATH), 1 = MQTT through a broker
// [PROTO-1.6] (README "MQTT"): login = the device id and its hub token, same frames, same session.
#ifndef HUB_TRANSPORT_MQTT
#define HUB_TRANSPORT_MQTT 0
#endif
#ifndef HUB_MQTT_URI
#define HUB_MQTT_URI ""  // e.g. "mqtt://192.168.1.10:1883", or "mqtts://broker.example.net:8883" (needs HUB_CA_CERT)
#endif
#ifndef HUB_MQTT_TOPIC_PREFIX
#define HUB_MQTT_TOPIC_PREFIX "esp32hub"  // the hub's MQTT_TOPIC_PREFIX
#endif
#ifndef HUB_MQTT_KEEPALIVE_SEC
#define HUB_MQTT_KEEPALIVE_SEC 30  // the broker publishes the will after 1.5 × this of silence
#endif
#if HUB_TRANSPORT_MQTT
static_assert(sizeof(HUB_MQTT_URI) > 8, "HUB_TRANSPORT_MQTT is 1 but HUB_MQTT_URI is empty: set the broker, e.g. mqtt://host:1883");
#endif

// Heartbeat [PROTO-1.5]: ping every 15 s, disconnect after 2 pongs missed by 5 s each.
#ifndef HUB_PING_INTERVAL_MS
#define HUB_PING_INTERVAL_MS 15000
#endif
#ifndef HUB_PONG_TIMEOUT_MS
#define HUB_PONG_TIMEOUT_MS 5000
#endif
#ifndef HUB_MISSED_PONGS
#define HUB_MISSED_PONGS 2
#endif

// The outbox: the FlashOutbox in the "outbox" partition (partitions-4MB.csv) by default; it keeps
// unacknowledged frames through power cuts. Without that partition (another partition table), or with
// HUB_OUTBOX_FLASH 0, a RAM outbox; with HUB_OUTBOX_IN_RTC 1 that one lives in RTC memory
// (RTC_NOINIT_ATTR) and keeps frames across deep sleep, software resets, panics and watchdog resets.
#ifndef HUB_OUTBOX_FLASH
#define HUB_OUTBOX_FLASH 1
#endif
#if HUB_DEEP_SLEEP && !HUB_OUTBOX_FLASH
#error "HUB_DEEP_SLEEP needs the flash outbox (HUB_OUTBOX_FLASH 1)"
#endif
#ifndef HUB_OUTBOX_IN_RTC
#define HUB_OUTBOX_IN_RTC 0
#endif
#if HUB_OUTBOX_IN_RTC
#define HUB_OUTBOX_SLOTS 10
#define HUB_OUTBOX_SLOT_BYTES 512  // 10 × (512 + 12) + 20 bytes: fits the 8 KiB of RTC memory
#else
#ifndef HUB_OUTBOX_SLOTS
#define HUB_OUTBOX_SLOTS 48
#endif
#define HUB_OUTBOX_SLOT_BYTES 1024  // the recommended uplink frame limit [PROTO-1.4]
#endif

// Status LED (see README): a plain GPIO LED, or an addressable RGB LED with HUB_LED_RGB 1.
#ifndef HUB_LED_PIN
#define HUB_LED_PIN 2
#endif
#ifndef HUB_LED_RGB
#define HUB_LED_RGB 0
#endif
#ifndef HUB_LED_ACTIVE_LOW
#define HUB_LED_ACTIVE_LOW 0
#endif

// Optional sensors (each one adds its library in platformio.ini).
#ifndef HUB_WITH_BME280
#define HUB_WITH_BME280 0
#endif
#ifndef HUB_BME280_ADDRESS
#define HUB_BME280_ADDRESS 0x76
#endif
#ifndef HUB_WITH_DHT22
#define HUB_WITH_DHT22 0
#endif
#ifndef HUB_DHT22_PIN
#define HUB_DHT22_PIN 4
#endif
#if HUB_WITH_BME280 && HUB_WITH_DHT22
#error "BME280 and DHT22 both report temperature and humidity: enable one of them"
#endif
// Battery voltage through a divider into an ADC pin (e.g. -D HUB_BATTERY_ADC_PIN=35 -D HUB_BATTERY_DIVIDER=2.0).
#ifndef HUB_BATTERY_DIVIDER
#define HUB_BATTERY_DIVIDER 2.0
#endif
// On-chip temperature: only where the chip has a documented sensor (C3, S2, S3, C6). The original
// ESP32's is undocumented and absent on most revisions, so it is off there.
#ifndef HUB_CHIP_TEMPERATURE
#if defined(CONFIG_IDF_TARGET_ESP32C3) || defined(CONFIG_IDF_TARGET_ESP32S2) || defined(CONFIG_IDF_TARGET_ESP32S3) || \
    defined(CONFIG_IDF_TARGET_ESP32C6)
#define HUB_CHIP_TEMPERATURE 1
#else
#define HUB_CHIP_TEMPERATURE 0
#endif
#endif

#ifndef HUB_FIRMWARE_VERSION
#define HUB_FIRMWARE_VERSION "0.1.0"
#endif
