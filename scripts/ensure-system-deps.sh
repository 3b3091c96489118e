#!/usr/bin/env bash
# Makes sure the system programs the tests run for real are installed (see docs/testing.md):
#   influxd (Debian package influxdb, the 1.x engine), nginx (nginx-light), mosquitto, chromium,
#   docker-compose (only to validate the compose file), g++, make and libssl-dev (firmware host tests; OpenSSL checks the OTA signatures),
#   setpriv (util-linux; stops test servers if the test process dies), gcc-riscv64-unknown-elf and
#   picolibc-riscv64-unknown-elf (the firmware core's cross-build for the ESP32-C3), postgresql (the
#   shared state of several hub instances; tests run initdb/postgres from /usr/lib/postgresql/<v>/bin),
#   haproxy (the load balancer in front of several hub instances).
#
# - Everything present: prints one line and exits 0 (quick: only `command -v` lookups).
# - Something missing, root, apt-get available: apt-get update + install, then stops and disables
#   the system services the packages may have started (tests use their own processes on free
#   loopback ports; they neither need nor collide with the system services).
# - Otherwise: prints the exact install command and exits 1.
#
# Idempotent. Usage: bash scripts/ensure-system-deps.sh
set -euo pipefail

# command:package (a command starting with / is a file that must exist)
REQUIREMENTS=(
  influxd:influxdb
  nginx:nginx-light
  mosquitto:mosquitto
  chromium:chromium
  docker-compose:docker-compose
  g++:g++
  make:make
  /usr/include/openssl/evp.h:libssl-dev
  setpriv:util-linux
  riscv64-unknown-elf-g++:gcc-riscv64-unknown-elf
  /usr/lib/picolibc/riscv64-unknown-elf/picolibc.specs:picolibc-riscv64-unknown-elf
  pg_ctlcluster:postgresql
  haproxy:haproxy
)
# Packages that ship a system service the Debian maintainer scripts may start.
SERVICES=(influxdb nginx mosquitto postgresql haproxy)

# Debian installs nginx and mosquitto in /usr/sbin, which a non-root PATH often lacks.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

present() {
  if [[ "$1" == /* ]]; then [[ -e "$1" ]]; else command -v "$1" >/dev/null 2>&1; fi
}

missing_packages=()
for requirement in "${REQUIREMENTS[@]}"; do
  command_name="${requirement%%:*}"
  package="${requirement#*:}"
  if ! present "$command_name"; then
    missing_packages+=("$package")
  fi
done

check_influxd_version() {
  # The harness drives the 1.x engine (`influxd -config FILE`); InfluxDB 2's influxd has another CLI.
  local version
  version="$(influxd version 2>/dev/null || true)"
  if [[ "$version" != *" v1."* ]]; then
    echo "ensure-system-deps: influxd on PATH is not InfluxDB 1.x (\`influxd version\` says: ${version:-nothing})." >&2
    echo "  The tests need the 1.x engine from the Debian package 'influxdb' first on PATH." >&2
    return 1
  fi
}

if [[ ${#missing_packages[@]} -eq 0 ]]; then
  check_influxd_version
  echo "ensure-system-deps: all test programs present (influxd, nginx, mosquitto, chromium, docker-compose, g++, make, riscv64-unknown-elf-g++ + picolibc, postgresql, haproxy)."
  exit 0
fi

install_command="apt-get install -y --no-install-recommends ${missing_packages[*]}"
echo "ensure-system-deps: missing packages: ${missing_packages[*]}"

if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "Install them with:" >&2
    echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive $install_command" >&2
  else
    echo "This is not a Debian/Ubuntu system. Install the equivalents of: ${missing_packages[*]}" >&2
    echo "(the Debian command would be: apt-get update && $install_command)" >&2
  fi
  exit 1
fi

# Keep the maintainer scripts from starting services while we install, the standard Debian way
# (policy-rc.d exit 101 = "action forbidden"), unless the machine already has a policy.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\n# Temporary, created by scripts/ensure-system-deps.sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  created_policy=1
fi
cleanup_policy() {
  if [[ "$created_policy" -eq 1 ]]; then rm -f "$policy"; fi
}
trap cleanup_policy EXIT

export DEBIAN_FRONTEND=noninteractive
# Wait for another apt/dpkg run (e.g. unattended upgrades) instead of failing on its lock.
apt_options=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
echo "ensure-system-deps: apt-get update"
for attempt in 1 2 3; do
  if apt-get "${apt_options[@]}" update -qq; then break; fi
  if [[ "$attempt" -eq 3 ]]; then
    echo "ensure-system-deps: apt-get update failed" >&2
    exit 1
  fi
  sleep 10
done
echo "ensure-system-deps: $install_command"
apt-get "${apt_options[@]}" install -y -qq --no-install-recommends "${missing_packages[@]}"

# If a service got started anyway (a machine without our policy file), stop it and keep it from
# starting at boot. Tolerant of machines without systemd or without the service.
for service in "${SERVICES[@]}"; do
  if [[ -e "/etc/init.d/$service" ]] || [[ -e "/lib/systemd/system/$service.service" ]]; then
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now "$service" >/dev/null 2>&1 || true
    else
      service "$service" stop >/dev/null 2>&1 || true
      update-rc.d "$service" disable >/dev/null 2>&1 || true
    fi
  fi
done

still_missing=()
for requirement in "${REQUIREMENTS[@]}"; do
  if ! present "${requirement%%:*}"; then still_missing+=("${requirement%%:*}"); fi
done
if [[ ${#still_missing[@]} -gt 0 ]]; then
  echo "ensure-system-deps: still missing after install: ${still_missing[*]}" >&2
  exit 1
fi
check_influxd_version
echo "ensure-system-deps: installed ${missing_packages[*]}."
