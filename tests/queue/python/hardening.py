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
from harness import check, client, device, failures  # noqa: E402


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

    def request_heartbeating(self, timeout_ms=5000, every_ms=100):
        """As request(), heartbeating meanwhile: alive, but not answering."""
        end = time.time() + timeout_ms / 1000
        while time.time() < end:
            self.heartbeat()
            if self.s.poll(every_ms):
                frames = self.s.recv_multipart()
                if frames != [b"\x02"]:
                    return frames
        return None

    def reply(self, request_frames, body):
        self.s.send_multipart(request_frames[:-1] + [body])


def recv_while_alive(c, workers, timeout_ms=3000):
    """A client's next reply, the workers heartbeating meanwhile (alive, never evicted)."""
    end = time.time() + timeout_ms / 1000
    while time.time() < end:
        for w in workers:
            w.heartbeat()
        r = c.recv(50)
        if r is not None:
            return r
    return None


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
        fields = list(good)
        fields[5] = b"short"
        c.send_raw(msgpack.packb(fields, use_bin_type=True))
        r = c.recv(3000)
        check(r is not None and error_code(r) == "bad-request" and r["correlation_id"] == b"",
              "bad-request: an id that is not 16 bytes gives an empty correlation_id")
    finally:
        check(dev.stop() == 0, "bad-request: SIGTERM, exit 0")


# --- 6. Header keys and values must be UTF-8 -----------------------------------------------------
def test_header_utf8(tmp, ctx):
    dev = device(tmp, "utf8")
    try:
        w = worker(ctx, dev.back)
        dev.wait_stats(ctx, lambda m: m["workers_ready"] == 1)
        c = client(ctx, dev.front)
        for where in ("key", "value"):
            env = zmk.envelope("t.x", b"", headers={"KKKK": "VVVV"})
            frame = zmk.encode(env)
            frame = frame.replace(b"\xa4KKKK" if where == "key" else b"\xa4VVVV", b"\xa4\xff\xfe\xc0\xaf")
            c.send_raw(frame)
            r = c.recv(3000)
            check(r is not None and error_code(r) == "bad-request" and r["correlation_id"] == env["id"] and
                  "headers" in r["headers"].get("zmk.reason", ""),
                  "utf-8: a header %s that is not UTF-8 answered bad-request naming headers (%r)" %
                  (where, r and r["headers"]))
        check(w.request(200) is None, "utf-8: nothing reached the worker")
    finally:
        check(dev.stop() == 0, "utf-8: SIGTERM, exit 0")


# --- 7. Only a complete msgpack array is an envelope candidate ------------------------------------
def test_plain_body_rule(tmp, ctx):
    dev = device(tmp, "plainrule")
    try:
        w = worker(ctx, dev.back)  # bare READY: serves plain bodies
        dev.wait_stats(ctx, lambda m: m["workers_ready"] == 1)
        c = client(ctx, dev.front)
        for body in (b"\x95hi", b"\x95hello world", b"\x9fplain text", zmk.encode(zmk.envelope("t.x")) + b"\x00"):
            c.send_raw(body)
            req = w.request(2000)
            ok = req is not None and req[-1] == body
            if ok:
                w.reply(req, b"echo " + body)
            r = c.recv_raw(2000)
            check(ok and r == b"echo " + body, "plain rule: %r routed untouched as a plain body (reply %r)" %
                  (body[:20], r and r[:40]))
        c.send_raw(b"\x93\x01\xa1x\x04")  # a complete array: an envelope candidate, malformed
        r = c.recv(2000)
        check(r is not None and error_code(r) == "bad-request", "plain rule: a complete array that is not an "
              "envelope is still bad-request")
    finally:
        check(dev.stop() == 0, "plain rule: SIGTERM, exit 0")


# --- 8. With CURVE, dedup and the reply cache are scoped by the client's key ----------------------
def write_key(path, z85, secret):
    with open(path, "w") as f:
        f.write(z85.decode() + "\n")
    os.chmod(path, 0o600 if secret else 0o644)


def test_curve_scoping(tmp, ctx):
    keys = os.path.join(tmp, "curve")
    os.makedirs(os.path.join(keys, "clients"))
    server_pub, server_sec = zmq.curve_keypair()
    write_key(os.path.join(keys, "frontend.key"), server_sec, True)
    pairs = [zmq.curve_keypair() for _ in range(2)]
    for i, (pub, _) in enumerate(pairs):
        write_key(os.path.join(keys, "clients", "client%d.pub" % i), pub, False)
    dev = device(tmp, "curve", "--frontend-curve-secret", os.path.join(keys, "frontend.key"),
                 "--frontend-allow", os.path.join(keys, "clients"))

    def curve_client(pub, sec):
        c = client.__new__(client)
        c.s = ctx.socket(zmq.DEALER)
        c.s.linger = 0
        c.s.curve_publickey, c.s.curve_secretkey, c.s.curve_serverkey = pub, sec, server_pub
        c.s.connect(dev.front)
        return c

    try:
        w = worker(ctx, dev.back)
        dev.wait_stats(ctx, lambda m: m["workers_ready"] == 1)
        alice, mallory = curve_client(*pairs[0]), curve_client(*pairs[1])
        env = zmk.envelope("t.secret", b"alice's question")
        alice.send(env)
        held = w.request()
        check(held is not None, "curve: alice's request reached the worker")
        # Mallory learned the id and sends it while alice's request is at the worker.
        stolen = dict(env, body=b"mallory")
        mallory.send(stolen)
        dev.wait_stats(ctx, lambda m: m["pending"] == 1 or m["duplicates_suppressed"] == 1)
        w.reply(held, zmk.encode(zmk.reply(zmk.decode(held[-1]), "t.secret.done", b"alice's answer")))
        got = alice.recv(3000)
        check(got is not None and got["body"] == b"alice's answer",
              "curve: alice gets her reply though mallory sent her id while it was in flight")
        second = w.request(3000)  # mallory's copy is a request of its own
        check(second is not None and zmk.decode(second[-1])["body"] == b"mallory",
              "curve: mallory's request with alice's id executed as mallory's own")
        if second is not None:
            w.reply(second, zmk.encode(zmk.reply(zmk.decode(second[-1]), "t.secret.done", b"mallory's answer")))
        got = mallory.recv(3000)
        check(got is not None and got["body"] == b"mallory's answer", "curve: mallory gets only her own reply")
        # From the cache: each gets their own.
        mallory.send(stolen)
        got = mallory.recv(3000)
        check(got is not None and got["body"] == b"mallory's answer", "curve: mallory's retry: her cached reply")
        alice.send(env)
        got = alice.recv(3000)
        check(got is not None and got["body"] == b"alice's answer", "curve: alice's retry: her cached reply")
        m = dev.stats(ctx)
        check(m["answered_from_cache"] == 2 and m["duplicates_suppressed"] == 0,
              "curve: 2 answered from cache, no cross-client duplicate (%d, %d)" %
              (m["answered_from_cache"], m["duplicates_suppressed"]))
    finally:
        check(dev.stop() == 0, "curve: SIGTERM, exit 0")


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


# --- 4. TTL at a worker, delivery timeout, drain ------------------------------------------------
def test_ttl_at_worker(tmp, ctx):
    dev = device(tmp, "ttlw", "--heartbeat-ms", "300")
    try:
        w = worker(ctx, dev.back)
        dev.wait_stats(ctx, lambda m: m["workers_ready"] == 1)
        c = client(ctx, dev.front)
        env = zmk.envelope("t.slow", b"", ttl_ms=500)
        start = time.time()
        c.send(env)
        held = w.request_heartbeating(2000)
        check(held is not None, "ttl at worker: the worker got the request")
        r = recv_while_alive(c, [w])  # the worker stays alive and silent
        took = (time.time() - start) * 1000
        check(r is not None and error_code(r) == "expired" and r["correlation_id"] == env["id"],
              "ttl at worker: ttl 500 ms answered expired while at a heartbeating worker (%s after %.0f ms)" %
              (error_code(r), took))
        c.send(env)  # the same id again: no longer suppressed as a duplicate of the one at the worker
        again = recv_while_alive(c, [w], 2000)
        check(again is not None and error_code(again) == "expired", "ttl at worker: its retry answered expired")
        w.reply(held, zmk.encode(zmk.reply(zmk.decode(held[-1]), "t.slow.done", b"too late")))
        m = dev.wait_stats(ctx, lambda m: m["dropped"].get("late-reply", 0) == 1)
        check(m["dropped"].get("late-reply", 0) == 1, "ttl at worker: the worker's late reply dropped, counted (%r)" %
              m["dropped"])
        check(c.recv(300) is None, "ttl at worker: the late reply never reached the client")
        check(m["in_flight"] == 0 and m["expired"] == 2, "ttl at worker: nothing in flight, 2 expired")
    finally:
        check(dev.stop() == 0, "ttl at worker: SIGTERM, exit 0")


def test_delivery_timeout(tmp, ctx):
    dev = device(tmp, "dto", "--heartbeat-ms", "5000", "--delivery-timeout-ms", "300", "--max-requeue", "1")
    try:
        w1 = worker(ctx, dev.back)
        dev.wait_stats(ctx, lambda m: m["workers_ready"] == 1)
        w2 = worker(ctx, dev.back)
        dev.wait_stats(ctx, lambda m: m["workers_ready"] == 2)
        c = client(ctx, dev.front)
        env = zmk.envelope("t.job", b"")
        c.send(env)
        first = w1.request(2000)
        start = time.time()
        second = w2.request(3000)
        took = (time.time() - start) * 1000
        check(first is not None and second is not None and zmk.decode(second[-1])["id"] == env["id"],
              "delivery timeout: taken back after 300 ms and delivered to the other worker (%.0f ms)" % took)
        # The first worker answers late, before the second: first reply wins.
        w1.reply(first, zmk.encode(zmk.reply(zmk.decode(first[-1]), "t.job.done", b"from w1")))
        r = c.recv(2000)
        check(r is not None and r["correlation_id"] == env["id"] and r["body"] == b"from w1",
              "delivery timeout: the first worker's late reply answered the client")
        w2.reply(second, zmk.encode(zmk.reply(zmk.decode(second[-1]), "t.job.done", b"from w2")))
        m = dev.wait_stats(ctx, lambda m: m["dropped"].get("late-reply", 0) == 1)
        check(m["dropped"].get("late-reply", 0) == 1 and c.recv(300) is None,
              "delivery timeout: the second reply dropped and counted (%r)" % m["dropped"])
        check(m["delivery_timeouts"] == 1 and m["requeued"] == 1, "delivery timeout: counted (%d)" %
              m["delivery_timeouts"])
        # Past max-requeue: dead-letter. Both workers are free again; neither answers.
        env = zmk.envelope("t.job", b"")
        start = time.time()
        c.send(env)
        r = c.recv(3000)
        took = (time.time() - start) * 1000
        check(r is not None and error_code(r) == "dead-letter" and r["correlation_id"] == env["id"],
              "delivery timeout: dead-letter after 2 deliveries of 300 ms (%s in %.0f ms)" % (error_code(r), took))
    finally:
        check(dev.stop() == 0, "delivery timeout: SIGTERM, exit 0")


def test_drain_answers_requests_at_workers(tmp, ctx):
    dev = device(tmp, "drain", "--heartbeat-ms", "300")
    try:
        w = worker(ctx, dev.back)
        dev.wait_stats(ctx, lambda m: m["workers_ready"] == 1)
        c = client(ctx, dev.front)
        env = zmk.envelope("t.stuck", b"")
        c.send(env)
        check(w.request_heartbeating(2000) is not None, "drain: the worker holds the request")
        dev.proc.send_signal(signal.SIGTERM)
        start = time.time()
        r = recv_while_alive(c, [w])  # alive to the end: never evicted
        took = (time.time() - start) * 1000
        check(r is not None and error_code(r) == "unavailable" and r["correlation_id"] == env["id"],
              "drain: the request at a worker answered unavailable within the drain deadline (%s after %.0f ms)" %
              (error_code(r), took))
    finally:
        check(dev.stop() == 0, "drain: exit 0")


# --- 5. A slow Paranoid Pirate worker's reply is accepted --------------------------------------
def test_slow_ppworker(tmp, ctx):
    dev = device(tmp, "slowpp")  # default heartbeat 1 s x liveness 3: evicted after 3 s of work
    exec_log = os.path.join(tmp, "slowpp-executions")
    w = subprocess.Popen([PY, os.path.join(HERE, "ppworker.py"), dev.back, "4", exec_log], cwd=HERE)
    try:
        dev.wait_stats(ctx, lambda m: m["workers_ready"] == 1)
        c = client(ctx, dev.front)
        start = time.time()
        c.send_raw(b"job 1")
        got = c.recv_raw(8000)
        took = time.time() - start
        check(got == b"job 1", "slow worker: its 4 s job answered (%r after %.1f s)" % (got, took))
        check(took < 6, "slow worker: answered in ~4 s, not after requeues (%.1f s)" % took)
        with open(exec_log) as f:
            runs = [line.strip() for line in f]
        check(runs == ["job 1"], "slow worker: executed once (%r)" % runs)
        m = dev.wait_stats(ctx, lambda m: m["workers_ready"] == 1)
        check(m["workers_ready"] == 1 and m.get("workers_returned", 0) == 1,
              "slow worker: its reply registered it again (ready %d, returned %d)" %
              (m["workers_ready"], m.get("workers_returned", 0)))
        check(m["pending"] == 0 and m["in_flight"] == 0 and m["replied"] == 1,
              "slow worker: the requeued copy withdrawn (pending %d, in flight %d)" % (m["pending"], m["in_flight"]))
    finally:
        w.kill()
        w.wait()
        check(dev.stop() == 0, "slow worker: SIGTERM, exit 0")


TESTS = {
    "duplicate_reply": test_duplicate_reply,
    "bad_request_id": test_bad_request_id,
    "expiry_before_1970": test_expiry_before_1970,
    "ttl_at_worker": test_ttl_at_worker,
    "delivery_timeout": test_delivery_timeout,
    "drain": test_drain_answers_requests_at_workers,
    "slow_ppworker": test_slow_ppworker,
    "header_utf8": test_header_utf8,
    "plain_body_rule": test_plain_body_rule,
    "curve_scoping": test_curve_scoping,
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
