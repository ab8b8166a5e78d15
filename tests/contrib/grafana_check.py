"""contrib/grafana/*.json: valid JSON, a Grafana dashboard (panels with ids, targets with a
PromQL expr), and every metric name its queries use exists in a live /metrics of
zmqkit-queue and zmqkit-forwarder (with traffic, so labelled metrics have samples).
usage: grafana_check.py ZMQKIT_QUEUE ZMQKIT_FORWARDER DASHBOARD.json..."""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import zmq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "queue", "python"))
import zmk  # noqa: E402

QUEUE, FORWARDER, DASHBOARDS = sys.argv[1], sys.argv[2], sys.argv[3:]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def start(args, pattern, stream):
    p = subprocess.Popen(args, stdout=subprocess.PIPE if stream == "stdout" else subprocess.DEVNULL,
                         stderr=subprocess.PIPE if stream == "stderr" else None, text=True)
    pipe = p.stdout if stream == "stdout" else p.stderr
    deadline = time.time() + 20
    while time.time() < deadline:
        line = pipe.readline()
        m = re.search(pattern, line)
        if m:
            return p, "http://127.0.0.1:%s" % m.group(1)
        if not line and p.poll() is not None:
            break
    p.kill()
    raise SystemExit("FAIL %s did not print its dashboard address" % args[0])


def exposed_names(text):
    """Metric names with at least one sample in a Prometheus text exposition."""
    return {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})? ", text, re.M)}


def used_names(dashboard):
    exprs = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                exprs.append(node["expr"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(dashboard)
    names = set()
    for e in exprs:
        names |= set(re.findall(r"\b(zmqkit_[a-z0-9_]+)", e))
    return exprs, names


ctx = zmq.Context()
with tempfile.TemporaryDirectory() as tmp:
    front, back = "ipc://%s/qf" % tmp, "ipc://%s/qb" % tmp
    queue, qbase = start([QUEUE, "--frontend", front, "--backend", back, "--http", "127.0.0.1:0",
                          "--no-service-ms", "60000", "--max-pending", "1"], r"dashboard http://127\.0\.0\.1:(\d+)/", "stderr")
    fwd, fbase = start([FORWARDER, "--frontend", "ipc://%s/ff" % tmp, "--backend", "ipc://%s/fb" % tmp,
                        "--snapshot", "ipc://%s/fs" % tmp, "--http", "127.0.0.1:0"], r"dashboard http://127\.0\.0\.1:(\d+)/", "stdout")
    try:
        # Traffic that gives every labelled family a sample: one waiting request (by type,
        # by priority), one refused ('overloaded'), one dropped (no empty delimiter).
        c = ctx.socket(zmq.DEALER)
        c.linger = 0
        c.connect(front)
        c.send_multipart([b"", zmk.encode(zmk.envelope("nobody.serves"))])
        c.send_multipart([b"", zmk.encode(zmk.envelope("nobody.serves"))])
        c.send_multipart([b"not-a-delimiter", b"x"])
        if not c.poll(5000):
            check(False, "the device refused the second request")
        # The drop is counted once the device has read it: scrape until it shows.
        deadline = time.monotonic() + 10
        queue_metrics = ""
        while time.monotonic() < deadline and "zmqkit_queue_dropped_total{" not in queue_metrics:
            with urllib.request.urlopen(qbase + "/metrics", timeout=5) as r:
                queue_metrics = r.read().decode()
        with urllib.request.urlopen(fbase + "/metrics", timeout=5) as r:
            forwarder_metrics = r.read().decode()
    finally:
        for p in (queue, fwd):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
ctx.destroy(linger=0)
exposed = exposed_names(queue_metrics) | exposed_names(forwarder_metrics)
check(len(exposed) >= 20, "%d metric names exposed by the two programs" % len(exposed))

for path in DASHBOARDS:
    name = os.path.basename(path)
    try:
        dash = json.load(open(path))
    except ValueError as e:
        check(False, "%s is valid JSON: %s" % (name, e))
        continue
    check(True, "%s is valid JSON" % name)
    panels = dash.get("panels", [])
    ids = [p.get("id") for p in panels]
    check(bool(dash.get("title")) and bool(dash.get("uid")) and panels, "%s: a dashboard with a title, uid and panels" % name)
    check(len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids), "%s: panel ids unique" % name)
    graphs = [p for p in panels if p.get("type") != "row"]
    check(all(p.get("targets") and all(t.get("expr") for t in p["targets"]) for p in graphs),
          "%s: every panel queries Prometheus" % name)
    exprs, names = used_names(dash)
    missing = sorted(n for n in names if n not in exposed)
    check(not missing, "%s: all %d metric names used exist in a live /metrics (missing: %s)" % (name, len(names), missing))
    check(all(expr.count("(") == expr.count(")") for expr in exprs), "%s: parentheses balance in every query" % name)
print("%d failed" % len(failures))
sys.exit(1 if failures else 0)
