#include "hub_backoff.h"

namespace esp32hub {

uint32_t Backoff::nominalMs() const {
  uint64_t d = baseMs_;
  for (uint32_t i = 0; i < attempts_ && d < maxMs_; i++) d *= 2;
  return static_cast<uint32_t>(d < maxMs_ ? d : maxMs_);
}

uint32_t Backoff::next(uint32_t random32) {
  uint32_t nominal = nominalMs();
  if (attempts_ < 32) attempts_++;
  uint32_t span = static_cast<uint32_t>(static_cast<uint64_t>(nominal) * jitterPercent_ / 100);
  if (span == 0) return nominal;
  // Uniform in [nominal − span, nominal + span]; the modulo bias over 2^32 is below 10^-5 here.
  uint32_t offset = static_cast<uint32_t>(random32 % (2 * static_cast<uint64_t>(span) + 1));
  return nominal - span + offset;
}

}  // namespace esp32hub
