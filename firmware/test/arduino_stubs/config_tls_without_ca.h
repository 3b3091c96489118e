// arduino-check: must NOT compile (wss:// without a CA would mean no certificate check).
#define HUB_WIFI_SSID "ssid"
#define HUB_HOST "hub.example.org"
#define HUB_DEVICE_TOKEN "token"
#define HUB_TLS 1
