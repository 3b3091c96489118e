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
};
extern WiFiClass WiFi;
