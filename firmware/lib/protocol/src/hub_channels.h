// The board's channel table: stable indexes, keys, units, types and fixed-point scales. Indexes 0–7 are
// the same as the simulator's (firmware-sim/sensors.ts CHANNELS) so a dashboard cannot tell a real
// board from a simulated one; firmware/test/shared-cases.json checks that both encode identically.
#pragma once

#include "hub_types.h"

namespace esp32hub {

struct ChannelSpec {
  uint8_t index;
  const char* key;
  const char* unit;
  ValueType valueType;
  int8_t scaleExp;
  /** Sampled every `everyTicks` sample ticks; 0 = irregular (on change). periodMs = everyTicks × interval. */
  uint8_t everyTicks;
};

namespace channel {
constexpr uint8_t kTemperature = 0;  // °C, i16, 10^-2 (BME280 / DHT22)
constexpr uint8_t kHumidity = 1;     // %, u16, 10^-2 (BME280 / DHT22)
constexpr uint8_t kPressure = 2;     // hPa, u32, 10^-2 (BME280)
constexpr uint8_t kBatteryV = 3;     // V, u16, 10^-3 (ADC divider, optional)
constexpr uint8_t kRssiDbm = 4;      // dBm, i8 (Wi-Fi)
constexpr uint8_t kHeapFree = 5;     // B, u32
constexpr uint8_t kUptimeS = 6;      // s, u32
constexpr uint8_t kLed = 7;          // bool, on change (identify)
constexpr uint8_t kChipTemperature = 8;  // °C, i16, 10^-2 (on-chip sensor: ESP32-C3/S2/S3/C6)
}  // namespace channel

/** Every channel the firmware knows, in index order. */
extern const ChannelSpec kBoardChannels[];
extern const uint8_t kBoardChannelCount;

/** The spec of channel `index`, or nullptr. */
const ChannelSpec* findChannelSpec(uint8_t index);

/**
 * The DESCRIPTORS set [PROTO-3.3] for the channels whose bit is set in `mask` (bit n = index n), in
 * index order, with periodMs = everyTicks × sampleIntervalMs (as the simulator computes it).
 * Returns the number written (≤ cap).
 */
uint8_t boardDescriptors(uint32_t mask, uint32_t sampleIntervalMs, ChannelDescriptor* out, uint8_t cap);

}  // namespace esp32hub
