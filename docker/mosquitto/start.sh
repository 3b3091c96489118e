#!/bin/sh
# Creates the dynamic-security state on the first start, with the hub's login from .env as its
# administrator, then starts the broker. Later starts keep the state (device logins live there); to
# change the hub's broker password afterwards, see docs/mqtt.md.
set -eu
: "${MQTT_PASSWORD:?set MQTT_PASSWORD in .env (the hub's broker login)}"
state=/mosquitto/data/dynamic-security.json
if [ ! -f "$state" ]; then
  umask 077
  mosquitto_ctrl dynsec init "$state" "$MQTT_USERNAME" "$MQTT_PASSWORD" >/dev/null
  chown mosquitto:mosquitto "$state" 2>/dev/null || true
fi
exec mosquitto -c /mosquitto/config/mosquitto.conf
