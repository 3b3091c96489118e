#pragma once
#include <Arduino.h>

typedef enum {
  ARDUINO_EVENT_WIFI_STA_DISCONNECTED,
  ARDUINO_EVENT_WIFI_STA_GOT_IP,
  ARDUINO_EVENT_WIFI_STA_LOST_IP,
} arduino_event_id_t;
typedef arduino_event_id_t WiFiEvent_t;
typedef struct {
  int unused;
} arduino_event_info_t;
typedef arduino_event_info_t WiFiEventInfo_t;
typedef void (*WiFiEventCb)(arduino_event_id_t event);
typedef std::function<void(arduino_event_id_t event, arduino_event_info_t info)> WiFiEventFuncCb;
struct arduino_event_t;
typedef void (*WiFiEventSysCb)(arduino_event_t* event);
typedef enum { WIFI_STA = 1 } wifi_mode_t;
// esp_wifi_types.h / wl_definitions.h (arduino-esp32 2.0.x)
typedef enum { WIFI_AUTH_OPEN = 0, WIFI_AUTH_WEP, WIFI_AUTH_WPA_PSK, WIFI_AUTH_WPA2_PSK } wifi_auth_mode_t;
typedef enum {
  WL_NO_SHIELD = 255,
  WL_IDLE_STATUS = 0,
  WL_NO_SSID_AVAIL = 1,
  WL_SCAN_COMPLETED = 2,
  WL_CONNECTED = 3,
  WL_CONNECT_FAILED = 4,
  WL_CONNECTION_LOST = 5,
  WL_DISCONNECTED = 6
} wl_status_t;

class IPAddress {
 public:
  String toString() const { return String(); }
};

class WiFiClass {
 public:
  int onEvent(WiFiEventCb cbEvent, arduino_event_id_t event);
  int onEvent(WiFiEventFuncCb cbEvent, arduino_event_id_t event);
  int onEvent(WiFiEventSysCb cbEvent, arduino_event_id_t event);
  bool mode(wifi_mode_t);
  bool setHostname(const char*);
  bool setAutoReconnect(bool);
  int begin(const char* ssid, const char* passphrase);
  bool disconnect(bool wifioff = false, bool eraseap = false);
  IPAddress localIP();
  int8_t RSSI();
  static wl_status_t status();
  int16_t scanNetworks(bool async = false, bool show_hidden = false, bool passive = false, uint32_t max_ms_per_chan = 300,
                       uint8_t channel = 0, const char* ssid = nullptr, const uint8_t* bssid = nullptr);
  String SSID(uint8_t networkItem);
  int32_t RSSI(uint8_t networkItem);
  wifi_auth_mode_t encryptionType(uint8_t networkItem);
};
extern WiFiClass WiFi;
