"""The shipped service setup stops cleanly: zmqkit-queue started with the packaged
/etc/zmqkit/queue.toml (endpoints overridden to private ones) drains on SIGTERM and exits 0
within liveness x heartbeat-ms of that file, and that deadline is below the unit's
TimeoutStopSec (past it systemd would SIGKILL the device mid-drain).

The forwarder likewise starts with its shipped forwarder.toml and exits 0 on SIGTERM.

usage: service_drain.py ZMQKIT_QUEUE QUEUE_TOML QUEUE_UNIT ZMQKIT_FORWARDER FORWARDER_TOML"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "queue", "python"))
import zmk  # noqa: E402

BINARY, TOML, UNIT, FORWARDER, FORWARDER_TOML = sys.argv[1:6]
READY, HEARTBEAT = b"\x01", b"\x02"
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def toml_int(text, key, default):
    m = re.search(r"^\s*%s\s*=\s*(\d+)\s*$" % re.escape(key), text, re.M)
    return int(m.group(1)) if m else default


def unit_seconds(text, key):
    m = re.search(r"^%s=(\d+)s?\s*$" % re.escape(key), text, re.M)
    if not m:
        raise SystemExit("FAIL %s missing from %s" % (key, UNIT))
    return int(m.group(1))


def wait_queued(ctx, admin, timeout_s=10):
    """Waits until the device's admin stats show a request waiting in its queue."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        s = ctx.socket(zmq.REQ)
        s.linger = 0
        s.connect(admin)
        s.send(b"stats")
        pending = msgpack.unpackb(s.recv(), raw=False)["pending"] if s.poll(2000) else 0
        s.close()
        if pending >= 1:
            return
    raise SystemExit("FAIL the device never queued the request")


conf = open(TOML).read()
drain_s = toml_int(conf, "heartbeat-ms", 1000) * toml_int(conf, "liveness", 3) / 1000
timeout_stop_s = unit_seconds(open(UNIT).read(), "TimeoutStopSec")
check(drain_s < timeout_stop_s, "drain deadline %.1f s (queue.toml) < TimeoutStopSec %d s (unit)" % (drain_s, timeout_stop_s))

ctx = zmq.Context()
with tempfile.TemporaryDirectory() as tmp:
    front, back, admin = ("ipc://%s/%s" % (tmp, n) for n in ("front", "back", "admin"))
    # Command-line flags win over the config file: the file's own keys are still parsed
    # (a key the program does not know would fail here), its addresses replaced.
    proc = subprocess.Popen([BINARY, "--config", TOML, "--frontend", front, "--backend", back, "--admin", admin,
                             "--http", "127.0.0.1:0", "--log-level", "warn"])
    try:
        worker = ctx.socket(zmq.DEALER)
        worker.linger = 0
        worker.connect(back)
        worker.send_multipart([READY, msgpack.packb(["held."], use_bin_type=True)])
        client = ctx.socket(zmq.DEALER)
        client.linger = 0
        client.connect(front)
        held = zmk.envelope("held.job")
        client.send_multipart([b"", zmk.encode(held)])
        got = worker.poll(10000)
        check(bool(got), "the worker holds a request (it will never answer)")
        if got:
            worker.recv_multipart()
        queued = zmk.envelope("nobody.serves.this")  # waits for a worker: answered at once on stop
        client.send_multipart([b"", zmk.encode(queued)])
        wait_queued(ctx, admin)  # the device holds it before the stop signal

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        unavailable = None
        while proc.poll() is None and time.monotonic() - started < timeout_stop_s:
            worker.send(HEARTBEAT)  # alive: the device waits for its reply until the deadline
            if client.poll(100):
                env = zmk.decode(client.recv_multipart()[1])
                if env["correlation_id"] == queued["id"]:
                    unavailable = zmk.error_code(env)
        elapsed = time.monotonic() - started
        code = proc.poll()
        check(code == 0, "SIGTERM: exit code %s" % code)
        check(unavailable == "unavailable", "the queued request was answered 'unavailable' on stop (%s)" % unavailable)
        # Up to one deadline, plus scheduling slack; far below TimeoutStopSec either way.
        check(elapsed <= drain_s + 2.0, "stopped in %.2f s, within the drain deadline %.1f s (+2 s slack)" % (elapsed, drain_s))
        check(elapsed < timeout_stop_s, "stopped before TimeoutStopSec %d s" % timeout_stop_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # The forwarder: its config file parses, it binds, and SIGTERM stops it with exit 0.
    fwd = subprocess.Popen([FORWARDER, "--config", FORWARDER_TOML, "--frontend", "ipc://%s/ff" % tmp,
                            "--backend", "ipc://%s/fb" % tmp, "--snapshot", "ipc://%s/fs" % tmp,
                            "--http", "127.0.0.1:0"],
                           stdout=subprocess.PIPE, text=True)
    try:
        first = fwd.stdout.readline()  # "frontend ..." once bound
        check(first.startswith("frontend "), "forwarder started with forwarder.toml (%r)" % first.strip())
        fwd.send_signal(signal.SIGTERM)
        check(fwd.wait(timeout=timeout_stop_s) == 0, "forwarder: SIGTERM, exit 0")
    finally:
        if fwd.poll() is None:
            fwd.kill()
            fwd.wait()
ctx.destroy(linger=0)
sys.exit(1 if failures else 0)
