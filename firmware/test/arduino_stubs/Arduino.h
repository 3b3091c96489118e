#pragma once
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <functional>

#define HIGH 0x1
#define LOW 0x0
#define OUTPUT 0x03
#define INPUT_PULLUP 0x05
#define ESP_ARDUINO_VERSION_MAJOR 2

class String {
 public:
  String() {}
  String(const char*) {}
  String operator+(const char*) const { return *this; }
  String operator+(const String&) const { return *this; }
  const char* c_str() const { return ""; }
  String substring(unsigned, unsigned) const { return *this; }
  bool startsWith(const char*) const { return false; }
  bool endsWith(const char*) const { return false; }
  unsigned length() const { return 0; }
};

class HardwareSerial {
 public:
  void begin(unsigned long) {}
  size_t printf(const char*, ...) __attribute__((format(printf, 2, 3))) { return 0; }
  size_t println(const char*) { return 0; }
  int available() { return 0; }
  int read() { return -1; }
  size_t write(const uint8_t*, size_t n) { return n; }
  void flush() {}
};
extern HardwareSerial Serial;

class EspClass {
 public:
  uint32_t getFreeHeap() { return 0; }
  uint64_t getEfuseMac() { return 0; }
  void restart() {}
};
extern EspClass ESP;

void pinMode(uint8_t pin, uint8_t mode);
void digitalWrite(uint8_t pin, uint8_t val);
int digitalRead(uint8_t pin);
void neopixelWrite(uint8_t pin, uint8_t red, uint8_t green, uint8_t blue);
uint32_t analogReadMilliVolts(uint8_t pin);
unsigned long millis();
void delay(uint32_t ms);
float temperatureRead();
void configTime(long gmtOffset_sec, int daylightOffset_sec, const char* server1, const char* server2 = nullptr,
                const char* server3 = nullptr);
