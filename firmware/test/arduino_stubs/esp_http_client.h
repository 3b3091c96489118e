// Subset of ESP-IDF 4.4 components/esp_http_client/include/esp_http_client.h.
#pragma once
#include <stdint.h>

#include "esp_partition.h"  // esp_err_t

typedef struct esp_http_client* esp_http_client_handle_t;
typedef enum { HTTP_METHOD_GET = 0 } esp_http_client_method_t;
typedef struct {
  const char* url;
  const char* host;
  int port;
  const char* username;
  const char* password;
  const char* path;
  const char* query;
  const char* cert_pem;
  esp_http_client_method_t method;
  int timeout_ms;
  bool disable_auto_redirect;
  int max_redirection_count;
  int buffer_size;
  int buffer_size_tx;
  bool is_async;
  bool keep_alive_enable;
} esp_http_client_config_t;
esp_http_client_handle_t esp_http_client_init(const esp_http_client_config_t* config);
esp_err_t esp_http_client_set_header(esp_http_client_handle_t client, const char* key, const char* value);
esp_err_t esp_http_client_open(esp_http_client_handle_t client, int write_len);
int64_t esp_http_client_fetch_headers(esp_http_client_handle_t client);
int esp_http_client_get_status_code(esp_http_client_handle_t client);
int esp_http_client_read(esp_http_client_handle_t client, char* buffer, int len);
esp_err_t esp_http_client_close(esp_http_client_handle_t client);
esp_err_t esp_http_client_cleanup(esp_http_client_handle_t client);
