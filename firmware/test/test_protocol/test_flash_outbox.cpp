// The flash-backed outbox on a simulated NOR flash (support/sim_flash.h): ring order, ACK, drop-oldest,
// recovery after a power cut at EVERY program/erase step of a scripted run, and the capacity and wear
// figures of the shipped partition at the default sample rate (printed as ESP32HUB-FLASH {...}).
#include <stdio.h>
#include <unity.h>

#include <set>
#include <string>
#include <vector>

#include "hub_protocol.h"
#include "sim_flash.h"
#include "suites.h"

using namespace esp32hub;

namespace {

constexpr uint32_t kBoot = 0xB007B007u;
constexpr uint32_t kHash = 0x0DE5C0DEu;

/** A real TELEMETRY frame of `samples` u32 samples (about 36 + 5 × samples bytes), unique per seq. */
std::vector<uint8_t> buildFrame(uint32_t bootId, uint32_t seq, uint32_t samples) {
  TelemetryBuilder b;
  b.setLimit(kMaxFrameBytes);
  for (uint32_t i = 0; i < samples; i++)
    b.add(channel::kHeapFree, ValueType::U32, 1767225600000ull + i, true, false,
          Value::integer(ValueType::U32, static_cast<int64_t>(seq * 1000 + i)));
  std::vector<uint8_t> out(kMaxFrameBytes);
  size_t len = 0;
  TEST_ASSERT_TRUE(b.encode(bootId, seq, kHash, out.data(), out.size(), &len) == Err::Ok);
  out.resize(len);
  return out;
}

/** Built once per (seq, samples): the power-cut test replays the same frames thousands of times. */
const std::vector<uint8_t>& makeFrame(uint32_t bootId, uint32_t seq, uint32_t samples) {
  static std::vector<std::vector<uint8_t>> cache;
  static std::vector<uint32_t> cachedSamples;
  if (bootId != kBoot) {
    static std::vector<uint8_t> other;
    other = buildFrame(bootId, seq, samples);
    return other;
  }
  if (cache.size() <= seq) {
    cache.resize(seq + 1);
    cachedSamples.resize(seq + 1, 0);
  }
  if (cachedSamples[seq] != samples) {
    cache[seq] = buildFrame(bootId, seq, samples);
    cachedSamples[seq] = samples;
  }
  return cache[seq];
}

/** Sizes that vary so records end at every kind of offset in a sector (20…~560 bytes). */
uint32_t samplesFor(uint32_t seq) { return 1 + (seq * 37u) % 110u; }

std::vector<FrameQueue::Entry> entries(FlashOutbox& box, std::vector<std::vector<uint8_t>>* copies = nullptr) {
  std::vector<FrameQueue::Entry> out;
  for (uint16_t i = 0; i < box.size(); i++) {
    FrameQueue::Entry e = box.at(i);
    out.push_back(e);
    if (copies != nullptr) copies->emplace_back(e.frame, e.frame + e.len);
  }
  return out;
}

void test_flash_outbox_keeps_order_acks_and_survives_a_remount() {
  SimFlash flash(4);
  FlashOutbox box;
  TEST_ASSERT_TRUE(box.mount(flash));
  TEST_ASSERT_EQUAL_UINT32(0, box.count());
  for (uint32_t s = 1; s <= 30; s++) {
    auto f = makeFrame(kBoot, s, samplesFor(s));
    TEST_ASSERT_TRUE(box.push(f.data(), static_cast<uint16_t>(f.size()), kBoot, s));
  }
  TEST_ASSERT_EQUAL_UINT32(30, box.count());
  TEST_ASSERT_EQUAL_UINT(10, box.ack(kBoot, 10));
  TEST_ASSERT_EQUAL_UINT(0, box.ack(kBoot, 10));  // a repeated ACK frees nothing
  TEST_ASSERT_EQUAL_UINT32(11, box.at(0).seq);

  FlashOutbox again;  // a reboot: only the flash is left
  TEST_ASSERT_TRUE(again.mount(flash));
  TEST_ASSERT_EQUAL_UINT32(20, again.keptAtMount());
  std::vector<std::vector<uint8_t>> copies;
  auto es = entries(again, &copies);
  for (uint32_t i = 0; i < es.size(); i++) {
    TEST_ASSERT_EQUAL_UINT32(11 + i, es[i].seq);
    auto f = makeFrame(kBoot, 11 + i, samplesFor(11 + i));
    TEST_ASSERT_TRUE(copies[i] == f);  // byte for byte
  }
  TEST_ASSERT_EQUAL_UINT(20, again.ack(kBoot, 30));
  TEST_ASSERT_TRUE(again.empty());
  FlashOutbox third;
  TEST_ASSERT_TRUE(third.mount(flash));
  TEST_ASSERT_EQUAL_UINT32(0, third.count());
  TEST_ASSERT_EQUAL_UINT64(0, flash.violations);  // never programmed a 1 over a 0
}

void test_flash_outbox_drops_the_oldest_when_full_and_counts_it() {
  SimFlash flash(3);
  FlashOutbox box;
  TEST_ASSERT_TRUE(box.format(flash));
  uint32_t pushed = 0;
  while (box.droppedSinceBoot() == 0) {
    pushed++;
    auto f = makeFrame(kBoot, pushed, 40);
    TEST_ASSERT_TRUE(box.push(f.data(), static_cast<uint16_t>(f.size()), kBoot, pushed));
    TEST_ASSERT_TRUE(pushed < 1000);
  }
  // A whole sector of the oldest frames went; what is left is contiguous and ends with the newest.
  auto es = entries(box);
  TEST_ASSERT_EQUAL_UINT32(pushed, es.size() + box.droppedSinceBoot());
  TEST_ASSERT_EQUAL_UINT32(box.droppedSinceBoot() + 1, es.front().seq);
  TEST_ASSERT_EQUAL_UINT32(pushed, es.back().seq);
  FlashOutbox again;
  TEST_ASSERT_TRUE(again.mount(flash));
  TEST_ASSERT_EQUAL_UINT32(es.size(), again.count());
  TEST_ASSERT_EQUAL_UINT32(es.front().seq, again.at(0).seq);
}

void test_flash_outbox_mounts_a_never_erased_partition_as_empty() {
  SimFlash flash(4);
  flash.scramble(7);
  FlashOutbox box;
  TEST_ASSERT_TRUE(box.mount(flash));
  TEST_ASSERT_EQUAL_UINT32(0, box.count());
  auto f = makeFrame(kBoot, 1, 3);
  TEST_ASSERT_TRUE(box.push(f.data(), static_cast<uint16_t>(f.size()), kBoot, 1));
  FlashOutbox again;
  TEST_ASSERT_TRUE(again.mount(flash));
  TEST_ASSERT_EQUAL_UINT32(1, again.count());
}

// ───────────────────────────── power cut at every step ─────────────────────────────

/** A scripted run: its flash, its frames, and from which frame on it acknowledges. */
struct Scenario {
  uint32_t sectors;
  uint32_t frames;
  uint32_t acksFrom;
};
/** Round a 4-sector ring about three times, acknowledging as it goes. */
constexpr Scenario kLaps{4, 120, 1};
/** A 3-sector ring filled with unacknowledged frames first, so opening sectors drops the oldest. */
constexpr Scenario kFull{3, 70, 45};
constexpr uint32_t kScriptFrames = kLaps.frames;

/** Samples per seq in the scripted run (the script picks some sizes from the flash's state). */
std::vector<uint32_t> gScriptSamples;

uint32_t scriptSamples(uint32_t seq) { return seq < gScriptSamples.size() && gScriptSamples[seq] != 0 ? gScriptSamples[seq] : samplesFor(seq); }

struct ScriptState {
  uint32_t pushedOk = 0;   // frames 1..pushedOk were kept (push returned true)
  uint32_t inProgress = 0; // the frame being pushed when power went (0: none)
  uint32_t ackedUpTo = 0;  // ack() ran for 1..ackedUpTo
  uint32_t goneUpTo = 0;   // 1..goneUpTo were acknowledged or dropped (drop-oldest) when power went
  FlashOutboxStats stats;  // of the run
  uint32_t dropped = 0;
  /** The uncut run records, per seq, goneUpTo right after its push (a push can drop older frames). */
  std::vector<uint32_t>* goneAfterPush = nullptr;
};

/** What has left the ring: everything before its oldest frame. */
uint32_t goneBefore(FlashOutbox& box, uint32_t newest) { return box.count() > 0 ? box.at(0).seq - 1 : newest; }

/**
 * The scripted run: frames of varying size, ACKs lagging 2 frames behind every 3rd frame (so ACK
 * records, sector changes and ring laps all happen: ~2 laps of a 4-sector ring). Stops when the flash
 * loses power.
 */
void runScript(SimFlash& flash, ScriptState& st, const Scenario& sc) {
  FlashOutbox box;
  if (!box.mount(flash)) return;
  gScriptSamples.assign(sc.frames + 1, 0);
  if (st.goneAfterPush != nullptr) st.goneAfterPush->assign(sc.frames + 1, 0);
  for (uint32_t s = 1; s <= sc.frames; s++) {
    uint32_t samples = samplesFor(s);
    if (s % 7 == 0) {
      // Fill the open sector to within 20 bytes, so the ACK that follows does not fit and is left to
      // the next sector's header (the other way of freeing frames).
      static std::vector<uint32_t> lengths;  // frame length by sample count (the same for every seq)
      if (lengths.empty())
        for (uint32_t n = 0; n < 190; n++) lengths.push_back(n == 0 ? 0 : static_cast<uint32_t>(buildFrame(kBoot, 1, n).size()));
      uint32_t free = box.openSectorFree();
      for (uint32_t n = 1; n < 190; n++) {
        uint32_t rec = FlashOutbox::recordBytes(lengths[n]);
        if (rec <= free && free - rec < 20) {
          samples = n;
          break;
        }
      }
    }
    gScriptSamples[s] = samples;
    const auto& f = makeFrame(kBoot, s, samples);
    st.inProgress = s;
    bool ok = box.push(f.data(), static_cast<uint16_t>(f.size()), kBoot, s);
    if (flash.off()) return;
    TEST_ASSERT_TRUE(ok);
    st.pushedOk = s;
    st.inProgress = 0;
    st.goneUpTo = goneBefore(box, s);
    if (st.goneAfterPush != nullptr) (*st.goneAfterPush)[s] = st.goneUpTo;
    uint32_t upTo = s < sc.acksFrom ? 0 : s % 3 == 0 ? s - 2 : s % 7 == 0 ? s - 1 : 0;
    if (upTo > 0) {
      box.ack(kBoot, upTo);
      if (flash.off()) return;
      st.ackedUpTo = upTo;
      st.goneUpTo = goneBefore(box, s);
    }
  }
  st.stats = box.stats();
  st.dropped = box.droppedSinceBoot();
}

struct CutFigures {
  uint64_t cutPoints = 0;
  uint32_t maxAckedReplayed = 0;
  uint32_t tornSectorsSealed = 0;
  uint32_t ackedReplayCuts = 0;  // cuts after which some acknowledged frames came back
};

/** One cut: run, lose power, restart, check every promise, then keep using the ring and check again. */
void checkCut(const Scenario& sc, const std::vector<uint32_t>& goneAfterPush, uint64_t cut, CutFigures& fig) {
  SimFlash flash(sc.sectors);
  ScriptState st;
  flash.cutAfter(cut, static_cast<uint32_t>(cut * 2654435761u));
  runScript(flash, st, sc);
  TEST_ASSERT_TRUE_MESSAGE(flash.off(), "the cut point lies inside the run");
  flash.powerOn();

  FlashOutbox box;
  TEST_ASSERT_TRUE(box.mount(flash));
  fig.tornSectorsSealed += box.stats().sealedSectors;
  std::vector<std::vector<uint8_t>> copies;
  auto es = entries(box, &copies);
  std::set<uint32_t> present;
  uint32_t prev = 0;
  char msg[96];
  snprintf(msg, sizeof msg, "cut %llu", static_cast<unsigned long long>(cut));
  for (size_t i = 0; i < es.size(); i++) {
    uint32_t seq = es[i].seq;
    // No corrupt frame: each decodes, and is byte for byte the frame pushed with its seq.
    Envelope env;
    TEST_ASSERT_TRUE_MESSAGE(readEnvelope(copies[i].data(), copies[i].size(), env) == Err::Ok, msg);
    TEST_ASSERT_TRUE_MESSAGE(copies[i] == makeFrame(kBoot, seq, scriptSamples(seq)), msg);
    // Oldest first, no duplicate, no hole.
    TEST_ASSERT_TRUE_MESSAGE(i == 0 || seq == prev + 1, msg);
    // Only frames that were pushed (or the one being written when power went).
    TEST_ASSERT_TRUE_MESSAGE(seq <= st.pushedOk || seq == st.inProgress, msg);
    present.insert(seq);
    prev = seq;
  }
  // Every frame kept, not acknowledged and not dropped by drop-oldest is there. (A push the cut caught
  // may have been dropping older frames: those may be gone too, as the uncut run shows.)
  uint32_t gone = st.goneUpTo;
  if (st.inProgress != 0 && goneAfterPush[st.inProgress] > gone) gone = goneAfterPush[st.inProgress];
  for (uint32_t s = gone + 1; s <= st.pushedOk; s++) TEST_ASSERT_TRUE_MESSAGE(present.count(s) == 1, msg);
  // Acknowledged frames that come back are replayed harmlessly (the hub answers them as duplicates).
  uint32_t ackedBack = 0;
  for (uint32_t s : present)
    if (s <= st.ackedUpTo) ackedBack++;
  if (ackedBack > fig.maxAckedReplayed) fig.maxAckedReplayed = ackedBack;
  if (ackedBack > 0) fig.ackedReplayCuts++;

  // The ring keeps working after the recovery: what it kept is acknowledged, more frames come and are
  // acknowledged, then it is empty for good.
  if (prev > 0) box.ack(kBoot, prev);
  uint32_t next = st.pushedOk + 1 > prev + 1 ? st.pushedOk + 1 : prev + 1;
  for (uint32_t s = next; s < next + 40; s++) {
    auto f = makeFrame(kBoot, s, samplesFor(s));
    TEST_ASSERT_TRUE_MESSAGE(box.push(f.data(), static_cast<uint16_t>(f.size()), kBoot, s), msg);
    if (s % 5 == 0) box.ack(kBoot, s);
  }
  box.ack(kBoot, next + 39);
  TEST_ASSERT_EQUAL_UINT32_MESSAGE(0, box.count(), msg);
  TEST_ASSERT_EQUAL_UINT32_MESSAGE(0, box.droppedSinceBoot(), msg);
  FlashOutbox after;
  TEST_ASSERT_TRUE(after.mount(flash));
  TEST_ASSERT_EQUAL_UINT32_MESSAGE(0, after.count(), msg);
  // Never programmed over a torn write (only erased bytes are ever programmed; the read-back check
  // after each record is a second line of defence, not the first).
  TEST_ASSERT_TRUE_MESSAGE(flash.violations == 0, msg);
}

void test_flash_outbox_power_cut_at_every_program_and_erase_step() {
  SimFlash whole(kLaps.sectors);
  ScriptState st;
  std::vector<uint32_t> goneAfterPush;
  st.goneAfterPush = &goneAfterPush;
  runScript(whole, st, kLaps);
  TEST_ASSERT_EQUAL_UINT32(kScriptFrames, st.pushedOk);
  TEST_ASSERT_EQUAL_UINT32(0, st.dropped);
  TEST_ASSERT_EQUAL_UINT64(0, whole.violations);
  TEST_ASSERT_TRUE(st.stats.ackRecords > 0 && st.stats.ackRecordsSkipped > 0);  // both ways of freeing happen
  CutFigures fig;
  fig.cutPoints = whole.steps();
  uint32_t laps = 0;
  for (uint32_t s = 0; s < 4; s++) laps += whole.erases(s);
  TEST_ASSERT_TRUE(laps >= 8);  // the run goes round the ring at least twice
  for (uint64_t cut = 0; cut < fig.cutPoints; cut++) checkCut(kLaps, goneAfterPush, cut, fig);
  printf("ESP32HUB-POWERCUT {\"cutPoints\":%llu,\"frames\":%u,\"sectorErases\":%u,\"maxAckedReplayed\":%u,"
         "\"ackRecords\":%u,\"acksInSectorHeaders\":%u,\"cutsReplayingAckedFrames\":%u,\"sectorsSealedAfterTornWrites\":%u}\n",
         static_cast<unsigned long long>(fig.cutPoints), kScriptFrames, laps, fig.maxAckedReplayed,
         st.stats.ackRecords, st.stats.ackRecordsSkipped, fig.ackedReplayCuts, fig.tornSectorsSealed);
}

void test_flash_outbox_power_cut_at_every_step_of_a_full_ring() {
  SimFlash whole(kFull.sectors);
  ScriptState st;
  std::vector<uint32_t> goneAfterPush;
  st.goneAfterPush = &goneAfterPush;
  runScript(whole, st, kFull);
  TEST_ASSERT_EQUAL_UINT32(kFull.frames, st.pushedOk);
  TEST_ASSERT_TRUE(st.dropped > 0);  // the scenario does reach drop-oldest
  CutFigures fig;
  fig.cutPoints = whole.steps();
  for (uint64_t cut = 0; cut < fig.cutPoints; cut++) checkCut(kFull, goneAfterPush, cut, fig);
  printf("ESP32HUB-POWERCUT-FULL {\"cutPoints\":%llu,\"frames\":%u,\"sectors\":%u,\"droppedInRun\":%u}\n",
         static_cast<unsigned long long>(fig.cutPoints), kFull.frames, kFull.sectors, st.dropped);
}

// ───────────────────────────── figures at the default rate ─────────────────────────────

/** The shipped partition (firmware/partitions-4MB.csv, "outbox"): 0x160000 bytes = 352 sectors. */
constexpr uint32_t kPartitionSectors = 0x160000 / 4096;
constexpr uint32_t kDefaultIntervalMs = 10000;  // HUB_SAMPLE_INTERVAL_MS

/**
 * One default sample tick of the richest classic-ESP32 build (BME280 + battery divider): temperature,
 * humidity every tick, pressure and RSSI every 2nd, battery and heap every 5th, uptime every 10th;
 * HUB_BATCH_MS 0 = one frame per tick.
 */
std::vector<uint8_t> defaultTickFrame(uint32_t seq) {
  TelemetryBuilder b;
  b.setLimit(kMaxFrameBytes);
  uint32_t tick = seq - 1;
  uint64_t t = 1767225600000ull + static_cast<uint64_t>(tick) * kDefaultIntervalMs;
  for (uint8_t i = 0; i < kBoardChannelCount; i++) {
    const ChannelSpec& c = kBoardChannels[i];
    if (c.index > channel::kUptimeS || c.everyTicks == 0 || tick % c.everyTicks != 0) continue;
    int64_t v = c.valueType == ValueType::I8 ? -61 : c.valueType == ValueType::I16 ? 2345 : 101325 + seq;
    b.add(c.index, c.valueType, t, true, false, Value::integer(c.valueType, v));
  }
  std::vector<uint8_t> out(kMaxFrameBytes);
  size_t len = 0;
  TEST_ASSERT_TRUE(b.encode(kBoot, seq, kHash, out.data(), out.size(), &len) == Err::Ok);
  out.resize(len);
  return out;
}

void test_flash_outbox_capacity_and_wear_at_the_default_rate() {
  // Offline: how long until the first frame is dropped.
  SimFlash offline(kPartitionSectors);
  FlashOutbox box;
  TEST_ASSERT_TRUE(box.format(offline));
  uint32_t frames = 0;
  uint64_t frameBytes = 0;
  while (box.droppedSinceBoot() == 0) {
    frames++;
    auto f = defaultTickFrame(frames);
    frameBytes += f.size();
    TEST_ASSERT_TRUE(box.push(f.data(), static_cast<uint16_t>(f.size()), kBoot, frames));
  }
  uint32_t kept = frames - 1;
  double hours = kept * (kDefaultIntervalMs / 1000.0) / 3600.0;
  double avgFrame = static_cast<double>(frameBytes) / frames;
  TEST_ASSERT_TRUE_MESSAGE(hours >= 24.0, "the shipped partition holds 24 h of the default sampling");

  // Online for a simulated day: every frame written, then acknowledged (one ACK per frame, as the hub
  // answers at this rate), counting bytes programmed and erases per sector.
  SimFlash online(kPartitionSectors);
  FlashOutbox live;
  TEST_ASSERT_TRUE(live.format(online));
  uint64_t erasesAtStart = 0;
  for (uint32_t s = 0; s < kPartitionSectors; s++) erasesAtStart += online.erases(s);
  uint64_t programmedAtStart = online.bytesProgrammed;
  const uint32_t perDay = 86400000u / kDefaultIntervalMs;
  uint64_t dayFrameBytes = 0;
  for (uint32_t s = 1; s <= perDay; s++) {
    auto f = defaultTickFrame(s);
    dayFrameBytes += f.size();
    TEST_ASSERT_TRUE(live.push(f.data(), static_cast<uint16_t>(f.size()), kBoot, s));
    TEST_ASSERT_EQUAL_UINT(1, live.ack(kBoot, s));
  }
  uint64_t erases = 0;
  uint32_t minErases = UINT32_MAX, maxErases = 0;
  for (uint32_t s = 0; s < kPartitionSectors; s++) {
    erases += online.erases(s);
    if (online.erases(s) < minErases) minErases = online.erases(s);
    if (online.erases(s) > maxErases) maxErases = online.erases(s);
  }
  erases -= erasesAtStart;
  double amplification = static_cast<double>(online.bytesProgrammed - programmedAtStart) / dayFrameBytes;
  double erasesPerSectorPerDay = static_cast<double>(erases) / kPartitionSectors;
  // Wear spread: no sector is erased more than once above the least erased one.
  TEST_ASSERT_TRUE(maxErases - minErases <= 1);
  const double kCycles = 100000.0;  // rated program/erase cycles of the ESP32 modules' SPI NOR flash
  double lifeYears = kCycles / erasesPerSectorPerDay / 365.0;
  printf("ESP32HUB-FLASH {\"partitionBytes\":%u,\"sectors\":%u,\"intervalMs\":%u,\"avgFrameBytes\":%.1f,"
         "\"recordBytes\":%.1f,\"framesKept\":%u,\"capacityHours\":%.1f,\"writeAmplification\":%.2f,"
         "\"erasesPerSectorPerDay\":%.3f,\"minMaxErases\":[%u,%u],\"ratedCycles\":%.0f,\"lifeYears\":%.0f}\n",
         kPartitionSectors * 4096, kPartitionSectors, kDefaultIntervalMs, avgFrame,
         static_cast<double>(FlashOutbox::recordBytes(static_cast<uint32_t>(avgFrame + 0.5))), kept, hours,
         amplification, erasesPerSectorPerDay, minErases, maxErases, kCycles, lifeYears);
}

}  // namespace

void run_flash_outbox_tests() {
  RUN_TEST(test_flash_outbox_keeps_order_acks_and_survives_a_remount);
  RUN_TEST(test_flash_outbox_drops_the_oldest_when_full_and_counts_it);
  RUN_TEST(test_flash_outbox_mounts_a_never_erased_partition_as_empty);
  RUN_TEST(test_flash_outbox_power_cut_at_every_program_and_erase_step);
  RUN_TEST(test_flash_outbox_power_cut_at_every_step_of_a_full_ring);
  RUN_TEST(test_flash_outbox_capacity_and_wear_at_the_default_rate);
}
