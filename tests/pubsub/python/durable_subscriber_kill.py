#!/usr/bin/python3
"""Fault: a durable subscriber (`zmqkit sub --durable`) SIGKILLed at random moments while a
publisher sends through zmqkit-forwarder --store, restarted each time under the same name.
Every message must reach it (0 missed) in order within each run; a restart may repeat only the
messages the killed run had handled but not yet acknowledged (at least once, docs/protocol.md 8.6),
so every repeat is at the seam and at most ack_every (64) + 1 long.
usage: durable_subscriber_kill.py PATH/TO/zmqkit-forwarder PATH/TO/zmqkit
ZMQKIT_FULL=1: 100 kills and 20 000 messages; else 5 kills and 3 000 messages.
"""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

import msgpack
import zmq

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "spec"))
import zmk1  # noqa: E402  (the spec's codec: stamping as 8.2 says)

FULL = os.environ.get("ZMQKIT_FULL") == "1"
KILLS = 100 if FULL else 5
MESSAGES = 20000 if FULL else 3000
ACK_EVERY = 64


class Run:
    """One incarnation of the durable subscriber; its stdout read on a thread."""

    def __init__(self, tool, backend, snap, quiet_ms):
        self.proc = subprocess.Popen([tool, "sub", "--connect", backend, "--replay", snap, "--durable", "billing",
                                      "--from-seq", "1", "-s", "tick.", "--timeout", str(quiet_ms)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.seqs = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.seqs.append(int(json.loads(line)["headers"]["zmk.seq"]))
            except (ValueError, KeyError):
                pass

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.reader.join(timeout=10)

    def finish(self, timeout):
        rc = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return rc


def main(forwarder_bin, tool_bin):
    tmp = tempfile.mkdtemp()
    fwd = subprocess.Popen([forwarder_bin, "--frontend", "ipc://%s/front" % tmp, "--backend", "ipc://%s/back" % tmp,
                            "--snapshot", "ipc://%s/snap" % tmp, "--store", os.path.join(tmp, "store")],
                           stdout=subprocess.PIPE, text=True, bufsize=1)
    failures = []
    try:
        frontend, backend, snap = (zmk1.read_line(fwd, p) for p in ("frontend ", "backend ", "snapshot "))
        ctx = zmq.Context()
        pub = ctx.socket(zmq.PUB)
        pub.linger = 1000
        pub.connect(frontend)
        # The forwarder's subscription to everything must reach the PUB first (else seq 1 is dropped):
        # publish a warm-up stream until the forwarder lists it as stored.
        lister = ctx.socket(zmq.DEALER)
        lister.linger = 0
        lister.connect(snap)
        deadline, warm = time.time() + 10, 0
        while time.time() < deadline:
            warm += 1
            env = zmk1.make("warm.up", headers={"zmk.pub": "ticker", "zmk.seq": str(warm)})
            pub.send_multipart([b"warm.up", zmk1.encode(env)])
            lister.send_multipart([b"zmk.streams", b"warm."])
            if lister.poll(1000) and "ticker" in msgpack.unpackb(lister.recv_multipart()[1], raw=False):
                break

        def publish_all():
            for seq in range(1, MESSAGES + 1):
                env = zmk1.make("tick.n", msgpack.packb(seq), headers={"zmk.pub": "ticker", "zmk.seq": str(seq)})
                pub.send_multipart([b"tick.n", zmk1.encode(env)])
                if seq % 20 == 0:
                    time.sleep(0.01)  # about 2 000 a second: kills land mid-stream
        publisher = threading.Thread(target=publish_all)
        publisher.start()

        rng = random.Random(int(os.environ.get("ZMQKIT_SEED", "14")))
        runs = []
        for _ in range(KILLS):
            run = Run(tool_bin, backend, snap, -1)
            runs.append(run)
            time.sleep(rng.uniform(0.05, 0.4))
            run.kill()
        publisher.join()
        last = Run(tool_bin, backend, snap, 3000)
        runs.append(last)
        rc = last.finish(timeout=120)
        if rc != 0:
            failures.append("the last run exited %d: %s" % (rc, last.proc.stderr.read()))

        seen, repeats, worst = set(), 0, 0
        for i, run in enumerate(runs):
            if any(b <= a for a, b in zip(run.seqs, run.seqs[1:])):
                failures.append("run %d delivered out of order" % i)
            again = [s for s in run.seqs if s in seen]
            if again:
                # A repeat is the killed run's unacknowledged tail: the first messages of this run.
                if run.seqs[:len(again)] != again:
                    failures.append("run %d repeated messages that are not at its start: %r" % (i, again[:10]))
                worst = max(worst, len(again))
                repeats += len(again)
            seen.update(run.seqs)
        missed = sorted(set(range(1, MESSAGES + 1)) - seen)
        print("published %d, %d kills; missed %d, repeated %d (at most %d after one kill); delivered per run %s"
              % (MESSAGES, KILLS, len(missed), repeats, worst, [len(r.seqs) for r in runs]))
        if missed:
            failures.append("missed %d messages, first %r" % (len(missed), missed[:10]))
        if worst > ACK_EVERY + 1:
            failures.append("a restart repeated %d messages, more than ack_every + 1" % worst)
        if seen - set(range(1, MESSAGES + 1)):
            failures.append("delivered numbers never published")
    finally:
        fwd.send_signal(signal.SIGTERM)
        fwd.wait(timeout=10)
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
