#include "net_task.h"

#include <Arduino.h>
#include <string.h>

bool NetTask::begin(const HubLink::Options& options, esp32hub::TransportListener& listener) {
  session_ = &listener;
  up_ = xQueueCreate(kUpDepth, sizeof(UpItem));
  down_ = xQueueCreate(kDownDepth, sizeof(DownItem));
  if (up_ == nullptr || down_ == nullptr) return false;
  if (!ws_.begin(options, *this)) return false;
  // Priority 1 like loop(); either core (the Wi-Fi stack runs at a higher priority anyway).
  return xTaskCreatePinnedToCore(taskMain, "hub-net", 12 * 1024, this, 1, nullptr, tskNO_AFFINITY) == pdPASS;
}

void NetTask::open() {
  generation_++;
  upScratch_.kind = kOpen;
  upScratch_.generation = generation_;
  upScratch_.len = 0;
  if (xQueueSend(up_, &upScratch_, 0) != pdTRUE) session_->onTransportClosed();  // try again after backoff
}

void NetTask::close() {
  // Not through the queue: it may be full of frames for this very connection, and close() must not wait.
  closed_.store(generation_);
  generation_++;  // whatever the old connection still reports is dropped
}

bool NetTask::send(const uint8_t* frame, size_t len) {
  if (len > kUpFrameBytes) return false;
  upScratch_.kind = kSend;
  upScratch_.generation = generation_;
  upScratch_.len = static_cast<uint16_t>(len);
  memcpy(upScratch_.data, frame, len);
  return xQueueSend(up_, &upScratch_, 0) == pdTRUE;  // full: the session counts the link as lost and replays
}

void NetTask::poll() {
  while (xQueueReceive(down_, &downScratch_, 0) == pdTRUE) {
    if (downScratch_.generation != generation_) continue;  // an older connection's news
    switch (downScratch_.kind) {
      case kOpened:
        session_->onTransportOpen();
        break;
      case kClosed:
        session_->onTransportClosed();
        break;
      case kMessage:
        session_->onTransportMessage(downScratch_.data, downScratch_.len);
        break;
      default:
        break;
    }
  }
}

void NetTask::taskMain(void* self) { static_cast<NetTask*>(self)->run(); }

void NetTask::report(uint8_t kind, const uint8_t* data, size_t len) {
  if (len > kDownFrameBytes) {
    Serial.printf("[net] downlink frame of %u bytes dropped (limit %u)\n", static_cast<unsigned>(len),
                  static_cast<unsigned>(kDownFrameBytes));
    return;
  }
  taskDown_.kind = kind;
  taskDown_.generation = taskGeneration_;
  taskDown_.len = static_cast<uint16_t>(len);
  if (len > 0) memcpy(taskDown_.data, data, len);
  // Waits for the main loop when it is behind: the socket is simply read later (TCP flow control).
  xQueueSend(down_, &taskDown_, portMAX_DELAY);
}

void NetTask::run() {
  for (;;) {
    // Idle: wait for a command (no busy loop). Connected: look for commands, then drive the socket.
    TickType_t wait = ws_.active() ? 0 : pdMS_TO_TICKS(50);
    while (xQueueReceive(up_, &taskUp_, wait) == pdTRUE) {
      wait = 0;
      switch (taskUp_.kind) {
        case kOpen:
          taskGeneration_ = taskUp_.generation;
          ws_.open();
          break;
        case kSend:
          // For a connection that is gone, or that the session closed: dropped.
          if (taskUp_.generation != taskGeneration_ || closed_.load() == taskGeneration_) break;
          if (!ws_.send(taskUp_.data, taskUp_.len)) {
            ws_.close();
            report(kClosed, nullptr, 0);  // the session replays what was not acknowledged
          }
          break;
        default:
          break;
      }
    }
    if (ws_.active() && closed_.load() == taskGeneration_) ws_.close();
    ws_.loop();  // blocks this task only: DNS, TCP connect (≤ 5 s), TLS handshake
    vTaskDelay(1);
  }
}
