// Subset of Links2004/arduinoWebSockets 2.7.3 src/WebSockets.h + src/WebSocketsClient.h.
#pragma once
#include <Arduino.h>

typedef enum { WSC_NOT_CONNECTED, WSC_HEADER, WSC_BODY, WSC_CONNECTED } WSclientsStatus_t;
typedef enum {
  WStype_ERROR,
  WStype_DISCONNECTED,
  WStype_CONNECTED,
  WStype_TEXT,
  WStype_BIN,
  WStype_FRAGMENT_TEXT_START,
  WStype_FRAGMENT_BIN_START,
  WStype_FRAGMENT,
  WStype_FRAGMENT_FIN,
  WStype_PING,
  WStype_PONG,
} WStype_t;

struct WEBSOCKETS_NETWORK_CLASS;
typedef struct {
  uint8_t num;
  WSclientsStatus_t status;
  WEBSOCKETS_NETWORK_CLASS* tcp;
} WSclient_t;

class WebSocketsClient {
 public:
  typedef std::function<void(WStype_t type, uint8_t* payload, size_t length)> WebSocketClientEvent;
  void begin(const char* host, uint16_t port, const char* url = "/", const char* protocol = "arduino");
  void beginSslWithCA(const char* host, uint16_t port, const char* url = "/", const char* CA_cert = NULL,
                      const char* protocol = "arduino");
  void loop(void);
  void onEvent(WebSocketClientEvent cbEvent);
  bool sendBIN(const uint8_t* payload, size_t length);
  void disconnect(void);
  void setAuthorization(const char* auth);
  void setExtraHeaders(const char* extraHeaders = NULL);
  void setReconnectInterval(unsigned long time);
  void enableHeartbeat(uint32_t pingInterval, uint32_t pongTimeout, uint8_t disconnectTimeoutCount);
  bool isConnected(void);

 protected:
  WSclient_t _client;
  void clientDisconnect(WSclient_t* client) { clientDisconnect(client, NULL); }
  void clientDisconnect(WSclient_t* client, const char* reason = NULL);
};
