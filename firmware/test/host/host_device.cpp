// A host "device": the firmware's portable core (Session, Outbox, TelemetryBuilder, board channel table)
// compiled natively, its transport bridged over stdin/stdout so a test harness can carry the frames on a
// real WebSocket to the real hub (test/integration/firmware-e2e.test.ts). Only the ports differ from the
// ESP32 build: a pipe instead of arduinoWebSockets, std::chrono instead of esp_timer, synthetic sensors.
//
// Records both ways: 1 byte type, u32 little-endian length, payload.
//   device → harness: 'O' open a connection, 'C' close it, 'S' send this binary frame,
//                     'E' an event (one JSON object: readings, link states, commands, stats)
//   harness → device: 'O' connection open, 'C' connection closed, 'M' a binary frame from the hub,
//                     'P' pause sampling (then flushes what was sampled), 'R' resume, 'Q' quit,
//                     'K' u32 n: cut the power after n more flash program/erase steps (flash mode)
//
// Options: --device-id ID  --interval-ms N  --backoff-base-ms N  --backoff-max-ms N  --seed N
//          --flash-file PATH [--flash-sectors N]: the outbox is the FlashOutbox on a simulated NOR
//            flash whose bytes are the file (mapped: what was programmed outlives the process, so a
//            SIGKILL or a 'K' cut is a power cut and the next run finds the flash as it was left)
//          --nvs-file PATH: the boot counter and key of [PROTO-3.1.1] (like the board's NVS)
//          --heap-start N: the first heap_free reading (a harness gives each run its own range)
//          --enroll DIR: one firmware for the fleet (docs/provisioning.md). DIR stands in for the board's
//            NVS (one file per key, plus the boot counter). Unprovisioned, the device waits for Improv
//            Serial bytes ('I' records both ways: harness → device what the serial port receives,
//            device → harness what it writes); with Wi-Fi and a hub URL but no token it enrolls
//            [PROTO-8]; with a device id and token it runs the session. 'O' then carries one JSON
//            object: {"url": …, "protocol": …, "token"?: …} (the endpoint, the subprotocol, and on
//            /v1/device the token the device stored). Options: --hardware-id ID (esp32-<mac> on a board),
//            --hub-url URL, --fleet-secret S, --wifi-ssid S (compiled-in defaults, used only while the
//            store lacks them, like secrets.h), 'F' record: factory reset (the BOOT button held 5 s).
//            Events: {"event":"mode","mode":"unprovisioned"|"enroll"|"device"|"rejected"},
//            {"event":"enroll","state":…}, {"event":"stored","deviceId":…} (never the token)
//          --deep-sleep PATH [--flush-every N]: one run is one deep-sleep wake of the board's
//            HUB_DEEP_SLEEP mode (src/main.cpp): PATH is its RTC memory (boot id, next seq, tick, the
//            boot's start on the monotonic clock, the wall clock's offset); the run samples one tick into
//            the flash outbox, connects and flushes only every N wakes (SleepPolicy), reports
//            {"event":"sleep","sleepMs":…} and exits 0; the harness starts it again when the sleep is over
//
// A power cut in flash mode ends the process at once with exit code 75, after the torn write.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chrono>
#include <new>
#include <string>
#include <vector>

#include "hub_protocol.h"
#include "sim_flash.h"

#ifndef ESP32HUB_HOST_VERSION
#define ESP32HUB_HOST_VERSION "0.1.0"
#endif

using namespace esp32hub;

namespace {

// ───────────────────────────── records on stdout ─────────────────────────────

void writeRecord(char type, const void* data, size_t len) {
  uint8_t head[5] = {static_cast<uint8_t>(type)};
  writeU32le(head + 1, static_cast<uint32_t>(len));
  fwrite(head, 1, sizeof head, stdout);
  if (len > 0) fwrite(data, 1, len, stdout);
  fflush(stdout);
}

void event(const std::string& json) { writeRecord('E', json.data(), json.size()); }

std::string q(const char* s) { return std::string("\"") + s + "\""; }

// ───────────────────────────── ports ─────────────────────────────

struct PipeTransport : Transport {
  /** --enroll: where and how to connect, as JSON in the 'O' record (empty: the harness knows). */
  std::string openInfo;
  void open() override { writeRecord('O', openInfo.data(), openInfo.size()); }
  void close() override { writeRecord('C', nullptr, 0); }
  bool send(const uint8_t* frame, size_t len) override {
    writeRecord('S', frame, len);
    return true;
  }
};

struct HostClock : Clock {
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  bool synced = false;
  int64_t unixOffset = 0;  // unix ms − uptime ms
  uint32_t rng;
  explicit HostClock(uint32_t seed) : rng(seed) {}
  /** Deep sleep: uptime counts from the boot's start, across runs (the board's RTC counter). */
  void resumeBoot(int64_t bootStartMonoMs) {
    start = std::chrono::steady_clock::time_point(std::chrono::milliseconds(bootStartMonoMs));
  }
  int64_t bootStartMonoMs() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(start.time_since_epoch()).count();
  }
  uint64_t uptimeMs() override {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count());
  }
  // Like a board without SNTP: unsynced until the hub's WELCOME sets the clock [PROTO-3.2].
  bool unixMs(uint64_t& out) override {
    if (!synced) return false;
    out = static_cast<uint64_t>(static_cast<int64_t>(uptimeMs()) + unixOffset);
    return true;
  }
  void setUnixMs(uint64_t ms) override {
    synced = true;
    unixOffset = static_cast<int64_t>(ms) - static_cast<int64_t>(uptimeMs());
    event("{\"event\":\"clock\",\"source\":\"welcome\"}");
  }
  uint32_t random32() override {
    // xorshift32: deterministic for a seed, different per seed.
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
  }
};

constexpr uint32_t kChannelMask = (1u << channel::kRssiDbm) | (1u << channel::kHeapFree) | (1u << channel::kUptimeS) |
                                  (1u << channel::kLed);

struct HostDevice;

struct Hooks : DeviceHooks {
  HostDevice* dev = nullptr;
  CommandStatus applySampleInterval(uint32_t ms) override;
  CommandStatus identify(uint32_t ms) override;
  void reboot() override;
  void onLinkState(LinkState s) override { event(std::string("{\"event\":\"link\",\"state\":") + q(linkStateName(s)) + "}"); }
  void onHubError(uint16_t code, bool fatal, Str) override {
    event("{\"event\":\"hub-error\",\"code\":" + std::to_string(code) + ",\"fatal\":" + (fatal ? "true" : "false") + "}");
  }
  void log(const char* line) override { fprintf(stderr, "[device] %s\n", line); }
};

/** Who hears 'O'/'C'/'M': the session, or the enrollment client in --enroll mode. */
TransportListener* gListener = nullptr;
/** --enroll: the bytes of an 'I' record (the serial port's input) and a factory reset ('F'). */
void (*gSerialIn)(const uint8_t* bytes, size_t len) = nullptr;
void (*gFactoryReset)() = nullptr;
/** The device's loop (--enroll: the mode's loop). */
void (*gLoop)() = nullptr;

// The outbox lives outside the session, like RTC memory on the board: it survives the simulated reboot.
OutboxStorage<64, 1024> gOutboxMemory;
SimFlash* gFlash = nullptr;
FlashOutbox gFlashOutbox;

[[noreturn]] void powerCut() {
  fflush(stdout);
  _exit(75);
}

/** The file's bytes as the flash (created erased, 0xFF, when new). */
uint8_t* mapFlashFile(const char* path, uint32_t sectors) {
  size_t bytes = static_cast<size_t>(sectors) * 4096;
  int fd = open(path, O_RDWR | O_CREAT, 0644);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    perror("flash file");
    exit(2);
  }
  if (static_cast<size_t>(st.st_size) != bytes) {
    std::vector<uint8_t> erased(bytes, 0xFF);
    if (ftruncate(fd, 0) != 0 || write(fd, erased.data(), bytes) != static_cast<ssize_t>(bytes)) {
      perror("flash file");
      exit(2);
    }
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    exit(2);
  }
  close(fd);
  return static_cast<uint8_t*>(p);
}

/**
 * The board's NVS part of [PROTO-3.1.1]: the boot counter goes up (and is written) before the id is
 * used; the key is drawn once from the system's random source (the board: esp_random() with its
 * entropy source on). Returns this boot's id.
 */
uint32_t nextBootId(const char* path) {
  uint32_t counter = 0;
  uint64_t key = 0;
  FILE* f = fopen(path, "rb");
  if (f != nullptr) {
    uint8_t b[12];
    if (fread(b, 1, sizeof b, f) == sizeof b) {
      counter = readU32le(b);
      key = static_cast<uint64_t>(readU32le(b + 4)) | (static_cast<uint64_t>(readU32le(b + 8)) << 32);
    }
    fclose(f);
  }
  if (key == 0) {
    FILE* r = fopen("/dev/urandom", "rb");
    if (r == nullptr || fread(&key, 1, sizeof key, r) != sizeof key) {
      perror("/dev/urandom");
      exit(2);
    }
    fclose(r);
  }
  counter++;
  uint8_t b[12];
  writeU32le(b, counter);
  writeU32le(b + 4, static_cast<uint32_t>(key));
  writeU32le(b + 8, static_cast<uint32_t>(key >> 32));
  f = fopen(path, "wb");
  if (f == nullptr || fwrite(b, 1, sizeof b, f) != sizeof b || fclose(f) != 0) {
    perror("nvs file");
    exit(2);
  }
  return bootIdFor(counter, key);
}

struct HostDevice {
  SessionConfig config;
  PipeTransport transport;
  HostClock clock;
  Hooks hooks;
  Outbox ramOutbox;
  FrameQueue* outbox = &ramOutbox;
  alignas(Session) unsigned char sessionMemory[sizeof(Session)];
  Session* session = nullptr;
  ChannelDescriptor channels[8];
  uint8_t channelCount = 0;
  uint32_t intervalMs = 1000;
  TickSchedule ticks;  // fixed rate, as on the board
  bool ticksStarted = false;
  uint32_t tick = 0;
  uint32_t heap = 200000;
  bool sampling = true;
  bool led = false;
  uint64_t ledOffAt = 0;
  bool rebootRequested = false;
  uint32_t boots = 0;
  uint32_t lastAcked = 0;

  explicit HostDevice(uint32_t seed) : clock(seed) { hooks.dev = this; }

  const char* nvsFile = nullptr;
  bool networkAtBoot = true;  // deep sleep: only when the wake connects

  void boot(ResetReason reason) {
    if (session != nullptr) session->~Session();
    config.resetReason = reason;
    if (nvsFile != nullptr) config.bootId = nextBootId(nvsFile);
    // A kept outbox is how frames of an earlier boot get replayed with their original (bootId, seq).
    uint32_t kept = 0;
    if (gFlash != nullptr) {
      if (!gFlashOutbox.mount(*gFlash)) {
        fprintf(stderr, "[device] flash outbox mount failed\n");
        exit(2);
      }
      kept = gFlashOutbox.count();
      outbox = &gFlashOutbox;
    } else {
      kept = ramOutbox.restore(gOutboxMemory.bytes, sizeof gOutboxMemory.bytes, 64, 1024);
    }
    session = new (sessionMemory) Session(config, transport, clock, hooks, *outbox);
    gListener = session;
    channelCount = boardDescriptors(kChannelMask, intervalMs, channels, 8);
    if (session->begin(channels, channelCount) != Err::Ok) {
      fprintf(stderr, "[device] begin failed\n");
      exit(2);
    }
    boots++;
    tick = 0;
    lastAcked = 0;
    event("{\"event\":\"boot\",\"bootId\":" + std::to_string(session->bootId()) + ",\"resetReason\":" +
          std::to_string(static_cast<int>(reason)) + ",\"keptFrames\":" + std::to_string(kept) + "}");
    if (networkAtBoot) session->setNetworkUp(true);
  }

  /** flush() after every sample tick: each reading is reported with the frame (seq) that carries it. */
  bool flushEachTick = false;

  void reading(const char* key, const std::string& value) {
    std::string seq = flushEachTick ? ",\"seq\":" + std::to_string(session->lastSeq() + 1) : "";
    uint64_t unix = 0;
    std::string time = clock.unixMs(unix) ? ",\"timeMs\":" + std::to_string(unix) : "";
    event(std::string("{\"event\":\"reading\",\"bootId\":") + std::to_string(session->bootId()) + seq + time +
          ",\"channel\":" + q(key) + ",\"value\":" + value + "}");
  }

  void recordLed() {
    session->record(channel::kLed, Value::boolean(led));
    reading("led", led ? "true" : "false");
  }

  /** One sample tick: each channel on its everyTicks, like firmware-sim's Sampler and the board. */
  void sample() {
    uint32_t n = tick++;
    for (uint8_t i = 0; i < channelCount; i++) {
      const ChannelSpec* spec = findChannelSpec(channels[i].index);
      if (spec == nullptr || spec->everyTicks == 0 || n % spec->everyTicks != 0) continue;
      switch (spec->index) {
        case channel::kRssiDbm: {
          int v = -55 - static_cast<int>(n % 7);
          session->record(spec->index, Value::integer(ValueType::I8, v));
          reading(spec->key, std::to_string(v));
          break;
        }
        case channel::kHeapFree:
          heap -= 4;  // unique per reading: the test matches values one to one
          session->record(spec->index, Value::integer(ValueType::U32, heap));
          reading(spec->key, std::to_string(heap));
          break;
        case channel::kUptimeS: {
          uint64_t s = clock.uptimeMs() / 1000;
          session->record(spec->index, Value::integer(ValueType::U32, static_cast<int64_t>(s)));
          reading(spec->key, std::to_string(s));
          break;
        }
        default:
          break;
      }
    }
  }

  void loop() {
    uint64_t now = clock.uptimeMs();
    if (!ticksStarted) {
      ticks.start(now, intervalMs);
      ticksStarted = true;
    }
    if (ticks.due(now) && sampling) {
      sample();
      if (flushEachTick) session->flush();
    }
    if (led && now >= ledOffAt) {
      led = false;
      recordLed();
    }
    session->poll();
    if (session->stats().framesAcked != lastAcked) {
      lastAcked = session->stats().framesAcked;
      const SessionStats& s = session->stats();
      event("{\"event\":\"acked\",\"framesAcked\":" + std::to_string(s.framesAcked) + ",\"outbox\":" +
            std::to_string(outbox->size()) + ",\"lastSeq\":" + std::to_string(session->lastSeq()) + "}");
    }
    if (rebootRequested) {
      rebootRequested = false;
      session->setNetworkUp(false);  // closes the connection, as a restart would
      boot(ResetReason::Software);
    }
  }

  void stats() {
    const SessionStats& s = session->stats();
    event("{\"event\":\"stats\",\"outbox\":" + std::to_string(outbox->size()) + ",\"builder\":" +
          std::to_string(session->builder().sampleCount()) + ",\"state\":" + q(linkStateName(session->state())) +
          ",\"framesQueued\":" + std::to_string(s.framesQueued) + ",\"framesSent\":" + std::to_string(s.framesSent) +
          ",\"framesAcked\":" + std::to_string(s.framesAcked) + ",\"replays\":" + std::to_string(s.replays) +
          ",\"connects\":" + std::to_string(s.connects) + ",\"commands\":" + std::to_string(s.commands) +
          ",\"duplicateCommands\":" + std::to_string(s.duplicateCommands) + ",\"dropped\":" +
          std::to_string(outbox->droppedSinceBoot()) + ",\"boots\":" + std::to_string(boots) + "}");
  }
};

CommandStatus Hooks::applySampleInterval(uint32_t ms) {
  dev->intervalMs = ms;
  dev->ticks.setInterval(ms, dev->clock.uptimeMs());
  // Periods in the descriptors follow the interval (as on the board and in the simulator).
  dev->channelCount = boardDescriptors(kChannelMask, ms, dev->channels, 8);
  dev->session->setDescriptors(dev->channels, dev->channelCount);
  event("{\"event\":\"interval\",\"ms\":" + std::to_string(ms) + "}");
  return CommandStatus::Ok;
}

CommandStatus Hooks::identify(uint32_t ms) {
  event("{\"event\":\"identify\",\"ms\":" + std::to_string(ms) + "}");
  dev->ledOffAt = dev->clock.uptimeMs() + ms;
  if (!dev->led) {
    dev->led = true;
    dev->recordLed();
  }
  return CommandStatus::Ok;
}

void Hooks::reboot() {
  event("{\"event\":\"reboot\"}");
  dev->rebootRequested = true;
}

// ───────────────────────────── records on stdin ─────────────────────────────

std::vector<uint8_t> gIn;

bool readStdin() {
  uint8_t buf[8192];
  ssize_t n = read(0, buf, sizeof buf);
  if (n <= 0) return false;
  gIn.insert(gIn.end(), buf, buf + n);
  return true;
}

uint32_t argU32(int argc, char** argv, const char* name, uint32_t def) {
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], name) == 0) return static_cast<uint32_t>(strtoul(argv[i + 1], nullptr, 10));
  return def;
}

const char* argStr(int argc, char** argv, const char* name, const char* def) {
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], name) == 0) return argv[i + 1];
  return def;
}

}  // namespace

HostDevice* gDev = nullptr;

/** One turn: stdin records, then the device's loop. False when the harness is gone or said 'Q'. */
bool turn() {
  HostDevice& dev = *gDev;
  struct pollfd pfd = {0, POLLIN, 0};
  int r = poll(&pfd, 1, 5);  // the loop never blocks longer than 5 ms: timers stay on time
  if (r > 0 && !readStdin()) return false;  // harness gone
  while (gIn.size() >= 5) {
    uint32_t len = readU32le(gIn.data() + 1);
    if (gIn.size() < 5 + static_cast<size_t>(len)) break;
    char type = static_cast<char>(gIn[0]);
    const uint8_t* payload = gIn.data() + 5;
    switch (type) {
      case 'O':
        if (gListener != nullptr) gListener->onTransportOpen();
        break;
      case 'C':
        if (gListener != nullptr) gListener->onTransportClosed();
        break;
      case 'M':
        if (gListener != nullptr) gListener->onTransportMessage(payload, len);
        break;
      case 'I':
        if (gSerialIn != nullptr) gSerialIn(payload, len);
        break;
      case 'F':
        if (gFactoryReset != nullptr) gFactoryReset();
        break;
      case 'P':
        if (dev.session == nullptr) break;
        dev.sampling = false;
        dev.session->flush();
        dev.stats();
        break;
      case 'R':
        dev.sampling = true;
        break;
      case 'T':
        if (dev.session != nullptr) dev.stats();
        break;
      case 'Q':
        if (dev.session != nullptr) dev.stats();
        return false;
      case 'K':
        if (gFlash != nullptr && len >= 4) gFlash->cutAfter(readU32le(payload), readU32le(payload) * 2654435761u);
        break;
      default:
        fprintf(stderr, "[device] unknown record %c\n", type);
    }
    gIn.erase(gIn.begin(), gIn.begin() + 5 + len);
  }
  if (gLoop != nullptr) {
    gLoop();
  } else {
    dev.loop();
  }
  return true;
}

/** The RTC memory of the board's deep-sleep mode (deep_sleep.h), in a file. */
struct HostSleepState {
  uint32_t magic;
  uint32_t bootId;
  uint32_t nextSeq;
  uint32_t tick;
  uint32_t samplesSinceConnect;
  uint32_t heap;
  int64_t bootStartMonoMs;
  int64_t unixOffset;
  uint64_t nextDueMs;
  uint32_t synced;
};
constexpr uint32_t kSleepMagic = 0x534C5048;  // "SLPH"

/** One deep-sleep wake (see the header comment). Returns the exit code. */
int deepSleepWake(HostDevice& dev, const char* path, uint32_t flushEvery) {
  HostSleepState st{};
  FILE* f = fopen(path, "rb");
  bool resumed = f != nullptr && fread(&st, sizeof st, 1, f) == 1 && st.magic == kSleepMagic;
  if (f != nullptr) fclose(f);
  dev.networkAtBoot = false;
  dev.sampling = false;  // one tick per wake, taken below
  if (resumed) {
    dev.config.bootId = st.bootId;  // the same boot, continued [PROTO-3.1.1]
    dev.config.firstSeq = st.nextSeq;
    dev.nvsFile = nullptr;
    dev.clock.resumeBoot(st.bootStartMonoMs);
    dev.clock.synced = st.synced != 0;
    dev.clock.unixOffset = st.unixOffset;
    dev.heap = st.heap;
  }
  dev.boot(resumed ? ResetReason::DeepSleep : ResetReason::PowerOn);
  if (!resumed) {
    st.magic = kSleepMagic;
    st.bootId = dev.session->bootId();
    st.bootStartMonoMs = dev.clock.bootStartMonoMs();
    st.samplesSinceConnect = flushEvery;  // connect on the first wake (clock, descriptors)
    st.nextDueMs = dev.clock.uptimeMs();
  }
  dev.tick = st.tick;
  dev.sample();
  dev.session->flush();
  st.samplesSinceConnect++;
  SleepPolicy policy;
  policy.flushEverySamples = static_cast<uint16_t>(flushEvery);
  policy.flushEveryMs = UINT32_MAX;
  if (policy.shouldConnect(st.samplesSinceConnect, 0)) {
    dev.session->setNetworkUp(true);
    bool flushed = false;
    while (!flushed) {
      if (!turn()) return 0;
      flushed = dev.session->state() == LinkState::Ready && dev.outbox->empty() && dev.session->builder().empty();
    }
    event("{\"event\":\"flushed\"}");
    st.samplesSinceConnect = 0;
    dev.session->setNetworkUp(false);
  }
  st.nextSeq = dev.session->lastSeq() + 1;
  st.tick = dev.tick;
  st.heap = dev.heap;
  st.synced = dev.clock.synced ? 1 : 0;
  st.unixOffset = dev.clock.unixOffset;
  st.nextDueMs += dev.intervalMs;  // fixed rate
  uint64_t now = dev.clock.uptimeMs();
  uint64_t sleepMs = st.nextDueMs > now ? st.nextDueMs - now : 0;
  f = fopen(path, "wb");
  if (f == nullptr || fwrite(&st, sizeof st, 1, f) != 1 || fclose(f) != 0) {
    perror("sleep state");
    return 2;
  }
  event("{\"event\":\"sleep\",\"sleepMs\":" + std::to_string(sleepMs) + "}");
  return 0;
}


// ───────────────────────────── --enroll: one firmware for the fleet ─────────────────────────────

namespace {

/** The board's NVS namespace as a directory: one file per key, replaced atomically (write + rename). */
struct DirKv : KeyValueStore {
  std::string dir;
  explicit DirKv(std::string d) : dir(std::move(d)) {}
  std::string path(const char* key) const { return dir + "/" + key; }
  int get(const char* key, uint8_t* out, size_t cap) override {
    FILE* f = fopen(path(key).c_str(), "rb");
    if (f == nullptr) return -1;
    std::vector<uint8_t> buf(cap + 1);
    size_t n = fread(buf.data(), 1, buf.size(), f);
    fclose(f);
    if (n > cap) return -1;
    if (n > 0) memcpy(out, buf.data(), n);
    return static_cast<int>(n);
  }
  bool put(const char* key, const uint8_t* data, size_t len) override {
    std::string tmp = path(key) + ".tmp";
    FILE* f = fopen(tmp.c_str(), "wb");
    if (f == nullptr) return false;
    bool ok = (len == 0 || fwrite(data, 1, len, f) == len);
    ok = fclose(f) == 0 && ok;
    return ok && rename(tmp.c_str(), path(key).c_str()) == 0;
  }
  bool remove(const char* key) override { return unlink(path(key).c_str()) == 0 || errno == ENOENT; }
  bool clear() override {
    bool ok = true;
    for (const char* k : {cfgkey::kWifiSsid, cfgkey::kWifiPassword, cfgkey::kHubUrl, cfgkey::kDeviceId, cfgkey::kToken,
                          cfgkey::kEnrollKey, cfgkey::kFleetSecret, cfgkey::kEnrollRejected})
      ok = remove(k) && ok;
    return ok;
  }
};

/** The radio, as far as Improv sees it: any network joins at once except one named "unreachable". */
struct HostImprovPort : improv::ImprovPort {
  Join join = Join::Failed;
  bool connected = false;
  void write(const uint8_t* bytes, size_t len) override { writeRecord('I', bytes, len); }
  void joinWifi(const char* ssid, const char*) override {
    connected = strcmp(ssid, "unreachable") != 0;
    join = connected ? Join::Connected : Join::Failed;
  }
  Join joinStatus() override { return join; }
  bool wifiConnected() override { return connected; }
  uint8_t scanNetworks() override { return 2; }
  bool scannedNetwork(uint8_t i, char* ssid, size_t cap, int16_t& rssi, bool& secured) override {
    snprintf(ssid, cap, "%s", i == 0 ? "host-net" : "unreachable");
    rssi = static_cast<int16_t>(i == 0 ? -48 : -90);
    secured = i == 0;
    return true;
  }
  void log(const char* line) override { fprintf(stderr, "[device] %s\n", line); }
};

uint32_t urandom32(void*) {
  uint32_t v = 0;
  FILE* r = fopen("/dev/urandom", "rb");
  if (r == nullptr || fread(&v, 1, sizeof v, r) != sizeof v) {
    perror("/dev/urandom");
    exit(2);
  }
  fclose(r);
  return v;
}

std::string jsonStr(const char* s) {
  std::string out = "\"";
  for (const char* p = s; *p != '\0'; p++) {
    if (*p == '"' || *p == '\\') out += '\\';
    out += *p;
  }
  return out + "\"";
}

enum class Mode { Unprovisioned, Enroll, Device, Rejected };

struct FleetBoard : EnrollHooks {
  HostDevice& dev;
  std::string hardwareId;  // before `improv`, whose DeviceInfo points at it
  DirKv kv;
  ConfigStore store{kv};
  BuildDefaults defaults;
  HostImprovPort radio;
  improv::DeviceInfo info;
  improv::Service improv{radio, store, makeInfo()};
  EnrollConfig enrollConfig;
  alignas(EnrollClient) unsigned char clientMemory[sizeof(EnrollClient)];
  EnrollClient* client = nullptr;
  Mode mode = Mode::Unprovisioned;
  std::string bootFile;

  FleetBoard(HostDevice& d, const char* dir, const char* hwid) : dev(d), hardwareId(hwid), kv(dir) {
    bootFile = std::string(dir) + "/boot";
  }
  improv::DeviceInfo makeInfo() {
    info.firmwareVersion = "host-" ESP32HUB_HOST_VERSION;
    info.chip = "host";
    info.hardwareId = hardwareId.c_str();
    info.wssAllowed = false;
    return info;
  }

  bool storeCredentials(Str deviceId, Str token) override {
    if (!store.setCredentials(deviceId, token)) return false;
    event("{\"event\":\"stored\",\"deviceId\":" + jsonStr(store.config().deviceId) + "}");
    return true;
  }
  void storeRejected() override { store.setEnrollRejected(); }
  void onEnrollState(EnrollState st) override {
    event(std::string("{\"event\":\"enroll\",\"state\":") + q(enrollStateName(st)) + "}");
  }
  void onHubError(uint16_t code, bool fatal, Str) override {
    event("{\"event\":\"hub-error\",\"code\":" + std::to_string(code) + ",\"fatal\":" + (fatal ? "true" : "false") + "}");
  }
  void log(const char* line) override { fprintf(stderr, "[device] %s\n", line); }

  /** What the board does at boot (and after Improv changed its settings): pick the mode from the store. */
  void start() {
    if (client != nullptr) {
      client->setNetworkUp(false);
      client->~EnrollClient();
      client = nullptr;
    }
    if (dev.session != nullptr) {
      dev.session->setNetworkUp(false);
      dev.session->~Session();
      dev.session = nullptr;
    }
    gListener = nullptr;
    store.load();
    store.applyBuildDefaults(defaults);
    const DeviceConfig& c = store.config();
    if (c.hasWifi() && !radio.connected) radio.joinWifi(c.wifiSsid, c.wifiPassword);
    char url[cfglimits::kHubUrlMax + 16];
    if (!c.hasWifi() || !c.hasHub()) {
      mode = Mode::Unprovisioned;
    } else if (c.hasCredentials()) {
      mode = Mode::Device;
      hubEndpointUrl(c.hubUrl, "/v1/device", url, sizeof url);
      dev.transport.openInfo = std::string("{\"url\":") + jsonStr(url) + ",\"protocol\":" + jsonStr(kSubprotocol) +
                               ",\"token\":" + jsonStr(c.token) + "}";
      dev.config.deviceId = c.deviceId;
      dev.nvsFile = bootFile.c_str();
      dev.boot(ResetReason::PowerOn);
    } else if (c.enrollRejected) {
      mode = Mode::Rejected;
    } else {
      mode = Mode::Enroll;
      if (!store.ensureEnrollKey(urandom32, nullptr)) {
        fprintf(stderr, "[device] cannot store the enroll key\n");
        exit(2);
      }
      hubEndpointUrl(c.hubUrl, enroll::kPath, url, sizeof url);
      dev.transport.openInfo = std::string("{\"url\":") + jsonStr(url) + ",\"protocol\":" + jsonStr(enroll::kSubprotocol) + "}";
      enrollConfig.hardwareId = hardwareId.c_str();
      enrollConfig.enrollKey = c.enrollKey;
      enrollConfig.fleetSecret = c.fleetSecret;
      enrollConfig.model = "host";
      enrollConfig.firmwareVersion = "host-" ESP32HUB_HOST_VERSION;
      enrollConfig.backoffBaseMs = dev.config.backoffBaseMs;
      enrollConfig.backoffMaxMs = dev.config.backoffMaxMs;
      client = new (clientMemory) EnrollClient(enrollConfig, dev.transport, dev.clock, *this);
      gListener = client;
      client->setNetworkUp(radio.connected);
    }
    static const char* names[] = {"unprovisioned", "enroll", "device", "rejected"};
    event(std::string("{\"event\":\"mode\",\"mode\":") + q(names[static_cast<int>(mode)]) + "}");
  }

  void loop() {
    improv.poll(dev.clock.uptimeMs());
    if (improv.takeChanged()) {
      start();
      return;
    }
    if (mode == Mode::Enroll) {
      client->poll();
      if (client->done()) {
        start();  // the board restarts into its normal connection with the stored id and token
      } else if (client->state() == EnrollState::Rejected) {
        mode = Mode::Rejected;
        event("{\"event\":\"mode\",\"mode\":\"rejected\"}");
      }
    } else if (mode == Mode::Device) {
      dev.loop();
    }
  }
};

FleetBoard* gBoard = nullptr;

}  // namespace

int fleetMain(HostDevice& dev, int argc, char** argv) {
  const char* dir = argStr(argc, argv, "--enroll", nullptr);
  static FleetBoard board(dev, dir, argStr(argc, argv, "--hardware-id", "esp32-000000000001"));
  board.defaults.hubUrl = argStr(argc, argv, "--hub-url", "");
  board.defaults.fleetSecret = argStr(argc, argv, "--fleet-secret", "");
  board.defaults.wifiSsid = argStr(argc, argv, "--wifi-ssid", "");
  gBoard = &board;
  gSerialIn = [](const uint8_t* bytes, size_t len) {
    uint64_t now = gBoard->dev.clock.uptimeMs();
    for (size_t i = 0; i < len; i++) gBoard->improv.onByte(bytes[i], now);
  };
  gFactoryReset = [] {
    fprintf(stderr, "[device] factory reset\n");
    gBoard->store.factoryReset();
    gBoard->radio.connected = false;
    event("{\"event\":\"factory-reset\"}");
    gBoard->start();
  };
  gLoop = [] { gBoard->loop(); };
  board.start();
  while (turn()) {
  }
  return 0;
}

int main(int argc, char** argv) {
  static HostDevice dev(argU32(argc, argv, "--seed", 0x2545F491u));
  gDev = &dev;
  dev.config.deviceId = argStr(argc, argv, "--device-id", "host-device");
  dev.config.firmwareVersion = "host-" ESP32HUB_HOST_VERSION;
  dev.config.backoffBaseMs = argU32(argc, argv, "--backoff-base-ms", 1000);
  dev.config.backoffMaxMs = argU32(argc, argv, "--backoff-max-ms", 60000);
  dev.intervalMs = argU32(argc, argv, "--interval-ms", 1000);
  dev.heap = argU32(argc, argv, "--heap-start", 200000);
  dev.nvsFile = argStr(argc, argv, "--nvs-file", nullptr);
  const char* flashFile = argStr(argc, argv, "--flash-file", nullptr);
  if (flashFile != nullptr) {
    uint32_t sectors = argU32(argc, argv, "--flash-sectors", 64);
    static SimFlash flash(mapFlashFile(flashFile, sectors), sectors);
    flash.onPowerCut = powerCut;
    gFlash = &flash;
    dev.flushEachTick = true;
  } else {
    // Start from an empty outbox (format), as a power-on does.
    dev.ramOutbox.format(gOutboxMemory.bytes, sizeof gOutboxMemory.bytes, 64, 1024);
  }
  if (argStr(argc, argv, "--enroll", nullptr) != nullptr) return fleetMain(dev, argc, argv);
  const char* sleepFile = argStr(argc, argv, "--deep-sleep", nullptr);
  if (sleepFile != nullptr) {
    if (gFlash == nullptr || dev.nvsFile == nullptr) {
      fprintf(stderr, "[device] --deep-sleep needs --flash-file and --nvs-file\n");
      return 2;
    }
    return deepSleepWake(dev, sleepFile, argU32(argc, argv, "--flush-every", 4));
  }
  dev.boot(ResetReason::PowerOn);
  while (turn()) {
  }
  return 0;
}
