#!/usr/bin/python3
"""Retention and replay (docs/protocol.md 8.6), a publisher and a replaying peer written from the
spec alone, against the real zmqkit-forwarder with --store.
usage: replay_peer.py PATH/TO/zmqkit-forwarder

Imports only zmq, msgpack, the standard library and zmk1 (this folder's codec, written from the
spec). A check the current code is known to get wrong prints XFAIL and does not fail the run.
"""
import os
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
PUB_ID = "spec-replay-publisher"


def start_forwarder(binary, tmp, store, *extra):
    proc = subprocess.Popen([binary, "--frontend", "ipc://%s/front" % tmp, "--backend", "ipc://%s/back" % tmp,
                             "--snapshot", "ipc://%s/snap" % tmp, "--store", store, *extra],
                            stdout=subprocess.PIPE, text=True, bufsize=1)
    frontend, backend, snap = (zmk1.read_line(proc, p) for p in ("frontend ", "backend ", "snapshot "))
    return proc, frontend, backend, snap


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=10)


class Publisher:
    """8.2: PUB, [topic = type, envelope], stamped zmk.pub and a per-type zmk.seq."""

    def __init__(self, frontend):
        self.s = ctx.socket(zmq.PUB)
        self.s.linger = 1000
        self.s.connect(frontend)
        self.sent = {}  # (type, seq) -> the exact envelope bytes

    def publish(self, type_, seq, body):
        frame = zmk1.encode(zmk1.make(type_, msgpack.packb(body), headers={"zmk.pub": PUB_ID, "zmk.seq": str(seq)}))
        self.s.send_multipart([type_.encode(), frame])
        self.sent[(type_, seq)] = frame


def request(endpoint, frames, timeout_ms=3000):
    """One request on a fresh DEALER (8.6: one outstanding request per connection)."""
    d = ctx.socket(zmq.DEALER)
    d.linger = 0
    d.connect(endpoint)
    d.send_multipart([f.encode() if isinstance(f, str) else f for f in frames])
    reply = d.recv_multipart() if d.poll(timeout_ms) else None
    d.close()
    return reply


def streams(endpoint, *prefixes):
    reply = request(endpoint, ["zmk.streams", *prefixes])
    if not reply or len(reply) != 2 or reply[0] != b"zmk.streams":
        raise zmk1.SpecError("streams", "not [zmk.streams, table]: %r" % (reply[:1] if reply else reply))
    table = msgpack.unpackb(reply[1], raw=False)
    ok = isinstance(table, dict) and all(
        isinstance(p, str) and isinstance(t, dict) and all(
            isinstance(k, str) and isinstance(v, list) and len(v) == 2 and all(type(x) is int for x in v)
            for k, v in t.items()) for p, t in table.items())
    if not ok:
        raise zmk1.SpecError("streams", "table is not {str: {str: [uint, uint]}}: %r" % table)
    return table


def replay(endpoint, type_, start, to=0, max_=0, pub=PUB_ID):
    """One C:REPLAY. Returns (head map, [envelope frames])."""
    reply = request(endpoint, ["zmk.replay", pub, type_, str(start), str(to), str(max_)])
    if not reply or len(reply) < 4 or reply[0] != b"zmk.replay":
        raise zmk1.SpecError("replay", "not [zmk.replay, pub, type, head, ...]: %r" % (reply[:2] if reply else reply))
    if reply[1] != pub.encode() or reply[2] != type_.encode():
        raise zmk1.SpecError("replay", "the reply does not name the stream asked for")
    head = msgpack.unpackb(reply[3], raw=False)
    if not (isinstance(head, dict) and type(head.get("next")) is int and type(head.get("end")) is bool and
            isinstance(head.get("lost"), list) and type(head.get("head")) is int):
        raise zmk1.SpecError("replay", "head is not {next: uint, end: bool, lost: [...], head: uint}: %r" % head)
    return head, reply[4:]


def replay_all(endpoint, type_, start, to=0, max_=0):
    """8.6 flow control: batch after batch from "next" until "end". Returns (frames, lost, requests)."""
    frames, lost, requests = [], [], 0
    while True:
        head, batch = replay(endpoint, type_, start, to, max_)
        requests += 1
        frames += batch
        lost += [tuple(r) for r in head["lost"]]
        if head["end"] or requests > 1000:
            return frames, lost, requests
        start = head["next"]


def seq_of(frame):
    return int(zmk1.decode(frame)["headers"]["zmk.seq"])


def main(forwarder_bin):
    tmp = tempfile.mkdtemp()
    store = os.path.join(tmp, "store")
    fwd, frontend, backend, snap = start_forwarder(forwarder_bin, tmp, store)
    try:
        pub = Publisher(frontend)
        # The forwarder subscribes upstream to everything; publish until it stores (a warm-up stream).
        end, warm = time.time() + 10, 0
        while time.time() < end and PUB_ID not in streams(snap, "warm."):
            warm += 1
            pub.publish("warm.up", warm, warm)
            time.sleep(0.05)
        check(PUB_ID in streams(snap, "warm."), "the forwarder stores what the publisher sends")
        # 1..300, with 101..110 never sent (lost upstream of the forwarder).
        for seq in range(1, 301):
            if not 101 <= seq <= 110:
                pub.publish("spec.r", seq, seq)
        for seq in range(1, 4):
            pub.publish("other.x", seq, seq)
        end = time.time() + 10
        while time.time() < end and streams(snap, "").get(PUB_ID, {}).get("spec.r", [0, 0])[1] != 300:
            time.sleep(0.05)
        table = streams(snap, "spec.")
        check(table == {PUB_ID: {"spec.r": [1, 300]}},
              "zmk.streams lists each matching stream as [first, last] (%r)" % table)
        check(set(streams(snap).get(PUB_ID, {})) == {"spec.r", "other.x", "warm.up"}, "no prefix: every stream")

        frames, lost, requests = replay_all(snap, "spec.r", 1)
        seqs = [seq_of(f) for f in frames]
        check(seqs == [s for s in range(1, 301) if not 101 <= s <= 110],
              "a replay from 1 returns every stored message once, in number order")
        check(all(f == pub.sent[("spec.r", s)] for f, s in zip(frames, seqs)),
              "replayed envelopes are byte for byte as published")
        check(lost == [(101, 110)], "\"lost\" names exactly the numbers never received (%r)" % lost)

        head, batch = replay(snap, "spec.r", 1, 0, 7)
        check(len(batch) == 7 and not head["end"] and head["next"] == 8 and head["head"] == 300,
              "max bounds a reply: end false, next = one past it (%r)" % head)
        head, batch = replay(snap, "spec.r", 95, 105)
        check([seq_of(f) for f in batch] == list(range(95, 101)) and head["end"] and head["next"] == 106 and
              head["lost"] == [[101, 105]], "a repair range [95, 105] across the hole (%r)" % head)
        head, batch = replay(snap, "spec.r", 301, 305)
        check(batch == [] and head["end"] and head["lost"] == [[301, 305]],
              "numbers past the stream's last are lost when asked for explicitly")
        head, batch = replay(snap, "nosuch.type", 1, 5)
        check(batch == [] and head["end"] and head["head"] == 0 and head["lost"] == [[1, 5]],
              "an unknown stream: nothing, end, the whole range lost")

        # A time start: only what the forwarder received at or after it.
        mark_ns = time.time_ns()
        time.sleep(0.01)
        for seq in range(301, 311):
            pub.publish("spec.r", seq, seq)
        end = time.time() + 10
        while time.time() < end and streams(snap, "spec.")[PUB_ID]["spec.r"][1] != 310:
            time.sleep(0.05)
        frames, lost, _ = replay_all(snap, "spec.r", "@%d" % mark_ns)
        check([seq_of(f) for f in frames] == list(range(301, 311)) and lost == [],
              "start \"@\" + nanoseconds: from the first message received at or after it")

        # Durable cursors: unknown name {}, acks move forward only.
        def cursor(name):
            reply = request(snap, ["zmk.cursor", name])
            check(reply is not None and len(reply) == 3 and reply[0] == b"zmk.cursor" and reply[1] == name.encode(),
                  "zmk.cursor reply is [zmk.cursor, name, table]")
            return msgpack.unpackb(reply[2], raw=False)
        check(cursor("mailer") == {}, "an unknown name has no cursors")
        acker = ctx.socket(zmq.DEALER)
        acker.linger = 1000
        acker.connect(snap)
        acker.send_multipart([b"zmk.ack", b"mailer", PUB_ID.encode(), b"spec.r", b"50"])
        acker.send_multipart([b"zmk.ack", b"mailer", PUB_ID.encode(), b"spec.r", b"40"])  # older: no change
        check(not acker.poll(300), "zmk.ack has no reply")
        check(cursor("mailer") == {PUB_ID: {"spec.r": 50}}, "the cursor moved to 50 and not back to 40")

        # Malformed requests: zmk.error [command, reason] (8.6).
        for bad, why in ((["zmk.replay", PUB_ID, "spec.r", "0", "0", "0"], "start 0"),
                         (["zmk.replay", PUB_ID, "spec.r", "9", "3", "0"], "start after to"),
                         (["zmk.replay", PUB_ID, "spec.r", "1"], "too few frames"),
                         (["zmk.streams"] + ["p%d" % i for i in range(257)], "257 prefixes"),
                         (["zmk.cursor", ""], "empty name")):
            reply = request(snap, bad)
            check(reply is not None and len(reply) == 3 and reply[0] == b"zmk.error" and reply[1] == bad[0].encode(),
                  "%s: answered [zmk.error, command, reason] (%r)" % (why, reply))
        check(request(snap, ["zmk.ack", "mailer", PUB_ID, "spec.r"], 300) is None, "a malformed ack: no answer")
        check(cursor("mailer") == {PUB_ID: {"spec.r": 50}}, "still serving after bad requests")
    finally:
        rc = stop(fwd)
    check(rc == 0, "forwarder exits 0 on SIGTERM")

    # A restart on the same store: the streams and the cursors are still there.
    fwd, frontend, backend, snap = start_forwarder(forwarder_bin, tmp, store)
    try:
        check(streams(snap, "spec.") == {PUB_ID: {"spec.r": [1, 310]}}, "the stored stream survives a restart")
        frames, lost, _ = replay_all(snap, "spec.r", 1)
        check(len(frames) == 300 and lost == [(101, 110)], "and replays as before")
        reply = request(snap, ["zmk.cursor", "mailer"])
        check(reply is not None and msgpack.unpackb(reply[2], raw=False) == {PUB_ID: {"spec.r": 50}},
              "the durable cursor survives a restart")
    finally:
        stop(fwd)

    # A store that fails its checks stops start-up with exit 2 naming the path; never an empty start.
    data = os.path.join(store, "data.mdb")
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 3)
    for damage in ("truncated", "garbage"):
        if damage == "garbage":
            with open(data, "wb") as f:
                f.write(b"\x5a" * 65536)
        proc = subprocess.run([forwarder_bin, "--frontend", "ipc://%s/f2" % tmp, "--backend", "ipc://%s/b2" % tmp,
                               "--snapshot", "ipc://%s/s2" % tmp, "--store", store],
                              capture_output=True, text=True, timeout=10)
        check(proc.returncode == 2 and store in proc.stderr,
              "a %s store: exit 2 naming it (rc %d, %r)" % (damage, proc.returncode, proc.stderr.strip()))
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
