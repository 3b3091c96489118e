// What the session needs of an outbox: encoded TELEMETRY frames, oldest first, waiting for the hub's
// cumulative ACK [PROTO-3.5]. Two implementations: Outbox (a block of RAM or RTC memory) and
// FlashOutbox (a ring of records in a flash partition that survives power loss).
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace esp32hub {

class FrameQueue {
 public:
  struct Entry {
    /** Valid until the next call on the queue (FlashOutbox reads it into one buffer). */
    const uint8_t* frame = nullptr;
    uint16_t len = 0;
    uint32_t bootId = 0;
    uint32_t seq = 0;
  };

  virtual ~FrameQueue() = default;

  /**
   * Appends a frame; true once it is kept (for FlashOutbox: written to flash). When full, drops the
   * oldest first (counted). False, with a drop counted, when it cannot be kept.
   */
  virtual bool push(const uint8_t* frame, uint16_t len, uint32_t bootId, uint32_t seq) = 0;
  /**
   * Cumulative ACK [PROTO-3.5]: frees every frame up to and including the newest one of boot `bootId`
   * with seq ≤ `seq` (and, being older, every frame queued before it). Returns the number freed.
   */
  virtual uint16_t ack(uint32_t bootId, uint32_t seq) = 0;
  /** Drops `n` frames from the front (counted as dropped). */
  virtual uint16_t dropOldest(uint16_t n) = 0;
  /** Frames queued (saturates at 65535). */
  virtual uint16_t size() const = 0;
  /** Largest frame push() takes. */
  virtual uint16_t maxFrameBytes() const = 0;
  /** Entry `i`, 0 = oldest; `i < size()`. Sequential access (i, i + 1, …) is cheap. */
  virtual Entry at(uint16_t i) = 0;
  /** Frames dropped (drop-oldest, or not storable) since this boot: HELLO's droppedFrames [PROTO-3.1]. */
  virtual uint32_t droppedSinceBoot() const = 0;

  bool empty() const { return size() == 0; }

  // Send tracking: frames [0, inFlight) were sent on the current connection and await an ACK.
  uint16_t inFlight() const { return sent_; }
  bool hasUnsent() const { return sent_ < size(); }
  Entry nextUnsent() { return at(sent_); }
  void markSent() {
    if (sent_ < size()) sent_++;
  }
  /** After a reconnect (or a refused frame) everything unacknowledged is sent again, oldest first. */
  void rewind() { sent_ = 0; }

 protected:
  /** `n` frames left the front: the in-flight window shrinks with them. */
  void forgetSent(uint16_t n) { sent_ = sent_ > n ? static_cast<uint16_t>(sent_ - n) : 0; }
  void resetSent() { sent_ = 0; }

 private:
  uint16_t sent_ = 0;
};

}  // namespace esp32hub
