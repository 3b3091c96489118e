// Links the portable core for the ESP32-C3's instruction set (rv32imc, ilp32) against picolibc, so the
// cross-build proves more than that each file compiles: every symbol the core needs is there. The
// ports are empty; the program is never run. Built by `make -C firmware/test riscv-check`.
#include "hub_protocol.h"

using namespace esp32hub;

namespace {

struct NullTransport : Transport {
  void open() override {}
  void close() override {}
  bool send(const uint8_t*, size_t) override { return true; }
};

struct NullClock : Clock {
  uint64_t ms = 0;
  uint64_t uptimeMs() override { return ms++; }
  bool unixMs(uint64_t&) override { return false; }
  void setUnixMs(uint64_t) override {}
  uint32_t random32() override { return 7; }
};

struct NullHooks : DeviceHooks {
  CommandStatus applySampleInterval(uint32_t) override { return CommandStatus::Ok; }
  CommandStatus identify(uint32_t) override { return CommandStatus::Ok; }
  void reboot() override {}
};

struct NullFlash : Flash {
  uint32_t sectorSize() const override { return 4096; }
  uint32_t sectorCount() const override { return 2; }
  bool read(uint32_t, void*, size_t) override { return false; }
  bool program(uint32_t, const void*, size_t) override { return false; }
  bool erase(uint32_t) override { return false; }
};

NullTransport transport;
NullClock clock0;
NullHooks hooks;
NullFlash flash;
FlashOutbox outbox;
SessionConfig config;
Session session(config, transport, clock0, hooks, outbox);

}  // namespace

// The target has no C++ runtime library; the core needs only these two (its virtual destructors).
void operator delete(void*, unsigned int) noexcept {}
void operator delete(void*) noexcept {}
extern "C" void __cxa_pure_virtual() {
  for (;;) {
  }
}

int main() {
  outbox.mount(flash);
  config.bootId = bootIdFor(1, 0x1234);
  ChannelDescriptor d[Session::kMaxChannels];
  session.begin(d, boardDescriptors(0xFFFF, 10000, d, Session::kMaxChannels));
  session.setNetworkUp(true);
  for (int i = 0; i < 4; i++) session.poll();
  session.recordValue(channel::kTemperature, 21.5);
  session.flush();
  return static_cast<int>(session.state());
}
