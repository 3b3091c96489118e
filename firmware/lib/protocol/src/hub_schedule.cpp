#include "hub_schedule.h"

namespace esp32hub {

void TickSchedule::start(uint64_t firstDueMs, uint32_t intervalMs) {
  next_ = firstDueMs;
  interval_ = intervalMs == 0 ? 1 : intervalMs;
  skipped_ = 0;
}

void TickSchedule::setInterval(uint32_t intervalMs, uint64_t nowMs) {
  uint64_t lastDue = next_ >= interval_ ? next_ - interval_ : 0;
  interval_ = intervalMs == 0 ? 1 : intervalMs;
  next_ = lastDue + interval_;
  if (next_ < nowMs) next_ = nowMs;
}

bool TickSchedule::due(uint64_t nowMs) {
  if (nowMs < next_) return false;
  // This tick runs now; whole intervals that passed since it was due are skipped (counted).
  uint64_t late = nowMs - next_;
  uint64_t missed = late / interval_;
  skipped_ += static_cast<uint32_t>(missed > 0xFFFFFFFFu ? 0xFFFFFFFFu : missed);
  next_ += (missed + 1) * interval_;
  return true;
}

}  // namespace esp32hub
