// The board's OTA state machine (hub_ota.h) on a simulated partition table with two app slots and the
// OTA data, a bootloader model with ESP-IDF's app rollback (new → pending verify on its first boot; a
// pending-verify image that boots again unconfirmed, or an invalid one, falls back to the other slot;
// a torn image does not boot), OpenSSL for SHA-256 and ECDSA P-256, and an in-memory HTTP server with
// Range and scripted disconnects. Images and signatures: firmware/test/ota-cases.json (made with Node's
// crypto by firmware/test/ota/gen-ota-cases.mjs). Power is cut at every write step of an update, of the
// confirmation and of the rollback.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <unity.h>

#include <string>
#include <vector>

#include "../support/json.h"
#include "hub_ota.h"
#include "suites.h"

using namespace esp32hub;

namespace {

struct Cases {
  std::string publicKeyPem, oldImage, newImage, newSha256, newSignature, otherKeySignature;
};

std::string b64(const std::string& s) {
  std::vector<uint8_t> out(s.size());
  size_t n = 0;
  if (!base64Decode(s.data(), s.size(), out.data(), out.size(), &n)) throw std::runtime_error("bad base64");
  return std::string(reinterpret_cast<const char*>(out.data()), n);
}

const Cases& cases() {
  static Cases c;
  static bool loaded = false;
  if (!loaded) {
    testjson::Value v = testjson::Parser(readFile(repoPath("firmware/test/ota-cases.json"))).parseDocument();
    c.publicKeyPem = v["publicKeyPem"].asString();
    c.oldImage = b64(v["oldImage"].asString());
    c.newImage = b64(v["newImage"].asString());
    c.newSha256 = v["newSha256"].asString();
    c.newSignature = v["newSignature"].asString();
    c.otherKeySignature = v["otherKeySignature"].asString();
    loaded = true;
  }
  return c;
}

// ───────────────────────────── simulated partition table ─────────────────────────────

enum class SlotState { Empty, New, PendingVerify, Valid, Invalid };

struct PowerCut {};

/** Two app slots + OTA data. Every flash write is a step; a cut tears the step and stops the world. */
class SimOtaFlash : public OtaFlash {
 public:
  static constexpr uint32_t kSlotBytes = 16384;
  std::string slot[2];
  SlotState state[2] = {SlotState::Valid, SlotState::Empty};
  int bootSlot = 0;
  int running = 0;
  int target = -1;
  uint32_t writtenBytes = 0;
  bool hasSlots = true;
  // Power.
  uint64_t steps = 0;
  int64_t cutAt = -1;  // cut when the step with this index starts (-1: never)
  bool off = false;
  int setBootCalls = 0;
  bool rollbackRequested = false;

  SimOtaFlash() {
    slot[0] = cases().oldImage + std::string(kSlotBytes - cases().oldImage.size(), '\xff');
    slot[1] = std::string(kSlotBytes, '\xff');
  }

  /** Starts a step; false (and power off) when the cut comes now. */
  bool tick() {
    if (off) return false;
    if (cutAt >= 0 && static_cast<int64_t>(steps) == cutAt) {
      off = true;
      return false;
    }
    steps++;
    return true;
  }

  bool available() override { return hasSlots; }
  uint32_t slotSize() override { return kSlotBytes; }
  bool begin(uint32_t imageSize) override {
    if (imageSize > kSlotBytes) return false;
    target = 1 - running;
    if (off) return false;
    bool ok = tick();
    // Erase: a cut leaves the first half erased and the rest as it was.
    size_t n = ok ? kSlotBytes : kSlotBytes / 2;
    slot[target].replace(0, n, std::string(n, '\xff'));
    state[target] = SlotState::Empty;  // esp_ota_begin: the slot no longer holds a bootable image
    writtenBytes = 0;
    return ok;
  }
  bool write(uint32_t offset, const uint8_t* data, size_t len) override {
    TEST_ASSERT_EQUAL_UINT32(writtenBytes, offset);  // sequential, as esp_ota_write
    if (off) return false;
    bool ok = tick();
    size_t n = ok ? len : len / 2;  // torn write
    slot[target].replace(offset, n, reinterpret_cast<const char*>(data), n);
    writtenBytes += static_cast<uint32_t>(n);
    return ok;
  }
  bool finish() override { return !off; }
  void abort() override {}
  bool setBootPartition() override {
    setBootCalls++;
    if (!tick()) return false;  // the OTA data's two sectors + sequence: all or nothing
    bootSlot = target;
    state[target] = SlotState::New;
    return true;
  }
  OtaImageState runningState() override {
    switch (state[running]) {
      case SlotState::PendingVerify:
        return OtaImageState::PendingVerify;
      case SlotState::Invalid:
        return OtaImageState::Invalid;
      default:
        return OtaImageState::Valid;
    }
  }
  bool markValid() override {
    if (!tick()) return false;
    state[running] = SlotState::Valid;
    return true;
  }
  void markInvalidAndRollback() override {
    if (!tick()) return;
    state[running] = SlotState::Invalid;
    bootSlot = 1 - running;
    rollbackRequested = true;
  }

  void powerOn() {
    off = false;
    cutAt = -1;
    rollbackRequested = false;
  }

  /** Which complete image a slot holds: "old", "new" or "" (torn / erased: the bootloader refuses it). */
  std::string imageIn(int s) const {
    const Cases& c = cases();
    if (slot[s].compare(0, c.newImage.size(), c.newImage) == 0) return "new";
    if (slot[s].compare(0, c.oldImage.size(), c.oldImage) == 0) return "old";
    return "";
  }

  /** The bootloader with app rollback: returns the image that runs ("" when nothing boots). */
  std::string boot() {
    int s = bootSlot;
    for (int tries = 0; tries < 2; tries++, s = 1 - s) {
      if (state[s] == SlotState::PendingVerify) {
        state[s] = SlotState::Invalid;  // booted once unconfirmed: aborted
        continue;
      }
      if (state[s] == SlotState::Invalid || state[s] == SlotState::Empty) continue;
      if (imageIn(s).empty()) continue;
      if (state[s] == SlotState::New) state[s] = SlotState::PendingVerify;
      running = s;
      return imageIn(s);
    }
    return "";
  }
};

// ───────────────────────────── OpenSSL crypto ─────────────────────────────

class HostCrypto : public OtaCrypto {
 public:
  bool withKey = true;
  explicit HostCrypto(const std::string& pem) {
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    key_ = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    md_ = EVP_MD_CTX_new();
  }
  ~HostCrypto() override {
    EVP_PKEY_free(key_);
    EVP_MD_CTX_free(md_);
  }
  bool hasPublicKey() override { return withKey && key_ != nullptr; }
  void sha256Begin() override { EVP_DigestInit_ex(md_, EVP_sha256(), nullptr); }
  void sha256Update(const uint8_t* data, size_t len) override { EVP_DigestUpdate(md_, data, len); }
  void sha256Finish(uint8_t digest[32]) override {
    unsigned int n = 0;
    EVP_DigestFinal_ex(md_, digest, &n);
  }
  bool verifySignature(const uint8_t digest[32], const uint8_t* der, size_t derLen) override {
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(key_, nullptr);
    bool ok = ctx != nullptr && EVP_PKEY_verify_init(ctx) == 1 && EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
              EVP_PKEY_verify(ctx, der, derLen, digest, 32) == 1;
    EVP_PKEY_CTX_free(ctx);
    verifyCalls++;
    return ok;
  }
  int verifyCalls = 0;

 private:
  EVP_PKEY* key_ = nullptr;
  EVP_MD_CTX* md_ = nullptr;
};

// ───────────────────────────── HTTP server in memory ─────────────────────────────

class FakeHttp : public OtaHttp {
 public:
  std::string body;
  std::string credential = "q7Jc1m0bB3nX9sVfA2kLpQzR8tYwUe4H";
  std::vector<uint32_t> dropAt;  // absolute offsets where the connection drops (once each)
  std::vector<uint32_t> opens;   // the Range start of every request
  std::vector<std::string> urls;
  std::vector<uint32_t> endAt;   // offsets where the body ends early (once each: a short response)
  bool ignoreRange = false;      // a server without Range: 200 and the whole body every time
  int statusOverride = 0;
  bool connected = false;
  uint32_t pos = 0;

  int open(const char* url, const char* cred, uint32_t from) override {
    urls.push_back(url);
    opens.push_back(from);
    if (statusOverride != 0) return statusOverride;
    if (credential != cred) return 401;
    connected = true;
    pos = ignoreRange ? 0 : from;
    return from > 0 && !ignoreRange ? 206 : 200;
  }
  int read(uint8_t* buf, size_t cap) override {
    if (!connected) return -1;
    for (auto it = endAt.begin(); it != endAt.end(); ++it) {
      if (*it == pos) {
        endAt.erase(it);
        connected = false;
        return 0;
      }
    }
    for (auto it = dropAt.begin(); it != dropAt.end(); ++it) {
      if (*it == pos) {
        dropAt.erase(it);
        connected = false;
        return -1;
      }
    }
    size_t n = cap < 700 ? cap : 700;  // TCP hands out odd sizes
    for (uint32_t d : dropAt)
      if (d > pos && d - pos < n) n = d - pos;
    for (uint32_t d : endAt)
      if (d > pos && d - pos < n) n = d - pos;
    if (pos >= body.size()) return 0;
    if (n > body.size() - pos) n = body.size() - pos;
    memcpy(buf, body.data() + pos, n);
    pos += static_cast<uint32_t>(n);
    return static_cast<int>(n);
  }
  void close() override { connected = false; }
};

// ───────────────────────────── the command ─────────────────────────────

struct OtaArgs {
  std::string url = "https://hub:8080/v1/ota/images/img-1";
  std::string credential = "q7Jc1m0bB3nX9sVfA2kLpQzR8tYwUe4H";
  std::string sha256 = cases().newSha256;
  std::string signature = cases().newSignature;
  std::string version = "0.2.0";
  bool sizeAsString = false;
  int64_t size = static_cast<int64_t>(cases().newImage.size());
  const char* omit = nullptr;
};

Command makeCommand(const OtaArgs& a, uint32_t id = 77) {
  Command c;
  c.commandId = id;
  c.name = Str::of("ota");
  auto add = [&](const char* key, const std::string& value) {
    if (a.omit != nullptr && strcmp(a.omit, key) == 0) return;
    c.args[c.argCount].key = Str::of(key);
    c.args[c.argCount].value = Value::string(Str{value.data(), static_cast<uint8_t>(value.size())});
    c.argCount++;
  };
  add("url", a.url);
  add("credential", a.credential);
  add("sha256", a.sha256);
  add("signature", a.signature);
  add("version", a.version);
  if (a.omit == nullptr || strcmp(a.omit, "size") != 0) {
    c.args[c.argCount].key = Str::of("size");
    c.args[c.argCount].value = a.sizeAsString ? Value::string(Str::of("9000")) : Value::integer(ValueType::U32, a.size);
    c.argCount++;
  }
  return c;
}

struct Rig {
  SimOtaFlash flash;
  HostCrypto crypto{cases().publicKeyPem};
  FakeHttp http;
  OtaConfig config;
  OtaUpdater ota{flash, crypto, http, config};
  char message[64] = {};
  Rig() { http.body = cases().newImage; }

  CommandStatus start(const OtaArgs& a = OtaArgs()) { return ota.start(makeCommand(a), message, sizeof message); }
  /** Steps until Done (every Retry is taken at once: the board waits a little first). */
  OtaUpdater::Step run() {
    for (int i = 0; i < 100000; i++) {
      OtaUpdater::Step s = ota.step();
      if (s == OtaUpdater::Step::Done || s == OtaUpdater::Step::Idle) return s;
    }
    TEST_FAIL_MESSAGE("the update never ended");
    return OtaUpdater::Step::Idle;
  }
};

/** A fresh boot of the board: the bootloader runs, then a new OtaUpdater (RAM is gone) checks its image. */
std::string rebootInto(Rig& rig, OtaUpdater& after, uint64_t nowMs) {
  if (rig.flash.off) rig.flash.powerOn();  // a planned cut not reached yet stays planned
  rig.flash.rollbackRequested = false;
  std::string image = rig.flash.boot();
  after.onBoot(nowMs);
  return image;
}

// ───────────────────────────── tests ─────────────────────────────

void test_ota_good_image_switches_boots_and_is_confirmed_by_welcome() {
  Rig rig;
  TEST_ASSERT_EQUAL_INT(CommandStatus::Ok, rig.start());
  TEST_ASSERT_TRUE(rig.ota.busy());
  TEST_ASSERT_EQUAL_INT(OtaUpdater::Step::Done, rig.run());
  TEST_ASSERT_EQUAL_INT(CommandStatus::Ok, rig.ota.result());
  TEST_ASSERT_EQUAL_STRING("rebooting", rig.ota.resultMessage());
  TEST_ASSERT_EQUAL_INT(1, rig.flash.bootSlot);
  // The credential went as the Bearer value, never into the URL.
  TEST_ASSERT_EQUAL_STRING("https://hub:8080/v1/ota/images/img-1", rig.http.urls.at(0).c_str());
  TEST_ASSERT_EQUAL_UINT(1, rig.http.opens.size());

  OtaUpdater after(rig.flash, rig.crypto, rig.http, rig.config);
  TEST_ASSERT_EQUAL_STRING("new", rebootInto(rig, after, 500).c_str());
  TEST_ASSERT_TRUE(after.pendingVerify());
  after.poll(500 + rig.config.healthDeadlineMs - 1);
  TEST_ASSERT_FALSE(rig.flash.rollbackRequested);
  after.onWelcome();
  TEST_ASSERT_FALSE(after.pendingVerify());
  TEST_ASSERT_EQUAL_INT(SlotState::Valid, rig.flash.state[1]);
  after.poll(10 * 500 + rig.config.healthDeadlineMs);  // confirmed: the deadline no longer matters
  TEST_ASSERT_FALSE(rig.flash.rollbackRequested);
  // Later boots stay on the new image.
  TEST_ASSERT_EQUAL_STRING("new", rig.flash.boot().c_str());
  TEST_ASSERT_EQUAL_STRING("new", rig.flash.boot().c_str());
}

void test_ota_corrupt_chunk_fails_on_hash_and_old_image_still_boots() {
  Rig rig;
  rig.http.body[4500] = static_cast<char>(rig.http.body[4500] ^ 0x40);
  TEST_ASSERT_EQUAL_INT(CommandStatus::Ok, rig.start());
  TEST_ASSERT_EQUAL_INT(OtaUpdater::Step::Done, rig.run());
  TEST_ASSERT_EQUAL_INT(CommandStatus::Failed, rig.ota.result());
  TEST_ASSERT_EQUAL_STRING("hash", rig.ota.resultMessage());
  TEST_ASSERT_EQUAL_INT(0, rig.flash.setBootCalls);
  TEST_ASSERT_EQUAL_INT(0, rig.crypto.verifyCalls);
  TEST_ASSERT_EQUAL_STRING("old", rig.flash.boot().c_str());
  // The next `ota` may start.
  rig.ota.clear();
  TEST_ASSERT_FALSE(rig.ota.busy());
}

void test_ota_bad_signature_fails_without_switching() {
  for (int variant = 0; variant < 2; variant++) {
    Rig rig;
    OtaArgs a;
    if (variant == 0) {
      a.signature = cases().otherKeySignature;  // a valid signature, by another key
    } else {
      std::string der = b64(a.signature);  // the right key, one bit off
      der[der.size() - 3] = static_cast<char>(der[der.size() - 3] ^ 1);
      std::vector<char> out(((der.size() + 2) / 3) * 4 + 1);
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(der.data()),
                      static_cast<int>(der.size()));
      a.signature = out.data();
    }
    TEST_ASSERT_EQUAL_INT(CommandStatus::Ok, rig.start(a));
    TEST_ASSERT_EQUAL_INT(OtaUpdater::Step::Done, rig.run());
    TEST_ASSERT_EQUAL_INT(CommandStatus::Failed, rig.ota.result());
    TEST_ASSERT_EQUAL_STRING("signature", rig.ota.resultMessage());
    TEST_ASSERT_EQUAL_INT(0, rig.flash.setBootCalls);
    TEST_ASSERT_EQUAL_INT(0, rig.flash.bootSlot);
    TEST_ASSERT_EQUAL_STRING("old", rig.flash.boot().c_str());
  }
}

void test_ota_resumes_after_disconnects_from_the_bytes_written() {
  Rig rig;
  rig.http.dropAt = {3000, 7001, 7001 + 1};
  TEST_ASSERT_EQUAL_INT(CommandStatus::Ok, rig.start());
  TEST_ASSERT_EQUAL_INT(OtaUpdater::Step::Done, rig.run());
  TEST_ASSERT_EQUAL_INT(CommandStatus::Ok, rig.ota.result());
  // One request per connection, each with Range from what was already in flash (the hash kept running).
  TEST_ASSERT_EQUAL_UINT(4, rig.http.opens.size());
  TEST_ASSERT_EQUAL_UINT32(0, rig.http.opens[0]);
  TEST_ASSERT_EQUAL_UINT32(3000, rig.http.opens[1]);
  TEST_ASSERT_EQUAL_UINT32(7001, rig.http.opens[2]);
  TEST_ASSERT_EQUAL_UINT32(7002, rig.http.opens[3]);
  OtaUpdater after(rig.flash, rig.crypto, rig.http, rig.config);
  TEST_ASSERT_EQUAL_STRING("new", rebootInto(rig, after, 0).c_str());

  // A body that ends early is resumed the same way.
  Rig shortBody;
  shortBody.http.endAt = {5555};
  TEST_ASSERT_EQUAL_INT(CommandStatus::Ok, shortBody.start());
  TEST_ASSERT_EQUAL_INT(OtaUpdater::Step::Done, shortBody.run());
  TEST_ASSERT_EQUAL_INT(CommandStatus::Ok, shortBody.ota.result());
  TEST_ASSERT_EQUAL_UINT(2, shortBody.http.opens.size());
  TEST_ASSERT_EQUAL_UINT32(5555, shortBody.http.opens[1]);

  // A server that ignores Range (200 from byte 0 to a resume) would corrupt the image: refused.
  Rig noRange;
  noRange.http.ignoreRange = true;
  noRange.http.dropAt = {3000};
  TEST_ASSERT_EQUAL_INT(CommandStatus::Ok, noRange.start());
  TEST_ASSERT_EQUAL_INT(OtaUpdater::Step::Done, noRange.run());
  TEST_ASSERT_EQUAL_INT(CommandStatus::Failed, noRange.ota.result());
  TEST_ASSERT_EQUAL_STRING("download", noRange.ota.resultMessage());
  TEST_ASSERT_EQUAL_INT(0, noRange.flash.setBootCalls);
}

void test_ota_gives_up_when_the_download_makes_no_progress() {
  Rig rig;
  rig.http.statusOverride = 503;  // the hub is busy every time
  TEST_ASSERT_EQUAL_INT(CommandStatus::Ok, rig.start());
  TEST_ASSERT_EQUAL_INT(OtaUpdater::Step::Done, rig.run());
  TEST_ASSERT_EQUAL_INT(CommandStatus::Failed, rig.ota.result());
  TEST_ASSERT_EQUAL_STRING("download", rig.ota.resultMessage());
  TEST_ASSERT_EQUAL_UINT(rig.config.maxAttemptsWithoutProgress, rig.http.opens.size());
  Rig refused;
  refused.http.credential = "another-credential-entirely-000";
  TEST_ASSERT_EQUAL_INT(CommandStatus::Ok, refused.start());
  TEST_ASSERT_EQUAL_INT(OtaUpdater::Step::Done, refused.run());
  TEST_ASSERT_EQUAL_STRING("download", refused.ota.resultMessage());  // 401: no retry
  TEST_ASSERT_EQUAL_UINT(1, refused.http.opens.size());
  TEST_ASSERT_EQUAL_STRING("old", refused.flash.boot().c_str());
}

void test_ota_failed_health_check_rolls_back() {
  Rig rig;
  TEST_ASSERT_EQUAL_INT(CommandStatus::Ok, rig.start());
  rig.run();
  OtaUpdater after(rig.flash, rig.crypto, rig.http, rig.config);
  TEST_ASSERT_EQUAL_STRING("new", rebootInto(rig, after, 1000).c_str());
  after.poll(1000 + rig.config.healthDeadlineMs - 1);
  TEST_ASSERT_FALSE(rig.flash.rollbackRequested);
  after.poll(1000 + rig.config.healthDeadlineMs);  // no WELCOME before the deadline
  TEST_ASSERT_TRUE(rig.flash.rollbackRequested);
  TEST_ASSERT_EQUAL_INT(SlotState::Invalid, rig.flash.state[1]);
  OtaUpdater third(rig.flash, rig.crypto, rig.http, rig.config);
  TEST_ASSERT_EQUAL_STRING("old", rebootInto(rig, third, 0).c_str());
  TEST_ASSERT_FALSE(third.pendingVerify());
  // A late WELCOME on the old image changes nothing; the new image never boots again.
  third.onWelcome();
  TEST_ASSERT_EQUAL_STRING("old", rig.flash.boot().c_str());
}

void test_ota_busy_while_an_update_runs() {
  Rig rig;
  TEST_ASSERT_EQUAL_INT(CommandStatus::Ok, rig.start());
  rig.ota.step();
  rig.ota.step();
  TEST_ASSERT_EQUAL_INT(CommandStatus::Busy, rig.ota.start(makeCommand(OtaArgs(), 78), rig.message, sizeof rig.message));
  TEST_ASSERT_EQUAL_UINT32(77, rig.ota.commandId());
  TEST_ASSERT_EQUAL_INT(OtaUpdater::Step::Done, rig.run());
  TEST_ASSERT_EQUAL_INT(CommandStatus::Ok, rig.ota.result());
  TEST_ASSERT_EQUAL_UINT32(77, rig.ota.commandId());
}

void test_ota_bad_arguments_and_unsupported() {
  struct Bad {
    const char* what;
    void (*mutate)(OtaArgs&);
  };
  const Bad bad[] = {
      {"no url", [](OtaArgs& a) { a.omit = "url"; }},
      {"ftp url", [](OtaArgs& a) { a.url = "ftp://hub/img"; }},
      {"url with a space", [](OtaArgs& a) { a.url = "https://hub/a b"; }},
      {"short credential", [](OtaArgs& a) { a.credential = "abc"; }},
      {"credential not base64url", [](OtaArgs& a) { a.credential = "q7Jc1m0bB3nX9sVfA2kLpQzR8t/wUe4H"; }},
      {"sha256 uppercase", [](OtaArgs& a) { a.sha256 = "AB" + a.sha256.substr(2); }},
      {"sha256 short", [](OtaArgs& a) { a.sha256 = a.sha256.substr(1); }},
      {"no signature", [](OtaArgs& a) { a.omit = "signature"; }},
      {"signature not base64", [](OtaArgs& a) { a.signature = "!!!!"; }},
      {"no version", [](OtaArgs& a) { a.omit = "version"; }},
      {"no size", [](OtaArgs& a) { a.omit = "size"; }},
      {"size 0", [](OtaArgs& a) { a.size = 0; }},
      {"size beyond the slot", [](OtaArgs& a) { a.size = SimOtaFlash::kSlotBytes + 1; }},
      {"size as a string", [](OtaArgs& a) { a.sizeAsString = true; }},
  };
  for (const Bad& b : bad) {
    Rig rig;
    OtaArgs a;
    b.mutate(a);
    TEST_ASSERT_EQUAL_INT_MESSAGE(CommandStatus::BadArguments, rig.start(a), b.what);
    TEST_ASSERT_FALSE(rig.ota.busy());
    TEST_ASSERT_EQUAL_UINT(0, rig.flash.steps);  // nothing erased
  }
  Rig noKey;
  noKey.crypto.withKey = false;
  TEST_ASSERT_EQUAL_INT(CommandStatus::Unsupported, noKey.start());
  Rig noSlot;
  noSlot.flash.hasSlots = false;
  TEST_ASSERT_EQUAL_INT(CommandStatus::Unsupported, noSlot.start());
}

// ───────────────────────────── power cut at every step ─────────────────────────────

/**
 * One scripted life: the update (with a disconnect), the reboot, then WELCOME (healthy) or the deadline
 * passing (unhealthy). With `cutAt` the power goes at that flash step; the board then boots again and
 * the promises are checked. Returns the number of flash steps the run took (when not cut).
 */
constexpr int64_t kCutAfterSwitch = 1000000;  // the power goes right after set_boot_partition

uint64_t scriptedRun(bool healthy, int64_t cutAt, int* newBooted, int64_t total = -1) {
  Rig rig;
  rig.http.dropAt = {4100};
  rig.flash.cutAt = cutAt;
  OtaUpdater* board = &rig.ota;
  OtaUpdater second(rig.flash, rig.crypto, rig.http, rig.config);
  bool switched = false;
  if (rig.start() == CommandStatus::Ok) {
    rig.run();
    switched = rig.ota.result() == CommandStatus::Ok;
  }
  if (cutAt == kCutAfterSwitch) rig.flash.off = true;
  if (!rig.flash.off) {
    TEST_ASSERT_TRUE(switched);
    TEST_ASSERT_EQUAL_STRING("new", rebootInto(rig, second, 0).c_str());
    board = &second;
    if (healthy) {
      board->onWelcome();
    } else {
      board->poll(rig.config.healthDeadlineMs);
    }
  }
  if (cutAt < 0) {
    TEST_ASSERT_FALSE(rig.flash.off);
    return rig.flash.steps;
  }
  if (cutAt == total) rig.flash.off = true;  // the power goes after the last step
  TEST_ASSERT_TRUE_MESSAGE(rig.flash.off, ("the cut at step " + std::to_string(cutAt) + " never came").c_str());
  bool bootSwitched = rig.flash.bootSlot == 1;
  // Power comes back: the old image is untouched and something boots.
  TEST_ASSERT_TRUE(rig.flash.slot[0].compare(0, cases().oldImage.size(), cases().oldImage) == 0);
  OtaUpdater third(rig.flash, rig.crypto, rig.http, rig.config);
  std::string image = rebootInto(rig, third, 0);
  TEST_ASSERT_FALSE(image.empty());
  if (!bootSwitched) {
    TEST_ASSERT_EQUAL_STRING("old", image.c_str());  // cut before set_boot_partition: the old image
    TEST_ASSERT_FALSE(third.pendingVerify());
    return 0;
  }
  if (image == "new") {
    (*newBooted)++;
    if (!third.pendingVerify()) return 0;  // confirmed before the cut
    // Pending verify after the cut: it never reports healthy → rolled back to the old image.
    third.poll(rig.config.healthDeadlineMs);
    TEST_ASSERT_TRUE(rig.flash.rollbackRequested);
    OtaUpdater fourth(rig.flash, rig.crypto, rig.http, rig.config);
    TEST_ASSERT_EQUAL_STRING("old", rebootInto(rig, fourth, 0).c_str());
    return 0;
  }
  // The new image had booted unconfirmed before the cut (its second boot): the bootloader rolled back.
  TEST_ASSERT_EQUAL_STRING("old", image.c_str());
  return 0;
}

void test_ota_power_cut_at_every_write_step_leaves_a_bootable_image() {
  for (bool healthy : {true, false}) {
    int newBooted = 0;
    uint64_t total = scriptedRun(healthy, -1, &newBooted);
    // begin (erase) + one step per chunk + set_boot_partition + mark valid / invalid.
    TEST_ASSERT_GREATER_OR_EQUAL_UINT32(12, total);
    for (uint64_t k = 0; k <= total; k++)
      scriptedRun(healthy, static_cast<int64_t>(k), &newBooted, static_cast<int64_t>(total));
    // Cut before the reboot: the new image boots pending verify and is rolled back when never healthy.
    int before = newBooted;
    scriptedRun(healthy, kCutAfterSwitch, &newBooted);
    TEST_ASSERT_EQUAL_INT(before + 1, newBooted);
    // A cut after the confirmation keeps the new image.
    if (healthy) TEST_ASSERT_TRUE(newBooted >= 2);
    printf("ota power cut (%s): %llu steps, every one cut, new image booted after %d of the cuts\n",
           healthy ? "healthy" : "unhealthy", static_cast<unsigned long long>(total), newBooted);
  }
}

void test_ota_base64_and_hex_parsers() {
  uint8_t out[8];
  size_t n = 0;
  TEST_ASSERT_TRUE(base64Decode("TWFu", 4, out, sizeof out, &n));
  TEST_ASSERT_EQUAL_size_t(3, n);
  TEST_ASSERT_TRUE(memcmp(out, "Man", 3) == 0);
  TEST_ASSERT_TRUE(base64Decode("TWE=", 4, out, sizeof out, &n));
  TEST_ASSERT_EQUAL_size_t(2, n);
  TEST_ASSERT_FALSE(base64Decode("TW=E", 4, out, sizeof out, &n));
  TEST_ASSERT_FALSE(base64Decode("TWF", 3, out, sizeof out, &n));
  TEST_ASSERT_FALSE(base64Decode("TWFuTWFuTWFu", 12, out, sizeof out, &n));  // 9 bytes > cap
  uint8_t d[32];
  std::string hex(64, 'a');
  TEST_ASSERT_TRUE(parseSha256Hex(hex.data(), hex.size(), d));
  TEST_ASSERT_EQUAL_UINT8(0xaa, d[31]);
  hex[5] = 'g';
  TEST_ASSERT_FALSE(parseSha256Hex(hex.data(), hex.size(), d));
}

}  // namespace

void run_ota_tests() {
  RUN_TEST(test_ota_good_image_switches_boots_and_is_confirmed_by_welcome);
  RUN_TEST(test_ota_corrupt_chunk_fails_on_hash_and_old_image_still_boots);
  RUN_TEST(test_ota_bad_signature_fails_without_switching);
  RUN_TEST(test_ota_resumes_after_disconnects_from_the_bytes_written);
  RUN_TEST(test_ota_gives_up_when_the_download_makes_no_progress);
  RUN_TEST(test_ota_failed_health_check_rolls_back);
  RUN_TEST(test_ota_busy_while_an_update_runs);
  RUN_TEST(test_ota_bad_arguments_and_unsupported);
  RUN_TEST(test_ota_power_cut_at_every_write_step_leaves_a_bootable_image);
  RUN_TEST(test_ota_base64_and_hex_parsers);
}
