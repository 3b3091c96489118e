// esp32hub::Transport over Links2004/arduinoWebSockets: one binary message per frame [PROTO-1.3],
// subprotocol esp32hub.v1 [PROTO-1.1], "Authorization: Bearer <token>" [PROTO-1.2], ping/pong heartbeat
// [PROTO-1.5], wss:// only with a CA certificate. The same transport carries enrollment [PROTO-8.1]:
// path /v1/enroll, subprotocol esp32hub.enroll.v1, no Authorization header (empty token).
//
// It runs inside the network task (net_task.h): begin(), open(), close(), send() and loop() are only
// ever called there, and it reports to a Listener there; the session never calls it directly.
//
// Reconnects are the session's (exponential backoff with jitter [PROTO-5.6]), not the library's fixed
// interval: the library is configured once (begin() again would drop its TCP/TLS client without freeing
// it), its loop() is only called while the session wants a connection, and a finished or failed
// connection is torn down by us at once, so the library never retries on its own.
#pragma once

#include <WebSocketsClient.h>
#include <stddef.h>
#include <stdint.h>

class WsTransport {
 public:
  /** What the connection reports (from inside loop()). */
  class Listener {
   public:
    virtual ~Listener() = default;
    virtual void onLinkOpen() = 0;
    virtual void onLinkClosed() = 0;
    virtual void onLinkMessage(const uint8_t* frame, size_t len) = 0;
  };

  struct Options {
    const char* host;
    uint16_t port;
    const char* path;
    bool tls;
    const char* caCert;  // PEM; required when tls
    const char* token;   // "": no Authorization header (enrollment)
    const char* subprotocol;
    uint32_t pingIntervalMs;
    uint32_t pongTimeoutMs;
    uint8_t missedPongs;
  };

  /** Configures the library once (true: a wss:// without a CA is refused later, at open()). */
  bool begin(const Options& options, Listener& listener);
  void open();
  void close();
  bool send(const uint8_t* frame, size_t len);
  /** Drives the connection. While a connection is being made this blocks (DNS, TCP connect, TLS). */
  void loop();
  bool active() const { return active_; }
  /** The last handshake was refused with HTTP 401/403 (bad or revoked token): shown on the LED. */
  bool authRefused() const { return authRefused_; }

 private:
  /** Reaches the library's protected connection state. */
  class Socket : public WebSocketsClient {
   public:
    /** No connection and no attempt under way. */
    bool idle() const { return _client.status == WSC_NOT_CONNECTED; }
    /** Closes (with a close frame when connected) and frees the TCP/TLS client, whatever the state. */
    void teardown() {
      if (_client.status == WSC_CONNECTED) disconnect();
      if (_client.tcp != nullptr || _client.status != WSC_NOT_CONNECTED) clientDisconnect(&_client, "closed by the device");
    }
  };
  void onEvent(WStype_t type, uint8_t* payload, size_t length);

  Options options_{};
  Listener* listener_ = nullptr;
  Socket ws_;
  String authorization_;
  bool active_ = false;
  bool inLoop_ = false;
  bool pendingTeardown_ = false;
  bool tlsWithoutCa_ = false;
  bool authRefused_ = false;
};
