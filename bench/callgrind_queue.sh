#!/usr/bin/env bash
# Instructions per request spent by the forwarding thread: the queue device's
# run() (capacity-32 workers) beside raw zmq_proxy_steerable, in one run under
# callgrind. Only those two functions and what they call are counted, so client
# and worker threads (the same code in both) and libzmq's I/O threads do not
# dilute the comparison. Stable on a noisy machine, unlike req/s.
# usage: bench/callgrind_queue.sh [build dir, default build] [requests per client, default 2000]
set -euo pipefail
build=${1:-build}
per_client=${2:-2000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$out/cg.%p" --collect-atstart=no \
  --toggle-collect=zmq_proxy_steerable --toggle-collect='zmqkit::queue::device::run()' \
  --dump-instr=no "$build/bench/queue_bench" profile "$per_client" > "$out/stdout" 2> "$out/stderr"
requests=$(awk '/^requests/ {print $2}' "$out/stdout")
inclusive() {  # inclusive instruction count of the function matching $1
  callgrind_annotate --inclusive=yes --threshold=100 "$out"/cg.* 2>/dev/null |
    awk -v pat="$1" '!found && index($0, pat) { gsub(",", "", $1); print $1; found = 1 }'
}
raw=$(inclusive 'zmq_proxy_steerable')
dev=$(inclusive 'zmqkit::queue::device::run()')
awk -v r="$raw" -v d="$dev" -v n="$requests" 'BEGIN {
  printf "requests %d\nraw zmq::proxy  %8.0f instructions per request\ndevice run()    %8.0f instructions per request\nratio device/raw %.2f\n", n, r / n, d / n, d / r }'
