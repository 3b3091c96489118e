// The run-time configuration: validation, the hub URL forms, the store over NVS (with values that fail
// validation, failed writes, build defaults) and the factory-reset button's hold detection.
#include <unity.h>

#include <string>

#include "../support/mem_kv.h"
#include "hub_config.h"
#include "suites.h"

using namespace esp32hub;

namespace {

std::string endpoint(const char* url, const char* path) {
  char out[200];
  size_t n = hubEndpointUrl(url, path, out, sizeof out);
  return n == 0 ? "<invalid>" : std::string(out, n);
}
std::string page(const char* url, const char* id) {
  char out[250];
  size_t n = hubPageUrl(url, id, out, sizeof out);
  return n == 0 ? "<invalid>" : std::string(out, n);
}

void test_hub_urls_are_parsed_and_checked() {
  HubUrl u;
  TEST_ASSERT_TRUE(parseHubUrl(Str::of("ws://192.168.1.10:8080"), u));
  TEST_ASSERT_FALSE(u.tls);
  TEST_ASSERT_EQUAL_STRING("192.168.1.10", u.host);
  TEST_ASSERT_EQUAL_UINT(8080, u.port);
  TEST_ASSERT_EQUAL_STRING("", u.prefix);
  TEST_ASSERT_TRUE(parseHubUrl(Str::of("wss://hub.example.net/esp32hub/"), u));
  TEST_ASSERT_TRUE(u.tls);
  TEST_ASSERT_EQUAL_UINT(443, u.port);
  TEST_ASSERT_EQUAL_STRING("/esp32hub", u.prefix);
  TEST_ASSERT_TRUE(parseHubUrl(Str::of("ws://hub"), u));
  TEST_ASSERT_EQUAL_UINT(80, u.port);
  TEST_ASSERT_TRUE(parseHubUrl(Str::of("ws://hub:65535"), u));
  for (const char* bad : {"", "http://hub", "ws:/hub", "ws://", "ws:///x", "ws://hub:0", "ws://hub:65536", "ws://hub:",
                          "ws://hub:80x", "ws://us@hub", "ws://hub/?q", "ws://hub/#x", "ws://hub lan", "ws://-hub",
                          "WS://hub", "ws://[::1]:8080", "ws://hub\\x"}) {
    TEST_ASSERT_TRUE_MESSAGE(!parseHubUrl(Str::of(bad), u), bad);
  }
  std::string longest = "ws://h" + std::string(122, 'a');
  TEST_ASSERT_TRUE(parseHubUrl(Str::of(longest.c_str()), u));
  std::string tooLong = longest + "a";
  TEST_ASSERT_FALSE(parseHubUrl(Str::of(tooLong.c_str()), u));
}

void test_endpoints_and_the_page_url_are_built_from_the_base() {
  TEST_ASSERT_EQUAL_STRING("ws://192.168.1.10:8080/v1/enroll", endpoint("ws://192.168.1.10:8080", "/v1/enroll").c_str());
  TEST_ASSERT_EQUAL_STRING("wss://hub.example.net/esp32hub/v1/device",
                           endpoint("wss://hub.example.net/esp32hub/", "/v1/device").c_str());
  TEST_ASSERT_EQUAL_STRING("<invalid>", endpoint("http://hub", "/v1/device").c_str());
  TEST_ASSERT_EQUAL_STRING("http://192.168.1.10:8080/#/device/esp32-a4cf12345678",
                           page("ws://192.168.1.10:8080", "esp32-a4cf12345678").c_str());
  TEST_ASSERT_EQUAL_STRING("https://hub.example.net/esp32hub/#/device/greenhouse-1",
                           page("wss://hub.example.net/esp32hub//", "greenhouse-1").c_str());
  TEST_ASSERT_EQUAL_STRING("<invalid>", page("ws://hub", "bad id").c_str());
  char small[10];
  TEST_ASSERT_EQUAL_INT(0, hubPageUrl("ws://hub", "abc", small, sizeof small));  // does not fit: 0, not clipped
}

void test_field_validation() {
  TEST_ASSERT_TRUE(validSsid(Str::of("MyWirelessAP")));
  TEST_ASSERT_FALSE(validSsid(Str::of("")));
  TEST_ASSERT_FALSE(validSsid(Str::of(std::string(33, 's').c_str())));
  TEST_ASSERT_TRUE(validWifiPassword(Str::of("")));
  TEST_ASSERT_FALSE(validWifiPassword(Str::of("short")));
  TEST_ASSERT_TRUE(validWifiPassword(Str::of(std::string(64, 'p').c_str())));
  TEST_ASSERT_FALSE(validWifiPassword(Str::of(std::string(65, 'p').c_str())));
  TEST_ASSERT_FALSE(validWifiPassword(Str::of("pass\x01word")));
  TEST_ASSERT_TRUE(validDeviceId(Str::of("esp32-a4cf12345678")));
  TEST_ASSERT_FALSE(validDeviceId(Str::of("esp32 a4")));
  TEST_ASSERT_FALSE(validDeviceId(Str::of("")));
  TEST_ASSERT_TRUE(validToken(Str::of("esp32hub_abc123")));
  TEST_ASSERT_FALSE(validToken(Str::of("has space")));
  TEST_ASSERT_FALSE(validToken(Str::of(std::string(65, 't').c_str())));
  TEST_ASSERT_TRUE(validFleetSecret(Str::of("")));
  TEST_ASSERT_TRUE(validFleetSecret(Str::of("fleet secret ü")));
  TEST_ASSERT_FALSE(validFleetSecret(Str::of(std::string(65, 'x').c_str())));
}

void test_the_store_round_trips_and_ignores_values_that_fail_validation() {
  MemKv kv;
  ConfigStore store(kv);
  TEST_ASSERT_TRUE(store.setWifi(Str::of("home"), Str::of("homepassword")));
  TEST_ASSERT_TRUE(store.setHubUrl(Str::of("ws://hub.lan:8080/")));
  TEST_ASSERT_TRUE(store.setCredentials(Str::of("greenhouse-1"), Str::of("esp32hub_tok")));
  TEST_ASSERT_TRUE(store.setFleetSecret(Str::of("s3cret")));
  ConfigStore again(kv);
  again.load();
  const DeviceConfig& c = again.config();
  TEST_ASSERT_EQUAL_STRING("home", c.wifiSsid);
  TEST_ASSERT_EQUAL_STRING("homepassword", c.wifiPassword);
  TEST_ASSERT_EQUAL_STRING("ws://hub.lan:8080", c.hubUrl);
  TEST_ASSERT_EQUAL_STRING("greenhouse-1", c.deviceId);
  TEST_ASSERT_EQUAL_STRING("esp32hub_tok", c.token);
  TEST_ASSERT_EQUAL_STRING("s3cret", c.fleetSecret);
  TEST_ASSERT_EQUAL_INT(0, again.sources().invalidMask);
  // A corrupted token: the pair counts as absent (the board enrolls instead of sending a bad token).
  kv.setStr(cfgkey::kToken, "bad token");
  kv.setStr(cfgkey::kHubUrl, "http://hub.lan");
  again.load();
  TEST_ASSERT_FALSE(again.config().hasCredentials());
  TEST_ASSERT_EQUAL_STRING("", again.config().deviceId);
  TEST_ASSERT_FALSE(again.config().hasHub());
  TEST_ASSERT_EQUAL_INT(4 | 16, again.sources().invalidMask);
  // The setters refuse invalid values without touching the store.
  int writes = kv.writes;
  TEST_ASSERT_FALSE(store.setHubUrl(Str::of("ftp://hub")));
  TEST_ASSERT_FALSE(store.setWifi(Str::of(""), Str::of("")));
  TEST_ASSERT_FALSE(store.setCredentials(Str::of("id"), Str::of("")));
  TEST_ASSERT_EQUAL_INT(writes, kv.writes);
}

void test_a_new_hub_url_forgets_the_credentials_and_a_rejection() {
  MemKv kv;
  ConfigStore store(kv);
  store.setHubUrl(Str::of("ws://hub-a.lan"));
  store.setCredentials(Str::of("board-1"), Str::of("esp32hub_tok"));
  TEST_ASSERT_TRUE(store.setHubUrl(Str::of("ws://hub-a.lan/")));  // the same hub
  TEST_ASSERT_TRUE(store.config().hasCredentials());
  TEST_ASSERT_TRUE(store.setHubUrl(Str::of("ws://hub-b.lan")));
  TEST_ASSERT_FALSE(store.config().hasCredentials());
  TEST_ASSERT_EQUAL_STRING("<absent>", kv.str(cfgkey::kToken).c_str());
  TEST_ASSERT_TRUE(store.setEnrollRejected());
  ConfigStore again(kv);
  again.load();
  TEST_ASSERT_TRUE(again.config().enrollRejected);
  TEST_ASSERT_TRUE(again.setHubUrl(Str::of("ws://hub-c.lan")));
  TEST_ASSERT_FALSE(again.config().enrollRejected);
  TEST_ASSERT_EQUAL_STRING("<absent>", kv.str(cfgkey::kEnrollRejected).c_str());
}

void test_a_failed_write_leaves_the_configuration_as_it_was() {
  MemKv kv;
  ConfigStore store(kv);
  store.setHubUrl(Str::of("ws://hub.lan"));
  kv.failWrites = true;
  TEST_ASSERT_FALSE(store.setCredentials(Str::of("board-1"), Str::of("esp32hub_tok")));
  TEST_ASSERT_FALSE(store.config().hasCredentials());
  TEST_ASSERT_FALSE(store.setHubUrl(Str::of("ws://other.lan")));
  TEST_ASSERT_EQUAL_STRING("ws://hub.lan", store.config().hubUrl);
}

uint32_t counter(void* ctx) { return ++*static_cast<uint32_t*>(ctx); }

void test_the_enroll_key_is_made_once_and_kept() {
  MemKv kv;
  ConfigStore store(kv);
  uint32_t n = 0x10;
  TEST_ASSERT_TRUE(store.ensureEnrollKey(counter, &n));
  TEST_ASSERT_EQUAL_INT(16, kv.values[cfgkey::kEnrollKey].size());
  TEST_ASSERT_EQUAL_UINT(0x11, store.config().enrollKey[0]);
  TEST_ASSERT_EQUAL_UINT(0x14, store.config().enrollKey[12]);
  ConfigStore again(kv);
  again.load();
  TEST_ASSERT_TRUE(again.config().hasEnrollKey);
  TEST_ASSERT_TRUE(again.ensureEnrollKey(counter, &n));
  TEST_ASSERT_EQUAL_UINT(0x14, n);  // not drawn again
  TEST_ASSERT_EQUAL_UINT(0x11, again.config().enrollKey[0]);
  // A stored key of the wrong size is no key: a new one is made.
  kv.values[cfgkey::kEnrollKey].resize(5);
  again.load();
  TEST_ASSERT_FALSE(again.config().hasEnrollKey);
  TEST_ASSERT_EQUAL_INT(32, again.sources().invalidMask);
}

void test_build_defaults_fill_only_what_the_store_lacks() {
  MemKv kv;
  BuildDefaults d;
  d.wifiSsid = "devnet";
  d.wifiPassword = "devpassword";
  d.hubUrl = "ws://dev.lan:8080";
  d.deviceId = "dev-board";
  d.token = "esp32hub_dev";
  ConfigStore store(kv);
  store.load();
  store.applyBuildDefaults(d);
  TEST_ASSERT_EQUAL_STRING("devnet", store.config().wifiSsid);
  TEST_ASSERT_EQUAL_STRING("ws://dev.lan:8080", store.config().hubUrl);
  TEST_ASSERT_EQUAL_STRING("dev-board", store.config().deviceId);
  TEST_ASSERT_TRUE(store.sources().wifiFromBuild && store.sources().hubFromBuild && store.sources().credentialsFromBuild);
  TEST_ASSERT_EQUAL_INT(0, kv.values.size());  // nothing written
  // Provisioned values win, group by group; an id without a token is no credential.
  store.setWifi(Str::of("fleetnet"), Str::of("fleetpassword"));
  ConfigStore again(kv);
  again.load();
  d.token = "";
  again.applyBuildDefaults(d);
  TEST_ASSERT_EQUAL_STRING("fleetnet", again.config().wifiSsid);
  TEST_ASSERT_EQUAL_STRING("fleetpassword", again.config().wifiPassword);
  TEST_ASSERT_FALSE(again.sources().wifiFromBuild);
  TEST_ASSERT_EQUAL_STRING("ws://dev.lan:8080", again.config().hubUrl);
  TEST_ASSERT_FALSE(again.config().hasCredentials());
  // An invalid default is ignored.
  BuildDefaults bad;
  bad.hubUrl = "dev.lan:8080";
  ConfigStore third(kv);
  third.load();
  third.applyBuildDefaults(bad);
  TEST_ASSERT_FALSE(third.config().hasHub());
}

void test_factory_reset_clears_everything() {
  MemKv kv;
  ConfigStore store(kv);
  uint32_t n = 1;
  store.setWifi(Str::of("home"), Str::of("homepassword"));
  store.setHubUrl(Str::of("ws://hub.lan"));
  store.setCredentials(Str::of("board-1"), Str::of("esp32hub_tok"));
  store.ensureEnrollKey(counter, &n);
  store.setEnrollRejected();
  TEST_ASSERT_TRUE(store.factoryReset());
  TEST_ASSERT_EQUAL_INT(0, kv.values.size());
  TEST_ASSERT_FALSE(store.config().hasWifi() || store.config().hasHub() || store.config().hasCredentials() ||
                    store.config().hasEnrollKey || store.config().enrollRejected);
}

void test_the_button_must_be_held_without_a_break() {
  HoldDetector h(5000);
  TEST_ASSERT_FALSE(h.update(false, 0));
  TEST_ASSERT_FALSE(h.update(true, 100));
  TEST_ASSERT_FALSE(h.update(true, 5099));
  TEST_ASSERT_EQUAL_UINT(4999, h.heldMs(5099));
  TEST_ASSERT_TRUE(h.update(true, 5100));
  TEST_ASSERT_FALSE(h.update(true, 9000));  // once per press
  TEST_ASSERT_FALSE(h.update(true, 20000));
  TEST_ASSERT_FALSE(h.update(false, 20001));
  TEST_ASSERT_EQUAL_UINT(0, h.heldMs(20001));
  // A short release starts the count again: 3 s + 3 s is not a 5 s hold.
  TEST_ASSERT_FALSE(h.update(true, 30000));
  TEST_ASSERT_FALSE(h.update(true, 33000));
  TEST_ASSERT_FALSE(h.update(false, 33010));
  TEST_ASSERT_FALSE(h.update(true, 33020));
  TEST_ASSERT_FALSE(h.update(true, 38000));
  TEST_ASSERT_TRUE(h.update(true, 38020));
  // A button stuck down from boot (pressed at the first sample) fires once after 5 s, then never again.
  HoldDetector stuck(5000);
  int fired = 0;
  for (uint64_t t = 0; t <= 60000; t += 10) fired += stuck.update(true, t) ? 1 : 0;
  TEST_ASSERT_EQUAL_INT(1, fired);
}

}  // namespace

void run_config_tests() {
  RUN_TEST(test_hub_urls_are_parsed_and_checked);
  RUN_TEST(test_endpoints_and_the_page_url_are_built_from_the_base);
  RUN_TEST(test_field_validation);
  RUN_TEST(test_the_store_round_trips_and_ignores_values_that_fail_validation);
  RUN_TEST(test_a_new_hub_url_forgets_the_credentials_and_a_rejection);
  RUN_TEST(test_a_failed_write_leaves_the_configuration_as_it_was);
  RUN_TEST(test_the_enroll_key_is_made_once_and_kept);
  RUN_TEST(test_build_defaults_fill_only_what_the_store_lacks);
  RUN_TEST(test_factory_reset_clears_everything);
  RUN_TEST(test_the_button_must_be_held_without_a_break);
}
