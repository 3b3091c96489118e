// The bounded outbox [PROTO-3.5]: cumulative ACK frees, replay order, drop-oldest with its counter,
// and restoring from retained (RTC) memory.
#include <unity.h>

#include "hub_protocol.h"
#include "suites.h"

using namespace esp32hub;

namespace {

/** A real TELEMETRY frame for (boot, seq), so restore() finds a valid envelope and CRC. */
size_t makeFrame(uint32_t boot, uint32_t seq, uint8_t* out, size_t cap) {
  TelemetryBuilder b;
  b.add(0, ValueType::U16, 1000, true, false, Value::integer(ValueType::U16, seq & 0xffff));
  size_t len = 0;
  b.encode(boot, seq, 0xabcdef01u, out, cap, &len);
  return len;
}

void push(Outbox& box, uint32_t boot, uint32_t seq) {
  uint8_t f[128];
  size_t n = makeFrame(boot, seq, f, sizeof f);
  TEST_ASSERT_TRUE(box.push(f, static_cast<uint16_t>(n), boot, seq));
}

void test_cumulative_ack_frees_up_to_and_including() {
  OutboxStorage<8, 128> mem;
  Outbox box;
  TEST_ASSERT_TRUE(box.format(mem.bytes, sizeof mem.bytes, 8, 128));
  for (uint32_t s = 1; s <= 5; s++) push(box, 10, s);
  TEST_ASSERT_EQUAL_UINT(5, box.size());
  TEST_ASSERT_EQUAL_UINT(3, box.ack(10, 3));
  TEST_ASSERT_EQUAL_UINT(2, box.size());
  TEST_ASSERT_EQUAL_UINT32(4, box.at(0).seq);
  TEST_ASSERT_EQUAL_UINT(0, box.ack(10, 3));   // a repeated ACK frees nothing
  TEST_ASSERT_EQUAL_UINT(0, box.ack(99, 9));   // an ACK of another boot that covers nothing queued
  TEST_ASSERT_EQUAL_UINT(2, box.ack(10, 100)); // cumulative beyond the newest
  TEST_ASSERT_TRUE(box.empty());
}

void test_ack_of_this_boot_frees_earlier_boots_queued_before() {
  OutboxStorage<8, 128> mem;
  Outbox box;
  box.format(mem.bytes, sizeof mem.bytes, 8, 128);
  push(box, 1, 7);  // from before a deep sleep
  push(box, 1, 8);
  push(box, 2, 1);
  push(box, 2, 2);
  TEST_ASSERT_EQUAL_UINT(3, box.ack(2, 1));
  TEST_ASSERT_EQUAL_UINT(1, box.size());
  TEST_ASSERT_EQUAL_UINT32(2, box.at(0).bootId);
}

void test_drop_oldest_when_full_with_a_counter() {
  OutboxStorage<4, 128> mem;
  Outbox box;
  box.format(mem.bytes, sizeof mem.bytes, 4, 128);
  for (uint32_t s = 1; s <= 7; s++) push(box, 3, s);
  TEST_ASSERT_EQUAL_UINT(4, box.size());
  TEST_ASSERT_EQUAL_UINT32(3, box.droppedSinceBoot());
  TEST_ASSERT_EQUAL_UINT32(3, box.droppedTotal());
  TEST_ASSERT_EQUAL_UINT32(4, box.at(0).seq);  // the oldest went
  TEST_ASSERT_EQUAL_UINT32(7, box.at(3).seq);
  // A frame larger than a slot is refused and counted, never truncated.
  uint8_t big[200] = {};
  TEST_ASSERT_FALSE(box.push(big, sizeof big, 3, 8));
  TEST_ASSERT_EQUAL_UINT32(4, box.droppedSinceBoot());
}

void test_replay_order_and_in_flight_tracking() {
  OutboxStorage<8, 128> mem;
  Outbox box;
  box.format(mem.bytes, sizeof mem.bytes, 8, 128);
  for (uint32_t s = 1; s <= 4; s++) push(box, 5, s);
  box.markSent();
  box.markSent();
  box.markSent();
  TEST_ASSERT_EQUAL_UINT(3, box.inFlight());
  TEST_ASSERT_EQUAL_UINT32(4, box.nextUnsent().seq);
  box.ack(5, 1);
  TEST_ASSERT_EQUAL_UINT(2, box.inFlight());  // seq 2, 3 still in flight
  box.rewind();                               // reconnect: replay oldest unacknowledged first
  uint32_t order[3];
  for (int i = 0; i < 3; i++) {
    order[i] = box.nextUnsent().seq;
    box.markSent();
  }
  TEST_ASSERT_EQUAL_UINT32(2, order[0]);
  TEST_ASSERT_EQUAL_UINT32(3, order[1]);
  TEST_ASSERT_EQUAL_UINT32(4, order[2]);
  TEST_ASSERT_FALSE(box.hasUnsent());
  // Dropping from the front while frames are in flight keeps the cursor on the same frame.
  box.rewind();
  box.markSent();
  box.dropOldest(1);
  TEST_ASSERT_EQUAL_UINT(0, box.inFlight());
  TEST_ASSERT_EQUAL_UINT32(3, box.nextUnsent().seq);
}

void test_wraparound_keeps_fifo_order() {
  OutboxStorage<3, 128> mem;
  Outbox box;
  box.format(mem.bytes, sizeof mem.bytes, 3, 128);
  uint32_t next = 1;
  for (int round = 0; round < 10; round++) {
    push(box, 9, next++);
    push(box, 9, next++);
    TEST_ASSERT_EQUAL_UINT32(next - 2, box.at(box.size() - 2).seq);
    box.ack(9, next - 2);
    TEST_ASSERT_EQUAL_UINT(1, box.size());
    TEST_ASSERT_EQUAL_UINT32(next - 1, box.at(0).seq);
  }
  TEST_ASSERT_EQUAL_UINT32(0, box.droppedTotal());
}

void test_restore_from_retained_memory() {
  OutboxStorage<6, 128> mem;
  Outbox box;
  box.format(mem.bytes, sizeof mem.bytes, 6, 128);
  for (uint32_t s = 1; s <= 4; s++) push(box, 11, s);
  box.ack(11, 1);
  // "Deep sleep": a new Outbox object over the same bytes keeps the three unacknowledged frames.
  Outbox after;
  TEST_ASSERT_EQUAL_UINT(3, after.restore(mem.bytes, sizeof mem.bytes, 6, 128));
  TEST_ASSERT_EQUAL_UINT32(2, after.at(0).seq);
  TEST_ASSERT_EQUAL_UINT32(0, after.droppedSinceBoot());
  Envelope env;
  TEST_ASSERT_TRUE(readEnvelope(after.at(2).frame, after.at(2).len, env) == Err::Ok);

  // A torn newest frame goes; the older ones stay.
  const Outbox::Entry newest = after.at(2);
  const_cast<uint8_t*>(newest.frame)[10] ^= 0xff;
  Outbox again;
  TEST_ASSERT_EQUAL_UINT(2, again.restore(mem.bytes, sizeof mem.bytes, 6, 128));

  // Garbage (power-on) or another geometry (new firmware): formatted, nothing kept.
  Outbox other;
  TEST_ASSERT_EQUAL_UINT(0, other.restore(mem.bytes, sizeof mem.bytes, 5, 128));
  TEST_ASSERT_TRUE(other.empty());
  memset(mem.bytes, 0x5a, sizeof mem.bytes);
  Outbox fresh;
  TEST_ASSERT_EQUAL_UINT(0, fresh.restore(mem.bytes, sizeof mem.bytes, 6, 128));
  TEST_ASSERT_TRUE(fresh.empty());
  push(fresh, 12, 1);
  TEST_ASSERT_EQUAL_UINT(1, fresh.size());
}

void test_storage_too_small_is_refused() {
  alignas(4) uint8_t small[64];
  Outbox box;
  TEST_ASSERT_FALSE(box.format(small, sizeof small, 4, 128));
  uint8_t f[16] = {};
  TEST_ASSERT_FALSE(box.push(f, sizeof f, 1, 1));
  TEST_ASSERT_EQUAL_UINT(0, box.size());
}

}  // namespace

void run_outbox_tests() {
  RUN_TEST(test_cumulative_ack_frees_up_to_and_including);
  RUN_TEST(test_ack_of_this_boot_frees_earlier_boots_queued_before);
  RUN_TEST(test_drop_oldest_when_full_with_a_counter);
  RUN_TEST(test_replay_order_and_in_flight_tracking);
  RUN_TEST(test_wraparound_keeps_fifo_order);
  RUN_TEST(test_restore_from_retained_memory);
  RUN_TEST(test_storage_too_small_is_refused);
}
