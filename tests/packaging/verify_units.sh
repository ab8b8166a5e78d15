#!/usr/bin/env bash
# Checks systemd units with systemd-analyze, offline (no running systemd needed):
#   verify_units.sh UNIT_FILE[=BINARY]...
# UNIT_FILE=BINARY first points ExecStart at BINARY (the build tree's program, before install).
# Fails on any message from `systemd-analyze verify` (an unknown key is only a warning
# there) and on a security exposure above 2.0 (`systemd-analyze security --offline`).
# Exits 77 (skipped) with the reason when systemd-analyze is missing or cannot run here.
set -euo pipefail
if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze not found (Debian package systemd; scripts/deps.sh installs it)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! probe=$(systemd-analyze --version 2>&1); then
  echo "SKIP: systemd-analyze cannot run here: $probe"
  exit 77
fi
status=0
for arg in "$@"; do
  unit=${arg%%=*}
  name=$(basename "$unit")
  if [[ $arg == *=* ]]; then
    sed -E "s|^ExecStart=[^ ]+|ExecStart=${arg#*=}|" "$unit" >"$work/$name"
  else
    cp "$unit" "$work/$name"
  fi
  out=$(systemd-analyze verify "$work/$name" 2>&1) || { echo "FAIL: systemd-analyze verify $name: $out"; status=1; continue; }
  if [ -n "$out" ]; then
    echo "FAIL: systemd-analyze verify $name warns: $out"
    status=1
    continue
  fi
  security=$(systemd-analyze security --offline=yes --threshold=20 "$work/$name" 2>&1) || {
    echo "FAIL: $name: exposure above 2.0:"
    echo "$security"
    status=1
    continue
  }
  echo "ok   $name: verify clean, $(grep -o 'Overall exposure level.*' <<<"$security")"
done
exit $status
