#include "hub_flash_outbox.h"

#include <string.h>

#include "hub_codec.h"
#include "hub_crc32.h"
#include "hub_wire.h"

namespace esp32hub {

namespace {

constexpr uint32_t kSectorMagic = 0x5358424Fu;  // "OBXS"
constexpr uint16_t kKindFrame = 0xF4A1;
constexpr uint16_t kKindAck = 0xAC4B;
constexpr uint32_t kMinSectorBytes = 2048;

}  // namespace

uint32_t FlashOutbox::capacityBytes() const {
  return sectorCount_ > 1 ? (sectorCount_ - 1) * (sectorSize_ - kSectorHeaderBytes) : 0;
}

bool FlashOutbox::readSectorHeader(uint32_t sector, uint32_t& seq, uint32_t& firstRecordNo, uint32_t& freeUpTo) {
  uint8_t h[kSectorHeaderBytes];
  if (!flash_->read(addr(sector, 0), h, sizeof h)) return false;
  stats_.mountReadBytes += sizeof h;
  if (readU32le(h) != kSectorMagic || readU32le(h + 16) != crc32(h, 16)) return false;
  seq = readU32le(h + 4);
  firstRecordNo = readU32le(h + 8);
  freeUpTo = readU32le(h + 12);
  return true;
}

FlashOutbox::Scan FlashOutbox::readRecord(const Cursor& c, Record& r, bool withPayload) {
  if (c.offset + kRecordHeaderBytes > sectorSize_) return Scan::End;
  uint8_t* h = buf_;
  if (!flash_->read(addr(c.sector, c.offset), h, kRecordHeaderBytes)) return Scan::Torn;
  stats_.mountReadBytes += kRecordHeaderBytes;
  bool erased = true;
  for (uint32_t i = 0; i < kRecordHeaderBytes; i++) erased = erased && h[i] == 0xFF;
  if (erased) return Scan::End;
  if (readU32le(h + 12) != crc32(h, 12)) return Scan::Torn;
  r.kind = readU16le(h);
  r.len = readU16le(h + 2);
  r.recordNo = readU32le(h + 4);
  uint32_t payloadCrc = readU32le(h + 8);
  if ((r.kind != kKindFrame && r.kind != kKindAck) || r.len > kMaxFrame) return Scan::Torn;
  if (r.kind == kKindAck && r.len != 4) return Scan::Torn;
  if (c.offset + recordBytes(r.len) > sectorSize_) return Scan::Torn;
  if (!withPayload && r.kind == kKindFrame) return Scan::Record;
  uint8_t* p = buf_ + kRecordHeaderBytes;
  if (!flash_->read(addr(c.sector, c.offset + kRecordHeaderBytes), p, r.len)) return Scan::Torn;
  stats_.mountReadBytes += r.len;
  if (crc32(p, r.len) != payloadCrc) return Scan::Torn;
  if (r.kind == kKindFrame) {
    // The frame's own checks too: a record that passed its CRC yet holds no valid TELEMETRY frame is
    // never handed to the session.
    Envelope env;
    if (readEnvelope(p, r.len, env) != Err::Ok || env.type != MsgType::Telemetry || r.len < 20) return Scan::Torn;
    r.bootId = readU32le(p + 8);
    r.seq = readU32le(p + 12);
  }
  return Scan::Record;
}

bool FlashOutbox::erasedFrom(uint32_t sector, uint32_t offset) {
  uint8_t chunk[64];
  while (offset < sectorSize_) {
    uint32_t n = sectorSize_ - offset < sizeof chunk ? sectorSize_ - offset : static_cast<uint32_t>(sizeof chunk);
    if (!flash_->read(addr(sector, offset), chunk, n)) return false;
    stats_.mountReadBytes += n;
    for (uint32_t i = 0; i < n; i++)
      if (chunk[i] != 0xFF) return false;
    offset += n;
  }
  return true;
}

bool FlashOutbox::inUse(uint32_t sector) const {
  if (!hasHead_) return false;
  uint32_t distance = sector >= oldest_ ? sector - oldest_ : sector + sectorCount_ - oldest_;
  return distance < inUse_;
}

bool FlashOutbox::seekFrame(Cursor& c, Record& r) {
  for (;;) {
    Scan s = readRecord(c, r, true);
    if (s == Scan::Record) {
      if (r.kind == kKindFrame && r.recordNo >= freeUpTo_) return true;
      advance(c, r);
      continue;
    }
    // Erased space, the end of the sector, or a torn record: the sector holds nothing after it.
    if (c.sector == head_ || !inUse(c.sector)) return false;
    c.sector = nextSector(c.sector);
    c.offset = kSectorHeaderBytes;
  }
}

bool FlashOutbox::format(Flash& flash) {
  for (uint32_t s = 0; s < flash.sectorCount(); s++)
    if (!flash.erase(s)) return false;
  return mount(flash);
}

bool FlashOutbox::mount(Flash& flash) {
  flash_ = &flash;
  sectorSize_ = flash.sectorSize();
  sectorCount_ = flash.sectorCount();
  hasHead_ = false;
  sealed_ = false;
  inUse_ = 0;
  nextRecordNo_ = 1;
  freeUpTo_ = 1;
  count_ = 0;
  cacheValid_ = false;
  droppedSinceBoot_ = 0;
  keptAtMount_ = 0;
  stats_ = FlashOutboxStats();
  resetSent();
  if (sectorCount_ < 2 || sectorSize_ < kMinSectorBytes || (sectorSize_ & 3u) != 0) {
    flash_ = nullptr;
    return false;
  }

  // The newest sector in use: the valid header with the highest sectorSeq.
  uint32_t seq = 0, first = 0, freeUpTo = 0;
  for (uint32_t s = 0; s < sectorCount_; s++) {
    if (!readSectorHeader(s, seq, first, freeUpTo)) continue;
    if (!hasHead_ || seq > headSeq_) {
      hasHead_ = true;
      head_ = s;
      headSeq_ = seq;
      nextRecordNo_ = first;
      freeUpTo_ = freeUpTo;
    }
  }
  if (!hasHead_) return true;  // blank (or nothing intact): an empty ring

  // Sectors in use: the run of valid headers with consecutive sectorSeq that ends at the newest.
  oldest_ = head_;
  inUse_ = 1;
  for (uint32_t s = head_; inUse_ < sectorCount_;) {
    s = s == 0 ? sectorCount_ - 1 : s - 1;
    if (!readSectorHeader(s, seq, first, freeUpTo) || seq != headSeq_ - inUse_) break;
    oldest_ = s;
    inUse_++;
  }

  // The newest sector: the last ACK record, the next record number, where to append.
  Cursor c{head_, kSectorHeaderBytes};
  Record r;
  Scan s;
  while ((s = readRecord(c, r, true)) == Scan::Record) {
    if (r.recordNo >= nextRecordNo_) nextRecordNo_ = r.recordNo + 1;
    if (r.kind == kKindAck) {
      uint32_t upTo = readU32le(buf_ + kRecordHeaderBytes);
      if (upTo > freeUpTo_ && upTo <= nextRecordNo_) freeUpTo_ = upTo;
    }
    advance(c, r);
  }
  writeOffset_ = c.offset;
  // A torn record, or anything but erased bytes after the last record: never program over it.
  if (s == Scan::Torn || !erasedFrom(head_, writeOffset_)) {
    sealed_ = true;
    stats_.sealedSectors++;
  }

  // The live frames, oldest first. A sector whose successor starts at or below freeUpTo holds only
  // acknowledged records and is skipped unread.
  Cursor walk{oldest_, kSectorHeaderBytes};
  bool haveTail = false;
  for (uint32_t k = 0; k < inUse_; k++) {
    uint32_t sector = walk.sector;
    bool skip = false;
    if (k + 1 < inUse_ && readSectorHeader(nextSector(sector), seq, first, freeUpTo)) skip = first <= freeUpTo_;
    if (!skip) {
      Cursor p{sector, kSectorHeaderBytes};
      while (readRecord(p, r, true) == Scan::Record) {
        if (r.kind == kKindFrame && r.recordNo >= freeUpTo_) {
          if (!haveTail) tail_ = p;
          haveTail = true;
          count_++;
        }
        advance(p, r);
      }
    }
    walk.sector = nextSector(sector);
  }
  if (count_ == 0) freeUpTo_ = nextRecordNo_;
  keptAtMount_ = count_;
  return true;
}

bool FlashOutbox::openSector() {
  uint32_t next = hasHead_ ? nextSector(head_) : 0;
  if (hasHead_ && inUse_ == sectorCount_) {
    // Full: the oldest sector is reused; whatever it still holds unacknowledged is dropped (counted).
    uint32_t dropped = 0;
    Cursor p{oldest_, kSectorHeaderBytes};
    Record r;
    while (readRecord(p, r, true) == Scan::Record) {
      if (r.kind == kKindFrame && r.recordNo >= freeUpTo_) dropped++;
      advance(p, r);
    }
    uint32_t seq = 0, first = 0, freeUpTo = 0;
    uint32_t following = nextSector(oldest_);
    if (readSectorHeader(following, seq, first, freeUpTo) && first > freeUpTo_) freeUpTo_ = first;
    oldest_ = following;
    inUse_--;
    if (dropped > 0) {
      count_ = count_ > dropped ? count_ - dropped : 0;
      droppedSinceBoot_ += dropped;
      forgetSent(dropped > 0xFFFFu ? 0xFFFFu : static_cast<uint16_t>(dropped));
      cacheValid_ = false;
      if (count_ > 0) {
        Cursor t{following, kSectorHeaderBytes};
        if (seekFrame(t, r)) {
          tail_ = t;
          freeUpTo_ = r.recordNo;
        } else {
          count_ = 0;
        }
      }
    }
    if (count_ == 0) freeUpTo_ = nextRecordNo_;
  }
  if (!flash_->erase(next)) return false;
  stats_.sectorsErased++;
  uint8_t h[kSectorHeaderBytes];
  uint32_t seq = hasHead_ ? headSeq_ + 1 : 1;
  writeU32le(h, kSectorMagic);
  writeU32le(h + 4, seq);
  writeU32le(h + 8, nextRecordNo_);
  writeU32le(h + 12, freeUpTo_);
  writeU32le(h + 16, crc32(h, 16));
  if (!flash_->program(addr(next, 0), h, sizeof h)) return false;
  stats_.bytesProgrammed += sizeof h;
  if (hasHead_) {
    inUse_++;
  } else {
    oldest_ = next;
    inUse_ = 1;
  }
  hasHead_ = true;
  head_ = next;
  headSeq_ = seq;
  writeOffset_ = kSectorHeaderBytes;
  sealed_ = false;
  return true;
}

bool FlashOutbox::appendRecord(uint16_t kind, const uint8_t* payload, uint16_t len, bool mayOpen) {
  uint32_t need = recordBytes(len);
  for (int attempt = 0; attempt < 2; attempt++) {
    if (!hasHead_ || sealed_ || writeOffset_ + need > sectorSize_) {
      if (!mayOpen || !openSector()) return false;
    }
    uint8_t* h = buf_;
    writeU16le(h, kind);
    writeU16le(h + 2, len);
    writeU32le(h + 4, nextRecordNo_);
    writeU32le(h + 8, crc32(payload, len));
    writeU32le(h + 12, crc32(h, 12));
    memcpy(h + kRecordHeaderBytes, payload, len);
    memset(h + kRecordHeaderBytes + len, 0xFF, need - kRecordHeaderBytes - len);
    nextRecordNo_++;  // numbers are never reused, not even after a failed write
    uint32_t at = addr(head_, writeOffset_);
    bool ok = flash_->program(at, h, need);
    // Read back: a frame counts as kept only once it is intact in flash.
    uint8_t chunk[64];
    for (uint32_t off = 0; ok && off < need; off += sizeof chunk) {
      uint32_t n = need - off < sizeof chunk ? need - off : static_cast<uint32_t>(sizeof chunk);
      ok = flash_->read(at + off, chunk, n) && memcmp(chunk, h + off, n) == 0;
    }
    if (ok) {
      tailCandidate_ = Cursor{head_, writeOffset_};
      writeOffset_ += need;
      stats_.bytesProgrammed += need;
      return true;
    }
    sealed_ = true;  // never program over a failed write: the next record opens a new sector
    stats_.sealedSectors++;
  }
  return false;
}

bool FlashOutbox::push(const uint8_t* frame, uint16_t len, uint32_t bootId, uint32_t seq) {
  (void)bootId;
  (void)seq;  // both are in the frame itself
  if (flash_ == nullptr || frame == nullptr || len > kMaxFrame || len < 20) {
    droppedSinceBoot_++;
    return false;
  }
  if (!appendRecord(kKindFrame, frame, len, true)) {
    droppedSinceBoot_++;
    return false;
  }
  stats_.frameBytes += len;
  if (count_ == 0) {
    tail_ = tailCandidate_;
    freeUpTo_ = nextRecordNo_ - 1;
  }
  count_++;
  return true;
}

FrameQueue::Entry FlashOutbox::at(uint16_t i) {
  Entry e;
  if (flash_ == nullptr || i >= count_) return e;
  if (!cacheValid_ || i < cacheIndex_) {
    cache_ = tail_;
    cacheIndex_ = 0;
  }
  Record r;
  Cursor c = cache_;
  uint32_t index = cacheIndex_;
  bool found = seekFrame(c, r);
  while (found && index < i) {
    advance(c, r);
    found = seekFrame(c, r);
    index++;
  }
  if (!found) {
    // Only a flash that changed under us gets here: what cannot be read is given up, counted.
    droppedSinceBoot_ += count_ - index;
    count_ = index;
    cacheValid_ = false;
    return e;
  }
  cache_ = c;
  cacheIndex_ = index;
  cacheValid_ = true;
  e.frame = buf_ + kRecordHeaderBytes;
  e.len = r.len;
  e.bootId = r.bootId;
  e.seq = r.seq;
  return e;
}

void FlashOutbox::popFront(uint32_t n, bool countAsDropped) {
  if (n > count_) n = count_;
  if (n == 0) return;
  if (n < count_) {
    Entry next = at(static_cast<uint16_t>(n));  // the new oldest; at() leaves its position in cache_
    if (next.frame == nullptr) {
      n = count_;
    } else {
      tail_ = cache_;
      freeUpTo_ = readU32le(buf_ + 4);  // its recordNo
      cacheIndex_ -= n;
    }
  }
  count_ -= n;
  if (count_ == 0) {
    freeUpTo_ = nextRecordNo_;
    cacheValid_ = false;
  }
  forgetSent(n > 0xFFFFu ? 0xFFFFu : static_cast<uint16_t>(n));
  if (countAsDropped) droppedSinceBoot_ += n;
  writeAck();
}

void FlashOutbox::writeAck() {
  // Only into the open sector: opening a sector for it could drop frames of a full ring. When it does
  // not fit, the next sector's header carries freeUpTo; a power cut before then only replays frames
  // the hub already acknowledged.
  uint8_t p[4];
  writeU32le(p, freeUpTo_);
  if (hasHead_ && !sealed_ && writeOffset_ + recordBytes(sizeof p) <= sectorSize_ &&
      appendRecord(kKindAck, p, sizeof p, false)) {
    stats_.ackRecords++;
  } else {
    stats_.ackRecordsSkipped++;
  }
}

uint16_t FlashOutbox::ack(uint32_t bootId, uint32_t seq) {
  if (flash_ == nullptr || count_ == 0) return 0;
  int64_t last = -1;
  uint32_t limit = count_ > 0xFFFFu ? 0xFFFFu : count_;
  for (uint32_t i = 0; i < limit; i++) {
    Entry e = at(static_cast<uint16_t>(i));
    if (e.frame == nullptr) break;
    if (e.bootId == bootId) {
      if (e.seq > seq) break;
      last = static_cast<int64_t>(i);
    } else if (last >= 0) {
      break;  // a later boot's frames: boot ids never repeat, so nothing further can match
    }
  }
  if (last < 0) return 0;
  auto n = static_cast<uint32_t>(last + 1);
  popFront(n, false);
  return n > 0xFFFFu ? 0xFFFFu : static_cast<uint16_t>(n);
}

uint16_t FlashOutbox::dropOldest(uint16_t n) {
  if (flash_ == nullptr) return 0;
  uint32_t m = n < count_ ? n : count_;
  popFront(m, true);
  return static_cast<uint16_t>(m);
}

}  // namespace esp32hub
