#!/usr/bin/env bash
# Runs examples/hello as its README says: serve in the background, ask, both exit 0.
#   hello.sh HELLO_BIN
set -euo pipefail
hello=$1
dir=$(mktemp -d)
endpoint="ipc://$dir/hello"
"$hello" serve "$endpoint" >"$dir/serve.out" &
serve_pid=$!
cleanup() {
  kill "$serve_pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
"$hello" ask "$endpoint" | tee "$dir/ask.out"
wait "$serve_pid"
cat "$dir/serve.out"
grep -q '^serve: got hello.greeting from ada' "$dir/serve.out"
grep -q '^ask: hello.welcome for ada, visits 1, answers my request$' "$dir/ask.out"
