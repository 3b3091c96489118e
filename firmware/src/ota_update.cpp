#include "ota_update.h"

#include "app_config.h"

#include <Arduino.h>
#include <stdio.h>
#include <freertos/FreeRTOS.h>
#include <freertos/task.h>
#include <sdkconfig.h>
#include <string.h>

#if __has_include("ota_public_key.h")
#include "ota_public_key.h"  // static const char OTA_PUBLIC_KEY_PEM[] (npm run hub -- ota keygen)
#define HUB_OTA_HAS_KEY 1
#else
#define HUB_OTA_HAS_KEY 0
#endif

// The new image must boot pending verify, or a broken one would never be rolled back (docs/ota.md).
#if !defined(CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE) && !defined(CONFIG_APP_ROLLBACK_ENABLE)
#error "OTA needs CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE in the sdkconfig (app rollback)"
#endif

using esp32hub::CommandStatus;
using esp32hub::OtaImageState;
using esp32hub::OtaUpdater;

#if !HUB_DEEP_SLEEP
// The Arduino core confirms a pending-verify image in initArduino() unless this says "later": the
// board confirms it only after the hub's WELCOME (OtaUpdater::onWelcome), or rolls it back. Deep-sleep
// builds do not take `ota` (a wake is too short for the health check) and keep the core's behaviour.
extern "C" bool verifyRollbackLater() { return true; }
#endif

// ───────────────────────────── flash: esp_ota_* ─────────────────────────────

bool EspOtaFlash::available() { return esp_ota_get_next_update_partition(nullptr) != nullptr; }

uint32_t EspOtaFlash::slotSize() {
  const esp_partition_t* p = esp_ota_get_next_update_partition(nullptr);
  return p != nullptr ? p->size : 0;
}

bool EspOtaFlash::begin(uint32_t imageSize) {
  if (open_) abort();
  target_ = esp_ota_get_next_update_partition(nullptr);
  if (target_ == nullptr) return false;
  // The inactive slot: never the running one, and the boot partition stays as it is. Erased sector by
  // sector as the writes come (in the OTA task), not all at once here in the main loop.
#ifdef OTA_WITH_SEQUENTIAL_WRITES
  (void)imageSize;
  if (esp_ota_begin(target_, OTA_WITH_SEQUENTIAL_WRITES, &handle_) != ESP_OK) return false;
#else
  if (esp_ota_begin(target_, imageSize, &handle_) != ESP_OK) return false;
#endif
  open_ = true;
  written_ = 0;
  return true;
}

bool EspOtaFlash::write(uint32_t offset, const uint8_t* data, size_t len) {
  if (!open_ || offset != written_) return false;  // esp_ota_write appends: resume is sequential
  if (esp_ota_write(handle_, data, len) != ESP_OK) return false;
  written_ += static_cast<uint32_t>(len);
  return true;
}

bool EspOtaFlash::finish() {
  if (!open_) return false;
  open_ = false;
  return esp_ota_end(handle_) == ESP_OK;  // the image's own header and checksum
}

void EspOtaFlash::abort() {
  if (open_) esp_ota_abort(handle_);
  open_ = false;
}

bool EspOtaFlash::setBootPartition() { return target_ != nullptr && esp_ota_set_boot_partition(target_) == ESP_OK; }

OtaImageState EspOtaFlash::runningState() {
  esp_ota_img_states_t state = ESP_OTA_IMG_UNDEFINED;
  if (esp_ota_get_state_partition(esp_ota_get_running_partition(), &state) != ESP_OK) return OtaImageState::Valid;
  if (state == ESP_OTA_IMG_PENDING_VERIFY) return OtaImageState::PendingVerify;
  if (state == ESP_OTA_IMG_INVALID || state == ESP_OTA_IMG_ABORTED) return OtaImageState::Invalid;
  return OtaImageState::Valid;
}

bool EspOtaFlash::markValid() { return esp_ota_mark_app_valid_cancel_rollback() == ESP_OK; }

void EspOtaFlash::markInvalidAndRollback() {
  Serial.println("[ota] no WELCOME before the health deadline: rolling back");
  esp_ota_mark_app_invalid_rollback_and_reboot();  // returns only when no other image can boot
  Serial.println("[ota] rollback impossible: no other bootable image");
}

// ───────────────────────────── crypto: mbedTLS ─────────────────────────────

MbedOtaCrypto::MbedOtaCrypto() {
  mbedtls_sha256_init(&sha_);
  mbedtls_pk_init(&pk_);
#if HUB_OTA_HAS_KEY
  // The PEM's length includes its NUL (mbedtls_pk_parse_public_key wants it for PEM input).
  keyLoaded_ = mbedtls_pk_parse_public_key(&pk_, reinterpret_cast<const unsigned char*>(OTA_PUBLIC_KEY_PEM),
                                           strlen(OTA_PUBLIC_KEY_PEM) + 1) == 0;
#endif
}

void MbedOtaCrypto::sha256Begin() { mbedtls_sha256_starts_ret(&sha_, 0); }

void MbedOtaCrypto::sha256Update(const uint8_t* data, size_t len) { mbedtls_sha256_update_ret(&sha_, data, len); }

void MbedOtaCrypto::sha256Finish(uint8_t digest[32]) { mbedtls_sha256_finish_ret(&sha_, digest); }

bool MbedOtaCrypto::verifySignature(const uint8_t digest[32], const uint8_t* der, size_t derLen) {
  return keyLoaded_ && mbedtls_pk_verify(&pk_, MBEDTLS_MD_SHA256, digest, 32, der, derLen) == 0;
}

// ───────────────────────────── HTTP: esp_http_client ─────────────────────────────

int EspOtaHttp::open(const char* url, const char* credential, uint32_t from) {
  close();
  bool https = strncmp(url, "https://", 8) == 0;
  if (https && strlen(caCert_) < 64) {
    Serial.println("[ota] https:// download without HUB_CA_CERT refused");
    return -1;
  }
  esp_http_client_config_t config;
  memset(&config, 0, sizeof config);
  config.url = url;  // the credential is never part of it: the Authorization header carries it
  config.cert_pem = https ? caCert_ : nullptr;
  config.method = HTTP_METHOD_GET;
  config.timeout_ms = 15000;
  config.buffer_size = 2048;
  client_ = esp_http_client_init(&config);
  if (client_ == nullptr) return -1;
  static char auth[OtaUpdater::kCredentialBytes + 8];
  snprintf(auth, sizeof auth, "Bearer %s", credential);
  esp_http_client_set_header(client_, "Authorization", auth);
  memset(auth, 0, sizeof auth);
  if (from > 0) {
    char range[32];
    snprintf(range, sizeof range, "bytes=%lu-", static_cast<unsigned long>(from));
    esp_http_client_set_header(client_, "Range", range);
  }
  if (esp_http_client_open(client_, 0) != ESP_OK || esp_http_client_fetch_headers(client_) < 0) {
    close();
    return -1;
  }
  int status = esp_http_client_get_status_code(client_);
  Serial.printf("[ota] GET from byte %lu: HTTP %d\n", static_cast<unsigned long>(from), status);
  return status;
}

int EspOtaHttp::read(uint8_t* buf, size_t cap) {
  if (client_ == nullptr) return -1;
  return esp_http_client_read(client_, reinterpret_cast<char*>(buf), static_cast<int>(cap));
}

void EspOtaHttp::close() {
  if (client_ == nullptr) return;
  esp_http_client_close(client_);
  esp_http_client_cleanup(client_);
  client_ = nullptr;
}

// ───────────────────────────── the service ─────────────────────────────

namespace {
esp32hub::OtaConfig otaConfig() {
  esp32hub::OtaConfig c;
  c.healthDeadlineMs = HUB_OTA_HEALTH_DEADLINE_MS;
  return c;
}
}  // namespace

OtaService::OtaService(const char* caCert) : http_(caCert), updater_(flash_, crypto_, http_, otaConfig()) {}

void OtaService::begin(esp32hub::Session& session, uint64_t nowMs) {
  session_ = &session;
  updater_.onBoot(nowMs);
  if (updater_.pendingVerify()) Serial.println("[ota] new image pending verify: waiting for the hub's WELCOME");
  if (!HUB_OTA_HAS_KEY) Serial.println("[ota] no ota_public_key.h built in: `ota` is unsupported");
  taskStarted_ = xTaskCreatePinnedToCore(taskMain, "hub-ota", 8 * 1024, this, 1, nullptr, tskNO_AFFINITY) == pdPASS;
  if (!taskStarted_) Serial.println("[ota] cannot start the OTA task: `ota` will fail");
}

CommandStatus OtaService::onCommand(const esp32hub::Command& c, char* message, size_t cap) {
  if (active_.load() || done_.load()) {
    snprintf(message, cap, "an update is already running");
    return CommandStatus::Busy;
  }
  if (!taskStarted_) {
    snprintf(message, cap, "no OTA task (out of memory at boot)");
    return CommandStatus::Failed;
  }
  CommandStatus s = updater_.start(c, message, cap);
  if (s != CommandStatus::Ok) return s;
  Serial.printf("[ota] command %lu: downloading version %s\n", static_cast<unsigned long>(c.commandId),
                updater_.targetVersion());
  active_.store(true);
  return esp32hub::kCommandDeferred;
}

void OtaService::taskMain(void* self) { static_cast<OtaService*>(self)->run(); }

void OtaService::run() {
  for (;;) {
    if (!active_.load()) {
      vTaskDelay(pdMS_TO_TICKS(200));
      continue;
    }
    OtaUpdater::Step step = updater_.step();
    if (step == OtaUpdater::Step::Retry) vTaskDelay(pdMS_TO_TICKS(3000));  // then resume with a Range
    if (step == OtaUpdater::Step::Done || step == OtaUpdater::Step::Idle) {
      done_.store(true);  // first: onCommand sees busy until loop() has sent the RESULT
      active_.store(false);
    }
  }
}

void OtaService::loop(uint64_t nowMs) {
  updater_.poll(nowMs);
  if (!done_.load() || session_ == nullptr) return;
  bool ok = updater_.result() == CommandStatus::Ok;
  Serial.printf("[ota] %s: %s (%lu connections)\n", ok ? "verified" : "failed", updater_.resultMessage(),
                static_cast<unsigned long>(updater_.connects()));
  session_->completeCommand(updater_.commandId(), updater_.result(), updater_.resultMessage(), ok);
  updater_.clear();
  done_.store(false);
}
