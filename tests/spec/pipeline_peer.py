#!/usr/bin/python3
"""Pipeline: a worker written from docs/protocol.md alone (section 9) speaking the credit protocol
with a real zmqkit ventilator and sink (spec_pipeline, at-least-once, 300 ms batch deadline).
usage: pipeline_peer.py PATH/TO/spec_pipeline

Imports only zmq, msgpack, the standard library and zmk1 (this folder's codec, written from the
spec).
"""
import queue
import subprocess
import sys
import tempfile
import threading
import time

import msgpack
import zmq

import zmk1

checks = zmk1.Checks()
check = checks.check
ctx = zmq.Context()


class Program:
    """spec_pipeline, its stdout read on a thread so the worker can run while it waits."""

    def __init__(self, binary, tmp):
        self.proc = subprocess.Popen([binary, "ipc://%s/vent" % tmp, "ipc://%s/sink" % tmp, "at-least-once",
                                      "300"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     bufsize=1)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.ventilator = self.expect("ventilator ")
        self.sink = self.expect("sink ")

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, prefix, timeout=15):
        line = self.lines.get(timeout=timeout)
        if not line.startswith(prefix):
            raise RuntimeError("expected %r, got %r" % (prefix, line))
        return line[len(prefix):]

    def poll_line(self):
        try:
            return self.lines.get_nowait()
        except queue.Empty:
            return None

    def stop(self):
        self.proc.stdin.close()
        return self.proc.wait(timeout=10)


class Worker:
    """9.1-9.3: DEALER to the ventilator (tasks in, credit out), PUSH to the sink (results)."""

    def __init__(self, ventilator, sink):
        self.tasks = ctx.socket(zmq.DEALER)
        self.tasks.linger = 0
        self.tasks.connect(ventilator)
        self.results = ctx.socket(zmq.PUSH)
        self.results.linger = 1000
        self.results.connect(sink)
        self.credit = 0  # granted and not yet used by a task: never negative if the ventilator obeys

    def control(self, type_, headers):
        self.tasks.send(zmk1.encode(zmk1.make(type_, headers=headers)))

    def grant(self, n):
        self.control("zmk.credit", {"zmk.credit": str(n)})
        self.credit += n

    def reset(self, n):
        self.control("zmk.credit", {"zmk.credit.reset": str(n)})
        self.credit = n

    def receive(self, timeout_ms):
        if not self.tasks.poll(timeout_ms):
            return None
        frames = self.tasks.recv_multipart()
        if len(frames) != 1:
            raise zmk1.SpecError("task", "%d frames, expected one envelope" % len(frames))
        self.credit -= 1
        return frames[0], zmk1.decode(frames[0])

    def send_result(self, task, body):
        result = zmk1.reply_to(task, "spec.done", body)  # correlation_id = the task's id
        for h in ("zmk.batch", "zmk.batch.size"):
            if h in task["headers"]:
                result["headers"][h] = task["headers"][h]
        self.results.send(zmk1.encode(result))


def run_batch(program, worker, size, on_task, timeout=12):
    """Submits a batch and works until the program reports its outcome; returns (outcome, tasks)."""
    program.send("batch %d" % size)
    batch_id = program.expect("submitted ")
    seen, end = [], time.time() + timeout
    while time.time() < end:
        line = program.poll_line()
        if line is not None:
            return batch_id, line, seen
        got = worker.receive(20)
        if got is None:
            continue
        seen.append(got)
        check_credit(worker)
        on_task(got)
    return batch_id, None, seen


credit_ok = [True]


def check_credit(worker):
    if worker.credit < 0 and credit_ok[0]:
        credit_ok[0] = False
        check(False, "the ventilator sent a task beyond the credit granted")


def main(binary):
    tmp = tempfile.mkdtemp()
    program = Program(binary, tmp)
    try:
        worker = Worker(program.ventilator, program.sink)
        worker.grant(2)  # 9.2: credit first, nothing arrives before it

        first_frames, lost = {}, []

        def lose_third_once(got):
            frame, task = got
            n = msgpack.unpackb(task["body"])
            if n == 3 and not lost:
                lost.append(frame)  # "crash" on task 3: no result; the sink reports it missing
            else:
                first_frames.setdefault(task["id"], frame)
                worker.send_result(task, msgpack.packb(n * 10))
            worker.grant(1)  # the slot is free again

        batch_id, outcome, seen = run_batch(program, worker, 6, lose_third_once)
        tasks = [t for _, t in seen]
        check(outcome is not None and outcome.startswith("complete 6 0 1"),
              "6-task batch, one result lost: the sink reports it missing, the ventilator resends it, the "
              "batch completes with 6 results, 0 duplicates, 1 resend (%s)" % outcome)
        check(len(tasks) == 7, "the worker received 6 tasks + 1 resend (%d)" % len(tasks))
        check(credit_ok[0], "never more tasks than credit granted (credit 2, one back per task)")
        check(all(t["headers"].get("zmk.batch") == batch_id and t["headers"].get("zmk.batch.size") == "6"
                  for t in tasks), "every task carries zmk.batch (UUID text) and zmk.batch.size (decimal)")
        check(zmk1.uuid_text(zmk1.parse_uuid_text(batch_id)) == batch_id, "the batch id is canonical UUID text")
        resent = [f for f, _ in seen if lost and f == lost[0]]
        check(len(resent) == 2, "the resend is the identical frame (same id, same bytes)")

        # zmk.credit.reset = 0: the ventilator holds the tasks until credit is stated again (9.2).
        worker.reset(0)
        program.send("counters")
        program.expect("counters ")  # the ventilator has read the reset
        program.send("batch 2")
        program.expect("submitted ")
        got = worker.receive(300)
        check(got is None, "after zmk.credit.reset 0 no task arrives")
        worker.reset(2)
        outcome, n = None, 0
        end = time.time() + 12
        while outcome is None and time.time() < end:
            outcome = program.poll_line()
            got = worker.receive(20)
            if got:
                n += 1
                check_credit(worker)
                worker.send_result(got[1], b"")
        check(n == 2 and outcome is not None and outcome.startswith("complete 2 0"),
              "zmk.credit.reset 2: the two held tasks arrive, the batch completes (%s)" % outcome)

        # Bad control messages are dropped and counted (9.2): a sign, no header.
        program.send("counters")
        before = program.expect("counters ").split()
        worker.control("zmk.credit", {"zmk.credit": "+1"})
        worker.control("zmk.credit", {})
        worker.control("zmk.nonsense", {})
        program.send("counters")
        after = program.expect("counters ").split()
        check(int(after[2]) == int(before[2]) + 3, "zmk.credit '+1', zmk.credit without header and an unknown "
              "zmk. type: 3 bad frames counted (%s -> %s)" % (before[2], after[2]))

        # zmk.bye: the ventilator forgets the worker (9.2).
        check(int(after[3]) == 1, "the ventilator knows one worker")
        worker.control("zmk.bye", {})
        program.send("counters")
        after = program.expect("counters ").split()
        check(int(after[3]) == 0, "after zmk.bye it knows none")
    finally:
        rc = program.stop()
    check(rc == 0, "ventilator and sink exit 0")
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
