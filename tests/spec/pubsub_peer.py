#!/usr/bin/python3
"""Publish/subscribe with snapshots, a subscriber written from docs/protocol.md alone (section 8),
against the real zmqkit-forwarder (caching) and a zmqkit publisher.
usage: pubsub_peer.py PATH/TO/zmqkit-forwarder PATH/TO/spec_publisher

Imports only zmq, msgpack, the standard library and zmk1 (this folder's codec, written from the
spec). A check the current code is known to get wrong prints XFAIL and does not fail the run.
"""
import signal
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

import zmk1

KNOWN = {}  # deviations of the code from the spec: none known
checks = zmk1.Checks(KNOWN)
check = checks.check
ctx = zmq.Context()


class Publisher:
    def __init__(self, binary, frontend, snapshot):
        self.proc = subprocess.Popen([binary, frontend, snapshot], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.id = zmk1.read_line(self.proc, "id ")
        self.snapshot = zmk1.read_line(self.proc, "snapshot ")

    def publish(self, type_, count, ttl_ms=0):
        self.proc.stdin.write("pub %s %d %d\n" % (type_, count, ttl_ms))
        self.proc.stdin.flush()
        return int(zmk1.read_line(self.proc, "ok "))

    def stop(self):
        self.proc.stdin.close()
        return self.proc.wait(timeout=10)


def snapshot(endpoint, prefixes, timeout_ms=2000, socket_type=zmq.DEALER, command=b"zmk.snapshot"):
    """8.4: a fresh DEALER per request; returns (table, envelopes) or None when nothing came back."""
    d = ctx.socket(socket_type)
    d.linger = 0
    d.connect(endpoint)
    d.send_multipart([command] + [p.encode() if isinstance(p, str) else p for p in prefixes])
    if not d.poll(timeout_ms):
        d.close()
        return None
    frames = d.recv_multipart()
    d.close()
    if len(frames) < 2 or frames[0] != b"zmk.snapshot":
        raise zmk1.SpecError("snapshot", "reply does not start with zmk.snapshot: %r" % frames[:1])
    table = msgpack.unpackb(frames[1], raw=False)  # one value, nothing after it (ExtraData otherwise)
    if not isinstance(table, dict) or not all(
            isinstance(p, str) and isinstance(t, dict) and
            all(isinstance(k, str) and type(v) is int and v >= 0 for k, v in t.items())
            for p, t in table.items()):
        raise zmk1.SpecError("snapshot", "table is not {str: {str: uint}}: %r" % table)
    return table, [zmk1.decode(f) for f in frames[2:]]


def wait_for(pred, timeout=5.0, step=None):
    end = time.time() + timeout
    while time.time() < end:
        if step:
            step()
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    return pred()


class Subscriber:
    """8.1-8.3: SUB socket, [topic, envelope], per-stream expectation, snapshot covering."""

    def __init__(self, endpoint, prefix):
        self.s = ctx.socket(zmq.SUB)
        self.s.linger = 0
        self.s.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        self.s.connect(endpoint)
        self.expected, self.covered, self.gaps, self.stale, self.bad = {}, {}, [], 0, 0

    def apply_snapshot(self, table):
        for pub, types in table.items():
            for type_, seq in types.items():
                self.expected[(pub, type_)] = max(self.expected.get((pub, type_), 0), seq + 1)
                self.covered[(pub, type_)] = seq

    def receive(self, timeout_ms=1000):
        """The next delivered live envelope (stale ones are dropped and counted), or None."""
        end = time.time() + timeout_ms / 1000
        while True:
            left = int((end - time.time()) * 1000)
            if left <= 0 or not self.s.poll(left):
                return None
            frames = self.s.recv_multipart()
            if len(frames) != 2:
                self.bad += 1
                continue
            try:
                env = zmk1.decode(frames[1])
            except zmk1.SpecError:
                self.bad += 1
                continue
            if frames[0] != env["type"].encode():
                self.bad += 1
                continue
            pub, seq = env["headers"].get("zmk.pub"), env["headers"].get("zmk.seq")
            if not pub or seq is None or not zmk1.is_decimal(seq) or seq == "0":
                self.bad += 1
                continue
            key, n = (pub, env["type"]), int(seq)
            if n <= self.covered.get(key, 0):
                self.stale += 1
                continue
            want = self.expected.get(key)
            if want is not None and n > want:
                self.gaps.append((key, want, n - want))
            self.expected[key] = n + 1
            return env


def main(forwarder_bin, publisher_bin):
    tmp = tempfile.mkdtemp()
    fwd = subprocess.Popen([forwarder_bin, "--frontend", "ipc://%s/front" % tmp, "--backend",
                            "ipc://%s/back" % tmp, "--snapshot", "ipc://%s/snap" % tmp],
                           stdout=subprocess.PIPE, text=True, bufsize=1)
    pub = None
    try:
        frontend, backend, fwd_snap = (zmk1.read_line(fwd, p) for p in ("frontend ", "backend ", "snapshot "))
        # An upstream peer that sees the subscriptions the forwarder sends (8.1): an XPUB connected
        # to the forwarder's XSUB frontend, as a publisher would be.
        spy = ctx.socket(zmq.XPUB)
        spy.linger = 0
        spy.connect(frontend)
        first = spy.recv() if spy.poll(5000) else None
        check(first == b"\x01", "a caching forwarder subscribes upstream to everything (%r)" % first)

        pub = Publisher(publisher_bin, frontend, "ipc://%s/pubsnap" % tmp)
        # Wait until the forwarder hears the publisher (subscriptions take a moment to arrive).
        got = wait_for(lambda: pub.id in (snapshot(fwd_snap, ["spec.warm"]) or ({}, []))[0],
                       step=lambda: pub.publish("spec.warm", 1))
        check(bool(got), "the forwarder caches what the publisher sends")

        pub.publish("spec.a", 5)
        pub.publish("spec.b", 3)
        pub.publish("other.x", 2)
        pub.publish("spec.ttl", 1, ttl_ms=1)
        table = wait_for(lambda: (lambda t: t if t.get(pub.id, {}).get("spec.ttl") == 1 else None)(
            snapshot(fwd_snap, [""])[0]))
        check(bool(table), "forwarder snapshot lists every (publisher, type) it forwarded")

        # A late joiner: subscribe and connect first, then ask for the snapshot (8.4).
        sub = Subscriber(backend, "spec.")
        live = wait_for(lambda: sub.receive(100), step=lambda: pub.publish("spec.warm", 1))
        check(live is not None and live["type"] == "spec.warm", "subscription reached the forwarder")
        table, values = snapshot(fwd_snap, ["spec."])
        mine = table.get(pub.id, {})
        check(set(mine) == {"spec.a", "spec.b", "spec.ttl", "spec.warm"},
              "snapshot for prefix 'spec.' lists exactly the matching streams (%s)" % sorted(mine))
        check(mine.get("spec.a") == 5 and mine.get("spec.b") == 3 and mine.get("spec.ttl") == 1,
              "snapshot sequence numbers are msgpack integers: the last zmk.seq of each stream")
        by_type = {v["type"]: v for v in values}
        check(set(by_type) == {"spec.a", "spec.b", "spec.warm"},
              "snapshot values: the last envelope of each matching type, the expired one withheld (%s)"
              % sorted(by_type))
        check(all(v["headers"].get("zmk.pub") == pub.id and zmk1.is_decimal(v["headers"].get("zmk.seq", "")) and
                  int(v["headers"]["zmk.seq"]) == mine[v["type"]] for v in values),
              "snapshot values carry the publisher's stamp: zmk.seq (decimal text) = the table's integer")
        check(msgpack.unpackb(by_type["spec.a"]["body"]) == 5, "snapshot value is the envelope as published")
        sub.apply_snapshot(table)

        pub.publish("spec.a", 2)
        got = []
        while len(got) < 2:
            env = sub.receive(2000)
            if env is None:
                break
            if env["type"] == "spec.a":
                got.append(int(env["headers"]["zmk.seq"]))
        check(got == [6, 7] and sub.gaps == [], "live messages continue the snapshot's numbering, no gap "
              "(%s, gaps %s)" % (got, sub.gaps))
        check(sub.bad == 0, "every live message: [topic = type, valid stamped envelope]")

        # The publisher's own snapshot endpoint lists only itself; a prefix matching nothing gives {}.
        table, values = snapshot(pub.snapshot, [])
        check(list(table) == [pub.id] and "other.x" in table[pub.id] and table[pub.id]["spec.a"] == 7,
              "publisher snapshot (no prefix = every type) lists only its own id")
        table, values = snapshot(pub.snapshot, ["nomatch."])
        check(table == {} and values == [], "publisher snapshot for a prefix matching nothing: {} and no values")

        # Malformed requests get no answer (8.4).
        check(snapshot(fwd_snap, [], 300, command=b"zmk.snapshotX") is None, "wrong command: no answer")
        check(snapshot(fwd_snap, ["p%d" % i for i in range(257)], 300) is None, "257 prefixes: no answer")
        check(snapshot(fwd_snap, ["spec."], 300, socket_type=zmq.REQ) is None,
              "a REQ socket (empty delimiter frame) is not a snapshot request: no answer")

        # Subscriptions longer than any topic are dropped, never forwarded upstream (8.1).
        while spy.poll(50):
            spy.recv()
        sub2 = ctx.socket(zmq.SUB)
        sub2.linger = 0
        sub2.connect(backend)
        sub2.setsockopt(zmq.SUBSCRIBE, b"spec.long" + b"x" * 300)
        sub2.setsockopt(zmq.SUBSCRIBE, b"spec.short")
        seen = []
        end = time.time() + 5
        while b"\x01spec.short" not in seen and time.time() < end:
            if spy.poll(100):
                seen.append(spy.recv())
        check(b"\x01spec.short" in seen, "a normal subscription is forwarded upstream")
        check(not any(s.startswith(b"\x01spec.long") for s in seen),
              "a 309-byte subscription (longer than any topic) is not forwarded upstream", "long-subscription")
        sub2.close()
    finally:
        if pub:
            check(pub.stop() == 0, "publisher exits 0")
        fwd.send_signal(signal.SIGTERM)
        rc = fwd.wait(timeout=10)
    check(rc == 0, "forwarder exits 0 on SIGTERM")
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
