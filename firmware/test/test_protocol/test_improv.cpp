// Improv Serial: the parser, encoder and RPC handling against the standard's byte layouts
// (firmware/test/improv-cases.json, made from the spec independently of this code) and the service's
// behaviour with a scripted radio and an in-memory NVS.
#include <unity.h>

#include <string>
#include <vector>

#include "../support/json.h"
#include "../support/mem_kv.h"
#include "../support/message_json.h"
#include "hub_improv.h"
#include "suites.h"

using namespace esp32hub;
using namespace esp32hub::improv;

namespace {

testjson::Value gImprov;

const testjson::Value& cases() {
  if (gImprov.isNull()) gImprov = testjson::Parser(readFile(repoPath("firmware/test/improv-cases.json"))).parseDocument();
  return gImprov;
}

std::string hex(const uint8_t* p, size_t n) { return testmsg::toHex(p, n); }
std::vector<uint8_t> bytesOf(const testjson::Value& v) { return testmsg::fromHex(v.asString()); }

/** A packet as the test reads it back from the board's output, independently of the Parser. */
struct Out {
  uint8_t type;
  std::vector<uint8_t> data;
};

/** Splits the service's output (packet + '\n', …), checking magic, version, checksum and newline. */
std::vector<Out> split(const std::vector<uint8_t>& b) {
  std::vector<Out> out;
  size_t i = 0;
  while (i < b.size()) {
    if (b.size() - i < 11 || memcmp(&b[i], "IMPROV\x01", 7) != 0) throw std::runtime_error("not a packet at " + std::to_string(i));
    uint8_t len = b[i + 8];
    size_t end = i + 9 + len;
    if (end + 1 >= b.size()) throw std::runtime_error("short packet");
    uint32_t sum = 0;
    for (size_t k = i; k < end; k++) sum += b[k];
    if ((sum & 0xFF) != b[end]) throw std::runtime_error("bad checksum in the board's output");
    if (b[end + 1] != '\n') throw std::runtime_error("packet not followed by a newline");
    out.push_back({b[i + 7], std::vector<uint8_t>(b.begin() + static_cast<long>(i) + 9, b.begin() + static_cast<long>(end))});
    i = end + 2;
  }
  return out;
}

/** The strings of an RPC result's data (command, length, strings). */
std::vector<std::string> strings(const Out& o) {
  std::vector<std::string> s;
  size_t p = 2;
  while (p < o.data.size()) {
    s.emplace_back(reinterpret_cast<const char*>(&o.data[p + 1]), o.data[p]);
    p += 1 + o.data[p];
  }
  return s;
}

struct FakePort : ImprovPort {
  std::vector<uint8_t> written;
  std::vector<std::string> joins;
  Join status = Join::InProgress;
  bool connected = false;
  std::vector<std::pair<std::string, int16_t>> networks;
  void write(const uint8_t* b, size_t n) override { written.insert(written.end(), b, b + n); }
  void joinWifi(const char* ssid, const char* password) override { joins.push_back(std::string(ssid) + "/" + password); }
  Join joinStatus() override { return status; }
  bool wifiConnected() override { return connected; }
  uint8_t scanNetworks() override { return static_cast<uint8_t>(networks.size()); }
  bool scannedNetwork(uint8_t i, char* ssid, size_t cap, int16_t& rssi, bool& secured) override {
    snprintf(ssid, cap, "%s", networks[i].first.c_str());
    rssi = networks[i].second;
    secured = networks[i].second > -70;
    return true;
  }
  std::vector<Out> take() {
    std::vector<Out> o = split(written);
    written.clear();
    return o;
  }
};

struct Rig {
  MemKv kv;
  ConfigStore config{kv};
  FakePort port;
  DeviceInfo info;
  Service service{port, config, makeInfo()};
  uint64_t now = 1000;
  DeviceInfo makeInfo() {
    info.firmwareVersion = "0.1.0";
    info.chip = "ESP32-C3";
    info.hardwareId = "esp32-a4cf12345678";
    return info;
  }
  void send(const std::vector<uint8_t>& b) {
    for (uint8_t x : b) service.onByte(x, now);
  }
  void rpc(uint8_t command, const std::vector<uint8_t>& data) {
    uint8_t buf[300];
    size_t n = encodeRpcCommand(command, data.data(), data.size(), buf, sizeof buf);
    TEST_ASSERT_TRUE(n > 0);
    send(std::vector<uint8_t>(buf, buf + n));
  }
};

std::vector<uint8_t> str8(const std::string& s) {
  std::vector<uint8_t> v{static_cast<uint8_t>(s.size())};
  v.insert(v.end(), s.begin(), s.end());
  return v;
}
std::vector<uint8_t> cat(std::vector<uint8_t> a, const std::vector<uint8_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

/** Feeds bytes to a fresh parser: the packets and bad checksums it reports. */
struct ParseRun {
  std::vector<Out> packets;
  int badChecksums = 0;
};
ParseRun parseAll(const std::vector<uint8_t>& b) {
  Parser p;
  ParseRun r;
  for (uint8_t x : b) {
    Parser::Result res = p.feed(x, 0);
    if (res == Parser::Result::Packet) r.packets.push_back({p.type(), std::vector<uint8_t>(p.data(), p.data() + p.dataLen())});
    if (res == Parser::Result::BadChecksum) r.badChecksums++;
  }
  return r;
}

// ───────────────────────────── vectors ─────────────────────────────

void test_state_and_error_packets_match_the_standard_bytes() {
  int n = 0;
  for (const testjson::Value& c : cases()["packets"].items) {
    std::vector<uint8_t> data = bytesOf(c["data"]);
    uint8_t buf[300];
    size_t len = encodePacket(static_cast<uint8_t>(c["type"].asInt()), data.data(), data.size(), buf, sizeof buf);
    TEST_ASSERT_EQUAL_STRING_MESSAGE(c["bytes"].asString().c_str(), hex(buf, len).c_str(), c["name"].asString().c_str());
    if (c["type"].asInt() == 1) {
      len = encodeState(static_cast<State>(data[0]), buf, sizeof buf);
    } else {
      len = encodeError(static_cast<Error>(data[0]), buf, sizeof buf);
    }
    TEST_ASSERT_EQUAL_STRING_MESSAGE(c["bytes"].asString().c_str(), hex(buf, len).c_str(), c["name"].asString().c_str());
    ParseRun r = parseAll(bytesOf(c["bytes"]));
    TEST_ASSERT_EQUAL_INT(1, r.packets.size());
    TEST_ASSERT_EQUAL_INT(c["type"].asInt(), r.packets[0].type);
    TEST_ASSERT_EQUAL_STRING(c["data"].asString().c_str(), hex(r.packets[0].data.data(), r.packets[0].data.size()).c_str());
    n++;
  }
  TEST_ASSERT_EQUAL_INT(8, n);
}

void test_rpc_commands_encode_and_parse_as_the_standard_lays_them_out() {
  for (const testjson::Value& c : cases()["rpcCommands"].items) {
    const char* name = c["name"].asString().c_str();
    std::vector<uint8_t> data = bytesOf(c["data"]);
    uint8_t command = static_cast<uint8_t>(c["command"].asInt());
    uint8_t buf[300];
    size_t len = encodeRpcCommand(command, data.data(), data.size(), buf, sizeof buf);
    TEST_ASSERT_EQUAL_STRING_MESSAGE(c["bytes"].asString().c_str(), hex(buf, len).c_str(), name);
    ParseRun r = parseAll(bytesOf(c["bytes"]));
    TEST_ASSERT_EQUAL_INT_MESSAGE(1, r.packets.size(), name);
    TEST_ASSERT_EQUAL_INT(3, r.packets[0].type);
    RpcCommand rpc;
    TEST_ASSERT_EQUAL_INT_MESSAGE(0, static_cast<int>(parseRpc(r.packets[0].data.data(), static_cast<uint8_t>(r.packets[0].data.size()), rpc)), name);
    TEST_ASSERT_EQUAL_INT(command, rpc.command);
    TEST_ASSERT_EQUAL_STRING(c["data"].asString().c_str(), hex(rpc.data, rpc.len).c_str());
    const testjson::Value& parsed = c["parsed"];
    if (command == cmd::kWifiSettings) {
      WifiSettings w;
      TEST_ASSERT_EQUAL_INT_MESSAGE(0, static_cast<int>(parseWifiSettings(rpc, w)), name);
      TEST_ASSERT_EQUAL_STRING(parsed["ssid"].asString().c_str(), std::string(w.ssid.data, w.ssid.len).c_str());
      TEST_ASSERT_EQUAL_STRING(parsed["password"].asString().c_str(), std::string(w.password.data, w.password.len).c_str());
    } else if (command == cmd::kSetHub) {
      SetHub h;
      TEST_ASSERT_EQUAL_INT_MESSAGE(0, static_cast<int>(parseSetHub(rpc, h)), name);
      TEST_ASSERT_EQUAL(parsed.find("query") != nullptr, h.query);
      if (!h.query) TEST_ASSERT_EQUAL_STRING(parsed["url"].asString().c_str(), std::string(h.url.data, h.url.len).c_str());
      TEST_ASSERT_EQUAL(parsed.find("secret") != nullptr, h.hasSecret);
      if (h.hasSecret) TEST_ASSERT_EQUAL_STRING(parsed["secret"].asString().c_str(), std::string(h.secret.data, h.secret.len).c_str());
    }
  }
}

void test_rpc_results_encode_as_the_standard_lays_them_out() {
  for (const testjson::Value& c : cases()["rpcResults"].items) {
    std::vector<std::string> texts;
    for (const testjson::Value& s : c["strings"].items) texts.push_back(s.asString());
    std::vector<Str> strs;
    for (const std::string& t : texts) strs.push_back(Str{t.data(), static_cast<uint8_t>(t.size())});
    uint8_t buf[300];
    size_t len = encodeRpcResult(static_cast<uint8_t>(c["command"].asInt()), strs.data(), strs.size(), buf, sizeof buf);
    TEST_ASSERT_EQUAL_STRING_MESSAGE(c["bytes"].asString().c_str(), hex(buf, len).c_str(), c["name"].asString().c_str());
  }
  // A result over 255 data bytes cannot be one packet: refused, not truncated.
  std::string big(200, 'x');
  Str two[2] = {Str{big.data(), 200}, Str{big.data(), 60}};
  uint8_t buf[600];
  TEST_ASSERT_EQUAL_INT(0, encodeRpcResult(0x80, two, 2, buf, sizeof buf));
}

void test_malformed_packets_are_refused_with_the_standard_error_codes() {
  for (const testjson::Value& c : cases()["malformed"].items) {
    const std::string name = c["name"].asString();
    std::vector<uint8_t> bytes = bytesOf(c["bytes"]);
    ParseRun r = parseAll(bytes);
    const std::string& expect = c["parser"].asString();
    if (expect == "bad-checksum") {
      TEST_ASSERT_EQUAL_INT_MESSAGE(1, r.badChecksums, name.c_str());
      TEST_ASSERT_EQUAL_INT_MESSAGE(0, r.packets.size(), name.c_str());
    } else if (expect == "packet") {
      TEST_ASSERT_EQUAL_INT_MESSAGE(1, r.packets.size(), name.c_str());
    } else {
      TEST_ASSERT_EQUAL_INT_MESSAGE(0, r.packets.size() + static_cast<size_t>(r.badChecksums), name.c_str());
    }
    Rig rig;
    rig.send(bytes);
    std::vector<Out> out = rig.port.take();
    if (c.find("error") != nullptr) {
      TEST_ASSERT_TRUE_MESSAGE(!out.empty(), name.c_str());
      TEST_ASSERT_EQUAL_INT_MESSAGE(2, out.back().type, name.c_str());  // the last word is an error state
      TEST_ASSERT_EQUAL_INT_MESSAGE(c["error"].asInt(), out.back().data[0], name.c_str());
    } else {
      TEST_ASSERT_EQUAL_INT_MESSAGE(0, out.size(), name.c_str());
    }
    TEST_ASSERT_EQUAL_INT_MESSAGE(0, rig.kv.values.size(), name.c_str());  // nothing stored
    TEST_ASSERT_EQUAL_INT_MESSAGE(0, rig.port.joins.size(), name.c_str());
  }
}

void test_packets_are_found_among_log_output() {
  for (const testjson::Value& c : cases()["streams"].items) {
    const std::string name = c["name"].asString();
    ParseRun r = parseAll(bytesOf(c["bytes"]));
    TEST_ASSERT_EQUAL_INT_MESSAGE(c["packets"].size(), r.packets.size(), name.c_str());
    for (size_t i = 0; i < r.packets.size(); i++) {
      TEST_ASSERT_EQUAL_INT_MESSAGE(c["packets"][i]["type"].asInt(), r.packets[i].type, name.c_str());
      TEST_ASSERT_EQUAL_STRING_MESSAGE(c["packets"][i]["data"].asString().c_str(),
                                       hex(r.packets[i].data.data(), r.packets[i].data.size()).c_str(), name.c_str());
    }
    int bad = c.find("badChecksums") != nullptr ? static_cast<int>(c["badChecksums"].asInt()) : 0;
    TEST_ASSERT_EQUAL_INT_MESSAGE(bad, r.badChecksums, name.c_str());
  }
}

void test_a_truncated_packet_is_dropped_after_a_pause_and_the_next_one_parses() {
  Parser p;
  uint8_t buf[64];
  uint8_t data[2] = {cmd::kDeviceInfo, 0};
  size_t n = encodePacket(3, data, 2, buf, sizeof buf);
  for (size_t i = 0; i + 3 < n; i++) TEST_ASSERT_TRUE(p.feed(buf[i], 100) == Parser::Result::None);
  // 1.5 s later a whole packet: without the gap rule its bytes would be taken as the rest of the first.
  Parser::Result last = Parser::Result::None;
  for (size_t i = 0; i < n; i++) last = p.feed(buf[i], 1600);
  TEST_ASSERT_TRUE(last == Parser::Result::Packet);
  TEST_ASSERT_EQUAL_INT(1, p.truncated());
  // Within the gap the truncated packet swallows the next one's bytes: reported as a bad checksum or
  // nothing, never as a packet; the one after that parses again.
  Parser q;
  int packets = 0;
  for (size_t i = 0; i + 3 < n; i++) q.feed(buf[i], 0);
  for (int k = 0; k < 3; k++)
    for (size_t i = 0; i < n; i++) packets += q.feed(buf[i], 10) == Parser::Result::Packet ? 1 : 0;
  TEST_ASSERT_TRUE(packets >= 1 && packets <= 2);
}

// ───────────────────────────── the service ─────────────────────────────

void test_wifi_provisioning_joins_then_stores_and_redirects_to_the_hub_page() {
  Rig rig;
  rig.config.setHubUrl(Str::of("ws://192.168.1.10:8080"));
  rig.rpc(cmd::kWifiSettings, cat(str8("MyWirelessAP"), str8("mysecurepassword")));
  std::vector<Out> out = rig.port.take();
  TEST_ASSERT_EQUAL_INT(2, out.size());
  TEST_ASSERT_EQUAL_INT(2, out[0].type);  // error state 0: cleared
  TEST_ASSERT_EQUAL_INT(0, out[0].data[0]);
  TEST_ASSERT_EQUAL_INT(1, out[1].type);  // provisioning
  TEST_ASSERT_EQUAL_INT(3, out[1].data[0]);
  TEST_ASSERT_EQUAL_INT(1, rig.port.joins.size());
  TEST_ASSERT_EQUAL_STRING("MyWirelessAP/mysecurepassword", rig.port.joins[0].c_str());
  TEST_ASSERT_TRUE(rig.service.state() == State::Provisioning);
  rig.service.poll(rig.now + 5000);
  TEST_ASSERT_EQUAL_STRING("<absent>", rig.kv.str(cfgkey::kWifiSsid).c_str());  // not before it joined
  TEST_ASSERT_EQUAL_INT(0, rig.port.take().size());
  rig.port.status = ImprovPort::Join::Connected;
  rig.port.connected = true;
  rig.service.poll(rig.now + 6000);
  out = rig.port.take();
  TEST_ASSERT_EQUAL_INT(2, out.size());
  TEST_ASSERT_EQUAL_INT(1, out[0].type);
  TEST_ASSERT_EQUAL_INT(4, out[0].data[0]);  // provisioned
  TEST_ASSERT_EQUAL_INT(4, out[1].type);
  TEST_ASSERT_EQUAL_INT(cmd::kWifiSettings, out[1].data[0]);
  std::vector<std::string> s = strings(out[1]);
  TEST_ASSERT_EQUAL_INT(1, s.size());
  TEST_ASSERT_EQUAL_STRING("http://192.168.1.10:8080/#/device/esp32-a4cf12345678", s[0].c_str());
  TEST_ASSERT_EQUAL_STRING("MyWirelessAP", rig.kv.str(cfgkey::kWifiSsid).c_str());
  TEST_ASSERT_EQUAL_STRING("mysecurepassword", rig.kv.str(cfgkey::kWifiPassword).c_str());
  TEST_ASSERT_TRUE(rig.service.takeChanged());
  TEST_ASSERT_FALSE(rig.service.takeChanged());
  // "Request current state" when provisioned: the state and the same redirect, for command 0x02.
  rig.rpc(cmd::kCurrentState, {});
  out = rig.port.take();
  TEST_ASSERT_EQUAL_INT(3, out.size());
  TEST_ASSERT_EQUAL_INT(4, out[1].data[0]);
  TEST_ASSERT_EQUAL_INT(cmd::kCurrentState, out[2].data[0]);
  TEST_ASSERT_EQUAL_STRING("http://192.168.1.10:8080/#/device/esp32-a4cf12345678", strings(out[2])[0].c_str());
}

void test_wifi_provisioning_without_a_hub_url_gives_an_empty_result() {
  Rig rig;
  rig.rpc(cmd::kWifiSettings, cat(str8("net"), str8("")));
  rig.port.status = ImprovPort::Join::Connected;
  rig.port.connected = true;
  rig.service.poll(rig.now);
  std::vector<Out> out = rig.port.take();
  TEST_ASSERT_EQUAL_INT(4, out.back().type);
  TEST_ASSERT_EQUAL_INT(0, strings(out.back()).size());
  TEST_ASSERT_EQUAL_INT(0, out.back().data[1]);
}

void test_a_failed_join_reports_unable_to_connect_and_rejoins_the_stored_network() {
  Rig rig;
  rig.config.setWifi(Str::of("home"), Str::of("homepassword"));
  rig.rpc(cmd::kWifiSettings, cat(str8("typo-net"), str8("wrongpassword")));
  rig.port.take();
  rig.port.status = ImprovPort::Join::Failed;
  rig.service.poll(rig.now + 100);
  std::vector<Out> out = rig.port.take();
  TEST_ASSERT_EQUAL_INT(2, out.size());
  TEST_ASSERT_EQUAL_INT(2, out[0].type);
  TEST_ASSERT_EQUAL_INT(3, out[0].data[0]);  // unable to connect
  TEST_ASSERT_EQUAL_INT(1, out[1].type);
  TEST_ASSERT_EQUAL_INT(2, out[1].data[0]);  // ready again
  TEST_ASSERT_EQUAL_STRING("home", rig.kv.str(cfgkey::kWifiSsid).c_str());
  TEST_ASSERT_EQUAL_STRING("home/homepassword", rig.port.joins.back().c_str());
  TEST_ASSERT_FALSE(rig.service.takeChanged());
}

void test_a_join_that_never_completes_times_out() {
  Rig rig;
  rig.rpc(cmd::kWifiSettings, cat(str8("far-away"), str8("password1")));
  rig.port.take();
  rig.service.poll(rig.now + kJoinTimeoutMs - 1);
  TEST_ASSERT_EQUAL_INT(0, rig.port.take().size());
  rig.service.poll(rig.now + kJoinTimeoutMs);
  std::vector<Out> out = rig.port.take();
  TEST_ASSERT_EQUAL_INT(3, out[0].data[0]);
  TEST_ASSERT_EQUAL_STRING("<absent>", rig.kv.str(cfgkey::kWifiSsid).c_str());
}

void test_device_info_and_scan_results() {
  Rig rig;
  rig.rpc(cmd::kDeviceInfo, {});
  std::vector<Out> out = rig.port.take();
  std::vector<std::string> s = strings(out.back());
  TEST_ASSERT_EQUAL_INT(4, s.size());
  TEST_ASSERT_EQUAL_STRING("esp32hub", s[0].c_str());
  TEST_ASSERT_EQUAL_STRING("0.1.0", s[1].c_str());
  TEST_ASSERT_EQUAL_STRING("ESP32-C3", s[2].c_str());
  TEST_ASSERT_EQUAL_STRING("esp32-a4cf12345678", s[3].c_str());
  rig.port.networks = {{"MyWirelessAP", -60}, {"", -40}, {"cafe-guest", -81}};
  rig.rpc(cmd::kScanNetworks, {});
  out = rig.port.take();
  TEST_ASSERT_EQUAL_INT(4, out.size());  // error 0, two networks (the hidden one skipped), the end
  std::vector<std::string> a = strings(out[1]), b = strings(out[2]);
  TEST_ASSERT_EQUAL_STRING("MyWirelessAP", a[0].c_str());
  TEST_ASSERT_EQUAL_STRING("-60", a[1].c_str());
  TEST_ASSERT_EQUAL_STRING("YES", a[2].c_str());
  TEST_ASSERT_EQUAL_STRING("cafe-guest", b[0].c_str());
  TEST_ASSERT_EQUAL_STRING("-81", b[1].c_str());
  TEST_ASSERT_EQUAL_STRING("NO", b[2].c_str());
  TEST_ASSERT_EQUAL_INT(0, strings(out[3]).size());
  TEST_ASSERT_EQUAL_INT(cmd::kScanNetworks, out[3].data[0]);
}

void test_set_hub_stores_the_url_and_answers_with_the_page_and_hardware_id() {
  Rig rig;
  rig.rpc(cmd::kSetHub, {});  // query before anything is set
  std::vector<std::string> s = strings(rig.port.take().back());
  TEST_ASSERT_EQUAL_INT(2, s.size());
  TEST_ASSERT_EQUAL_STRING("", s[0].c_str());
  TEST_ASSERT_EQUAL_STRING("esp32-a4cf12345678", s[1].c_str());
  TEST_ASSERT_FALSE(rig.service.takeChanged());

  rig.rpc(cmd::kSetHub, cat(str8("ws://hub.lan:8080/esp32hub/"), str8("s3cret")));
  std::vector<Out> out = rig.port.take();
  TEST_ASSERT_EQUAL_INT(0, out[0].data[0]);
  s = strings(out.back());
  TEST_ASSERT_EQUAL_STRING("http://hub.lan:8080/esp32hub/#/device/esp32-a4cf12345678", s[0].c_str());
  TEST_ASSERT_EQUAL_STRING("ws://hub.lan:8080/esp32hub", rig.kv.str(cfgkey::kHubUrl).c_str());
  TEST_ASSERT_EQUAL_STRING("s3cret", rig.kv.str(cfgkey::kFleetSecret).c_str());
  TEST_ASSERT_TRUE(rig.service.takeChanged());
  // The same URL again without a secret: nothing changes (no reconnect), the secret stays.
  rig.rpc(cmd::kSetHub, str8("ws://hub.lan:8080/esp32hub"));
  rig.port.take();
  TEST_ASSERT_FALSE(rig.service.takeChanged());
  TEST_ASSERT_EQUAL_STRING("s3cret", rig.kv.str(cfgkey::kFleetSecret).c_str());
  // An empty secret clears it.
  rig.rpc(cmd::kSetHub, cat(str8("ws://hub.lan:8080/esp32hub"), str8("")));
  rig.port.take();
  TEST_ASSERT_EQUAL_STRING("<absent>", rig.kv.str(cfgkey::kFleetSecret).c_str());
  TEST_ASSERT_TRUE(rig.service.takeChanged());
  // With credentials the page names the device id.
  rig.config.setCredentials(Str::of("greenhouse-1"), Str::of("esp32hub_tok"));
  rig.rpc(cmd::kSetHub, {});
  TEST_ASSERT_EQUAL_STRING("http://hub.lan:8080/esp32hub/#/device/greenhouse-1", strings(rig.port.take().back())[0].c_str());
}

void test_settings_are_not_reported_changed_while_a_join_is_under_way() {
  Rig rig;
  rig.rpc(cmd::kWifiSettings, cat(str8("MyWirelessAP"), str8("mysecurepassword")));
  rig.rpc(cmd::kSetHub, str8("ws://hub.lan:8080"));  // the page sends the hub before the join ends
  TEST_ASSERT_EQUAL_STRING("ws://hub.lan:8080", rig.kv.str(cfgkey::kHubUrl).c_str());
  TEST_ASSERT_FALSE(rig.service.takeChanged());
  rig.service.poll(rig.now + 1000);
  TEST_ASSERT_FALSE(rig.service.takeChanged());
  rig.port.status = ImprovPort::Join::Connected;
  rig.port.connected = true;
  rig.service.poll(rig.now + 2000);
  TEST_ASSERT_TRUE(rig.service.takeChanged());
  // The Wi-Fi result's redirect already names the hub sent meanwhile.
  std::vector<Out> out = rig.port.take();
  TEST_ASSERT_EQUAL_STRING("http://hub.lan:8080/#/device/esp32-a4cf12345678", strings(out.back())[0].c_str());
}

void test_set_hub_refuses_wss_without_a_ca_and_keeps_the_old_url() {
  Rig rig;
  rig.config.setHubUrl(Str::of("ws://old.lan"));
  rig.rpc(cmd::kSetHub, str8("wss://hub.example.net"));
  std::vector<Out> out = rig.port.take();
  TEST_ASSERT_EQUAL_INT(2, out.back().type);
  TEST_ASSERT_EQUAL_INT(1, out.back().data[0]);
  TEST_ASSERT_EQUAL_STRING("ws://old.lan", rig.kv.str(cfgkey::kHubUrl).c_str());
  // A build with a CA accepts it and answers with an https page.
  MemKv kv;
  ConfigStore config(kv);
  FakePort port;
  DeviceInfo info;
  info.hardwareId = "esp32-a4cf12345678";
  info.wssAllowed = true;
  Service svc(port, config, info);
  uint8_t buf[300];
  std::vector<uint8_t> d = str8("wss://hub.example.net");
  size_t n = encodeRpcCommand(cmd::kSetHub, d.data(), d.size(), buf, sizeof buf);
  for (size_t i = 0; i < n; i++) svc.onByte(buf[i], 0);
  TEST_ASSERT_EQUAL_STRING("https://hub.example.net/#/device/esp32-a4cf12345678", strings(port.take().back())[0].c_str());
}

void test_a_store_that_cannot_write_reports_an_error_not_success() {
  Rig rig;
  rig.kv.failWrites = true;
  rig.rpc(cmd::kSetHub, str8("ws://hub.lan"));
  std::vector<Out> out = rig.port.take();
  TEST_ASSERT_EQUAL_INT(2, out.back().type);
  TEST_ASSERT_EQUAL_INT(0xFF, out.back().data[0]);
  TEST_ASSERT_FALSE(rig.config.config().hasHub());
}

}  // namespace

void run_improv_tests() {
  RUN_TEST(test_state_and_error_packets_match_the_standard_bytes);
  RUN_TEST(test_rpc_commands_encode_and_parse_as_the_standard_lays_them_out);
  RUN_TEST(test_rpc_results_encode_as_the_standard_lays_them_out);
  RUN_TEST(test_malformed_packets_are_refused_with_the_standard_error_codes);
  RUN_TEST(test_packets_are_found_among_log_output);
  RUN_TEST(test_a_truncated_packet_is_dropped_after_a_pause_and_the_next_one_parses);
  RUN_TEST(test_wifi_provisioning_joins_then_stores_and_redirects_to_the_hub_page);
  RUN_TEST(test_wifi_provisioning_without_a_hub_url_gives_an_empty_result);
  RUN_TEST(test_a_failed_join_reports_unable_to_connect_and_rejoins_the_stored_network);
  RUN_TEST(test_a_join_that_never_completes_times_out);
  RUN_TEST(test_device_info_and_scan_results);
  RUN_TEST(test_set_hub_stores_the_url_and_answers_with_the_page_and_hardware_id);
  RUN_TEST(test_settings_are_not_reported_changed_while_a_join_is_under_way);
  RUN_TEST(test_set_hub_refuses_wss_without_a_ca_and_keeps_the_old_url);
  RUN_TEST(test_a_store_that_cannot_write_reports_an_error_not_success);
}
