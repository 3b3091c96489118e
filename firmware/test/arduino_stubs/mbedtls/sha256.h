// Subset of mbedTLS 2.28 (ESP-IDF 4.4) include/mbedtls/sha256.h.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct mbedtls_sha256_context {
  uint32_t total[2];
  uint32_t state[8];
  unsigned char buffer[64];
  int is224;
} mbedtls_sha256_context;
void mbedtls_sha256_init(mbedtls_sha256_context* ctx);
void mbedtls_sha256_free(mbedtls_sha256_context* ctx);
int mbedtls_sha256_starts_ret(mbedtls_sha256_context* ctx, int is224);
int mbedtls_sha256_update_ret(mbedtls_sha256_context* ctx, const unsigned char* input, size_t ilen);
int mbedtls_sha256_finish_ret(mbedtls_sha256_context* ctx, unsigned char output[32]);
