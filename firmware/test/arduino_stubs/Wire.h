#pragma once
#include <stdint.h>
class TwoWire {
 public:
  bool begin();
  bool begin(int sda, int scl, uint32_t frequency = 0);
};
extern TwoWire Wire;
