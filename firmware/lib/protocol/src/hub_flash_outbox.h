// The flash-backed outbox: TELEMETRY frames kept in a NOR-flash partition until the hub's cumulative
// ACK [PROTO-3.5], so they survive power cuts, brown-outs and deep sleep.
//
// Layout. The partition is a ring of erase sectors (4 KiB on the ESP32's SPI flash). Each sector in use
// starts with a header and holds records appended one after another; a sector is erased only when the
// ring comes round to it again, so erases are spread evenly over the whole partition (one erase per
// sector per lap: wear levelling by construction).
//
//   sector header (20 B): magic "OBXS" | sectorSeq u32 | firstRecordNo u32 | freeUpTo u32 | crc32
//   record (16 B + payload, padded to 4): kind u16 | len u16 | recordNo u32 | payload crc32 | header crc32
//     kind FRAME: the payload is one whole encoded frame (which carries its own CRC-32 [PROTO-2.6])
//     kind ACK:   the payload is a u32 freeUpTo: every record numbered below it is acknowledged
//
// Invariants that make it power-cut safe (proved on a simulated NOR flash that cuts power at every
// program and erase step, test/test_protocol/test_flash_outbox.cpp):
// - A frame counts as kept only once push() has programmed its record and read it back intact.
// - Records are only ever appended to erased (all-0xFF) space; the sector header is written after the
//   erase, so a torn erase or a torn header leaves a sector that fails its CRC and is simply not in use.
// - At mount the sectors in use are the longest run of valid headers with consecutive sectorSeq ending
//   at the newest one. In the newest sector, the first record that is not intact ends the sector: if
//   anything but erased bytes follows, the sector is sealed and the next record opens a new sector
//   (a torn write is never programmed over).
// - Acknowledged records are freed by an ACK record (or by the freeUpTo of the next sector header);
//   one that a power cut kept from being written only makes already-ACKed frames go out again, which
//   the hub answers as duplicates [PROTO-3.4.2].
// - Full: opening a sector that still holds unacknowledged frames drops them (drop-oldest), counted
//   in droppedSinceBoot() (HELLO's droppedFrames).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "hub_frame_queue.h"

namespace esp32hub {

/** A NOR flash region: erase sets a sector to 0xFF; program can only clear bits (1 → 0). */
class Flash {
 public:
  virtual ~Flash() = default;
  virtual uint32_t sectorSize() const = 0;
  virtual uint32_t sectorCount() const = 0;
  virtual bool read(uint32_t addr, void* out, size_t len) = 0;
  virtual bool program(uint32_t addr, const void* data, size_t len) = 0;
  virtual bool erase(uint32_t sector) = 0;
};

struct FlashOutboxStats {
  uint32_t sectorsErased = 0;   // since mount
  uint32_t bytesProgrammed = 0; // since mount: records, ACK records and sector headers
  uint32_t frameBytes = 0;      // since mount: the frames themselves (write amplification = programmed / frame)
  uint32_t sealedSectors = 0;   // sectors closed early after a torn or failed write
  uint32_t mountReadBytes = 0;  // what the last mount read
  uint32_t ackRecords = 0;      // ACK records written
  uint32_t ackRecordsSkipped = 0;  // ACKs left to the next sector header (the open sector was full)
};

class FlashOutbox : public FrameQueue {
 public:
  static constexpr uint32_t kSectorHeaderBytes = 20;
  static constexpr uint32_t kRecordHeaderBytes = 16;
  static constexpr uint16_t kMaxFrame = 1024;

  /** Bytes one frame of `len` bytes takes in flash. */
  static constexpr uint32_t recordBytes(uint32_t len) { return (kRecordHeaderBytes + len + 3u) & ~3u; }

  /**
   * Attaches to `flash` and recovers the frames it holds (see the invariants above). Needs at least 2
   * sectors of at least 2 KiB. Returns false when the flash cannot be used (too small, read errors).
   */
  bool mount(Flash& flash);
  /** Erases every sector: an empty ring. */
  bool format(Flash& flash);

  bool push(const uint8_t* frame, uint16_t len, uint32_t bootId, uint32_t seq) override;
  uint16_t ack(uint32_t bootId, uint32_t seq) override;
  uint16_t dropOldest(uint16_t n) override;
  uint16_t size() const override { return count_ > 0xFFFFu ? 0xFFFFu : static_cast<uint16_t>(count_); }
  uint32_t count() const { return count_; }
  uint16_t maxFrameBytes() const override { return kMaxFrame; }
  Entry at(uint16_t i) override;
  uint32_t droppedSinceBoot() const override { return droppedSinceBoot_; }

  const FlashOutboxStats& stats() const { return stats_; }
  /** Bytes left for records in the open sector (0 when none is open or it is sealed). */
  uint32_t openSectorFree() const { return hasHead_ && !sealed_ ? sectorSize_ - writeOffset_ : 0; }
  /** Frames that were kept at mount. */
  uint32_t keptAtMount() const { return keptAtMount_; }
  /** Bytes of frames the ring can hold at most (every sector but the one being opened). */
  uint32_t capacityBytes() const;

 private:
  struct Cursor {
    uint32_t sector = 0;  // physical sector
    uint32_t offset = 0;  // within the sector
  };
  struct Record {
    uint16_t kind = 0;
    uint16_t len = 0;
    uint32_t recordNo = 0;
    uint32_t bootId = 0;
    uint32_t seq = 0;
  };
  enum class Scan : uint8_t { Record, End, Torn };

  uint32_t addr(uint32_t sector, uint32_t offset) const { return sector * sectorSize_ + offset; }
  uint32_t nextSector(uint32_t s) const { return s + 1 == sectorCount_ ? 0 : s + 1; }
  bool readSectorHeader(uint32_t sector, uint32_t& seq, uint32_t& firstRecordNo, uint32_t& freeUpTo);
  /** Reads the record at `c` (payload into buf_ when `withPayload`). End: erased space or end of sector. */
  Scan readRecord(const Cursor& c, Record& r, bool withPayload);
  bool erasedFrom(uint32_t sector, uint32_t offset);
  /** Moves `c` to the next frame record at or after it that is live (recordNo ≥ freeUpTo_). */
  bool seekFrame(Cursor& c, Record& r);
  void advance(Cursor& c, const Record& r) const { c.offset += recordBytes(r.len); }
  bool inUse(uint32_t sector) const;
  bool openSector();
  bool appendRecord(uint16_t kind, const uint8_t* payload, uint16_t len, bool mayOpen);
  void popFront(uint32_t n, bool countAsDropped);
  void writeAck();

  Flash* flash_ = nullptr;
  uint32_t sectorSize_ = 0;
  uint32_t sectorCount_ = 0;
  bool hasHead_ = false;
  uint32_t head_ = 0;        // the sector records are appended to
  uint32_t headSeq_ = 0;
  uint32_t oldest_ = 0;      // first sector in use
  uint32_t inUse_ = 0;       // sectors in use, oldest_ … head_
  uint32_t writeOffset_ = 0; // in head_
  bool sealed_ = false;      // head_ takes no more records
  uint32_t nextRecordNo_ = 1;
  uint32_t freeUpTo_ = 1;    // records below are acknowledged (or dropped)
  uint32_t count_ = 0;       // live frames
  Cursor tail_;              // the oldest live frame (valid when count_ > 0)
  Cursor tailCandidate_;     // where appendRecord() wrote its last record
  uint32_t cacheIndex_ = 0;  // at(): the last entry read, to make sequential access cheap
  Cursor cache_;
  bool cacheValid_ = false;
  uint32_t droppedSinceBoot_ = 0;
  uint32_t keptAtMount_ = 0;
  FlashOutboxStats stats_;
  alignas(4) uint8_t buf_[kRecordHeaderBytes + kMaxFrame];
};

}  // namespace esp32hub
