#!/usr/bin/env bash
# Starts zmqkit-queue on 127.0.0.1 ephemeral ports, runs COMMAND with
# --frontend/--backend/--admin appended, then stops the queue it started.
#   with_queue.sh QUEUE_BIN COMMAND [ARGS...]
set -euo pipefail
queue_bin=$1
shift
log=$(mktemp)
"$queue_bin" --frontend 'tcp://127.0.0.1:*' --backend 'tcp://127.0.0.1:*' --admin 'tcp://127.0.0.1:*' \
  2>"$log" &
queue_pid=$!
cleanup() {
  kill "$queue_pid" 2>/dev/null || true
  wait "$queue_pid" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT
line=""
for _ in $(seq 100); do
  line=$(grep -m1 -o 'frontend tcp://[^ ]* backend tcp://[^ ]* admin tcp://[^ ]*' "$log" || true)
  [ -n "$line" ] && break
  kill -0 "$queue_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$line" ] || { echo "zmqkit-queue did not report its endpoints" >&2; cat "$log" >&2; exit 1; }
read -r _ frontend _ backend _ admin <<<"$line"
"$@" --frontend "$frontend" --backend "$backend" --admin "$admin"
