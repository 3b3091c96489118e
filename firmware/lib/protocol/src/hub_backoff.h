// Reconnect backoff [PROTO-5.6]: 1 s doubling to 60 s, each delay moved by a uniform ±20 % jitter so a
// fleet that lost the hub at the same moment does not come back at the same moment.
#pragma once

#include <stdint.h>

namespace esp32hub {

class Backoff {
 public:
  explicit Backoff(uint32_t baseMs = 1000, uint32_t maxMs = 60000, uint8_t jitterPercent = 20)
      : baseMs_(baseMs), maxMs_(maxMs), jitterPercent_(jitterPercent > 100 ? 100 : jitterPercent) {}

  /** The nominal (un-jittered) delay of the next attempt. */
  uint32_t nominalMs() const;
  /** The delay before the next attempt, given a uniform random 32-bit value; then the nominal doubles. */
  uint32_t next(uint32_t random32);
  /** After a successful session (WELCOME received) the next failure waits the base delay again. */
  void reset() { attempts_ = 0; }
  uint32_t attempts() const { return attempts_; }

 private:
  uint32_t baseMs_;
  uint32_t maxMs_;
  uint8_t jitterPercent_;
  uint32_t attempts_ = 0;
};

}  // namespace esp32hub
