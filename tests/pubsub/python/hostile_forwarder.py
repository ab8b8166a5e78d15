"""Hostile peers against the real zmqkit-forwarder binary (issue 11).
usage: hostile_forwarder.py PATH/TO/zmqkit-forwarder [--measure]

Each case starts its own forwarder, attacks it from raw TCP (a hand-written ZMTP
peer, so that no libzmq of ours stores the attack) and then checks that the
forwarder still serves a well-behaved publisher and subscriber, that nothing
oversize or past the bounds reached upstream, and the counters it prints on
SIGTERM. --measure prints RSS figures only (runs against any build)."""
import os
import signal
import socket
import struct
import subprocess
import sys
import time

import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "queue", "python"))
import zmk  # noqa: E402

BINARY = sys.argv[1]
MEASURE = "--measure" in sys.argv
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


class forwarder:
    def __init__(self, *flags):
        self.proc = subprocess.Popen([BINARY, "--frontend", "tcp://127.0.0.1:0", "--backend", "tcp://127.0.0.1:0",
                                      *flags], stdout=subprocess.PIPE, text=True)
        self.front = self.proc.stdout.readline().split()[1]
        self.back = self.proc.stdout.readline().split()[1]
        self.snapshot = self.proc.stdout.readline().split()[1] if "--snapshot" in flags else None
        self.metrics = self.proc.stdout.readline().split()[1] if "--metrics-http" in flags else None

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """Returns: the exit code and the counters printed at exit."""
        if not self.alive():
            return self.proc.returncode, {}
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=10)
        stats = {}
        for line in out.splitlines():
            if line.startswith("stats "):
                stats = {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
        return self.proc.returncode, stats


def host_port(endpoint):
    host, port = endpoint[len("tcp://"):].rsplit(":", 1)
    return host, int(port)


class raw_peer:
    """A ZMTP 3.0 peer (NULL mechanism) written by hand: sends whatever frames it is told."""

    def __init__(self, endpoint, socket_type=b"SUB"):
        self.s = socket.create_connection(host_port(endpoint), timeout=5)
        self.s.sendall(b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03\x00" + b"NULL" + b"\0" * 16 + b"\0" + b"\0" * 31)
        prop = bytes([11]) + b"Socket-Type" + struct.pack(">I", len(socket_type)) + socket_type
        self.recv_exact(64)  # the server's greeting
        ready = b"\x05READY" + prop
        self.s.sendall(b"\x04" + bytes([len(ready)]) + ready)
        flags, size = self.recv_exact(2)  # the server's READY: the handshake is done
        self.recv_exact(size)

    def recv_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.s.recv(n - len(data))
            if not chunk:
                raise EOFError("the forwarder closed the connection during the handshake")
            data += chunk
        return data

    def frame(self, data, more=False):
        if len(data) < 256:
            self.s.sendall(bytes([0x01 if more else 0x00, len(data)]) + data)
        else:
            self.s.sendall(bytes([0x03 if more else 0x02]) + struct.pack(">Q", len(data)) + data)

    def close(self):
        self.s.close()


class upstream:
    """Stands in for the publishers: an XPUB connected to the frontend that sees every subscription."""

    def __init__(self, ctx, endpoint):
        self.x = ctx.socket(zmq.XPUB)
        self.x.linger = 0
        self.x.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.x.connect(endpoint)
        self.seen = []

    def drain(self, until=None, timeout=5.0):
        """Collects subscriptions; returns once `until` (a subscription frame) arrived, or at the timeout."""
        end = time.time() + timeout
        while time.time() < end:
            if not self.x.poll(50):
                if until is None:
                    return True
                continue
            m = self.x.recv()
            self.seen.append(m)
            if m == until:
                return True
        return until is None

    def publish(self, type_, body=b"", seq=1, pub="upstream-1"):
        env = zmk.envelope(type_, body, headers={"zmk.pub": pub, "zmk.seq": str(seq)})
        self.x.send_multipart([type_.encode(), zmk.encode(env)])


def subscriber(ctx, endpoint, prefix):
    s = ctx.socket(zmq.SUB)
    s.linger = 0
    s.rcvtimeo = 200
    s.setsockopt(zmq.SUBSCRIBE, prefix)
    s.connect(endpoint)
    return s


def still_serves(ctx, fwd, up, prefix):
    """A well-behaved subscriber's subscription reaches upstream and upstream's messages reach it."""
    sub = subscriber(ctx, fwd.back, prefix)
    got_sub = up.drain(until=b"\x01" + prefix)
    received = None
    end = time.time() + 5
    while received is None and time.time() < end:
        up.publish(prefix.decode() + "x")
        try:
            received = sub.recv_multipart()
        except zmq.Again:
            pass
    sub.close()
    return got_sub and received is not None and fwd.alive()


def scrape(url):
    import urllib.request
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def case_oversize_subscriptions(ctx):
    fwd = forwarder("--metrics-http", "127.0.0.1:0")
    up = upstream(ctx, fwd.front)
    time.sleep(0.2)  # the upstream connection is made; nothing below depends on it being earlier
    huge = raw_peer(fwd.back)
    huge.frame(b"\x01" + b"h" * 300_000)  # libzmq 4.3.4's XSUB trie overflows the stack on it
    time.sleep(0.3)
    huge.close()
    long_ = raw_peer(fwd.back)
    long_.frame(b"\x01" + b"l" * 300)  # fits the frame limit, but longer than any topic
    long_.frame(b"plain data, not a subscription")
    long_.frame(b"\x01ok2.")  # same connection, so once it is upstream the two above were handled
    check(up.drain(until=b"\x01ok2."), "a later subscription on the same connection reached upstream")
    check(still_serves(ctx, fwd, up, b"ok."), "after a 300 KB subscription and a disconnect, the forwarder serves")
    text = scrape(fwd.metrics)
    check("zmqkit_forwarder_oversize_subscriptions_total 1" in text and
          "zmqkit_forwarder_bad_subscriptions_total 1" in text, "the drops are in /metrics while it runs")
    long_.close()
    check(all(len(m) <= 256 for m in up.seen), "no subscription longer than a topic reached upstream (%s)"
          % sorted(len(m) for m in up.seen))
    code, stats = fwd.stop()
    check(code == 0, "forwarder exits 0 on SIGTERM (got %s)" % code)
    check(stats.get("oversize_subscriptions", 0) >= 1, "oversize subscription counted: %s" % stats)
    check(stats.get("bad_subscriptions", 0) >= 1, "non-subscription message counted: %s" % stats)


def case_subscription_flood(ctx):
    fwd = forwarder("--max-subscriptions", "100", "--max-subscription-bytes", "100000")
    up = upstream(ctx, fwd.front)
    time.sleep(0.2)
    # A subscriber already served before the flood keeps being served during it
    # (a new prefix past the bound is refused, whoever sends it).
    sub = subscriber(ctx, fwd.back, b"ok.")
    check(up.drain(until=b"\x01ok."), "the subscription before the flood reached upstream")
    flood = raw_peer(fwd.back)
    for i in range(1000):
        flood.frame(b"\x01" + (b"%06d" % i) * 40)  # 240-byte distinct prefixes
    refused_cancel = b"\x00" + b"%06d" % 999 * 40
    flood.frame(refused_cancel)  # cancelling a refused prefix must not reach upstream either
    marker = b"\x00" + b"%06d" % 0 * 40  # an accepted prefix's cancellation passes: all above were handled
    flood.frame(marker)
    check(up.drain(until=marker), "the flood was processed (its last cancellation reached upstream)")
    check(refused_cancel not in up.seen, "the cancellation of a refused prefix did not reach upstream")
    received = None
    end = time.time() + 5
    while received is None and time.time() < end:
        up.publish("ok.x")
        try:
            received = sub.recv_multipart()
        except zmq.Again:
            pass
    check(received is not None and fwd.alive(), "the earlier subscriber is served during the flood")
    up.drain()
    forwarded = {m for m in up.seen if len(m) == 241}
    check(len(forwarded) <= 100, "at most 100 distinct subscriptions reached upstream (got %d)" % len(forwarded))
    flood.close()
    sub.close()
    code, stats = fwd.stop()
    check(code == 0, "forwarder exits 0")
    check(stats.get("refused_subscriptions", 0) >= 900, "subscriptions past the bound counted: %s" % stats)


def case_cache_and_snapshot_hog(ctx):
    fwd = forwarder("--snapshot", "tcp://127.0.0.1:0", "--max-cache-bytes", str(4 << 20))
    up = upstream(ctx, fwd.front)
    up.drain(until=b"\x01", timeout=5)  # the forwarder subscribes to everything when it caches
    body = b"v" * 100_000
    for i in range(100):
        up.publish("type.%03d" % i, body, seq=1)
    up.publish("big.id", b"", seq=1, pub="p" * 900_000)
    time.sleep(0.5)
    # A requester that never reads, sending 15-byte requests.
    hog = raw_peer(fwd.snapshot, b"DEALER")
    for _ in range(200):
        hog.frame(b"zmk.snapshot")
    time.sleep(1.0)
    during = rss_kb(fwd.proc.pid)
    hog.close()
    # A well-behaved requester still gets its snapshot.
    d = ctx.socket(zmq.DEALER)
    d.linger = 0
    d.connect(fwd.snapshot)
    d.send_multipart([b"zmk.snapshot", b"type.09"])
    ok = d.poll(5000)
    reply = d.recv_multipart() if ok else []
    d.close()
    check(len(reply) == 2 + 10, "a reading requester gets its snapshot during the hog (%d frames)" % len(reply))
    code, stats = fwd.stop()
    print("     forwarder RSS while the hog holds 200 requests: %d KB" % during)
    check(during < 64 * 1024, "RSS stays under 64 MB with a non-reading snapshot requester (%d KB)" % during)
    check(code == 0, "forwarder exits 0")
    check(stats.get("cached_bytes", 1 << 40) <= 4 << 20, "cached bytes within --max-cache-bytes: %s" % stats)
    check(stats.get("evicted_values", 0) >= 50, "values past the byte bound evicted: %s" % stats)
    check(stats.get("snapshots_dropped", 0) >= 1, "replies to the non-reading requester dropped: %s" % stats)
    check(stats.get("uncacheable", 0) >= 1, "a 900 KB zmk.pub is not cached: %s" % stats)


def measure(ctx):
    """RSS figures for the report; works against any build of the forwarder."""
    fwd = forwarder("--snapshot", "tcp://127.0.0.1:0")
    up = upstream(ctx, fwd.front)
    up.drain(until=b"\x01", timeout=5)
    for i in range(20000):
        up.publish("type.%05d" % i, b"v" * 100, seq=1)
    time.sleep(1)
    base = rss_kb(fwd.proc.pid)
    hog = raw_peer(fwd.snapshot, b"DEALER")
    for _ in range(200):
        hog.frame(b"zmk.snapshot")
    time.sleep(2)
    during = rss_kb(fwd.proc.pid)
    hog.close()
    time.sleep(2)
    after = rss_kb(fwd.proc.pid)
    print("snapshot hog (20000 types x 100-byte bodies cached, 200 requests never read): RSS %d KB -> %d KB, %d KB after it left"
          % (base, during, after))
    fwd.stop()
    fwd = forwarder()
    up = upstream(ctx, fwd.front)
    time.sleep(0.2)
    base = rss_kb(fwd.proc.pid)
    sent = 0
    try:
        for i in range(100):
            flood = raw_peer(fwd.back)  # a new connection each time: a refused frame ends the connection
            flood.frame(b"\x01" + (b"%06d" % i) * 15000)  # 90 KB distinct subscriptions
            sent += 1
    except (ConnectionResetError, BrokenPipeError, EOFError):
        pass
    time.sleep(3)
    during = rss_kb(fwd.proc.pid)
    print("flood of 100 x 90 KB subscriptions (%d sent): RSS %d KB -> %d KB, alive=%s"
          % (sent, base, during, fwd.alive()))
    flood.close()
    fwd.stop()
    fwd = forwarder()
    up = upstream(ctx, fwd.front)
    time.sleep(0.2)
    base = rss_kb(fwd.proc.pid)
    flood = raw_peer(fwd.back)
    for i in range(20000):
        flood.frame(b"\x01" + (b"%06d" % i) * 42)  # 252-byte distinct subscriptions
    time.sleep(3)
    during = rss_kb(fwd.proc.pid)
    print("flood of 20000 x 252-byte subscriptions: RSS %d KB -> %d KB, upstream saw %d, alive=%s"
          % (base, during, len(up.seen) if up.drain() else -1, fwd.alive()))
    flood.close()
    fwd.stop()


def main():
    ctx = zmq.Context()
    if MEASURE:
        measure(ctx)
        return 0
    for case in (case_oversize_subscriptions, case_subscription_flood, case_cache_and_snapshot_hog):
        print("--", case.__name__, flush=True)
        case(ctx)
    ctx.destroy(linger=0)
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
