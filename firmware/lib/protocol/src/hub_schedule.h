// Sampling schedules the board runs on (portable, host-tested).
//
// TickSchedule: fixed-rate ticks. Tick k is due at start + k × interval, so a late tick (a busy loop, a
// slow sensor read) does not push every later one back: no drift, as opposed to `next = now + interval`.
// Ticks that could not run at all (the loop was held up for whole intervals) are skipped and counted,
// never run in a burst.
//
// SleepPolicy: in deep-sleep mode the board samples on timer wakes into the flash outbox and connects
// only every `flushEverySamples` samples or `flushEveryMs`, whichever comes first.
#pragma once

#include <stdint.h>

namespace esp32hub {

class TickSchedule {
 public:
  /** First tick due at `firstDueMs`. */
  void start(uint64_t firstDueMs, uint32_t intervalMs);
  /** New interval from the next tick on: due one new interval after the last due tick (or now). */
  void setInterval(uint32_t intervalMs, uint64_t nowMs);
  /** True when a tick is due at `nowMs` (call once per loop turn; one tick per call at most). */
  bool due(uint64_t nowMs);
  uint64_t nextDueMs() const { return next_; }
  uint32_t intervalMs() const { return interval_; }
  /** Ticks skipped because the loop was held up for whole intervals. */
  uint32_t skipped() const { return skipped_; }

 private:
  uint64_t next_ = 0;
  uint32_t interval_ = 1000;
  uint32_t skipped_ = 0;
};

struct SleepPolicy {
  uint16_t flushEverySamples = 30;
  uint32_t flushEveryMs = 15u * 60u * 1000u;
  /** Connect now? `samplesSinceConnect` samples taken and `msSinceConnect` elapsed since the last flush. */
  bool shouldConnect(uint32_t samplesSinceConnect, uint64_t msSinceConnect) const {
    return samplesSinceConnect >= flushEverySamples || msSinceConnect >= flushEveryMs;
  }
};

}  // namespace esp32hub
