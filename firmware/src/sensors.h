// The board's sensors: which channels exist (build flags), their descriptors (periods follow the sample
// interval, as in the simulator), and one non-blocking sample tick per interval. Each channel is read on
// every `everyTicks`-th tick of the board table (lib/protocol/src/hub_channels.cpp).
#pragma once

#include <hub_channels.h>
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
  void loop(uint64_t nowMs, esp32hub::Session& session);

 private:
  void sample(esp32hub::Session& session);
  const WifiLink* wifi_ = nullptr;
  uint32_t mask_ = 0;
  uint32_t intervalMs_ = 0;
  uint32_t tick_ = 0;
  uint64_t nextAt_ = 0;
};
