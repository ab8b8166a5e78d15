"""Hostile and faulty peers against the real zmqkit-queue binary (issue 11, "Wrong answers").
usage: hardening.py PATH/TO/zmqkit-queue [TEST...]   (no TEST: all of them)
Every socket waits with a deadline; the device runs on ipc:// endpoints in a temporary directory."""
import os
import signal
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

import zmk

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"
BINARY = sys.argv[1]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


class device:
    def __init__(self, tmp, name, *flags):
        self.front = "ipc://%s/%s-front" % (tmp, name)
        self.back = "ipc://%s/%s-back" % (tmp, name)
        self.admin = "ipc://%s/%s-admin" % (tmp, name)
        self.proc = subprocess.Popen([BINARY, "--frontend", self.front, "--backend", self.back, "--admin",
                                      self.admin, "--log-level", "warn", *flags])

    def stats(self, ctx):
        s = ctx.socket(zmq.REQ)
        s.linger = 0
        s.connect(self.admin)
        s.send(b"stats")
        if not s.poll(2000):
            raise RuntimeError("admin endpoint did not answer")
        m = msgpack.unpackb(s.recv(), raw=False)
        s.close()
        return m

    def wait_stats(self, ctx, pred, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            m = self.stats(ctx)
            if pred(m):
                return m
            time.sleep(0.02)
        return self.stats(ctx)

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


class client:
    """A DEALER client: requests are [empty, body]; replies [empty, body]."""

    def __init__(self, ctx, endpoint):
        self.s = ctx.socket(zmq.DEALER)
        self.s.linger = 0
        self.s.connect(endpoint)

    def send(self, env):
        self.s.send_multipart([b"", zmk.encode(env)])

    def send_raw(self, body):
        self.s.send_multipart([b"", body])

    def recv_raw(self, timeout_ms=5000):
        if not self.s.poll(timeout_ms):
            return None
        frames = self.s.recv_multipart()
        assert len(frames) == 2 and frames[0] == b"", frames
        return frames[1]

    def recv(self, timeout_ms=5000):
        raw = self.recv_raw(timeout_ms)
        return None if raw is None else zmk.decode(raw)


class worker:
    """A raw worker DEALER: READY, then whatever the test does by hand."""

    def __init__(self, ctx, endpoint, ready=b"\x01"):
        self.s = ctx.socket(zmq.DEALER)
        self.s.linger = 0
        self.s.connect(endpoint)
        self.s.send(ready)

    def request(self, timeout_ms=5000):
        """The next request (frames), skipping heartbeats; None on timeout."""
        end = time.time() + timeout_ms / 1000
        while time.time() < end:
            if not self.s.poll(max(1, int((end - time.time()) * 1000))):
                return None
            frames = self.s.recv_multipart()
            if frames == [b"\x02"]:
                continue
            return frames
        return None

    def heartbeat(self):
        self.s.send(b"\x02")

    def reply(self, request_frames, body):
        self.s.send_multipart(request_frames[:-1] + [body])


def error_code(env):
    return zmk.error_code(env) if env else None


# --- 1. A duplicate reply never reaches another client ---------------------------------------
def test_duplicate_reply(tmp, ctx):
    dev = device(tmp, "dup", "--heartbeat-ms", "500")
    try:
        w = worker(ctx, dev.back)
        dev.wait_stats(ctx, lambda m: m["workers_ready"] == 1)
        ca, cb = client(ctx, dev.front), client(ctx, dev.front)
        a = zmk.envelope("t.a", b"A")
        b = zmk.envelope("t.b", b"B")
        ca.send(a)
        ra = w.request()
        check(ra is not None, "duplicate: worker got A")
        cb.send(b)
        dev.wait_stats(ctx, lambda m: m["pending"] == 1)
        reply_a = zmk.encode(zmk.reply(zmk.decode(ra[-1]), "t.a.done", b"answer to A"))
        w.reply(ra, reply_a)
        w.reply(ra, reply_a)  # the same answer again: a buggy or retrying worker
        got_a = ca.recv()
        check(got_a is not None and got_a["correlation_id"] == a["id"], "duplicate: A's client got A's reply")
        rb = w.request()
        check(rb is not None and zmk.decode(rb[-1])["id"] == b["id"], "duplicate: worker then got B")
        early = cb.recv(300)
        check(early is None, "duplicate: B's client got nothing before B was answered (got %r)" %
              (early and early["correlation_id"].hex()))
        w.reply(rb, zmk.encode(zmk.reply(zmk.decode(rb[-1]), "t.b.done", b"answer to B")))
        got_b = early or cb.recv()
        check(got_b is not None and got_b["correlation_id"] == b["id"] and got_b["body"] == b"answer to B",
              "duplicate: B's client got B's reply")
        cb.send(b)  # a retry: answered from the reply cache
        again = cb.recv()
        check(again is not None and again["correlation_id"] == b["id"] and again["body"] == b"answer to B",
              "duplicate: B's retry got B's reply from the cache")
        m = dev.stats(ctx)
        check(m["dropped"].get("unknown-reply", 0) == 1, "duplicate: the second copy counted as dropped (%r)" %
              m["dropped"])
    finally:
        check(dev.stop() == 0, "duplicate: SIGTERM, exit 0")


# --- 2. bad-request names the request's id whenever element 5 is a 16-byte bin -----------------
def test_bad_request_id(tmp, ctx):
    dev = device(tmp, "badreq")
    try:
        c = client(ctx, dev.front)
        ts = msgpack.Timestamp.from_unix_nano(time.time_ns())
        good = [1, "t.x", 4, ts, 0, None, b"", {}, b"body"]
        cases = {
            "version 2": {0: 2}, "type empty": {1: ""}, "type not str": {1: 7}, "type not UTF-8": {1: b"\xff"},
            "priority 12": {2: 12}, "priority negative": {2: -1}, "timestamp an int": {3: 5},
            "ttl negative": {4: -5}, "ttl a str": {4: "x"}, "correlation_id 3 bytes": {6: b"abc"},
            "headers a list": {7: []}, "header value an int": {7: {"k": 1}}, "body a str": {8: "text"},
        }
        answered = 0
        for what, change in cases.items():
            fields = list(good)
            req_id = zmk.new_id()
            fields[5] = req_id
            for i, v in change.items():
                fields[i] = v
            c.send_raw(msgpack.packb(fields, use_bin_type=True))
            r = c.recv(3000)
            ok = r is not None and error_code(r) == "bad-request" and r["correlation_id"] == req_id
            answered += ok
            if not ok:
                print("     %s: %r" % (what, r and (error_code(r), r["correlation_id"])))
        check(answered == len(cases), "bad-request: %d of %d field errors answered with the request's id" %
              (answered, len(cases)))
        # Only 8 elements, trailing bytes: still an id at element 5.
        req_id = zmk.new_id()
        c.send_raw(msgpack.packb([1, "t.x", 4, ts, 0, req_id, b"", {}], use_bin_type=True))
        r = c.recv(3000)
        check(r is not None and error_code(r) == "bad-request" and r["correlation_id"] == req_id,
              "bad-request: 8-element array answered with its id")
        c.send_raw(zmk.encode(zmk.envelope("t.x", id_=req_id)) + b"\x00")
        r = c.recv(3000)
        check(r is not None and error_code(r) == "bad-request" and r["correlation_id"] == req_id,
              "bad-request: trailing bytes answered with the request's id")
        fields = list(good)
        fields[5] = b"short"
        c.send_raw(msgpack.packb(fields, use_bin_type=True))
        r = c.recv(3000)
        check(r is not None and error_code(r) == "bad-request" and r["correlation_id"] == b"",
              "bad-request: an id that is not 16 bytes gives an empty correlation_id")
    finally:
        check(dev.stop() == 0, "bad-request: SIGTERM, exit 0")


# --- 3. A request stamped before 1970 expires ---------------------------------------------------
def test_expiry_before_1970(tmp, ctx):
    dev = device(tmp, "y1969")
    try:
        w = worker(ctx, dev.back)
        dev.wait_stats(ctx, lambda m: m["workers_ready"] == 1)
        c = client(ctx, dev.front)
        env = zmk.envelope("t.old", b"", ttl_ms=1, timestamp_ns=-86400 * 10**9)  # 1969-12-31
        start = time.time()
        c.send(env)
        r = c.recv(5000)
        took = (time.time() - start) * 1000
        check(r is not None and error_code(r) == "expired" and r["correlation_id"] == env["id"],
              "1969: request with ttl 1 ms answered expired (%s in %.1f ms)" % (error_code(r), took))
        check(w.request(200) is None, "1969: never delivered to the worker")
    finally:
        check(dev.stop() == 0, "1969: SIGTERM, exit 0")


TESTS = {
    "duplicate_reply": test_duplicate_reply,
    "bad_request_id": test_bad_request_id,
    "expiry_before_1970": test_expiry_before_1970,
}

if __name__ == "__main__":
    names = sys.argv[2:] or list(TESTS)
    with tempfile.TemporaryDirectory(prefix="zmqkit-queue-hardening-") as tmp:
        ctx = zmq.Context()
        for name in names:
            print("--- " + name, flush=True)
            TESTS[name](tmp, ctx)
        ctx.destroy(linger=0)
    print("FAILED: %d" % len(failures) if failures else "all passed")
    sys.exit(1 if failures else 0)
