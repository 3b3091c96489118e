// Over-the-air update of the board's firmware (docs/ota.md "Board"): the `ota` command's arguments,
// the download into the inactive OTA slot with resume, the hash and signature checks before the boot
// partition is switched, and the health check after the reboot that keeps or rolls back the new image.
//
// Everything the board does is behind three ports: OtaFlash (the partition table: ESP-IDF's esp_ota_*),
// OtaCrypto (SHA-256 and the ECDSA P-256 check: mbedTLS) and OtaHttp (a GET with Range and a Bearer
// header: esp_http_client). The host tests drive it with a simulated two-slot flash that can lose power at
// every write step, OpenSSL, and an in-memory HTTP server.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "hub_types.h"

namespace esp32hub {

/** The running image's state in the OTA data (esp_ota_img_states_t, reduced to what matters here). */
enum class OtaImageState : uint8_t {
  Valid,          // confirmed (or no rollback information: the first flash, a factory image)
  PendingVerify,  // first boot after an update: must be confirmed or it is rolled back
  Invalid,        // marked invalid / aborted
};

class OtaFlash {
 public:
  virtual ~OtaFlash() = default;
  /** An inactive OTA slot exists (false: the partition table has no second slot). */
  virtual bool available() = 0;
  /** Bytes the inactive slot holds. */
  virtual uint32_t slotSize() = 0;
  /** Starts writing an image of `imageSize` bytes to the inactive slot (esp_ota_begin: erases it). */
  virtual bool begin(uint32_t imageSize) = 0;
  /** Writes `len` bytes at `offset` (always the number of bytes written so far: sequential). */
  virtual bool write(uint32_t offset, const uint8_t* data, size_t len) = 0;
  /** Ends the write (esp_ota_end: the image's own checks). */
  virtual bool finish() = 0;
  /** Drops a write in progress (esp_ota_abort). The slot stays inactive. */
  virtual void abort() = 0;
  /** Makes the written slot the one the bootloader starts next (esp_ota_set_boot_partition). */
  virtual bool setBootPartition() = 0;
  /** The running image's state (esp_ota_get_state_partition of the running partition). */
  virtual OtaImageState runningState() = 0;
  /** Confirms the running image (esp_ota_mark_app_valid_cancel_rollback). */
  virtual bool markValid() = 0;
  /** Marks the running image invalid and restarts into the previous one. Does not return on a board. */
  virtual void markInvalidAndRollback() = 0;
};

class OtaCrypto {
 public:
  virtual ~OtaCrypto() = default;
  /** An operator public key is built in (without one the board answers `ota` unsupported). */
  virtual bool hasPublicKey() = 0;
  virtual void sha256Begin() = 0;
  virtual void sha256Update(const uint8_t* data, size_t len) = 0;
  virtual void sha256Finish(uint8_t digest[32]) = 0;
  /** ECDSA P-256 over `digest` (SHA-256 of the image) with a DER signature, against the public key. */
  virtual bool verifySignature(const uint8_t digest[32], const uint8_t* der, size_t derLen) = 0;
};

class OtaHttp {
 public:
  virtual ~OtaHttp() = default;
  /**
   * GET `url` with `Authorization: Bearer <credential>` (never in the URL) and, when `from` > 0,
   * `Range: bytes=<from>-`. Returns the HTTP status, or a negative value when no response came.
   */
  virtual int open(const char* url, const char* credential, uint32_t from) = 0;
  /** Up to `cap` bytes of the body: > 0 bytes read, 0 the body ended, < 0 the connection was lost. */
  virtual int read(uint8_t* buf, size_t cap) = 0;
  virtual void close() = 0;
};

struct OtaConfig {
  /** A new image must get a WELCOME within this long after its boot, or it is rolled back. */
  uint32_t healthDeadlineMs = 120000;
  /** Connection attempts in a row without a byte of progress before the download fails. */
  uint8_t maxAttemptsWithoutProgress = 5;
};

class OtaUpdater {
 public:
  static constexpr size_t kUrlBytes = 201;  // args are ≤ 200 bytes (docs/ota.md)
  static constexpr size_t kCredentialBytes = 201;
  static constexpr size_t kVersionBytes = 65;
  static constexpr size_t kMaxSignatureBytes = 80;  // DER ECDSA P-256 is ≤ 72 bytes
  static constexpr size_t kChunkBytes = 1024;
  static constexpr size_t kMessageBytes = 48;

  enum class Step : uint8_t {
    Idle,      // nothing to do
    Continue,  // call step() again
    Retry,     // the connection was lost: wait a little, then call step() (it resumes with a Range)
    Done,      // the result is ready (result(), resultMessage()); Ok means: reboot now
  };

  OtaUpdater(OtaFlash& flash, OtaCrypto& crypto, OtaHttp& http, const OtaConfig& config = OtaConfig());

  /**
   * The `ota` command. Ok: accepted, the download starts with step() and the result follows with Done.
   * BadArguments, Busy, Unsupported: the answer now, with `message`.
   */
  CommandStatus start(const Command& c, char* message, size_t cap);
  /** One step of the update: open (or resume), one chunk, or the checks and the switch at the end. */
  Step step();
  bool busy() const { return phase_ != Phase::Idle && phase_ != Phase::Done; }
  uint32_t commandId() const { return commandId_; }
  CommandStatus result() const { return result_; }
  const char* resultMessage() const { return resultMessage_; }
  /** After Done: back to Idle (the next `ota` may start). */
  void clear();
  uint32_t written() const { return written_; }
  uint32_t connects() const { return connects_; }
  const char* targetVersion() const { return version_; }

  /** At boot: a pending-verify image starts its health deadline. */
  void onBoot(uint64_t nowMs);
  /** The hub's WELCOME: a pending-verify image is healthy and confirmed. */
  void onWelcome();
  /** Periodically: a pending-verify image past its deadline is rolled back. */
  void poll(uint64_t nowMs);
  bool pendingVerify() const { return pendingVerify_; }

 private:
  enum class Phase : uint8_t { Idle, Connect, Transfer, Verify, Done };

  Step fail(const char* step);
  Step lost();

  OtaFlash& flash_;
  OtaCrypto& crypto_;
  OtaHttp& http_;
  OtaConfig config_;
  Phase phase_ = Phase::Idle;
  uint32_t commandId_ = 0;
  char url_[kUrlBytes] = {};
  char credential_[kCredentialBytes] = {};
  char version_[kVersionBytes] = {};
  uint8_t sha256_[32] = {};
  uint8_t signature_[kMaxSignatureBytes] = {};
  size_t signatureLen_ = 0;
  uint32_t size_ = 0;
  uint32_t written_ = 0;
  uint32_t progressMark_ = 0;
  uint8_t attempts_ = 0;
  uint32_t connects_ = 0;
  bool open_ = false;
  CommandStatus result_ = CommandStatus::Ok;
  char resultMessage_[kMessageBytes] = {};
  uint8_t chunk_[kChunkBytes] = {};
  bool pendingVerify_ = false;
  uint64_t deadline_ = 0;
};

/** Decodes standard base64 (with padding); false on any other character or a wrong length. */
bool base64Decode(const char* in, size_t inLen, uint8_t* out, size_t cap, size_t* outLen);
/** 64 lowercase hex characters → 32 bytes. */
bool parseSha256Hex(const char* in, size_t inLen, uint8_t out[32]);

}  // namespace esp32hub
