// What `npm run hub -- ota keygen` writes (server/ota/signing.ts publicKeyHeader), with the OTA host
// tests' public key: the arduino-check compiles src/ota_update.cpp once with it on the include path.
#pragma once
static const char OTA_PUBLIC_KEY_PEM[] =
  "-----BEGIN PUBLIC KEY-----\n"
  "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEbQJc64wZouDsoLCQ+OWCjAk/vaW3\n"
  "0p2tf26+eOWJCrwLxXJ3twi4Frz438y5/i3aLcYxRQUglLHu5JfU2V+xEA==\n"
  "-----END PUBLIC KEY-----\n";
