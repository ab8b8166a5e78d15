"""End to end: Python clients and workers, written from docs/protocol.md alone, through the real
zmqkit-queue binary. usage: e2e.py PATH/TO/zmqkit-queue"""
import os
import random
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


def spawn(*args):
    return subprocess.Popen([PY, *args], cwd=HERE)


def envelope_run(tmp, ctx):
    # Liveness 3 x 500 ms: a Python worker starved of CPU on a loaded machine is not evicted.
    dev = device(tmp, "env", "--heartbeat-ms", "500", "--no-service-ms", "500")
    exec_log = os.path.join(tmp, "executions")
    workers = [spawn(os.path.join(HERE, "worker.py"), dev.back, "orders", "--prefix", "order.", "--exec-log", exec_log),
               spawn(os.path.join(HERE, "worker.py"), dev.back, "courses", "--prefix", "course.", "--capacity", "4",
                     "--exec-log", exec_log, "--delay-ms", "1"),
               spawn(os.path.join(HERE, "worker.py"), dev.back, "slow", "--prefix", "slow.", "--exec-log", exec_log,
                     "--delay-ms", "300")]
    try:
        m = dev.wait_stats(ctx, lambda m: m["workers_ready"] == 3)
        check(m["workers_ready"] == 3, "three Python workers READY with type prefixes")
        check(m["worker_capacity"] == 6, "one READY in the map form announced capacity 4 (total %d)" % m["worker_capacity"])
        c = client(ctx, dev.front)

        # 300 requests, window 20, mixed types and priorities.
        sent, replies, wrong_worker = {}, {}, 0
        rng = random.Random(7)
        total, window, i = 300, 20, 0
        while len(replies) < total:
            while i < total and i - len(replies) < window:
                t = rng.choice(["order.created", "course.subscribed"])
                env = zmk.envelope(t, msgpack.packb(i), priority=rng.randint(0, 9))
                sent[env["id"]] = env
                c.send(env)
                i += 1
            r = c.recv()
            if r is None:
                break
            req = sent.get(r["correlation_id"])
            if req is None or r["correlation_id"] in replies:
                continue
            replies[r["correlation_id"]] = r
            body = msgpack.unpackb(r["body"], raw=False)
            if body["worker"] != req["type"].split(".")[0] + "s":
                wrong_worker += 1
            if body["echo"] != req["body"]:
                wrong_worker += 1
        check(len(replies) == total, "300 typed requests answered, each correlated to its request (%d)" % len(replies))
        check(wrong_worker == 0, "order.* and course.* each served only by the worker listing that prefix; bodies echoed")

        # A retry with the same id while the first is at a (300 ms) worker: executed once.
        env = zmk.envelope("slow.job", b"dedup")
        c.send(env)
        c.send(env)
        first = c.recv()
        second = c.recv(500)
        check(first is not None and first["correlation_id"] == env["id"], "retried request answered")
        check(second is None, "the retry did not produce a second execution's reply")
        c.send(env)
        cached = c.recv()
        check(cached is not None and cached["id"] == first["id"], "retry after the reply answered from the cache")
        with open(exec_log) as f:
            ids = [line.strip() for line in f]
        check(ids.count(env["id"].hex()) == 1, "the retried id executed exactly once")
        check(len(ids) == len(set(ids)), "no request executed twice (%d executions)" % len(ids))

        # Errors the device answers itself.
        env = zmk.envelope("nobody.serves", b"")
        c.send(env)
        r = c.recv(3000)
        check(r is not None and zmk.error_code(r) == "no-service" and r["correlation_id"] == env["id"],
              "unserved type answered no-service")
        env = zmk.envelope("order.old", b"", ttl_ms=100, timestamp_ns=time.time_ns() - 10**9)
        c.send(env)
        r = c.recv()
        check(r is not None and zmk.error_code(r) == "expired", "expired request answered expired")
        c.send_raw(b"\x93\x01\xa1x\x04")  # a complete msgpack array, not an envelope
        r = c.recv()
        check(r is not None and zmk.error_code(r) == "bad-request" and "zmk.reason" in r["headers"],
              "bad msgpack answered bad-request with a reason")

        m = dev.stats(ctx)
        print("stats:", m)
        check(m["replied"] >= 301 and m["duplicates_suppressed"] == 1 and m["answered_from_cache"] == 1,
              "admin counters: replied, duplicates_suppressed, answered_from_cache")
        check(m["rejected"].get("no-service") == 1 and m["rejected"].get("bad-request") == 1 and m["expired"] == 1,
              "admin counters: rejected by reason, expired")
    finally:
        for w in workers:
            w.kill()
            w.wait()
        rc = dev.stop()
    check(rc == 0, "SIGTERM: device exits 0")


def plain_run(tmp, ctx):
    dev = device(tmp, "plain")
    workers = [spawn(os.path.join(HERE, "ppworker.py"), dev.back) for _ in range(2)]
    try:
        dev.wait_stats(ctx, lambda m: m["workers_ready"] == 2)
        clients = [spawn(os.path.join(HERE, "lpclient.py"), dev.front, "50") for _ in range(2)]
        codes = [p.wait(timeout=60) for p in clients]
        check(codes == [0, 0], "Lazy Pirate clients through Paranoid Pirate workers: 2 x 50 plain requests")
        m = dev.stats(ctx)
        # A Lazy Pirate client resends after 2.5 s of silence (a loaded machine), so a request
        # may be routed more than once; every one of the 100 must still be answered.
        check(m["replied"] >= 100 and m["routed"] >= 100, "plain bodies routed and replied (%d)" % m["replied"])
    finally:
        for w in workers:
            w.kill()
            w.wait()
        rc = dev.stop()
    check(rc == 0, "SIGTERM: device exits 0")


with tempfile.TemporaryDirectory(prefix="zmqkit-queue-e2e-") as tmp:
    ctx = zmq.Context()
    envelope_run(tmp, ctx)
    plain_run(tmp, ctx)
    ctx.destroy(linger=0)
print("FAILED: %d" % len(failures) if failures else "all passed")
sys.exit(1 if failures else 0)
