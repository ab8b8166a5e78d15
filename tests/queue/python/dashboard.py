"""zmqkit-queue's dashboard: known traffic through the real binary, then
  api      /api/stats must show exactly that traffic (and agree with the admin stats), / must
           be a self-contained page (no external script, style or font);
  browser  the page opened in headless Chromium must show the figures of /api/stats
           (DOM after its script ran); a screenshot is kept as OUT_DIR/queue-dashboard.png.
usage: dashboard.py ZMQKIT_QUEUE api|browser [OUT_DIR]
Exits 77 (skipped) in browser mode when Chromium is not installed or cannot start."""
import html.parser
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import msgpack
import zmq

import zmk
from dashboard_page import compare_figures, find_chromium, headless

BINARY, MODE = sys.argv[1], sys.argv[2]
OUT_DIR = sys.argv[3] if len(sys.argv) > 3 else "."
READY, HEARTBEAT = b"\x01", b"\x02"
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def skip(why):
    print("SKIP: " + why)
    sys.exit(77)


class holder(threading.Thread):
    """A worker that takes requests and never answers (they stay 'held'), heartbeating
    so the device keeps it. Owns its socket on its own thread."""

    def __init__(self, ctx, endpoint, identity, prefixes, capacity):
        super().__init__(daemon=True)
        self.ctx, self.endpoint, self.identity = ctx, endpoint, identity
        self.ready = {"prefixes": prefixes, "capacity": capacity}
        self.held = 0
        self.stop = threading.Event()

    def run(self):
        s = self.ctx.socket(zmq.DEALER)
        s.linger = 0
        s.identity = self.identity
        s.connect(self.endpoint)
        s.send_multipart([READY, msgpack.packb(self.ready, use_bin_type=True)])
        while not self.stop.is_set():
            if s.poll(100):
                frames = s.recv_multipart()
                if len(frames) >= 3 and frames[-2] == b"":
                    self.held += 1
            s.send(HEARTBEAT)
        s.close()


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def get_text(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.headers.get("Content-Type", ""), r.read().decode()


def admin_stats(ctx, endpoint):
    s = ctx.socket(zmq.REQ)
    s.linger = 0
    s.connect(endpoint)
    s.send(b"stats")
    if not s.poll(3000):
        raise RuntimeError("admin endpoint did not answer")
    m = msgpack.unpackb(s.recv(), raw=False)
    s.close()
    return m


class dom_reader(html.parser.HTMLParser):
    """Collects the text of elements carrying data-stat, the worker rows and the count tables."""

    def __init__(self):
        super().__init__()
        self.stats, self.workers, self.rows, self.bars = {}, {}, {}, {}
        self.stack = []  # (tag, attrs, text parts)
        self.rendered = 0
        self.worker = None
        self.row = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.rendered = int(a.get("data-rendered") or 0)
        if tag == "tr" and "data-worker" in a:
            self.worker = self.workers.setdefault(a["data-worker"], {})
        for key in ("data-code", "data-reason", "data-type"):
            if tag == "tr" and key in a:
                self.row = (key[5:], a[key])
        if "data-priority" in a:
            self.row = ("priority", a["data-priority"])
        self.stack.append((tag, a, []))

    def handle_endtag(self, tag):
        while self.stack:
            t, a, parts = self.stack.pop()
            text = "".join(parts).strip()
            if self.stack:
                self.stack[-1][2].append("".join(parts))
            if "data-stat" in a:
                self.stats[a["data-stat"]] = text
            if "data-field" in a and self.worker is not None:
                self.worker[a["data-field"]] = text
            if "data-count" in a and self.row:
                (self.bars if self.row[0] == "priority" else self.rows)[self.row] = text
            if t == "tr":
                self.worker, self.row = None, None
            if t == tag:
                break

    def handle_data(self, data):
        if self.stack:
            self.stack[-1][2].append(data)


def compare_page(dom, api):
    for w in api["workers"]["list"]:
        shown = dom.workers.get(w["identity"])
        check(shown is not None, "worker %s listed on the page" % w["identity"])
        if shown:
            prefixes = " ".join(w["prefixes"]) if w["prefixes"] else "(every type)"
            check(shown.get("capacity") == str(w["capacity"]) and shown.get("held") == str(w["held"])
                  and shown.get("prefixes") == prefixes,
                  "worker %s: capacity/held/prefixes as in /api/stats (%s)" % (w["identity"], shown))
            check(bool(re.fullmatch(r"\d+\.\d s ago", shown.get("last_heard", ""))), "worker last heard shown")
    check(len(dom.workers) == len(api["workers"]["list"]), "no worker on the page that the API does not list")
    for table, key in (("rejected", "code"), ("dropped", "reason")):
        for name, n in api[table].items():
            check(dom.rows.get((key, name)) == str(n), "%s %s = %s on the page" % (table, name, n))
    for name, n in api["backlog"]["by_type"].items():
        check(dom.rows.get(("type", name)) == str(n), "backlog type %s = %s on the page" % (name, n))
    bars = [dom.bars.get(("priority", str(p))) for p in range(10)]
    check(bars == [str(n) for n in api["backlog"]["by_priority"]],
          "backlog per priority on the page %s = /api/stats %s" % (bars, api["backlog"]["by_priority"]))


def main():
    if MODE == "browser" and not find_chromium():
        skip("chromium not installed (Debian package chromium; scripts/deps.sh installs it)")
    ctx = zmq.Context()
    with tempfile.TemporaryDirectory() as tmp:
        front, back, admin = ("ipc://%s/%s" % (tmp, n) for n in ("front", "back", "admin"))
        log = open(os.path.join(tmp, "log"), "w+")
        # Liveness 3 x 500 ms: a Python worker starved of CPU is not evicted. A request
        # for a type nobody serves waits (no-service 60 s); the sixth waiting one is refused.
        dev = subprocess.Popen([BINARY, "--frontend", front, "--backend", back, "--admin", admin,
                                "--http", "127.0.0.1:0", "--heartbeat-ms", "500", "--no-service-ms", "60000",
                                "--max-pending", "5"], stderr=log)
        hold = holder(ctx, back, b"holder-1", ["hold."], 3)
        echo = subprocess.Popen(["/usr/bin/python3", os.path.join(os.path.dirname(__file__), "worker.py"), back,
                                 "echo", "--prefix", "echo."])
        try:
            deadline = time.time() + 20
            port = None
            while port is None and time.time() < deadline and dev.poll() is None:
                log.seek(0)
                m = re.search(r"dashboard http://127\.0\.0\.1:(\d+)/", log.read())
                port = m and int(m.group(1))
                time.sleep(0.05)
            if port is None:
                raise SystemExit("FAIL the device did not log its dashboard address")
            base = "http://127.0.0.1:%d" % port
            hold.start()
            while time.time() < deadline and admin_stats(ctx, admin)["workers_ready"] < 2:
                time.sleep(0.05)

            client = ctx.socket(zmq.DEALER)
            client.linger = 0
            client.connect(front)
            send = lambda env: client.send_multipart([b"", zmk.encode(env)])
            answers = {}

            def answer(timeout=5):
                if client.poll(int(timeout * 1000)):
                    env = zmk.decode(client.recv_multipart()[1])
                    key = zmk.error_code(env) or env["type"]
                    answers[key] = answers.get(key, 0) + 1

            # One at a time: requests queued for the busy echo worker would count as waiting.
            for i in range(10):
                send(zmk.envelope("echo.ping", msgpack.packb(i)))
                answer()
            for _ in range(2):
                send(zmk.envelope("hold.job"))
            while time.time() < deadline and admin_stats(ctx, admin)["in_flight"] < 2:
                time.sleep(0.05)
            # Expired on arrival: stamped 10 s ago with a 1 s TTL.
            send(zmk.envelope("echo.late", ttl_ms=1000, timestamp_ns=time.time_ns() - 10 ** 10))
            answer()
            for _ in range(3):
                send(zmk.envelope("nobody.a", priority=7))
            for _ in range(2):
                send(zmk.envelope("nobody.b", priority=2))
            for _ in range(2):
                send(zmk.envelope("nobody.c"))  # past --max-pending: 'overloaded'
            while sum(answers.values()) < 13 and time.time() < deadline:
                answer(0.2)
            check(answers == {"echo.ping.done": 10, "expired": 1, "overloaded": 2}, "client answers %s" % answers)
            # Quiet now: let the published status catch up and the rates fall to 0 (1 s window).
            time.sleep(1.6)
            api = get_json(base + "/api/stats")
            adm = admin_stats(ctx, admin)

            if MODE == "api":
                c = api["counters"]
                check(api["program"] == "zmqkit-queue" and re.fullmatch(r"\d+\.\d+\.\d+", api["version"]) is not None,
                      "program and version")
                check(c["received"] == 20 and c["replied"] == 10 and c["routed"] == 12, "received 20, routed 12, replied 10: %s" % c)
                check(c["expired"] == 1, "expired 1")
                check(api["rejected"].get("overloaded") == 2 and api["rejected"].get("expired") == 1,
                      "refusals by code %s" % api["rejected"])
                b = api["backlog"]
                check(b["pending"] == 5 and b["in_flight"] == 2, "backlog 5 waiting, 2 at workers: %s" % b)
                check(b["by_priority"] == [0, 0, 2, 0, 0, 0, 0, 3, 0, 0], "backlog per priority %s" % b["by_priority"])
                check(b["by_type"] == {"nobody.a": 3, "nobody.b": 2}, "backlog per type %s" % b["by_type"])
                w = api["workers"]
                check(w["total"] == 2 and w["capacity"] == 4 and len(w["list"]) == 2, "two workers, capacity 4: %s" % w)
                h = [x for x in w["list"] if x["identity"] == "holder-1"]
                check(len(h) == 1 and h[0]["prefixes"] == ["hold."] and h[0]["capacity"] == 3 and h[0]["held"] == 2,
                      "worker holder-1: prefixes, capacity 3, holds 2: %s" % h)
                e = [x for x in w["list"] if x["identity"] != "holder-1"]
                check(len(e) == 1 and e[0]["identity"].startswith("0x") and e[0]["prefixes"] == ["echo."] and e[0]["held"] == 0,
                      "the echo worker, binary identity as hex: %s" % e)
                check(all(0 <= x["last_heard_ms"] < 2000 for x in w["list"]), "workers heard from recently")
                check(api["rates"]["received_per_second"] == 0 and api["rates"]["replied_per_second"] == 0,
                      "rates back to 0 once traffic stopped: %s" % api["rates"])
                check(api["store"] is None, "no store")
                same = {k: (api["counters"].get(k), adm[k]) for k in ("received", "routed", "replied", "expired")}
                check(all(a == b for a, b in same.values()), "/api/stats agrees with the admin stats %s" % same)
                ctype, page = get_text(base + "/")
                check(ctype.startswith("text/html"), "/ is HTML (%s)" % ctype)
                external = re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//[^"'\s>]+|@import|url\(\s*["']?https?:""", page)
                check("api/stats" in page and not external, "the page is self-contained (external references: %s)" % external)
                _, metrics = get_text(base + "/metrics")
                check("zmqkit_queue_received_total 20" in metrics, "/metrics still served on the same port")
            else:
                page = headless(base + "/", "--dump-dom")
                if page is None:
                    sys.exit(77)
                api = get_json(base + "/api/stats")  # again: the page polled between the two
                compare_figures(page, api, check, minimum=15)
                dom = dom_reader()
                dom.feed(page)
                compare_page(dom, api)
                os.makedirs(OUT_DIR, exist_ok=True)
                png = os.path.join(os.path.abspath(OUT_DIR), "queue-dashboard.png")
                if os.path.exists(png):
                    os.remove(png)
                headless(base + "/", "--screenshot=" + png, "--window-size=1280,900")
                check(os.path.exists(png) and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n",
                      "screenshot kept: %s" % png)
        finally:
            hold.stop.set()
            if hold.is_alive():
                hold.join(5)
            echo.kill()
            echo.wait()
            dev.send_signal(signal.SIGTERM)
            try:
                dev.wait(timeout=10)
            except subprocess.TimeoutExpired:
                dev.kill()
                dev.wait()
    ctx.destroy(linger=0)
    print("%d failed" % len(failures))
    sys.exit(1 if failures else 0)


main()
