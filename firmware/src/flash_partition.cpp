#include "flash_partition.h"

bool PartitionFlash::begin(const char* label) {
  partition_ = esp_partition_find_first(ESP_PARTITION_TYPE_DATA, static_cast<esp_partition_subtype_t>(kSubtype), label);
  return partition_ != nullptr;
}

// Each call blocks the calling task while the SPI flash works (the caches are off meanwhile): a record
// program (≤ 1 KiB) takes well under a millisecond to ~3 ms, a sector erase ~45 ms typical (up to ~400 ms
// on some parts). README "What blocks, and for how long".
bool PartitionFlash::read(uint32_t addr, void* out, size_t len) {
  return partition_ != nullptr && esp_partition_read(partition_, addr, out, len) == ESP_OK;
}

bool PartitionFlash::program(uint32_t addr, const void* data, size_t len) {
  return partition_ != nullptr && esp_partition_write(partition_, addr, data, len) == ESP_OK;
}

bool PartitionFlash::erase(uint32_t sector) {
  return partition_ != nullptr && esp_partition_erase_range(partition_, sector * 4096u, 4096u) == ESP_OK;
}
