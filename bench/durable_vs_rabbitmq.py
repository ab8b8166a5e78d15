#!/usr/bin/python3
"""The queue device's durable store beside RabbitMQ doing the same durable work, in the same run:
4 producers x 100 outstanding -> 4 consumers, 64-byte messages.
  RabbitMQ: a durable queue, persistent messages (delivery mode 2), publisher confirms with at most
            100 unconfirmed per producer, consumers acking manually (prefetch 100): messages
            consumed and acked per second (bench/peers, `durable`).
  device:   requests with zmk.ack "stored", a producer's window slot freed by the stored-ack,
            4 workers of capacity 32 replying: requests completed per second, with --store at each
            --store-sync policy and without a store (queue_bench durable).
Both stores live under one directory (same filesystem). Rounds alternate the systems; each figure
is the best of its rounds. Prints the table with the ratios and writes docs/bench-durable.csv
(every round's figures).

usage: bench/durable_vs_rabbitmq.py [BUILD_DIR=build] [REQUESTS_PER_CLIENT=5000] [--rounds N (3)]
                                    [--dir BASE (the stores' parent, default the temp dir)]
                                    [--out DIR (default docs/)]
Needs rabbitmq-server, golang-go and golang-github-rabbitmq-amqp091-go-dev (not in CI)."""
import datetime
import os
import subprocess
import sys
import tempfile

from peer_servers import ROOT, RabbitMQ, machine

SYSTEMS = [("device-batch", "device, --store-sync batch (group commit)"),
           ("device-none", "device, --store-sync none"),
           ("device-always", "device, --store-sync always"),
           ("device-no-store", "device without a store (request/reply, window 100)"),
           ("rabbitmq", "RabbitMQ durable queue, persistent, confirms")]
TARGETS = [("device-batch", "rabbitmq", 5.0), ("device-batch", "device-no-store", 0.5)]


def option(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


rounds = int(option("--rounds", "3"))
base = os.path.abspath(option("--dir", tempfile.gettempdir()))
out_dir = option("--out", os.path.join(ROOT, "docs"))
values = {option(o, None) for o in ("--rounds", "--dir", "--out")}
args = [a for a in sys.argv[1:] if not a.startswith("--") and a not in values]
build = os.path.abspath(args[0]) if args else os.path.join(ROOT, "build")
per_client = int(args[1]) if len(args) > 1 else 5000


def filesystem(path):
    r = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", path], capture_output=True, text=True)
    return " on ".join(r.stdout.split()) or "unknown filesystem"


def rows(text):
    """{system: per second} of "durable,<system>,<value>" rows."""
    return {system: float(value) for kind, system, value in (line.split(",") for line in text.splitlines() if line)
            if kind == "durable"}


state = tempfile.mkdtemp(prefix="zmqkit-bench-durable.", dir=base)
peers_dir = os.path.join(build, "bench", "peers")
os.makedirs(peers_dir, exist_ok=True)
stamp = "%s · %s · stores on %s (%s)" % (datetime.date.today().isoformat(), machine(), base, filesystem(state))
print("starting RabbitMQ ...", flush=True)
rabbit = RabbitMQ(peers_dir, state_dir=state)
measured = []  # (round, system, per second)
try:
    if rabbit.why_not:
        print("RabbitMQ not measured: %s" % rabbit.why_not, flush=True)
    for round_ in range(1, rounds + 1):  # alternated, so that neither gets a quieter machine
        found = rows(rabbit.run("durable", per_client))
        cmd = [os.path.join(build, "bench", "queue_bench"), "durable", str(per_client), state]
        print("  " + " ".join(cmd), flush=True)
        found.update(rows(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
        measured += [(round_, system, value) for system, value in sorted(found.items())]
finally:
    rabbit.close()
    os.rmdir(state)

best = {}
for _, system, value in measured:
    best[system] = max(best.get(system, 0), value)
with open(os.path.join(out_dir, "bench-durable.csv"), "w") as f:
    f.write("# %s\n" % stamp)
    f.write("# %d producers x %d requests each (always: a fiftieth), window 100, 4 consumers, 64 B\n" % (4, per_client))
    if rabbit.why_not:
        f.write("# not measured: RabbitMQ: %s\n" % rabbit.why_not)
    f.write("round,system,per_second\n")
    f.writelines("%d,%s,%.0f\n" % m for m in measured)

print("\n%s\n4 producers x window 100 -> 4 consumers, 64 B, best of %d rounds, %d per producer\n" % (
    stamp, rounds, per_client))
for system, label in SYSTEMS:
    print("%-54s %s" % (label, "%10.0f /s" % best[system] if system in best else "not measured"))
print()
for top, bottom, target in TARGETS:
    if top in best and bottom in best:
        ratio = best[top] / best[bottom]
        print("%-54s %6.2fx (target >= %.1fx) %s" % ("%s / %s" % (top, bottom), ratio, target,
                                                  "ok" if ratio >= target else "MISSED"))
    else:
        print("%s / %s: not measured" % (top, bottom))
