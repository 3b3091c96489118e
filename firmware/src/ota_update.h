// Over-the-air updates on the board (docs/ota.md "Board"): the portable OtaUpdater (hub_ota.h) on
// ESP-IDF's esp_ota_* (the inactive app slot, the boot partition, app rollback), esp_http_client (GET
// with Range and `Authorization: Bearer`), and mbedTLS (SHA-256, ECDSA P-256 with the operator's public
// key from include/ota_public_key.h, written by `npm run hub -- ota keygen`; without that header the
// board answers `ota` with COMMAND_RESULT 2, unsupported).
//
// The download runs in its own FreeRTOS task; the session stays in the main loop: the `ota` command is
// answered ACCEPTED at once (the hook returns kCommandDeferred) and its RESULT is sent from loop() when
// the task is done, then the board restarts (ok) or carries on (failed).
#pragma once

#include <atomic>

#include <esp_http_client.h>
#include <esp_ota_ops.h>
#include <hub_ota.h>
#include <hub_session.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>

class EspOtaFlash : public esp32hub::OtaFlash {
 public:
  bool available() override;
  uint32_t slotSize() override;
  bool begin(uint32_t imageSize) override;
  bool write(uint32_t offset, const uint8_t* data, size_t len) override;
  bool finish() override;
  void abort() override;
  bool setBootPartition() override;
  esp32hub::OtaImageState runningState() override;
  bool markValid() override;
  void markInvalidAndRollback() override;

 private:
  const esp_partition_t* target_ = nullptr;
  esp_ota_handle_t handle_ = 0;
  bool open_ = false;
  uint32_t written_ = 0;
};

class MbedOtaCrypto : public esp32hub::OtaCrypto {
 public:
  MbedOtaCrypto();
  bool hasPublicKey() override { return keyLoaded_; }
  void sha256Begin() override;
  void sha256Update(const uint8_t* data, size_t len) override;
  void sha256Finish(uint8_t digest[32]) override;
  bool verifySignature(const uint8_t digest[32], const uint8_t* der, size_t derLen) override;

 private:
  mbedtls_sha256_context sha_{};
  mbedtls_pk_context pk_{};
  bool keyLoaded_ = false;
};

class EspOtaHttp : public esp32hub::OtaHttp {
 public:
  /** `caCert`: the PEM that https:// downloads are checked against (the hub's CA, HUB_CA_CERT). */
  explicit EspOtaHttp(const char* caCert) : caCert_(caCert) {}
  int open(const char* url, const char* credential, uint32_t from) override;
  int read(uint8_t* buf, size_t cap) override;
  void close() override;

 private:
  const char* caCert_;
  esp_http_client_handle_t client_ = nullptr;
};

class OtaService {
 public:
  explicit OtaService(const char* caCert);
  /** At boot, before the session starts: a pending-verify image starts its health deadline. */
  void begin(esp32hub::Session& session, uint64_t nowMs);
  /** The `ota` command (from DeviceHooks::onCommand, main loop). */
  esp32hub::CommandStatus onCommand(const esp32hub::Command& c, char* message, size_t cap);
  /** WELCOME received (LinkState::Ready): the new image is healthy. */
  void onWelcome() { updater_.onWelcome(); }
  /** Main loop: sends the RESULT when the task is done; rolls back a new image past its deadline. */
  void loop(uint64_t nowMs);

 private:
  static void taskMain(void* self);
  void run();

  EspOtaFlash flash_;
  MbedOtaCrypto crypto_;
  EspOtaHttp http_;
  esp32hub::OtaUpdater updater_;
  esp32hub::Session* session_ = nullptr;
  std::atomic<bool> active_{false};  // main loop → task: an update runs (the task steps it)
  std::atomic<bool> done_{false};    // task → main loop: the result is ready
  bool taskStarted_ = false;
};
