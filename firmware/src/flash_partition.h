// esp32hub::Flash over the "outbox" data partition (subtype 0x40, partitions-4MB.csv) through ESP-IDF's
// esp_partition API: 4 KiB erase sectors of the SPI NOR flash, program clears bits only. The
// FlashOutbox (lib/protocol) keeps the frames there; this class only moves bytes.
#pragma once

#include <esp_partition.h>
#include <hub_flash_outbox.h>

class PartitionFlash : public esp32hub::Flash {
 public:
  static constexpr uint8_t kSubtype = 0x40;
  /** Finds the partition by label; false when the flashed partition table has none (see README). */
  bool begin(const char* label = "outbox");
  uint32_t sectorSize() const override { return 4096; }
  uint32_t sectorCount() const override { return partition_ != nullptr ? partition_->size / 4096 : 0; }
  bool read(uint32_t addr, void* out, size_t len) override;
  bool program(uint32_t addr, const void* data, size_t len) override;
  bool erase(uint32_t sector) override;

 private:
  const esp_partition_t* partition_ = nullptr;
};
