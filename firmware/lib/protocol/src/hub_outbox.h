// The bounded outbox: encoded TELEMETRY frames waiting for the hub's cumulative ACK [PROTO-3.5].
//
// Capacity, policy, counter (STYLE 6): a fixed number of fixed-size slots; when full, the OLDEST frame
// is dropped and counted (reported in HELLO's droppedFrames [PROTO-3.1]). A frame leaves the outbox
// only when an ACK covers it, never when it is sent.
//
// All state lives in one caller-provided block of plain bytes (no pointers, no heap), so the block can
// be placed in RTC memory (`RTC_NOINIT_ATTR`) and survive deep sleep or a software reset: `restore()`
// validates the header (magic, geometry, CRC) and every frame's own CRC-32 and keeps what is intact.
// Frames keep their original (bootId, seq), so frames from an earlier boot replay as they were.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "hub_frame_queue.h"

namespace esp32hub {

class Outbox : public FrameQueue {
 public:

  /** Bytes of storage for `slots` frames of up to `slotBytes` each (header and per-slot metadata included). */
  static constexpr size_t storageBytes(uint16_t slots, uint16_t slotBytes) {
    return kHeaderSize + static_cast<size_t>(slots) * slotStride(slotBytes);
  }

  /** Attaches to `storage` and empties it. False when the block is too small or misaligned. */
  bool format(void* storage, size_t bytes, uint16_t slots, uint16_t slotBytes);
  /**
   * Attaches to `storage` keeping the frames of a previous run (RTC memory after deep sleep) when the
   * header and each frame's CRC check out; otherwise formats. Returns the number of frames kept.
   */
  uint16_t restore(void* storage, size_t bytes, uint16_t slots, uint16_t slotBytes);

  /**
   * Appends a frame. When full, drops the oldest first (counted). Returns false, and counts a drop,
   * when the frame is larger than a slot (the telemetry builder never makes one).
   */
  bool push(const uint8_t* frame, uint16_t len, uint32_t bootId, uint32_t seq) override;

  /**
   * Cumulative ACK [PROTO-3.5]: frees every frame up to and including the newest one of boot `bootId`
   * with seq ≤ `seq` (and, being older, every frame of earlier boots queued before it). Returns the
   * number freed; 0 for an ACK that covers nothing queued (a repeated ACK).
   */
  uint16_t ack(uint32_t bootId, uint32_t seq) override;

  /** Drops `n` frames from the front (counted as dropped). */
  uint16_t dropOldest(uint16_t n) override;

  uint16_t size() const override { return hdr() ? hdr()->count : 0; }
  uint16_t capacity() const { return hdr() ? hdr()->slots : 0; }
  uint16_t slotBytes() const { return hdr() ? hdr()->slotBytes : 0; }
  uint16_t maxFrameBytes() const override { return slotBytes(); }
  /** Entry `i`, 0 = oldest; `i < size()`. */
  Entry at(uint16_t i) override { return entry(i); }
  Entry entry(uint16_t i) const;

  uint32_t droppedSinceBoot() const override { return droppedSinceBoot_; }
  /** Dropped since the storage was formatted (survives deep sleep with the storage). */
  uint32_t droppedTotal() const { return hdr() ? hdr()->droppedTotal : 0; }

 private:
  struct Header {
    uint32_t magic;
    uint16_t slots;
    uint16_t slotBytes;
    uint16_t head;
    uint16_t count;
    uint32_t droppedTotal;
    uint32_t crc;  // over the fields above
  };
  struct SlotHeader {
    uint16_t len;
    uint16_t reserved;
    uint32_t bootId;
    uint32_t seq;
  };
  static constexpr uint32_t kMagic = 0x4F425831;  // "OBX1"
  static constexpr size_t kHeaderSize = sizeof(uint32_t) * 5;
  static constexpr size_t kSlotHeaderSize = 12;
  static constexpr size_t slotStride(uint16_t slotBytes) { return kSlotHeaderSize + ((slotBytes + 3u) & ~3u); }

  Header* hdr() const { return reinterpret_cast<Header*>(mem_); }
  SlotHeader* slot(uint16_t physical) const;
  uint16_t physical(uint16_t i) const;
  bool attach(void* storage, size_t bytes, uint16_t slots, uint16_t slotBytes);
  void seal();
  uint32_t headerCrc() const;
  void popFront(uint16_t n, bool countAsDropped);

  uint8_t* mem_ = nullptr;
  uint32_t droppedSinceBoot_ = 0;
};

/**
 * Storage for an outbox of `Slots` frames of up to `SlotBytes` bytes, as a plain aligned byte array so
 * it can be a static in ordinary RAM or carry `RTC_NOINIT_ATTR`.
 */
template <uint16_t Slots, uint16_t SlotBytes>
struct OutboxStorage {
  static constexpr uint16_t kSlots = Slots;
  static constexpr uint16_t kSlotBytes = SlotBytes;
  alignas(4) uint8_t bytes[Outbox::storageBytes(Slots, SlotBytes)];
};

}  // namespace esp32hub
