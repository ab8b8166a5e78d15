#!/usr/bin/python3
"""Runs the benchmarks bench/plot.py draws, one at a time, and draws what they measured:
  docs/bench-queue-throughput.png   throughput vs requests in flight: the zmqkit queue device,
                                    raw zmq::proxy, NATS and RabbitMQ (4 requesters, 4 responders)
  docs/bench-queue-latency-cdf.png  latency distributions (CDF) at 1 and at 64 requests in flight
  docs/bench-pipeline.png           pipeline vs raw PUSH/PULL (and raw + envelope codec)
  docs/bench-pubsub.png             pub/sub vs raw PUB/SUB against subscriber count
with their data in docs/bench-queue.csv, docs/bench-pipeline.csv, docs/bench-pubsub.csv. Each
figure is stamped with the date, the machine (CPU, cores, kernel) and its load average.

NATS (nats-server) and RabbitMQ (rabbitmq-server) run as processes this script starts on free
loopback ports with private state in a temporary directory, and stops by PID; their clients
(bench/peers, Go) are built offline from Debian's Go packages. A peer that cannot be built or
started is left out of the figure with the reason in its legend.

usage: bench/plot.py [BUILD_DIR=build] [REQUESTS_PER_CLIENT=5000] [--no-peers]
                     [--csv DIR (redraw the CSVs saved in DIR)] [--out DIR (default docs/)]
Needs Debian's python3-matplotlib; the peers need nats-server, golang-go,
golang-github-nats-io-go-nats-dev, rabbitmq-server and golang-github-rabbitmq-amqp091-go-dev."""
import csv
import datetime
import io
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from peer_servers import Nats, RabbitMQ, machine  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IN_FLIGHT = [1, 2, 4, 8, 16, 32, 64, 128, 256]
LATENCY_LOADS = [1, 64]
QUANTILES = 1000  # latency rows kept per series: the CSV holds quantiles, not every request


def option(name):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else None


csv_dir, out_dir = option("--csv"), option("--out") or os.path.join(ROOT, "docs")
args = [a for a in sys.argv[1:] if not a.startswith("--") and a not in (csv_dir, out_dir)]
build = os.path.abspath(args[0]) if args else os.path.join(ROOT, "build")
per_client = int(args[1]) if len(args) > 1 else 5000
with_peers = "--no-peers" not in sys.argv


def run(cmd):
    print("  " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def quantiles(text):
    """Keeps QUANTILES evenly spaced order statistics (min and max included) of each latency series."""
    series, rest = {}, []
    for line in text.splitlines():
        if line.startswith("latency_us,"):
            kind, system, in_flight, value = line.split(",")
            series.setdefault((system, in_flight), []).append(float(value))
        elif line:
            rest.append(line)
    for (system, in_flight), values in series.items():
        values.sort()
        n = len(values)
        picks = range(n) if n <= QUANTILES else (i * (n - 1) // (QUANTILES - 1) for i in range(QUANTILES))
        rest += ["latency_us,%s,%s,%.1f" % (system, in_flight, values[i]) for i in picks]
    return "\n".join(rest) + "\n"


def measure():
    """Runs everything, one benchmark at a time; writes the three CSVs into out_dir."""
    bench = os.path.join(build, "bench")
    peers_dir = os.path.join(bench, "peers")
    os.makedirs(peers_dir, exist_ok=True)
    stamp = "%s · %s" % (datetime.date.today().isoformat(), machine())
    peers = []
    try:
        if with_peers:
            print("starting NATS and RabbitMQ ...", flush=True)
            peers.append(Nats(peers_dir))  # one at a time: a failure in the second still stops the first
            peers.append(RabbitMQ(peers_dir))
            for p in peers:
                if p.why_not:
                    print("%s not measured: %s" % (p.label, p.why_not), flush=True)
        queue = "kind,system,in_flight,value\n"
        for k in IN_FLIGHT:  # point by point, every system, so that none gets a quieter machine
            n = max(per_client * min(k, 16) // 16, 200)  # small windows are latency-bound: fewer requests
            queue += run([os.path.join(bench, "queue_bench"), "throughput", str(n), str(k)])
            queue += "".join(p.run("throughput", n, k) for p in peers)
        for k in LATENCY_LOADS:
            n = per_client if k > 1 else max(per_client // 5, 200)
            queue += run([os.path.join(bench, "queue_bench"), "latency", str(n), str(k)])
            queue += "".join(p.run("latency", n, k) for p in peers)
        notes = "".join("# not measured: %s: %s\n" % (p.label, p.why_not) for p in peers if p.why_not)
    finally:
        for p in peers:
            p.close()
    messages = str(per_client * 40)
    pipeline = run([os.path.join(bench, "pipeline_bench"), "csv", messages])
    pubsub = run([os.path.join(bench, "pubsub_bench"), "csv", messages])
    header = "# %s\n" % stamp
    for name, text in (("queue", header + notes + quantiles(queue)), ("pipeline", header + pipeline),
                       ("pubsub", header + pubsub)):
        with open(os.path.join(out_dir, "bench-%s.csv" % name), "w") as f:
            f.write(text)


def load(name):
    """Returns: (stamp, notes, rows) of a saved CSV."""
    lines = open(os.path.join(csv_dir or out_dir, "bench-%s.csv" % name)).read().splitlines()
    comments = [line[2:] for line in lines if line.startswith("# ")]
    rows = list(csv.DictReader(io.StringIO("\n".join(line for line in lines if not line.startswith("#")))))
    return comments[0], comments[1:], rows


if not csv_dir:
    measure()

LABELS = {"device": "zmqkit-queue device (workers of capacity 32)", "proxy": "raw zmq::proxy (ROUTER/DEALER)",
          "nats": "NATS (nats-server, queue group)", "rabbitmq": "RabbitMQ (direct reply-to, prefetch 32)",
          "zmqkit": "zmqkit", "raw": "raw libzmq, 64-byte frames", "raw+codec": "raw libzmq + envelope codec",
          "raw-same-size": "raw libzmq, frames as large as zmqkit's envelopes"}
COLORS = {"device": "#2f6fdb", "zmqkit": "#2f6fdb", "proxy": "#888888", "raw": "#888888", "nats": "#27a567",
          "rabbitmq": "#ff6600", "raw+codec": "#bbbbbb", "raw-same-size": "#bbbbbb"}
ORDER = ["device", "proxy", "nats", "rabbitmq"]


def finish(fig, stamp, name):
    fig.text(0.01, 0.01, stamp, fontsize=7, color="#666666")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = os.path.join(out_dir, "bench-%s.png" % name)
    fig.savefig(path, dpi=110)
    print("wrote " + path)


def not_measured(ax, notes):
    for note in notes:  # "not measured: LABEL: WHY" as an entry without a line
        label, why = note[len("not measured: "):].split(": ", 1)
        ax.plot([], [], " ", label="%s: not measured (%s)" % (label, why))


stamp, notes, rows = load("queue")
throughput, latency = {}, {}
for r in rows:
    if r["kind"] == "throughput":
        throughput.setdefault(r["system"], []).append((int(r["in_flight"]), float(r["value"])))
    elif r["kind"] == "latency_us":
        latency.setdefault((r["system"], int(r["in_flight"])), []).append(float(r["value"]))

fig, ax = plt.subplots(figsize=(8.5, 5))
for system in sorted(throughput, key=ORDER.index):
    points = sorted(throughput[system])
    ax.plot([p[0] for p in points], [p[1] / 1000 for p in points], marker="o", label=LABELS[system],
            color=COLORS[system])
not_measured(ax, notes)
ax.set_xscale("log", base=2)
ax.set_xticks(IN_FLIGHT)
ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
ax.set_xlabel("requests in flight per requester (4 requesters, 4 echo responders, tcp loopback, 64-byte bodies)")
ax.set_ylabel("thousand requests per second")
ax.set_title("Request/reply throughput against requests in flight")
ax.grid(True, alpha=0.3)
ax.legend(fontsize=8)
finish(fig, stamp, "queue-throughput")

fig, axes = plt.subplots(1, len(LATENCY_LOADS), figsize=(11, 5), sharey=True)
for ax, k in zip(axes, LATENCY_LOADS):
    for system in sorted({s for s, load in latency if load == k}, key=ORDER.index):
        values = sorted(latency[(system, k)])
        n = len(values)
        ax.plot(values, [(i + 1) / n for i in range(n)], color=COLORS[system], label="%s: p50 %.0f, p99 %.0f µs" % (
            LABELS[system].split(" (")[0], values[n // 2], values[min(n - 1, int(n * 0.99))]))
    not_measured(ax, notes)
    ax.set_xscale("log")
    ax.set_xlabel("round-trip latency, µs")
    ax.set_title("4 requesters × %d in flight each" % k)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
axes[0].set_ylabel("fraction of requests")
fig.suptitle("Request/reply latency distribution (CDF) at fixed load, 4 echo responders, tcp loopback")
finish(fig, stamp, "queue-latency-cdf")

stamp, _, rows = load("pipeline")
rounds = {}
for r in rows:
    rounds.setdefault(r["system"], []).append(float(r["value"]))
systems = [s for s in ("raw", "raw+codec", "zmqkit") if s in rounds]
fig, ax = plt.subplots(figsize=(8, 4.8))
best_raw = max(rounds["raw"])
for i, system in enumerate(systems):
    best = max(rounds[system])
    ax.bar(i, best / 1e6, color=COLORS[system], width=0.6)
    ax.plot([i] * len(rounds[system]), [v / 1e6 for v in rounds[system]], "k.", alpha=0.6)
    ax.annotate("%.2f× raw" % (best / best_raw), (i, best / 1e6), ha="center", va="bottom", fontsize=9)
ax.plot([], [], "k.", label="each round (bar: best of %d)" % len(rounds["raw"]))
ax.set_xticks(range(len(systems)), [LABELS[s] for s in systems], fontsize=8)
ax.set_ylim(0, max(max(v) for v in rounds.values()) / 1e6 * 1.15)  # room for the ratios
ax.set_xlabel("1 worker (credit 1000), 64-byte bodies, tcp loopback")
ax.set_ylabel("million messages per second")
ax.set_title("Pipeline ventilator → worker → sink against raw PUSH → PULL/PUSH → PULL")
ax.grid(True, axis="y", alpha=0.3)
ax.legend(loc="upper left", fontsize=8)
finish(fig, stamp, "pipeline")

stamp, _, rows = load("pubsub")
series = {}
for r in rows:
    series.setdefault(r["system"], []).append((int(r["subscribers"]), float(r["value"])))
raw = dict(series["raw"])
fig, ax = plt.subplots(figsize=(8, 4.8))
for system in ("zmqkit", "raw", "raw-same-size"):
    points = sorted(series[system])
    ax.plot([p[0] for p in points], [p[1] / 1e6 for p in points], marker="o", color=COLORS[system],
            label=LABELS[system], linestyle="--" if system == "raw-same-size" else "-")
for subs, value in series["zmqkit"]:
    ax.annotate("%.2f×" % (value / raw[subs]), (subs, value / 1e6), textcoords="offset points", xytext=(0, -14),
                ha="center", fontsize=8, color=COLORS["zmqkit"])
ax.set_xticks(sorted(raw))
ax.set_xlabel("subscribers (every one receives every message; 64-byte bodies, tcp loopback)")
ax.set_ylabel("million messages per second")
ax.set_ylim(0, max(v for points in series.values() for _, v in points) / 1e6 * 1.1)
ax.set_title("Pub/sub (sequence tracking on) against raw PUB/SUB; ratio to raw under each point")
ax.grid(True, alpha=0.3)
ax.legend(fontsize=8)
finish(fig, stamp, "pubsub")
