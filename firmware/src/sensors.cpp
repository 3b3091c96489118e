#include "sensors.h"

#include <Arduino.h>
#include <math.h>

#include "app_config.h"
#include "wifi_link.h"

#if HUB_WITH_BME280
#include <Adafruit_BME280.h>
#include <Wire.h>
static Adafruit_BME280 bme;
static bool bmeOk = false;
#endif
#if HUB_WITH_DHT22
#include <DHT.h>
static DHT dht(HUB_DHT22_PIN, DHT22);
#endif

using esp32hub::channel::kBatteryV;
using esp32hub::channel::kChipTemperature;
using esp32hub::channel::kHeapFree;
using esp32hub::channel::kHumidity;
using esp32hub::channel::kLed;
using esp32hub::channel::kPressure;
using esp32hub::channel::kRssiDbm;
using esp32hub::channel::kTemperature;
using esp32hub::channel::kUptimeS;

namespace {
constexpr uint32_t bit(uint8_t channel) { return uint32_t{1} << channel; }
}  // namespace

bool Sensors::begin(const WifiLink& wifi) {
  wifi_ = &wifi;
  intervalMs_ = HUB_SAMPLE_INTERVAL_MS;
  mask_ = bit(kRssiDbm) | bit(kHeapFree) | bit(kUptimeS) | bit(kLed);
  bool ok = true;
#if HUB_CHIP_TEMPERATURE
  mask_ |= bit(kChipTemperature);
#endif
#ifdef HUB_BATTERY_ADC_PIN
  mask_ |= bit(kBatteryV);
#endif
#if HUB_WITH_BME280
  mask_ |= bit(kTemperature) | bit(kHumidity) | bit(kPressure);
#if defined(HUB_I2C_SDA) && defined(HUB_I2C_SCL)
  Wire.begin(HUB_I2C_SDA, HUB_I2C_SCL);
#else
  Wire.begin();  // the board's default pins (ESP32 DevKit: SDA 21, SCL 22)
#endif
  bmeOk = bme.begin(HUB_BME280_ADDRESS, &Wire);
  if (!bmeOk) Serial.printf("[sensors] no BME280 at 0x%02x: its channels send \"missing\"\n", HUB_BME280_ADDRESS);
  ok = ok && bmeOk;
#endif
#if HUB_WITH_DHT22
  mask_ |= bit(kTemperature) | bit(kHumidity);
  dht.begin();
#endif
  return ok;
}

uint8_t Sensors::descriptors(esp32hub::ChannelDescriptor* out, uint8_t cap) const {
  return esp32hub::boardDescriptors(mask_, intervalMs_, out, cap);
}

void Sensors::setInterval(uint32_t ms, esp32hub::Session& session) {
  if (ms == intervalMs_) return;
  intervalMs_ = ms;
  if (started_) schedule_.setInterval(ms, lastNowMs_);
  esp32hub::ChannelDescriptor d[esp32hub::Session::kMaxChannels];
  session.setDescriptors(d, descriptors(d, esp32hub::Session::kMaxChannels));
  Serial.printf("[sensors] sample interval %lu ms\n", static_cast<unsigned long>(ms));
}

void Sensors::recordLed(bool on, esp32hub::Session& session) {
  session.record(kLed, esp32hub::Value::boolean(on));
}

void Sensors::loop(uint64_t nowMs, esp32hub::Session& session) {
  lastNowMs_ = nowMs;
  if (!started_) {
    schedule_.start(nowMs, intervalMs_);
    started_ = true;
  }
  if (schedule_.due(nowMs)) sample(nowMs, session);
}

void Sensors::sample(uint64_t nowMs, esp32hub::Session& session) {
  uint32_t n = tick_++;
  for (uint8_t i = 0; i < esp32hub::kBoardChannelCount; i++) {
    const esp32hub::ChannelSpec& spec = esp32hub::kBoardChannels[i];
    if ((mask_ & bit(spec.index)) == 0 || spec.everyTicks == 0 || n % spec.everyTicks != 0) continue;
    double v = NAN;  // NaN → a "missing" sample [PROTO-3.4]
    switch (spec.index) {
      case kRssiDbm:
        if (wifi_->up()) v = wifi_->rssi();
        break;
      case kHeapFree:
        v = ESP.getFreeHeap();
        break;
      case kUptimeS:
        v = static_cast<double>(nowMs / 1000);  // since power-on, deep sleeps included
        break;
#if HUB_CHIP_TEMPERATURE
      case kChipTemperature:
        v = temperatureRead();
        break;
#endif
#ifdef HUB_BATTERY_ADC_PIN
      case kBatteryV:
        v = analogReadMilliVolts(HUB_BATTERY_ADC_PIN) * HUB_BATTERY_DIVIDER / 1000.0;
        break;
#endif
#if HUB_WITH_BME280
      case kTemperature:
        if (bmeOk) v = bme.readTemperature();  // °C
        break;
      case kHumidity:
        if (bmeOk) v = bme.readHumidity();  // %
        break;
      case kPressure:
        if (bmeOk) v = bme.readPressure() / 100.0;  // Pa → hPa
        break;
#endif
#if HUB_WITH_DHT22
      case kTemperature:
        v = dht.readTemperature();  // °C, NaN on a failed read
        break;
      case kHumidity:
        v = dht.readHumidity();
        break;
#endif
      default:
        break;
    }
    session.recordValue(spec.index, v);  // scaled to the channel's fixed point; NaN/out of range → missing
  }
}
