"""The ZeroMQ guide's Paranoid Pirate worker (ppworker.py), unchanged in behaviour:
plain bodies, READY once, heartbeats, echoes [client, empty, body].
usage: ppworker.py ENDPOINT [WORK_SECONDS [EXEC_LOG]]
WORK_SECONDS: sleep that long before each reply, sending nothing meanwhile (the guide's
simulated work); EXEC_LOG: append each request body to this file when work starts."""
import sys
import time
from random import randint

import zmq

HEARTBEAT_LIVENESS = 3
HEARTBEAT_INTERVAL = 1
INTERVAL_INIT = 1
INTERVAL_MAX = 32
PPP_READY = b"\x01"
PPP_HEARTBEAT = b"\x02"
ENDPOINT = sys.argv[1]
WORK_SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 0
EXEC_LOG = open(sys.argv[3], "a", buffering=1) if len(sys.argv) > 3 else None


def worker_socket(context, poller):
    worker = context.socket(zmq.DEALER)
    identity = b"%04X-%04X" % (randint(0, 0x10000), randint(0, 0x10000))
    worker.setsockopt(zmq.IDENTITY, identity)
    poller.register(worker, zmq.POLLIN)
    worker.connect(ENDPOINT)
    worker.send(PPP_READY)
    return worker


context = zmq.Context(1)
poller = zmq.Poller()
liveness = HEARTBEAT_LIVENESS
interval = INTERVAL_INIT
heartbeat_at = time.time() + HEARTBEAT_INTERVAL
worker = worker_socket(context, poller)
while True:
    socks = dict(poller.poll(HEARTBEAT_INTERVAL * 1000))
    if socks.get(worker) == zmq.POLLIN:
        frames = worker.recv_multipart()
        if not frames:
            break
        if len(frames) == 3:
            if EXEC_LOG:
                EXEC_LOG.write(frames[2].decode(errors="replace") + "\n")
            if WORK_SECONDS:
                time.sleep(WORK_SECONDS)
            worker.send_multipart(frames)
            liveness = HEARTBEAT_LIVENESS
        elif len(frames) == 1 and frames[0] == PPP_HEARTBEAT:
            liveness = HEARTBEAT_LIVENESS
        else:
            print("E: Invalid message: %s" % frames, file=sys.stderr)
        interval = INTERVAL_INIT
    else:
        liveness -= 1
        if liveness == 0:
            time.sleep(interval)
            if interval < INTERVAL_MAX:
                interval *= 2
            poller.unregister(worker)
            worker.setsockopt(zmq.LINGER, 0)
            worker.close()
            worker = worker_socket(context, poller)
            liveness = HEARTBEAT_LIVENESS
    if time.time() > heartbeat_at:
        heartbeat_at = time.time() + HEARTBEAT_INTERVAL
        worker.send(PPP_HEARTBEAT)
