"""zmqkit-forwarder's dashboard: known traffic through the real binary, then
  api      /api/stats and /metrics show exactly it (messages, subscribed topics, streams);
  browser  the page in headless Chromium shows the figures of /api/stats; screenshot kept
           as OUT_DIR/forwarder-dashboard.png.
usage: forwarder_dashboard.py ZMQKIT_FORWARDER api|browser [OUT_DIR]
Exits 77 (skipped) in browser mode when Chromium is not installed or cannot start."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import zmq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "queue", "python"))
import zmk  # noqa: E402
from dashboard_page import compare_figures, headless, find_chromium  # noqa: E402

BINARY, MODE = sys.argv[1], sys.argv[2]
OUT_DIR = sys.argv[3] if len(sys.argv) > 3 else "."
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def main():
    if MODE == "browser" and not find_chromium():
        print("SKIP: chromium not installed (Debian package chromium; scripts/deps.sh installs it)")
        sys.exit(77)
    ctx = zmq.Context()
    with tempfile.TemporaryDirectory() as tmp:
        front, back, snap = ("ipc://%s/%s" % (tmp, n) for n in ("front", "back", "snap"))
        fwd = subprocess.Popen([BINARY, "--frontend", front, "--backend", back, "--snapshot", snap,
                                "--http", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
        try:
            base = None
            for _ in range(8):  # frontend, backend, snapshot, metrics, dashboard lines
                line = fwd.stdout.readline()
                m = re.match(r"dashboard (http://127\.0\.0\.1:\d+)/", line)
                if m:
                    base = m.group(1)
                    break
            if not base:
                raise SystemExit("FAIL the forwarder did not print its dashboard address")
            subs = []
            for topic in (b"price.", b"stock.", b"price."):  # two subscribers of price.: one topic
                s = ctx.socket(zmq.SUB)
                s.linger = 0
                s.subscribe(topic)
                s.connect(back)
                subs.append(s)
            pub = ctx.socket(zmq.PUB)
            pub.linger = 0
            pub.connect(front)
            deadline = time.time() + 20
            while time.time() < deadline and json.loads(get(base + "/api/stats"))["topics"]["total"] < 2:
                time.sleep(0.05)
            # Slow joiner: probe until every subscriber has one, so the counted burst loses nothing.
            sent = 0
            probes = set()
            while time.time() < deadline and len(probes) < len(subs):
                for type_ in ("price.probe", "stock.probe"):
                    pub.send_multipart([type_.encode(), zmk.encode(zmk.envelope(type_))])
                    sent += 1
                for i, s in enumerate(subs):
                    if s.poll(20):
                        probes.add(i)
            for s in subs:  # drop the probes still queued
                while s.poll(100):
                    s.recv_multipart()
            burst = 0
            for seq in range(1, 11):
                for type_, publisher in (("price.eur", "p1"), ("stock.book", "p1"), ("price.usd", "p2")):
                    env = zmk.envelope(type_, headers={"zmk.pub": publisher, "zmk.seq": str(seq)})
                    pub.send_multipart([type_.encode(), zmk.encode(env)])
                    burst += 1
            sent += burst
            poller = zmq.Poller()
            for s in subs:
                poller.register(s, zmq.POLLIN)
            got = 0
            while time.time() < deadline and got < 50:  # 20 price. x 2 subscribers + 10 stock.
                for s, _ in poller.poll(100):
                    s.recv_multipart()
                    got += 1
            check(got == 50, "subscribers received 50 messages (%d)" % got)
            # The status catches up (refreshed every 250 ms) and the rate falls back to 0.
            while time.time() < deadline:
                api = json.loads(get(base + "/api/stats"))
                if api["counters"]["messages"] == sent and api["rates"]["messages_per_second"] == 0:
                    break
                time.sleep(0.05)  # polling the HTTP status, bounded by the deadline
            api = json.loads(get(base + "/api/stats"))
            if MODE == "api":
                check(api["program"] == "zmqkit-forwarder", "program")
                check(api["counters"]["messages"] == sent, "messages forwarded %d = sent %d" % (api["counters"]["messages"], sent))
                check(api["topics"] == {"total": 2, "list": ["price.", "stock."]}, "subscribed topics %s" % api["topics"])
                check(api["caching"] and api["types_cached"] == 3 and api["streams"] == 3,
                      "3 types cached, 3 publisher/type streams: %s %s" % (api["types_cached"], api["streams"]))
                check(api["rates"]["messages_per_second"] == 0, "rate back to 0: %s" % api["rates"])
                metrics = get(base + "/metrics")
                check("zmqkit_forwarder_messages_total %d" % sent in metrics and "zmqkit_forwarder_topics 2" in metrics,
                      "/metrics shows the same figures")
                page = get(base + "/")
                check("api/stats" in page and not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page),
                      "/ is the self-contained page")
            else:
                dom = headless(base + "/", "--dump-dom")
                if dom is None:
                    sys.exit(77)
                api = json.loads(get(base + "/api/stats"))
                compare_figures(dom, api, check, minimum=9)
                topics = re.findall(r'data-topic="([^"]*)"', dom)
                check(topics == api["topics"]["list"], "topics on the page %s = /api/stats" % topics)
                os.makedirs(OUT_DIR, exist_ok=True)
                png = os.path.join(os.path.abspath(OUT_DIR), "forwarder-dashboard.png")
                if os.path.exists(png):
                    os.remove(png)
                headless(base + "/", "--screenshot=" + png, "--window-size=1280,700")
                check(os.path.exists(png), "screenshot kept: %s" % png)
        finally:
            fwd.send_signal(signal.SIGTERM)
            try:
                fwd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                fwd.kill()
                fwd.wait()
    ctx.destroy(linger=0)
    print("%d failed" % len(failures))
    sys.exit(1 if failures else 0)


main()
