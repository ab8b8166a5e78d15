#!/usr/bin/env bash
# The demo: installs what is missing, builds, then runs both examples against one
# zmqkit-queue, every service a separate process on 127.0.0.1 ephemeral ports:
#   education: registration (req/rep + retries through the queue), course
#              subscriptions (pub/sub, late joiner via snapshot), reviews (pipeline);
#   sales:     orders with VIP priority, payments with a TTL, inventory + restock.
# Prints a summary and stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target zmqkit-queue education sales

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

echo
echo "== starting zmqkit-queue"
build/patterns/queue/zmqkit-queue --frontend 'tcp://127.0.0.1:*' --backend 'tcp://127.0.0.1:*' \
  --admin 'tcp://127.0.0.1:*' 2>"$work/queue.log" &
pids+=($!)
line=""
for _ in $(seq 100); do
  line=$(grep -m1 -o 'frontend tcp://[^ ]* backend tcp://[^ ]* admin tcp://[^ ]*' "$work/queue.log" 2>/dev/null || true)
  [ -n "$line" ] && break
  sleep 0.1
done
[ -n "$line" ] || { echo "zmqkit-queue did not start:" >&2; cat "$work/queue.log" >&2; exit 1; }
read -r _ frontend _ backend _ admin <<<"$line"
echo "   $line"
endpoints=(--frontend "$frontend" --backend "$backend" --admin "$admin")

# Each scenario starts its services as child processes of its own (they die with it).
status=0
echo
build/examples/education/education scenario "${endpoints[@]}" | tee "$work/education.out" || status=1
echo
build/examples/sales/sales scenario "${endpoints[@]}" | tee "$work/sales.out" || status=1
build/examples/sales/sales stats --admin "$admin" >"$work/queue.stats" || true

# --- summary -----------------------------------------------------------------------------------
value() { # value FILE KEY: KEY=VALUE from a "summary ..." line or a stats file
  tr ' ' '\n' <"$1" | sed -n "s/^$2=//p" | head -1
}
ms() { printf '%.1f' "${1:-0}"; }
edu=$work/education.out sal=$work/sales.out st=$work/queue.stats
echo
echo "================================ summary ================================"
printf '%-28s %8s %10s %10s\n' "request type" "count" "p50 ms" "p99 ms"
for spec in "$edu user.register" "$sal order.place" "$sal order.place.vip" "$sal payment.authorize"; do
  read -r file key <<<"$spec"
  printf '%-28s %8s %10s %10s\n' "$key" "$(value "$file" "$key")" "$(ms "$(value "$file" "$key.p50_ms")")" \
    "$(ms "$(value "$file" "$key.p99_ms")")"
done
printf '%-28s %8s\n' "course.subscribed (pub/sub)" "$(value "$edu" course.subscribed)"
printf '%-28s %8s\n' "stock.changed (pub/sub)" "$(value "$sal" stock.changed)"
printf '%-28s %8s   (batch done in %s ms)\n' "review.score (pipeline)" "$(value "$edu" review.score)" \
  "$(value "$edu" review.batch_ms)"
printf '%-28s %8s\n' "restock.request (pipeline)" "$(value "$sal" restock.request)"
echo
echo "priority overtakes (VIP past queued regular orders): $(value "$sal" overtakes)"
echo "client retries (slow registrations):                 $(value "$edu" retries)"
echo "duplicates suppressed by zmqkit-queue:               $(value "$st" duplicates_suppressed) (+ $(value "$st" answered_from_cache) answered from its reply cache)"
echo "duplicate accounts created:                          $(value "$edu" duplicate_accounts)"
echo "expired payments (TTL 300 ms, none charged late):    $(value "$sal" expired_payments)"
echo "subscriber gaps:                                     $(($(value "$edu" gaps) + $(value "$sal" gaps)))"
echo "zmqkit-queue: received $(value "$st" received), routed $(value "$st" routed), expired $(value "$st" expired)"
echo
if [ "$status" -eq 0 ]; then echo "demo: every check passed"; else echo "demo: SOME CHECKS FAILED (see above)"; fi
exit "$status"
