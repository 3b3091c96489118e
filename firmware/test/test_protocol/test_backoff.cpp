// Reconnect backoff [PROTO-5.6]: 1 s doubling to 60 s, ±20 % jitter, reset after a session.
#include <unity.h>

#include <vector>

#include "hub_protocol.h"
#include "suites.h"

using namespace esp32hub;

namespace {

uint32_t lcg(uint32_t& state) {
  state = state * 1664525u + 1013904223u;
  return state;
}

void test_nominal_doubles_to_the_cap() {
  Backoff b;
  const uint32_t expected[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000};
  for (uint32_t e : expected) {
    TEST_ASSERT_EQUAL_UINT32(e, b.nominalMs());
    b.next(0);
  }
  for (int i = 0; i < 100; i++) b.next(0);  // no overflow however long the hub stays away
  TEST_ASSERT_EQUAL_UINT32(60000, b.nominalMs());
  b.reset();
  TEST_ASSERT_EQUAL_UINT32(1000, b.nominalMs());
}

void test_jitter_stays_within_plus_minus_20_percent() {
  Backoff edges;
  TEST_ASSERT_EQUAL_UINT32(800, edges.next(0));  // random 0 → the low edge
  edges.reset();
  TEST_ASSERT_EQUAL_UINT32(1200, edges.next(400));  // 400 = 2 × span → the high edge
  uint32_t state = 12345;
  for (int attempt = 0; attempt < 12; attempt++) {
    Backoff b;
    for (int k = 0; k < attempt; k++) b.next(lcg(state));
    uint32_t nominal = b.nominalMs();
    uint64_t sum = 0;
    uint32_t lo = UINT32_MAX, hi = 0;
    const int draws = 2000;
    for (int i = 0; i < draws; i++) {
      Backoff copy = b;
      uint32_t d = copy.next(lcg(state));
      TEST_ASSERT_GREATER_OR_EQUAL_UINT32(nominal - nominal / 5, d);
      TEST_ASSERT_LESS_OR_EQUAL_UINT32(nominal + nominal / 5, d);
      sum += d;
      lo = d < lo ? d : lo;
      hi = d > hi ? d : hi;
    }
    // Spread over the whole band, centred on the nominal delay.
    TEST_ASSERT_UINT32_WITHIN(nominal / 50, nominal, static_cast<uint32_t>(sum / draws));
    TEST_ASSERT_LESS_OR_EQUAL_UINT32(nominal - nominal / 5 + nominal / 50, lo);
    TEST_ASSERT_GREATER_OR_EQUAL_UINT32(nominal + nominal / 5 - nominal / 50, hi);
  }
}

// Fixed-rate sampling: late ticks do not shift later ones (a `now + interval` loop drifts by the lateness
// of every tick); a loop held up for whole intervals skips those ticks instead of bursting.
void test_tick_schedule_is_fixed_rate() {
  TickSchedule t;
  t.start(1000, 1000);
  uint64_t now = 0;
  std::vector<uint64_t> ticks;
  for (int i = 0; i < 100; i++) {
    now += 1000 + 37;  // every turn of the loop comes 37 ms late
    // …but the schedule keeps the grid: ticks due at 1000, 2000, … run at their first chance.
    while (t.due(now)) ticks.push_back(now);
  }
  // Turns until 103 700 ms: the 103 ticks due by then either ran (one per turn) or were skipped.
  TEST_ASSERT_EQUAL_UINT(103, ticks.size() + t.skipped());
  TEST_ASSERT_EQUAL_UINT(100, ticks.size());
  TEST_ASSERT_EQUAL_UINT64(104000, t.nextDueMs());  // still on the grid: no drift after 100 late turns
  // With `next = now + interval` the 100th tick would be due at 100 × 1037 + 1000 = 104 700 ms.
  // Stalled for 10.5 intervals: one tick runs now, the 10 that could not are skipped, the grid holds.
  TickSchedule s;
  s.start(0, 1000);
  TEST_ASSERT_TRUE(s.due(0));
  TEST_ASSERT_TRUE(s.due(10500));
  TEST_ASSERT_FALSE(s.due(10600));
  TEST_ASSERT_EQUAL_UINT32(9, s.skipped());
  TEST_ASSERT_EQUAL_UINT64(11000, s.nextDueMs());
  // A new interval counts from the last due tick.
  s.setInterval(5000, 10600);
  TEST_ASSERT_EQUAL_UINT64(15000, s.nextDueMs());
}

void test_sleep_policy_connects_every_n_samples_or_m_minutes() {
  SleepPolicy p;
  p.flushEverySamples = 30;
  p.flushEveryMs = 15 * 60 * 1000;
  TEST_ASSERT_FALSE(p.shouldConnect(29, 14 * 60 * 1000));
  TEST_ASSERT_TRUE(p.shouldConnect(30, 0));
  TEST_ASSERT_TRUE(p.shouldConnect(1, 15 * 60 * 1000));
}

}  // namespace

void run_backoff_tests() {
  RUN_TEST(test_tick_schedule_is_fixed_rate);
  RUN_TEST(test_sleep_policy_connects_every_n_samples_or_m_minutes);
  RUN_TEST(test_nominal_doubles_to_the_cap);
  RUN_TEST(test_jitter_stays_within_plus_minus_20_percent);
}
