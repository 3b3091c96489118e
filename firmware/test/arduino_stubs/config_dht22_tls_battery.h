// arduino-check: a DHT22, a battery divider on GPIO 35, wss:// with a CA certificate.
#define HUB_WIFI_SSID "ssid"
#define HUB_HOST "hub.example.org"
#define HUB_PORT 443
#define HUB_DEVICE_TOKEN "token"
#define HUB_WITH_DHT22 1
#define HUB_BATTERY_ADC_PIN 35
#define HUB_TLS 1
#define HUB_CA_CERT \
  "-----BEGIN CERTIFICATE-----\n" \
  "MIIBszCCAVmgAwIBAgIUexampleexampleexampleexampleexampleexamplexx\n" \
  "-----END CERTIFICATE-----\n"
