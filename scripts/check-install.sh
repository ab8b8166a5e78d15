#!/usr/bin/env bash
# Builds projects that use zmqkit the way users do, against an installed prefix:
# tests/install/consumer and every example, each out of tree; then runs the consumer.
#   scripts/check-install.sh PREFIX
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

projects=(tests/install/consumer)
for cml in examples/*/CMakeLists.txt; do
  [ -e "$cml" ] && projects+=("$(dirname "$cml")")
done
for project in "${projects[@]}"; do
  echo "-- $project against $prefix"
  cmake -S "$project" -B "$work/$project" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
  cmake --build "$work/$project" -j "$(nproc)" >/dev/null
done
"$work/tests/install/consumer/consumer"
