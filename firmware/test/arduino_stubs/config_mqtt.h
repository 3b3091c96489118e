// arduino-check: the MQTT transport [PROTO-1.6] on an ESP32 DevKit.
#define HUB_WIFI_SSID "ssid"
#define HUB_HOST "unused-over-mqtt"
#define HUB_DEVICE_TOKEN "token"
#define HUB_TRANSPORT_MQTT 1
#define HUB_MQTT_URI "mqtt://broker.local:1883"
