#include "hub_channels.h"

namespace esp32hub {

// "\xC2\xB0" is U+00B0 DEGREE SIGN in UTF-8, spelled out so the source encoding cannot change it.
const ChannelSpec kBoardChannels[] = {
    {channel::kTemperature, "temperature", "\xC2\xB0" "C", ValueType::I16, -2, 1},
    {channel::kHumidity, "humidity", "%", ValueType::U16, -2, 1},
    {channel::kPressure, "pressure", "hPa", ValueType::U32, -2, 2},
    {channel::kBatteryV, "battery_v", "V", ValueType::U16, -3, 5},
    {channel::kRssiDbm, "rssi_dbm", "dBm", ValueType::I8, 0, 2},
    {channel::kHeapFree, "heap_free", "B", ValueType::U32, 0, 5},
    {channel::kUptimeS, "uptime_s", "s", ValueType::U32, 0, 10},
    {channel::kLed, "led", "", ValueType::Bool, 0, 0},
    {channel::kChipTemperature, "chip_temperature", "\xC2\xB0" "C", ValueType::I16, -2, 5},
};
const uint8_t kBoardChannelCount = sizeof(kBoardChannels) / sizeof(kBoardChannels[0]);

const ChannelSpec* findChannelSpec(uint8_t index) {
  for (uint8_t i = 0; i < kBoardChannelCount; i++)
    if (kBoardChannels[i].index == index) return &kBoardChannels[i];
  return nullptr;
}

uint8_t boardDescriptors(uint32_t mask, uint32_t sampleIntervalMs, ChannelDescriptor* out, uint8_t cap) {
  uint8_t n = 0;
  for (uint8_t i = 0; i < kBoardChannelCount && n < cap; i++) {
    const ChannelSpec& s = kBoardChannels[i];
    if (s.index >= 32 || (mask & (uint32_t{1} << s.index)) == 0) continue;
    ChannelDescriptor& d = out[n++];
    d.index = s.index;
    d.key = Str::of(s.key);
    d.unit = Str::of(s.unit);
    d.valueType = s.valueType;
    d.scaleExp = s.scaleExp;
    d.periodMs = s.everyTicks * sampleIntervalMs;
  }
  return n;
}

}  // namespace esp32hub
