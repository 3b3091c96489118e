// The board's sensors: which channels exist (build flags), their descriptors (periods follow the sample
// interval, as in the simulator), and one non-blocking sample tick per interval, on a fixed-rate
// schedule (TickSchedule: tick k at start + k × interval, no drift). Each channel is read on
// every `everyTicks`-th tick of the board table (lib/protocol/src/hub_channels.cpp).
#pragma once

#include <hub_channels.h>
#include <hub_schedule.h>
#include <hub_session.h>

class WifiLink;

class Sensors {
 public:
  /** Starts the optional sensors; returns false when one of them is missing (its channels send "missing"). */
  bool begin(const WifiLink& wifi);
  /** Bit n set = channel n present. */
  uint32_t mask() const { return mask_; }
  /** The DESCRIPTORS set for the current interval [PROTO-3.3]; returns the count. */
  uint8_t descriptors(esp32hub::ChannelDescriptor* out, uint8_t cap) const;
  uint32_t intervalMs() const { return intervalMs_; }
  /** Changes the sample interval and announces the new periods (new descriptor set). */
  void setInterval(uint32_t ms, esp32hub::Session& session);
  /** Records an LED change (identify) on the `led` channel. */
  void recordLed(bool on, esp32hub::Session& session);
  /** Samples when a tick is due. */
  void loop(uint64_t nowMs, esp32hub::Session& session);
  /** Starts the fixed-rate schedule with its first tick due at `firstDueMs` (else: at the first loop()). */
  void startSchedule(uint64_t firstDueMs) {
    schedule_.start(firstDueMs, intervalMs_);
    started_ = true;
  }
  uint64_t nextDueMs() const { return schedule_.nextDueMs(); }
  /** The interval kept across deep sleep, taken back before the session announces its descriptors. */
  void restoreInterval(uint32_t ms) {
    if (ms != 0) intervalMs_ = ms;
  }
  /** Ticks taken so far (channels sampled every n-th tick); kept across deep sleep. */
  uint32_t tick() const { return tick_; }
  void setTick(uint32_t tick) { tick_ = tick; }
  /** Ticks the schedule skipped because the loop was held up for whole intervals. */
  uint32_t skippedTicks() const { return schedule_.skipped(); }

 private:
  const WifiLink* wifi_ = nullptr;
  uint32_t mask_ = 0;
  uint32_t intervalMs_ = 0;
  uint32_t tick_ = 0;
  bool started_ = false;
  uint64_t lastNowMs_ = 0;
  esp32hub::TickSchedule schedule_;
  void sample(uint64_t nowMs, esp32hub::Session& session);
};
