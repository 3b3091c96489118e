// A simulated NOR flash for host tests and the host device: 4 KiB erase sectors, erase sets every
// byte to 0xFF, program can only clear bits (new = old & data: writing a 1 over a 0 changes nothing,
// and is counted as a violation). It can cut power at any program or erase step:
//
//   - a program of n bytes is ceil(n / 4) steps (one per 4-byte word, in address order); a cut at word
//     j leaves words < j programmed, word j torn (a random subset of its bits cleared), the rest as
//     they were;
//   - an erase is 2 steps; a cut leaves the sector partly erased (all of it, or its second half, with
//     random bits set to 1, the rest 0xFF).
//
// After the cut the flash is "off": every operation fails until powerOn(), and `onPowerCut` (when set)
// runs at once (the host device exits there: the CPU stops with the power). The bytes can be the
// simulator's own or a caller's buffer (the host device maps a file, so the flash outlives the process).
#pragma once

#include <stdint.h>
#include <string.h>

#include <vector>

#include "hub_flash_outbox.h"

namespace esp32hub {

class SimFlash : public Flash {
 public:
  SimFlash(uint32_t sectorCount, uint32_t sectorSize = 4096)
      : size_(sectorSize), count_(sectorCount), own_(static_cast<size_t>(sectorSize) * sectorCount, 0xFF),
        mem_(own_.data()), bytes_(own_.size()), erases_(sectorCount, 0) {}
  /** Over `external` (sectorCount × sectorSize bytes, kept as they are). */
  SimFlash(uint8_t* external, uint32_t sectorCount, uint32_t sectorSize = 4096)
      : size_(sectorSize), count_(sectorCount), mem_(external),
        bytes_(static_cast<size_t>(sectorSize) * sectorCount), erases_(sectorCount, 0) {}
  SimFlash(const SimFlash&) = delete;
  SimFlash& operator=(const SimFlash&) = delete;

  uint32_t sectorSize() const override { return size_; }
  uint32_t sectorCount() const override { return count_; }

  bool read(uint32_t addr, void* out, size_t len) override {
    if (off_ || addr + len > bytes_) return false;
    memcpy(out, mem_ + addr, len);
    return true;
  }

  bool program(uint32_t addr, const void* data, size_t len) override {
    if (off_ || addr + len > bytes_) return false;
    const auto* d = static_cast<const uint8_t*>(data);
    for (size_t w = 0; w < len; w += 4) {
      size_t end = w + 4 < len ? w + 4 : len;
      if (!step()) {
        for (size_t i = w; i < end; i++) mem_[addr + i] &= static_cast<uint8_t>(d[i] | random8());
        return cut();
      }
      for (size_t i = w; i < end; i++) {
        uint8_t old = mem_[addr + i];
        if ((d[i] & ~old) != 0) violations++;
        mem_[addr + i] = static_cast<uint8_t>(old & d[i]);
      }
    }
    bytesProgrammed += len;
    return true;
  }

  bool erase(uint32_t sector) override {
    if (off_ || sector >= count_) return false;
    uint8_t* s = mem_ + static_cast<size_t>(sector) * size_;
    for (int half = 0; half < 2; half++) {
      if (!step()) {
        for (uint32_t i = half == 0 ? 0 : size_ / 2; i < size_; i++) s[i] = static_cast<uint8_t>(s[i] | random8());
        if (half == 1) memset(s, 0xFF, size_ / 2);
        return cut();
      }
    }
    memset(s, 0xFF, size_);
    erases_[sector]++;
    return true;
  }

  /** Cuts power after `steps` more program/erase steps (the step that would exceed it is torn). */
  void cutAfter(uint64_t steps, uint32_t seed) {
    budget_ = steps;
    armed_ = true;
    rng_ = seed | 1u;
  }
  void powerOn() {
    off_ = false;
    armed_ = false;
  }
  bool off() const { return off_; }
  uint64_t steps() const { return steps_; }
  uint32_t erases(uint32_t sector) const { return erases_[sector]; }
  /** Fills everything with random bytes (a partition that was never erased). */
  void scramble(uint32_t seed) {
    rng_ = seed | 1u;
    for (size_t i = 0; i < bytes_; i++) mem_[i] = random8();
  }

  uint64_t violations = 0;
  uint64_t bytesProgrammed = 0;
  void (*onPowerCut)() = nullptr;

 private:
  bool step() {
    if (armed_ && budget_ == 0) {
      off_ = true;
      armed_ = false;
      return false;
    }
    if (armed_) budget_--;
    steps_++;
    return true;
  }
  bool cut() {
    if (onPowerCut != nullptr) onPowerCut();
    return false;
  }
  uint8_t random8() {
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 17;
    rng_ ^= rng_ << 5;
    return static_cast<uint8_t>(rng_ >> 24);
  }

  uint32_t size_;
  uint32_t count_;
  std::vector<uint8_t> own_;
  uint8_t* mem_;
  size_t bytes_;
  std::vector<uint32_t> erases_;
  bool off_ = false;
  bool armed_ = false;
  uint64_t budget_ = 0;
  uint64_t steps_ = 0;
  uint32_t rng_ = 1;
};

}  // namespace esp32hub
