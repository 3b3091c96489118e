// OPTIONAL, for developers. The fleet image has no secrets.h: boards get Wi-Fi and the hub URL over
// Improv Serial and enroll themselves (docs/provisioning.md). Values set here only fill what the board's
// NVS lacks (each group: Wi-Fi; hub; id + token; fleet secret). Copy to include/secrets.h (git-ignored)
// and keep what you need; any value can instead come from a build flag, e.g. in platformio.ini:
// build_flags = '-D HUB_WIFI_SSID="my-network"'  (a build flag wins).
#pragma once

// Wi-Fi (2.4 GHz).
#define HUB_WIFI_SSID "your-network"
#define HUB_WIFI_PASSWORD "your-password"

// The hub: its base URL (the board adds /v1/enroll, /v1/device), e.g. #define HUB_URL "ws://192.168.1.10:8080".
// Or, as before, HOST/PORT/PATH: ws://HOST:PORT/v1/device, or wss:// with HUB_TLS 1.
#define HUB_HOST "192.168.1.10"
#define HUB_PORT 8080
#define HUB_PATH "/v1/device"
#define HUB_TLS 0

// Over MQTT instead (pio run -e esp32dev-mqtt, or -D HUB_TRANSPORT_MQTT=1; README "MQTT"): the broker.
// The login is HUB_DEVICE_ID with HUB_DEVICE_TOKEN as password; HUB_HOST/PORT/PATH are then unused.
// #define HUB_MQTT_URI "mqtt://192.168.1.10:1883"

// The device id the token was issued for (npm run hub -- devices add <id>). Leave "" to use the
// hardware id "esp32-<MAC>"; the serial log prints it at boot.
#define HUB_DEVICE_ID ""
// The token printed by `devices add` [PROTO-1.2]. Sent as "Authorization: Bearer <token>". Leave it out
// (or "") and the board enrolls instead: it waits until an operator approves it on the hub.
#define HUB_DEVICE_TOKEN "paste-the-token-here"

// The hub's ENROLL_FLEET_SECRET: an enrolling board that sends it is approved at once.
// #define HUB_FLEET_SECRET "..."

// With HUB_TLS 1: the PEM of the CA that signed the hub's certificate (or the hub's self-signed
// certificate). Required: the firmware refuses to build wss:// without it and never turns certificate
// checking off.
#define HUB_CA_CERT ""
/* Example (adjacent string literals, one per PEM line):
#define HUB_CA_CERT \
  "-----BEGIN CERTIFICATE-----\n" \
  "MIIB...\n" \
  "-----END CERTIFICATE-----\n"
*/

// SNTP server (the hub's WELCOME time is used until SNTP answers).
#define HUB_NTP_SERVER "pool.ntp.org"
