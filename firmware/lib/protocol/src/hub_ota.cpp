#include "hub_ota.h"

#include <string.h>

namespace esp32hub {

namespace {

void copyMessage(char* out, size_t cap, const char* text) {
  if (cap == 0) return;
  size_t n = strlen(text);
  if (n >= cap) n = cap - 1;
  memcpy(out, text, n);
  out[n] = '\0';
}

/** A string argument copied NUL-terminated; false when absent, not a string, empty or too long. */
bool stringArg(const Command& c, const char* key, char* out, size_t cap) {
  const CommandArg* a = c.arg(key);
  if (a == nullptr || a->value.type != ValueType::String) return false;
  const Str& s = a->value.s;
  if (s.len == 0 || s.len >= cap) return false;
  memcpy(out, s.data, s.len);
  out[s.len] = '\0';
  return true;
}

bool startsWith(const char* s, const char* prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

bool isBase64Url(const char* s) {
  for (; *s != '\0'; s++) {
    char ch = *s;
    bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
              ch == '_' || ch == '=';
    if (!ok) return false;
  }
  return true;
}

bool printable(const char* s) {
  for (; *s != '\0'; s++)
    if (static_cast<unsigned char>(*s) < 0x21 || *s == 0x7f) return false;
  return true;
}

int base64Value(char ch) {
  if (ch >= 'A' && ch <= 'Z') return ch - 'A';
  if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9') return ch - '0' + 52;
  if (ch == '+') return 62;
  if (ch == '/') return 63;
  return -1;
}

int hexValue(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  return -1;
}

}  // namespace

bool base64Decode(const char* in, size_t inLen, uint8_t* out, size_t cap, size_t* outLen) {
  if (inLen == 0 || inLen % 4 != 0) return false;
  size_t pad = 0;
  if (in[inLen - 1] == '=') pad++;
  if (in[inLen - 2] == '=') pad++;
  size_t n = inLen / 4 * 3 - pad;
  if (n > cap) return false;
  size_t o = 0;
  for (size_t i = 0; i < inLen; i += 4) {
    uint32_t acc = 0;
    for (size_t j = 0; j < 4; j++) {
      char ch = in[i + j];
      int v = 0;
      if (ch == '=') {
        if (i + 4 != inLen || j < 4 - pad) return false;
      } else {
        v = base64Value(ch);
        if (v < 0) return false;
      }
      acc = (acc << 6) | static_cast<uint32_t>(v);
    }
    uint8_t bytes[3] = {static_cast<uint8_t>(acc >> 16), static_cast<uint8_t>(acc >> 8), static_cast<uint8_t>(acc)};
    for (size_t j = 0; j < 3 && o < n; j++) out[o++] = bytes[j];
  }
  *outLen = n;
  return true;
}

bool parseSha256Hex(const char* in, size_t inLen, uint8_t out[32]) {
  if (inLen != 64) return false;
  for (size_t i = 0; i < 32; i++) {
    int hi = hexValue(in[2 * i]);
    int lo = hexValue(in[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>((hi << 4) | lo);
  }
  return true;
}

OtaUpdater::OtaUpdater(OtaFlash& flash, OtaCrypto& crypto, OtaHttp& http, const OtaConfig& config)
    : flash_(flash), crypto_(crypto), http_(http), config_(config) {}

CommandStatus OtaUpdater::start(const Command& c, char* message, size_t cap) {
  if (busy()) {
    copyMessage(message, cap, "an update is already running");
    return CommandStatus::Busy;
  }
  if (!flash_.available() || !crypto_.hasPublicKey()) {
    copyMessage(message, cap, flash_.available() ? "no OTA public key built in" : "no OTA partition");
    return CommandStatus::Unsupported;
  }
  char url[kUrlBytes];
  char credential[kCredentialBytes];
  char version[kVersionBytes];
  char sha[65];
  char sig[kMaxSignatureBytes * 4 / 3 + 8];
  uint8_t digest[32];
  uint8_t der[kMaxSignatureBytes];
  size_t derLen = 0;
  if (!stringArg(c, "url", url, sizeof url) || !printable(url) ||
      !(startsWith(url, "https://") || startsWith(url, "http://"))) {
    copyMessage(message, cap, "url must be an http(s) URL");
    return CommandStatus::BadArguments;
  }
  // ≥ 128 bits of base64url: at least 22 characters.
  if (!stringArg(c, "credential", credential, sizeof credential) || strlen(credential) < 22 ||
      !isBase64Url(credential)) {
    copyMessage(message, cap, "credential must be base64url, >= 22 chars");
    return CommandStatus::BadArguments;
  }
  if (!stringArg(c, "sha256", sha, sizeof sha) || !parseSha256Hex(sha, strlen(sha), digest)) {
    copyMessage(message, cap, "sha256 must be 64 lowercase hex chars");
    return CommandStatus::BadArguments;
  }
  if (!stringArg(c, "signature", sig, sizeof sig) ||
      !base64Decode(sig, strlen(sig), der, sizeof der, &derLen) || derLen < 8) {
    copyMessage(message, cap, "signature must be base64 DER");
    return CommandStatus::BadArguments;
  }
  if (!stringArg(c, "version", version, sizeof version) || !printable(version)) {
    copyMessage(message, cap, "version must be 1..64 chars");
    return CommandStatus::BadArguments;
  }
  const CommandArg* size = c.arg("size");
  if (size == nullptr || !isIntegerType(size->value.type) || size->value.i < 1 ||
      size->value.i > static_cast<int64_t>(flash_.slotSize())) {
    copyMessage(message, cap, "size must be 1..the OTA slot's size");
    return CommandStatus::BadArguments;
  }
  if (!flash_.begin(static_cast<uint32_t>(size->value.i))) {
    copyMessage(message, cap, "cannot open the OTA partition");
    return CommandStatus::Failed;
  }
  commandId_ = c.commandId;
  memcpy(url_, url, sizeof url_);
  memcpy(credential_, credential, sizeof credential_);
  memcpy(version_, version, sizeof version_);
  memcpy(sha256_, digest, sizeof sha256_);
  memcpy(signature_, der, derLen);
  signatureLen_ = derLen;
  size_ = static_cast<uint32_t>(size->value.i);
  written_ = 0;
  progressMark_ = 0;
  attempts_ = 0;
  connects_ = 0;
  open_ = false;
  resultMessage_[0] = '\0';
  crypto_.sha256Begin();
  phase_ = Phase::Connect;
  copyMessage(message, cap, "downloading");
  return CommandStatus::Ok;
}

OtaUpdater::Step OtaUpdater::fail(const char* step) {
  if (open_) http_.close();
  open_ = false;
  flash_.abort();
  memset(credential_, 0, sizeof credential_);
  result_ = CommandStatus::Failed;
  copyMessage(resultMessage_, sizeof resultMessage_, step);
  phase_ = Phase::Done;
  return Step::Done;
}

OtaUpdater::Step OtaUpdater::lost() {
  if (open_) http_.close();
  open_ = false;
  phase_ = Phase::Connect;
  // Resume from the bytes already written: the running hash covers exactly them.
  if (written_ > progressMark_) {
    progressMark_ = written_;
    attempts_ = 0;
  }
  if (++attempts_ >= config_.maxAttemptsWithoutProgress) return fail("download");
  return Step::Retry;
}

OtaUpdater::Step OtaUpdater::step() {
  switch (phase_) {
    case Phase::Idle:
      return Step::Idle;
    case Phase::Done:
      return Step::Done;
    case Phase::Connect: {
      connects_++;
      int status = http_.open(url_, credential_, written_);
      if (status < 0) return lost();
      open_ = true;
      // A resume must be answered 206; a fresh start 200 (or 206 from byte 0).
      bool ok = written_ == 0 ? (status == 200 || status == 206) : status == 206;
      if (!ok) {
        if (status >= 500) return lost();  // 503: too many downloads right now; try again
        return fail("download");           // 401 (credential expired), 404, or a server without Range
      }
      phase_ = Phase::Transfer;
      return Step::Continue;
    }
    case Phase::Transfer: {
      size_t want = size_ - written_ < kChunkBytes ? size_ - written_ : kChunkBytes;
      if (want == 0) {
        http_.close();
        open_ = false;
        phase_ = Phase::Verify;
        return Step::Continue;
      }
      int n = http_.read(chunk_, want);
      if (n <= 0) return lost();  // dropped, or the body ended before `size` bytes
      if (!flash_.write(written_, chunk_, static_cast<size_t>(n))) return fail("write");
      crypto_.sha256Update(chunk_, static_cast<size_t>(n));
      written_ += static_cast<uint32_t>(n);
      return Step::Continue;
    }
    case Phase::Verify: {
      uint8_t digest[32];
      crypto_.sha256Finish(digest);
      if (memcmp(digest, sha256_, sizeof digest) != 0) return fail("hash");
      if (!crypto_.verifySignature(digest, signature_, signatureLen_)) return fail("signature");
      if (!flash_.finish()) return fail("write");
      if (!flash_.setBootPartition()) return fail("partition");
      memset(credential_, 0, sizeof credential_);
      result_ = CommandStatus::Ok;
      copyMessage(resultMessage_, sizeof resultMessage_, "rebooting");
      phase_ = Phase::Done;
      return Step::Done;
    }
  }
  return Step::Idle;
}

void OtaUpdater::clear() {
  if (phase_ == Phase::Done) phase_ = Phase::Idle;
}

void OtaUpdater::onBoot(uint64_t nowMs) {
  pendingVerify_ = flash_.runningState() == OtaImageState::PendingVerify;
  deadline_ = nowMs + config_.healthDeadlineMs;
}

void OtaUpdater::onWelcome() {
  if (!pendingVerify_) return;
  if (flash_.markValid()) pendingVerify_ = false;
}

void OtaUpdater::poll(uint64_t nowMs) {
  if (!pendingVerify_ || nowMs < deadline_) return;
  pendingVerify_ = false;
  flash_.markInvalidAndRollback();
}

}  // namespace esp32hub
