#!/usr/bin/env bash
# Install the Debian 12 packages evrelay needs to build, test and fuzz.
# Idempotent: installs only what is missing. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config python3 python3-zmq openssl
  libzmq3-dev libczmq-dev libsodium-dev
  libprotobuf-c-dev protobuf-c-compiler zlib1g-dev
  librabbitmq-dev libcmocka-dev
  libjansson-dev libinih-dev libcurl4-openssl-dev libmicrohttpd-dev
  python3-prometheus-client prometheus
  rabbitmq-server
  kamailio kamailio-extra-modules
  clang libclang-rt-14-dev clang-format valgrind
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
