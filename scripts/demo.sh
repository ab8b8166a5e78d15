#!/usr/bin/env bash
# The demo: installs what is missing, builds, and runs two processes that
# exchange a typed ZMK/1 envelope.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target hello
port=$((20000 + RANDOM % 20000))
build/examples/hello/hello serve "tcp://127.0.0.1:$port" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
build/examples/hello/hello ask "tcp://127.0.0.1:$port"
wait "$server"
