// arduino-check: an ESP32-C3 on a battery in deep-sleep mode (flash outbox, flush every 20 samples).
#define HUB_WIFI_SSID "ssid"
#define HUB_HOST "hub.local"
#define HUB_DEVICE_TOKEN "token"
#define HUB_DEEP_SLEEP 1
#define HUB_SLEEP_FLUSH_SAMPLES 20
#define HUB_SAMPLE_INTERVAL_MS 60000
#define CONFIG_IDF_TARGET_ESP32C3 1
#define HUB_LED_RGB 1
#define HUB_LED_PIN 8
#define HUB_BATTERY_ADC_PIN 3
