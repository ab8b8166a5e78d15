#!/usr/bin/env bash
# Runs every test: installs what is missing, then
#   1. release build (g++) + the whole ctest suite;
#   2. the whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. clang + libFuzzer: replay the decoder and device corpora, then fuzz the envelope decoder
#      for ZMQKIT_FUZZ_SECONDS (60) and the queue device's frame handlers for
#      ZMQKIT_DEVICE_FUZZ_SECONDS (30);
#   4. install to a temporary prefix and build consumer projects out of tree against it;
#   5. Debian packages: cpack, apt install, consumer via CMake and pkg-config, apt purge.
# ZMQKIT_FULL=1 runs the fault tests at full size (slow); by default they run small.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=$(nproc)

scripts/deps.sh

step() { printf '\n=== %s\n' "$*"; }

step "build (g++, RelWithDebInfo)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs"
step "tests"
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 600

step "build + tests under ASan+UBSan"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DZMQKIT_SANITIZE=address,undefined \
  -DZMQKIT_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" --timeout 900

step "fuzz the envelope decoder (${ZMQKIT_FUZZ_SECONDS:-60} s) and the queue device (${ZMQKIT_DEVICE_FUZZ_SECONDS:-30} s) (clang, libFuzzer)"
CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZMQKIT_FUZZ=ON \
  -DZMQKIT_SANITIZE=address,undefined -DZMQKIT_FUZZ_SECONDS="${ZMQKIT_FUZZ_SECONDS:-60}" \
  -DZMQKIT_DEVICE_FUZZ_SECONDS="${ZMQKIT_DEVICE_FUZZ_SECONDS:-30}" \
  -DZMQKIT_BUILD_BENCH=OFF -DZMQKIT_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build-fuzz -j "$jobs" --target envelope_fuzz envelope_fuzz_replay device_fuzz device_fuzz_replay
ctest --test-dir build-fuzz --output-on-failure -R 'envelope_fuzz|device_fuzz'

step "install, then build consumers out of tree"
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install build --prefix "$prefix" >/dev/null
scripts/check-install.sh "$prefix"

step "Debian packages: build, apt install, use, purge"
scripts/package_check.sh build-deb

printf '\nall tests passed\n'
