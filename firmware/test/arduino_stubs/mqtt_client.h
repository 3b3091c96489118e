// Subset of ESP-IDF 4.4 components/mqtt/esp-mqtt/include/mqtt_client.h (esp-mqtt as bundled with
// arduino-esp32 2.0.17), with esp_event_base_t / esp_event_handler_t from esp_event_base.h.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef int esp_err_t;
#ifndef ESP_OK
#define ESP_OK 0
#endif
typedef const char* esp_event_base_t;
typedef void (*esp_event_handler_t)(void* event_handler_arg, esp_event_base_t event_base, int32_t event_id,
                                    void* event_data);
#define ESP_EVENT_ANY_ID -1

typedef struct esp_mqtt_client* esp_mqtt_client_handle_t;

typedef enum {
  MQTT_EVENT_ANY = -1,
  MQTT_EVENT_ERROR = 0,
  MQTT_EVENT_CONNECTED,
  MQTT_EVENT_DISCONNECTED,
  MQTT_EVENT_SUBSCRIBED,
  MQTT_EVENT_UNSUBSCRIBED,
  MQTT_EVENT_PUBLISHED,
  MQTT_EVENT_DATA,
  MQTT_EVENT_BEFORE_CONNECT,
  MQTT_EVENT_DELETED,
} esp_mqtt_event_id_t;

typedef enum {
  MQTT_CONNECTION_ACCEPTED = 0,
  MQTT_CONNECTION_REFUSE_PROTOCOL,
  MQTT_CONNECTION_REFUSE_ID_REJECTED,
  MQTT_CONNECTION_REFUSE_SERVER_UNAVAILABLE,
  MQTT_CONNECTION_REFUSE_BAD_USERNAME,
  MQTT_CONNECTION_REFUSE_NOT_AUTHORIZED,
} esp_mqtt_connect_return_code_t;

typedef enum {
  MQTT_ERROR_TYPE_NONE = 0,
  MQTT_ERROR_TYPE_TCP_TRANSPORT,
  MQTT_ERROR_TYPE_CONNECTION_REFUSED,
} esp_mqtt_error_type_t;

typedef struct esp_mqtt_error_codes {
  esp_err_t esp_tls_last_esp_err;
  int esp_tls_stack_err;
  int esp_tls_cert_verify_flags;
  esp_mqtt_error_type_t error_type;
  esp_mqtt_connect_return_code_t connect_return_code;
  int esp_transport_sock_errno;
} esp_mqtt_error_codes_t;

typedef struct esp_mqtt_event_t {
  esp_mqtt_event_id_t event_id;
  esp_mqtt_client_handle_t client;
  void* user_context;
  char* data;
  int data_len;
  int total_data_len;
  int current_data_offset;
  char* topic;
  int topic_len;
  int msg_id;
  int session_present;
  esp_mqtt_error_codes_t* error_handle;
  bool retain;
  int qos;
  bool dup;
} esp_mqtt_event_t;
typedef esp_mqtt_event_t* esp_mqtt_event_handle_t;

typedef struct {
  void* event_handle;
  void* event_loop_handle;
  const char* host;
  const char* uri;
  uint32_t port;
  bool set_null_client_id;
  const char* client_id;
  const char* username;
  const char* password;
  const char* lwt_topic;
  const char* lwt_msg;
  int lwt_qos;
  int lwt_retain;
  int lwt_msg_len;
  int disable_clean_session;
  int keepalive;
  bool disable_auto_reconnect;
  void* user_context;
  int task_prio;
  int task_stack;
  int buffer_size;
  const char* cert_pem;
  size_t cert_len;
  const char* client_cert_pem;
  size_t client_cert_len;
  const char* client_key_pem;
  size_t client_key_len;
  int reconnect_timeout_ms;
  int network_timeout_ms;
  int out_buffer_size;
} esp_mqtt_client_config_t;

esp_mqtt_client_handle_t esp_mqtt_client_init(const esp_mqtt_client_config_t* config);
esp_err_t esp_mqtt_client_start(esp_mqtt_client_handle_t client);
esp_err_t esp_mqtt_client_stop(esp_mqtt_client_handle_t client);
esp_err_t esp_mqtt_client_destroy(esp_mqtt_client_handle_t client);
int esp_mqtt_client_subscribe(esp_mqtt_client_handle_t client, const char* topic, int qos);
int esp_mqtt_client_publish(esp_mqtt_client_handle_t client, const char* topic, const char* data, int len, int qos,
                            int retain);
int esp_mqtt_client_enqueue(esp_mqtt_client_handle_t client, const char* topic, const char* data, int len, int qos,
                            int retain, bool store);
esp_err_t esp_mqtt_client_register_event(esp_mqtt_client_handle_t client, esp_mqtt_event_id_t event,
                                         esp_event_handler_t event_handler, void* event_handler_arg);
