// Deep-sleep mode (HUB_DEEP_SLEEP 1): the board wakes on a timer, takes one sample tick into the flash
// outbox, and only every HUB_SLEEP_FLUSH_SAMPLES samples or HUB_SLEEP_FLUSH_MINUTES minutes (SleepPolicy)
// brings Wi-Fi up, connects and flushes; then it sleeps until the next tick is due.
//
// A wake is not a new boot: RTC memory (which deep sleep keeps) holds the boot id, the next seq, the
// tick count and the fixed-rate schedule, and uptime keeps counting through deep sleep (the RTC counter,
// then the wall clock minus the boot's start: EspClock::useRtcCounter). So HELLO's uptime and UNSYNCED sample times keep counting across sleeps,
// the hub sees one boot with consecutive seqs [PROTO-3.1.1], and the NVS boot counter is written only
// on real boots.
//
// Timestamps: the wall clock. The ESP32's RTC timer keeps the system time running through deep sleep,
// and every connect re-synchronises it (SNTP, or the hub's WELCOME while unsynced), so the error of an
// offline sample is the RTC clock's drift since the last connect (at most HUB_SLEEP_FLUSH_MINUTES). Uptime
// mapping would carry the same drift over the whole boot, because the hub maps a boot's uptime once.
#pragma once

#include <stdint.h>

struct SleepState {
  uint32_t magic;
  uint32_t bootId;
  uint32_t nextSeq;
  uint32_t tick;
  uint32_t samplesSinceConnect;
  uint32_t intervalMs;
  uint64_t nextDueMs;        // the next tick, in uptime
  uint64_t lastConnectMs;    // uptime of the last flush
  uint32_t crc;
};

/** The state kept in RTC memory, or nullptr when this is not a deep-sleep wake with intact state. */
SleepState* resumeFromSleep(bool deepSleepWake);
/** Starts a new boot's state. */
SleepState& freshSleepState(uint32_t bootId, uint32_t intervalMs);
/** Seals `s` (CRC), arms the timer for `sleepMs` and sleeps. Does not return. */
[[noreturn]] void sleepFor(SleepState& s, uint64_t sleepMs);
