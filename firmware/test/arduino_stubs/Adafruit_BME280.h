#pragma once
#include <Wire.h>
#include <stdint.h>
class Adafruit_BME280 {
 public:
  bool begin(uint8_t addr, TwoWire* theWire);
  float readTemperature(void);
  float readPressure(void);
  float readHumidity(void);
};
