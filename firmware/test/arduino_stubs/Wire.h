#pragma once
class TwoWire {
 public:
  bool begin();
};
extern TwoWire Wire;
