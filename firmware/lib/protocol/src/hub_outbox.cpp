#include "hub_outbox.h"

#include <string.h>

#include "hub_codec.h"
#include "hub_crc32.h"

namespace esp32hub {

bool Outbox::attach(void* storage, size_t bytes, uint16_t slots, uint16_t slotBytes) {
  mem_ = nullptr;
  resetSent();
  if (storage == nullptr || slots == 0 || slotBytes < kFrameOverheadBytes) return false;
  if ((reinterpret_cast<uintptr_t>(storage) & 3u) != 0) return false;
  if (bytes < storageBytes(slots, slotBytes)) return false;
  mem_ = static_cast<uint8_t*>(storage);
  return true;
}

bool Outbox::format(void* storage, size_t bytes, uint16_t slots, uint16_t slotBytes) {
  static_assert(sizeof(Header) == kHeaderSize, "outbox header layout");
  static_assert(sizeof(SlotHeader) == kSlotHeaderSize, "outbox slot header layout");
  if (!attach(storage, bytes, slots, slotBytes)) return false;
  Header* h = hdr();
  h->magic = kMagic;
  h->slots = slots;
  h->slotBytes = slotBytes;
  h->head = 0;
  h->count = 0;
  h->droppedTotal = 0;
  droppedSinceBoot_ = 0;
  seal();
  return true;
}

uint16_t Outbox::restore(void* storage, size_t bytes, uint16_t slots, uint16_t slotBytes) {
  if (!attach(storage, bytes, slots, slotBytes)) return 0;
  Header* h = hdr();
  droppedSinceBoot_ = 0;
  bool intact = h->magic == kMagic && h->slots == slots && h->slotBytes == slotBytes && h->head < slots &&
                h->count <= slots && h->crc == headerCrc();
  if (!intact) {
    format(storage, bytes, slots, slotBytes);
    return 0;
  }
  // Keep the frames from the front that are intact; the first damaged one and everything after it go
  // (a torn write during a brown-out damages the newest frame, not the oldest).
  uint16_t good = 0;
  while (good < h->count) {
    const SlotHeader* s = slot(physical(good));
    const uint8_t* f = reinterpret_cast<const uint8_t*>(s) + kSlotHeaderSize;
    Envelope env;
    if (s->len > slotBytes || readEnvelope(f, s->len, env) != Err::Ok || env.type != MsgType::Telemetry) break;
    good++;
  }
  h->count = good;
  seal();
  return good;
}

Outbox::SlotHeader* Outbox::slot(uint16_t phys) const {
  return reinterpret_cast<SlotHeader*>(mem_ + kHeaderSize + static_cast<size_t>(phys) * slotStride(hdr()->slotBytes));
}

uint16_t Outbox::physical(uint16_t i) const {
  uint32_t p = static_cast<uint32_t>(hdr()->head) + i;
  return static_cast<uint16_t>(p % hdr()->slots);
}

uint32_t Outbox::headerCrc() const { return crc32(mem_, kHeaderSize - sizeof(uint32_t)); }

void Outbox::seal() { hdr()->crc = headerCrc(); }

void Outbox::popFront(uint16_t n, bool countAsDropped) {
  Header* h = hdr();
  if (n > h->count) n = h->count;
  h->head = physical(n);
  h->count = static_cast<uint16_t>(h->count - n);
  forgetSent(n);
  if (countAsDropped) {
    h->droppedTotal += n;
    droppedSinceBoot_ += n;
  }
  seal();
}

bool Outbox::push(const uint8_t* frame, uint16_t len, uint32_t bootId, uint32_t seq) {
  if (mem_ == nullptr) return false;
  Header* h = hdr();
  if (len > h->slotBytes || frame == nullptr) {
    h->droppedTotal++;
    droppedSinceBoot_++;
    seal();
    return false;
  }
  if (h->count == h->slots) popFront(1, true);  // drop-oldest
  SlotHeader* s = slot(physical(h->count));
  s->len = len;
  s->reserved = 0;
  s->bootId = bootId;
  s->seq = seq;
  memcpy(reinterpret_cast<uint8_t*>(s) + kSlotHeaderSize, frame, len);
  // The count moves only after the frame is in place: a reset in between loses the frame, not the box.
  h->count++;
  seal();
  return true;
}

uint16_t Outbox::ack(uint32_t bootId, uint32_t seq) {
  if (mem_ == nullptr) return 0;
  const Header* h = hdr();
  int last = -1;
  for (uint16_t i = 0; i < h->count; i++) {
    const SlotHeader* s = slot(physical(i));
    if (s->bootId == bootId && s->seq <= seq) last = i;
  }
  if (last < 0) return 0;
  auto n = static_cast<uint16_t>(last + 1);
  popFront(n, false);
  return n;
}

uint16_t Outbox::dropOldest(uint16_t n) {
  if (mem_ == nullptr) return 0;
  if (n > hdr()->count) n = hdr()->count;
  popFront(n, true);
  return n;
}

Outbox::Entry Outbox::entry(uint16_t i) const {
  Entry e;
  if (mem_ == nullptr || i >= hdr()->count) return e;
  const SlotHeader* s = slot(physical(i));
  e.frame = reinterpret_cast<const uint8_t*>(s) + kSlotHeaderSize;
  e.len = s->len;
  e.bootId = s->bootId;
  e.seq = s->seq;
  return e;
}

}  // namespace esp32hub
