"""What the python tests of zmqkit-queue share: checks, the device process, a DEALER client.
The device binary is argv[1] unless given."""
import signal
import subprocess
import sys
import time

import msgpack
import zmq

import zmk

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


class device:
    def __init__(self, tmp, name, *flags, binary=None):
        self.front = "ipc://%s/%s-front" % (tmp, name)
        self.back = "ipc://%s/%s-back" % (tmp, name)
        self.admin = "ipc://%s/%s-admin" % (tmp, name)
        self.proc = subprocess.Popen([binary or sys.argv[1], "--frontend", self.front, "--backend", self.back, "--admin",
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
