// arduino-check: an ESP32-C3 with a BME280, its RGB LED, the outbox in RTC memory.
#define HUB_WIFI_SSID "ssid"
#define HUB_HOST "hub.local"
#define HUB_DEVICE_TOKEN "token"
#define HUB_WITH_BME280 1
#define HUB_OUTBOX_IN_RTC 1
#define CONFIG_IDF_TARGET_ESP32C3 1
#define HUB_LED_RGB 1
#define HUB_LED_PIN 8
#define HUB_I2C_SDA 4
#define HUB_I2C_SCL 5
