#!/usr/bin/python3
"""Runs the queue benchmark sweep (build/bench/queue_bench sweep) and draws what it measured:
  docs/bench-queue-throughput.png   throughput vs requests in flight: the device vs raw zmq::proxy
  docs/bench-queue-latency-cdf.png  latency distribution (CDF), one request in flight
Each figure is stamped with the date, the machine (CPU model, cores) and its load average.
usage: bench/plot.py [BUILD_DIR=build] [REQUESTS_PER_CLIENT=5000] [--csv FILE (plot a saved run)]
                    [--out DIR (default docs/)]
Needs Debian's python3-matplotlib."""
import csv
import datetime
import io
import os
import platform
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
args = [a for a in sys.argv[1:] if not a.startswith("--")]
def option(name):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else None


csv_file, out_dir = option("--csv"), option("--out")
args = [a for a in args if a not in (csv_file, out_dir)]
build = args[0] if args else os.path.join(ROOT, "build")
per_client = args[1] if len(args) > 1 else "5000"


def machine():
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0]
    return "%s, %d cores, %s, load average %.1f" % (model, os.cpu_count() or 0, platform.system(), load)


if csv_file:
    text = open(csv_file).read()
else:
    bench = os.path.join(build, "bench", "queue_bench")
    print("running %s sweep %s ..." % (bench, per_client), flush=True)
    stamp_machine = machine()
    text = subprocess.run([bench, "sweep", per_client], check=True, capture_output=True, text=True).stdout
    with open(os.path.join(out_dir or os.path.join(ROOT, "docs"), "bench-queue-sweep.csv"), "w") as f:
        f.write(text)
stamp = "%s · %s" % (datetime.date.today().isoformat(), machine() if csv_file else stamp_machine)
rows = list(csv.DictReader(io.StringIO(text)))
throughput, latency = {}, {}
for r in rows:
    if r["kind"] == "throughput":
        throughput.setdefault(r["system"], []).append((int(r["in_flight"]), float(r["value"])))
    elif r["kind"] == "latency_us":
        latency.setdefault(r["system"], []).append(float(r["value"]))

labels = {"device": "zmqkit-queue device (workers of capacity 32)", "proxy": "raw zmq::proxy (ROUTER/DEALER)"}
colors = {"device": "#2f6fdb", "proxy": "#888888"}
docs = out_dir or os.path.join(ROOT, "docs")

fig, ax = plt.subplots(figsize=(8, 4.8))
for system, points in sorted(throughput.items()):
    points.sort()
    ax.plot([p[0] for p in points], [p[1] / 1000 for p in points], marker="o", label=labels.get(system, system),
            color=colors.get(system))
ax.set_xscale("log", base=2)
ax.set_xticks(sorted({p[0] for points in throughput.values() for p in points}))
ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
ax.set_xlabel("requests in flight per client (4 clients, 4 echo workers, tcp loopback, 64-byte bodies)")
ax.set_ylabel("thousand requests per second")
ax.set_title("Queue throughput against requests in flight")
ax.grid(True, alpha=0.3)
ax.legend()
fig.text(0.01, 0.01, stamp, fontsize=7, color="#666666")
fig.tight_layout(rect=(0, 0.03, 1, 1))
out1 = os.path.join(docs, "bench-queue-throughput.png")
fig.savefig(out1, dpi=110)

fig, ax = plt.subplots(figsize=(8, 4.8))
for system, values in sorted(latency.items()):
    values.sort()
    n = len(values)
    ax.plot(values, [(i + 1) / n for i in range(n)], label="%s (p50 %.0f µs, p99 %.0f µs)" % (
        labels.get(system, system), values[n // 2], values[min(n - 1, int(n * 0.99))]), color=colors.get(system))
ax.set_xscale("log")
ax.set_xlabel("round-trip latency, µs (1 client, 1 request in flight, 4 workers, tcp loopback)")
ax.set_ylabel("fraction of requests")
ax.set_title("Queue latency distribution (CDF)")
ax.grid(True, alpha=0.3, which="both")
ax.legend(loc="lower right")
fig.text(0.01, 0.01, stamp, fontsize=7, color="#666666")
fig.tight_layout(rect=(0, 0.03, 1, 1))
out2 = os.path.join(docs, "bench-queue-latency-cdf.png")
fig.savefig(out2, dpi=110)
print("wrote %s and %s (%s)" % (out1, out2, stamp))
