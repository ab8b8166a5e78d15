"""Durability (zmqkit-queue --store, issue 14) against the real binary: restarts after SIGKILL with
pending work, retries answered from the stored reply cache, stored-acks then collect, the store's
byte bound, corrupted stores refused at start-up, and a SIGKILL loop under producers using stored
acks (5 kills; 100 with ZMQKIT_FULL=1). Workers log every execution (id, time, zmk.redelivered).
usage: store.py PATH/TO/zmqkit-queue [case...]   (no case: all; exit 77 when every case run was skipped)"""
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

BINARY = sys.argv[1]
skipped = []
FAST = ["--heartbeat-ms", "200", "--liveness", "5", "--no-service-ms", "30000"]


def start(tmp, name, store, *flags):
    return device(tmp, name, "--store", store, *FAST, *flags)


def worker(dev, tmp, *flags):
    return subprocess.Popen([PY, os.path.join(HERE, "worker.py"), dev.back, "w", "--exec-detail",
                             os.path.join(tmp, "executions"), *flags], cwd=HERE)


def executions(tmp):
    """id hex -> [(monotonic ns, redelivered count)]"""
    out = {}
    path = os.path.join(tmp, "executions")
    if os.path.exists(path):
        for line in open(path):
            parts = line.split()
            if len(parts) == 3:
                out.setdefault(parts[0], []).append((int(parts[1]), int(parts[2])))
    return out


def kill(dev):
    dev.proc.send_signal(signal.SIGKILL)
    dev.proc.wait()


def ack_header(env):
    e = dict(env)
    e["headers"] = dict(env["headers"], **{"zmk.ack": "stored"})
    return e


def wait_replies(c, want, timeout=20, resend=None):
    """Receives until every id in `want` has a reply (or the timeout); resends each missing one
    every 2 s with `resend(id)`. Returns: id -> reply envelope."""
    got, end, next_resend = {}, time.time() + timeout, time.time() + 2
    while len(got) < len(want) and time.time() < end:
        r = c.recv(200)
        if r is not None and r["type"] != "zmk.stored" and r["correlation_id"] in want:
            got.setdefault(r["correlation_id"], r)
        if resend and time.time() > next_resend:
            next_resend = time.time() + 2
            for i in want:
                if i not in got:
                    resend(i)
    return got


def restart_with_pending(tmp, ctx):
    """Acked requests, the device SIGKILLed before any worker came: all answered after the restart,
    each executed once; one at a worker when killed is delivered again marked zmk.redelivered."""
    store = os.path.join(tmp, "pending-store")
    dev = start(tmp, "pending", store)
    c = client(ctx, dev.front)
    reqs = {}
    for i in range(50):
        env = ack_header(zmk.envelope("job.run", msgpack.packb(i), priority=i % 10))
        reqs[env["id"]] = env
        c.send(env)
    acks = set()
    end = time.time() + 10
    while len(acks) < len(reqs) and time.time() < end:
        r = c.recv(500)
        if r and r["type"] == "zmk.stored" and r["headers"].get("zmk.ack") == "stored":
            acks.add(r["correlation_id"])
    check(acks == set(reqs), "every request acknowledged stored (%d of %d)" % (len(acks), len(reqs)))
    m = dev.stats(ctx)
    check(m["stored"] == 50 and m["acked"] == 50, "stats count stored %d, acked %d" % (m["stored"], m["acked"]))
    kill(dev)

    dev = start(tmp, "pending", store)
    m = dev.wait_stats(ctx, lambda m: m["recovered"] == 50, 5)
    check(m["recovered"] == 50 and m["pending"] == 50,
          "after SIGKILL the restarted device queued the 50 again (recovered %d, pending %d)" % (m["recovered"], m["pending"]))
    check(m["pending_by_priority"]["9"] == 5, "with their priorities (5 at priority 9)")
    w = worker(dev, tmp)
    try:
        c2 = client(ctx, dev.front)
        for env in reqs.values():  # the retry (collect) joins the pending copy
            c2.send(env)
        got = wait_replies(c2, set(reqs))
        check(len(got) == 50, "every accepted request answered after the restart (%d)" % len(got))
        ex = executions(tmp)
        check(all(len(ex.get(i.hex(), [])) == 1 for i in reqs), "each executed exactly once")

        # One request at a (slow) worker when the device dies: delivered again, marked.
        w.kill()
        w.wait()
        w = worker(dev, tmp, "--delay-ms", "3000")
        dev.wait_stats(ctx, lambda m: m["workers_ready"] == 1, 10)
        slow = zmk.envelope("job.slow", b"x")
        c2.send(slow)
        end = time.time() + 10
        while slow["id"].hex() not in executions(tmp) and time.time() < end:
            time.sleep(0.02)
        kill(dev)
        dev = start(tmp, "pending", store)
        c3 = client(ctx, dev.front)
        got = wait_replies(c3, {slow["id"]}, 20, resend=lambda i: c3.send(slow))
        check(slow["id"] in got, "the request held by a worker at the crash was answered after the restart")
        runs = executions(tmp).get(slow["id"].hex(), [])
        check(len(runs) >= 2 and runs[-1][1] >= 1,
              "its second delivery carried zmk.redelivered (%s)" % [r[1] for r in runs])
    finally:
        w.kill()
        w.wait()
        dev.stop()


def retry_from_stored_cache(tmp, ctx):
    store = os.path.join(tmp, "cache-store")
    dev = start(tmp, "cache", store, "--store-sync", "always")
    w = worker(dev, tmp)
    try:
        dev.wait_stats(ctx, lambda m: m["workers_ready"] == 1)
        c = client(ctx, dev.front)
        env = zmk.envelope("cache.me", b"once")
        c.send(env)
        first = c.recv(5000)
        check(first is not None and first["correlation_id"] == env["id"], "answered before the crash")
        kill(dev)
        dev = start(tmp, "cache", store, "--store-sync", "always")
        c2 = client(ctx, dev.front)
        c2.send(env)
        again = c2.recv(5000)
        check(again is not None and again["body"] == first["body"], "the retry after the restart got the same reply")
        m = dev.stats(ctx)
        check(m["answered_from_cache"] == 1, "answered from the stored reply cache")
        check(len(executions(tmp).get(env["id"].hex(), [])) == 1, "executed once across the restart")
    finally:
        w.kill()
        w.wait()
        dev.stop()


def ack_then_collect(tmp, ctx):
    store = os.path.join(tmp, "collect-store")
    dev = start(tmp, "collect", store)
    w = None
    try:
        c = client(ctx, dev.front)
        env = ack_header(zmk.envelope("titanic.job", b"later"))
        c.send(env)
        ack = c.recv(5000)
        check(ack is not None and ack["type"] == "zmk.stored" and ack["correlation_id"] == env["id"],
              "a zmk.ack request is acknowledged at once with zmk.stored")
        c.s.close()  # the producer goes away
        w = worker(dev, tmp)
        dev.wait_stats(ctx, lambda m: m["replied"] == 1)
        later = client(ctx, dev.front)
        collect = dict(env, headers={})  # the same request without zmk.ack: collect its reply
        later.send(collect)
        r = later.recv(5000)
        check(r is not None and r["type"] == "titanic.job.done" and r["correlation_id"] == env["id"],
              "collected later by sending the id again: the worker's reply")
        check(len(executions(tmp).get(env["id"].hex(), [])) == 1, "executed once")
    finally:
        if w:
            w.kill()
            w.wait()
        dev.stop()


def curve_scoping(tmp, ctx):
    """With CURVE the stored replies stay scoped by the client's key across a SIGKILL: after the
    restart alice's retry gets her cached reply, mallory sending alice's id gets her own execution."""
    from hardening import write_key
    keys = os.path.join(tmp, "curve")
    os.makedirs(os.path.join(keys, "clients"))
    server_pub, server_sec = zmq.curve_keypair()
    write_key(os.path.join(keys, "frontend.key"), server_sec, True)
    pairs = [zmq.curve_keypair() for _ in range(2)]
    for i, (pub, _) in enumerate(pairs):
        write_key(os.path.join(keys, "clients", "client%d.pub" % i), pub, False)
    flags = ["--frontend-curve-secret", os.path.join(keys, "frontend.key"), "--frontend-allow",
             os.path.join(keys, "clients")]
    store = os.path.join(tmp, "curve-store")

    def curve_client(dev, pub, sec):
        c = client.__new__(client)
        c.s = ctx.socket(zmq.DEALER)
        c.s.linger = 0
        c.s.curve_publickey, c.s.curve_secretkey, c.s.curve_serverkey = pub, sec, server_pub
        c.s.connect(dev.front)
        return c

    dev = start(tmp, "curve", store, *flags)
    w = worker(dev, tmp)
    try:
        alice = curve_client(dev, *pairs[0])
        env = zmk.envelope("curve.secret", b"alice's question")
        alice.send(env)
        first = alice.recv(5000)
        check(first is not None and first["correlation_id"] == env["id"], "curve: alice answered before the crash")
        kill(dev)
        dev = start(tmp, "curve", store, *flags)
        mallory = curve_client(dev, *pairs[1])
        mallory.send(dict(env, body=b"mallory's question"))
        got = mallory.recv(5000)
        check(got is not None and msgpack.unpackb(got["body"])["echo"] == b"mallory's question",
              "curve: after the restart mallory sending alice's id does not get alice's stored reply")
        alice = curve_client(dev, *pairs[0])
        alice.send(env)
        again = alice.recv(5000)
        check(again is not None and again["body"] == first["body"], "curve: alice's retry gets her stored reply")
        check(len(executions(tmp).get(env["id"].hex(), [])) == 2, "curve: once for alice, once for mallory")
    finally:
        w.kill()
        w.wait()
        dev.stop()


def byte_bound(tmp, ctx):
    store = os.path.join(tmp, "bound-store")
    dev = start(tmp, "bound", store, "--store-max-bytes", "8192")
    w = None
    try:
        c = client(ctx, dev.front)
        codes = []
        for i in range(12):
            env = zmk.envelope("big.job", b"x" * 1000)
            c.send(env)
        m = dev.wait_stats(ctx, lambda m: m["received"] == 12)
        while True:
            r = c.recv(300)
            if r is None:
                break
            codes.append(zmk.error_code(r))
        check("overloaded" in codes, "past --store-max-bytes new requests are answered overloaded (%s)" % codes)
        check(m["store_bytes"] <= 8192 and m["stored"] < 12, "the store stayed within its bound (%d bytes)" % m["store_bytes"])
        w = worker(dev, tmp)
        dev.wait_stats(ctx, lambda m: m["pending"] == 0 and m["store_bytes"] == 0)
        env = zmk.envelope("big.job", b"y" * 1000)
        c.send(env)
        r = c.recv(5000)
        check(r is not None and r["type"] == "big.job.done", "once the backlog drained the store takes requests again")
    finally:
        if w:
            w.kill()
            w.wait()
        dev.stop()


def refuses(store, what):
    p = subprocess.run([BINARY, "--frontend", "inproc://a", "--backend", "inproc://b", "--store", store],
                       capture_output=True, text=True, timeout=20)
    check(p.returncode == 2 and store in p.stderr, "%s: exit 2 naming the path (rc %d: %s)" % (what, p.returncode, p.stderr.strip()))


def corrupted(tmp, ctx):
    store = os.path.join(tmp, "bad-store")
    dev = start(tmp, "bad", store)
    c = client(ctx, dev.front)
    for i in range(20):
        c.send(zmk.envelope("keep.me", b"z" * 5000))
    dev.wait_stats(ctx, lambda m: m["stored"] == 20)
    kill(dev)
    data = os.path.join(store, "data.mdb")
    size = os.path.getsize(data)
    with open(data, "r+b") as f:
        f.truncate(size // 2)
    refuses(store, "a truncated data file")
    garbage = os.path.join(tmp, "garbage-store")
    os.makedirs(garbage)
    with open(os.path.join(garbage, "data.mdb"), "wb") as f:
        f.write(os.urandom(65536))
    refuses(garbage, "a data file that is not LMDB")
    notdir = os.path.join(tmp, "a-file")
    open(notdir, "w").close()
    refuses(notdir, "a path that is not a directory")


def disk_full(tmp, ctx):
    """The store on a 1 MiB tmpfs (a mount namespace of its own; skipped where refused) that a
    ballast file fills: requests past the free space are answered overloaded, the device keeps
    serving, and once the ballast is removed it takes (and acknowledges) requests again."""
    mnt = os.path.join(tmp, "small")
    os.makedirs(mnt)
    if subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs " + mnt],
                      capture_output=True).returncode != 0:
        print("skip disk_full: mount namespaces refused here")
        skipped.append("full")
        return
    store = os.path.join(mnt, "store")
    front, back, admin = ("ipc://%s/full-%s" % (tmp, n) for n in ("front", "back", "admin"))
    script = ('mount -t tmpfs -o size=1m tmpfs "$0" && dd if=/dev/zero of="$0/ballast" bs=1k count=700 2>/dev/null'
              ' && exec "$@"')
    proc = subprocess.Popen(["unshare", "-m", "sh", "-c", script, mnt, BINARY, "--frontend", front, "--backend",
                             back, "--admin", admin, "--log-level", "error", "--store", store, *FAST])
    dev = device.__new__(device)
    dev.front, dev.back, dev.admin, dev.proc = front, back, admin, proc
    try:
        c = client(ctx, front)
        acks, overloaded = set(), 0
        for i in range(40):
            env = ack_header(zmk.envelope("full.job", os.urandom(20000)))
            c.send(env)
            r = c.recv(3000)
            if r is None:
                continue
            if r["type"] == "zmk.stored":
                acks.add(r["correlation_id"])
            elif zmk.error_code(r) == "overloaded":
                overloaded += 1
        m = dev.stats(ctx)
        check(proc.poll() is None, "the device survived the full disk")
        check(overloaded > 0 and m["store_errors"] > 0,
              "requests past the free space answered overloaded (%d, store_errors %d, acked %d)" %
              (overloaded, m["store_errors"], len(acks)))
        os.remove("/proc/%d/root%s/ballast" % (proc.pid, mnt))
        env = ack_header(zmk.envelope("full.job", b"small"))
        got = None
        end = time.time() + 10
        while got is None and time.time() < end:
            c.send(env)
            r = c.recv(1000)
            while r is not None and got is None:
                if r["type"] == "zmk.stored" and r["correlation_id"] == env["id"]:
                    got = r
                r = c.recv(100)
        check(got is not None, "once space was freed the store took and acknowledged a request again")
    finally:
        dev.stop()


def kill_loop(tmp, ctx):
    """Producers with stored acks while the device is SIGKILLed again and again: every acknowledged
    request is answered in the end, and none is executed after its reply was seen."""
    kills = 100 if os.environ.get("ZMQKIT_FULL") == "1" else 5
    store = os.path.join(tmp, "loop-store")
    dev = start(tmp, "loop", store)
    w = worker(dev, tmp, "--capacity", "4", "--delay-ms", "2")
    c = client(ctx, dev.front)
    sent, acked, replied = {}, set(), {}  # id -> env; acked ids; id -> monotonic ns of first reply
    last_send = {}

    def pump(ms):
        r = c.recv(ms)
        while r is not None:
            if r["type"] == "zmk.stored":
                acked.add(r["correlation_id"])
            elif zmk.error_code(r) is None and r["correlation_id"] in sent:
                replied.setdefault(r["correlation_id"], time.monotonic_ns())
            r = c.recv(0)

    try:
        for k in range(kills):
            phase_end = time.time() + 0.6
            while time.time() < phase_end:
                # A window of unanswered requests: the one worker keeps up, the backlog stays small.
                if len(sent) - len(replied) < 40:
                    env = ack_header(zmk.envelope("loop.job", b"%d" % len(sent)))
                    sent[env["id"]] = env
                    last_send[env["id"]] = time.time()
                    c.send(env)
                pump(5)
                # Submit retries until stored; then collects (after a restart the reply cannot
                # reach the old connection: the collect gives the device the new one).
                for i, t in list(last_send.items()):
                    if i in replied:
                        del last_send[i]
                    elif time.time() - t > 1:
                        last_send[i] = time.time()
                        c.send(sent[i] if i not in acked else dict(sent[i], headers={}))
            kill(dev)
            dev = start(tmp, "loop", store)
        # Everything acknowledged is collected (the request again, without zmk.ack).
        pending = {i for i in acked if i not in replied}
        end = time.time() + 60
        resend_at = 0
        while pending and time.time() < end:
            if time.time() > resend_at:
                resend_at = time.time() + 2
                for i in pending:
                    c.send(dict(sent[i], headers={}))
            pump(100)
            pending = {i for i in acked if i not in replied}
        ex = executions(tmp)
        check(len(acked) > 50, "%d requests acknowledged over %d kills" % (len(acked), kills))
        check(not pending, "0 acknowledged requests lost (%d unanswered)" % len(pending))
        again = [i for i, t in replied.items() if any(run > t for run, _ in ex.get(i.hex(), []))]
        check(not again, "0 completed requests executed again (%d)" % len(again))
        fresh_twice = [i for i, runs in ex.items() if sum(1 for _, rd in runs if rd == 0) > 1]
        print("info executions: %d ids, %d delivered again after a crash (marked), %d unmarked twice" %
              (len(ex), sum(1 for r in ex.values() if len(r) > 1), len(fresh_twice)))
    finally:
        w.kill()
        w.wait()
        dev.stop()


CASES = {"restart": restart_with_pending, "cache": retry_from_stored_cache, "collect": ack_then_collect,
         "curve": curve_scoping, "bound": byte_bound, "corrupt": corrupted, "loop": kill_loop, "full": disk_full}

if __name__ == "__main__":
    ctx = zmq.Context()
    for name in sys.argv[2:] or CASES:
        with tempfile.TemporaryDirectory() as tmp:
            print("--", name, flush=True)
            CASES[name](tmp, ctx)
    ctx.destroy(linger=0)
    ran = sys.argv[2:] or list(CASES)
    sys.exit(1 if failures else 77 if skipped == ran else 0)
