#include "ws_transport.h"

#include <hub_types.h>

bool WsTransport::begin(const Options& options, Listener& listener) {
  options_ = options;
  listener_ = &listener;
  authorization_ = String("Bearer ") + options.token;
  const char* protocol = options_.subprotocol != nullptr ? options_.subprotocol : esp32hub::kSubprotocol;
  if (options_.tls) {
    if (options_.caCert == nullptr || options_.caCert[0] == '\0') {
      // With no CA the library would call setInsecure() and accept any certificate. Never connect so.
      Serial.println("[ws] wss:// needs a CA certificate (HUB_CA_CERT): not connecting");
      tlsWithoutCa_ = true;
      return true;
    }
    ws_.beginSslWithCA(options_.host, options_.port, options_.path, options_.caCert, protocol);
  } else {
    ws_.begin(options_.host, options_.port, options_.path, protocol);
  }
  if (options_.token != nullptr && options_.token[0] != '\0') {
    ws_.setAuthorization(authorization_.c_str());  // sent verbatim: "Authorization: Bearer <token>"
  }
  ws_.setExtraHeaders("");                       // no "Origin: file://": a device is not a browser
  ws_.setReconnectInterval(0);                   // attempt as soon as loop() runs; the session paces attempts
  ws_.enableHeartbeat(options_.pingIntervalMs, options_.pongTimeoutMs, options_.missedPongs);
  ws_.onEvent([this](WStype_t type, uint8_t* payload, size_t length) { onEvent(type, payload, length); });
  return true;
}

void WsTransport::open() {
  if (tlsWithoutCa_) {
    listener_->onLinkClosed();
    return;
  }
  ws_.teardown();  // leftovers of an earlier attempt go before the new one starts
  active_ = true;
  Serial.printf("[ws] connecting to %s://%s:%u%s\n", options_.tls ? "wss" : "ws", options_.host, options_.port,
                options_.path);
}

void WsTransport::close() {
  active_ = false;
  // Inside the library's event callback the client must stay alive until its loop() returns.
  if (inLoop_) {
    pendingTeardown_ = true;
  } else {
    ws_.teardown();
  }
}

bool WsTransport::send(const uint8_t* frame, size_t len) {
  if (!active_ || !ws_.isConnected()) return false;
  return ws_.sendBIN(frame, len);
}

void WsTransport::loop() {
  if (!active_) return;
  bool wasIdle = ws_.idle();
  inLoop_ = true;
  // While idle this makes the TCP (and TLS) connection: it blocks this (network) task for the DNS
  // lookup, the TCP connect (bounded by the library's WEBSOCKETS_TCP_TIMEOUT, 5 s; 2.7.3 fixed it being
  // read as seconds on core 2.x) and the TLS handshake. Sampling runs in the main loop meanwhile.
  ws_.loop();
  inLoop_ = false;
  if (pendingTeardown_) {
    pendingTeardown_ = false;
    ws_.teardown();
  }
  // A failed TCP connect raises no event in the library: notice it here.
  if (active_ && wasIdle && ws_.idle()) {
    active_ = false;
    ws_.teardown();
    Serial.println("[ws] connection attempt failed");
    listener_->onLinkClosed();
  }
}
void WsTransport::onEvent(WStype_t type, uint8_t* payload, size_t length) {
  switch (type) {
    case WStype_CONNECTED:
      authRefused_ = false;
      Serial.println("[ws] connected");
      listener_->onLinkOpen();
      break;
    case WStype_DISCONNECTED: {
      // Since 2.7.1 the payload carries the reason, e.g. "HTTP 401" for a refused handshake.
      String reason = length > 0 ? String(reinterpret_cast<const char*>(payload)).substring(0, length) : String();
      if (reason.startsWith("HTTP 401") || reason.startsWith("HTTP 403")) authRefused_ = true;
      Serial.printf("[ws] disconnected %s\n", reason.c_str());
      if (active_) {
        active_ = false;
        listener_->onLinkClosed();
      }
      break;
    }
    case WStype_BIN:
      listener_->onLinkMessage(payload, length);
      break;
    case WStype_TEXT:
      // The hub sends binary frames only [PROTO-1.3]; a text message is ignored.
      Serial.println("[ws] ignoring a text message");
      break;
    case WStype_ERROR:
      Serial.println("[ws] error");
      break;
    default:
      break;
  }
}
