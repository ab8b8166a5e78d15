#!/usr/bin/env bash
# Installs the Debian 12 packages zmqkit needs, only those missing, so a second run is instant.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libzmq3-dev cppzmq-dev libmsgpack-cxx-dev doctest-dev  # the base
  libasio-dev           # examples/asio: zmqkit::loop inside an asio::io_context
  libcli11-dev          # command-line flags of zmqkit-queue, zmqkit-forwarder, zmqkit, zmqkit-keygen
  libspdlog-dev         # logging in the programs
  nlohmann-json3-dev    # JSON in the zmqkit tool and the golden-vector tests
  libabsl-dev libsodium-dev  # keyed hash tables for ids from the network (lib/internal)
  liblmdb-dev           # the queue device's durable store (zmqkit-queue --store)
  libsqlite3-dev        # bench/store_engine_bench: LMDB against SQLite WAL
  python3-zmq python3-msgpack  # the cross-language tests (/usr/bin/python3)
  clang libclang-rt-14-dev     # libFuzzer for the decoder fuzz target
  iproute2 nftables curl procps  # fault tests (network namespaces, packet loss), metrics scrape
  prometheus                     # promtool check metrics on the programs' /metrics (tests/tools)
  systemd               # systemd-analyze verify/security on the shipped units (tests/packaging)
  chromium              # headless browser test of the dashboards (queue_dashboard_browser)
  python3-matplotlib    # bench/plot.py (docs/benchmarks.md figures)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
