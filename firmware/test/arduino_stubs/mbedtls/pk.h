// Subset of mbedTLS 2.28 (ESP-IDF 4.4) include/mbedtls/pk.h and md.h.
#pragma once
#include <stddef.h>

typedef enum { MBEDTLS_MD_NONE = 0, MBEDTLS_MD_SHA256 = 6 } mbedtls_md_type_t;
typedef struct mbedtls_pk_info_t mbedtls_pk_info_t;
typedef struct mbedtls_pk_context {
  const mbedtls_pk_info_t* pk_info;
  void* pk_ctx;
} mbedtls_pk_context;
void mbedtls_pk_init(mbedtls_pk_context* ctx);
void mbedtls_pk_free(mbedtls_pk_context* ctx);
int mbedtls_pk_parse_public_key(mbedtls_pk_context* ctx, const unsigned char* key, size_t keylen);
int mbedtls_pk_verify(mbedtls_pk_context* ctx, mbedtls_md_type_t md_alg, const unsigned char* hash, size_t hash_len,
                      const unsigned char* sig, size_t sig_len);
