"""A ZMK/1 worker for the queue device's backend (Paranoid Pirate style).

usage: worker.py ENDPOINT NAME [--prefix P]... [--capacity N] [--exec-log FILE] [--delay-ms N]
--capacity N > 1 announces READY's map form {"prefixes": [...], "capacity": N}: the device may
queue N requests here; they are still handled one at a time.
Replies body = msgpack {"worker": NAME, "echo": request body}. Appends each executed request id (hex)
to the exec log; --exec-detail FILE appends "ID-hex CLOCK_MONOTONIC-ns REDELIVERED" per execution
(REDELIVERED: the zmk.redelivered header, or 0).
"""
import argparse
import sys
import time

import msgpack
import zmq

import zmk

READY, HEARTBEAT, DISCONNECT = b"\x01", b"\x02", b"\x03"
HEARTBEAT_S, LIVENESS = 0.2, 5

ap = argparse.ArgumentParser()
ap.add_argument("endpoint")
ap.add_argument("name")
ap.add_argument("--prefix", action="append", default=[])
ap.add_argument("--capacity", type=int, default=1)
ap.add_argument("--exec-log")
ap.add_argument("--exec-detail")
ap.add_argument("--delay-ms", type=int, default=0)
args = ap.parse_args()

ctx = zmq.Context()


def connect():
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.connect(args.endpoint)
    if args.capacity > 1:
        ready = {"prefixes": args.prefix, "capacity": args.capacity}
        s.send_multipart([READY, msgpack.packb(ready, use_bin_type=True)])
    elif args.prefix:
        s.send_multipart([READY, msgpack.packb(args.prefix, use_bin_type=True)])
    else:
        s.send(READY)
    return s


sock = connect()
log = open(args.exec_log, "a", buffering=1) if args.exec_log else None
detail = open(args.exec_detail, "a", buffering=1) if args.exec_detail else None
liveness, heartbeat_at = LIVENESS, time.time() + HEARTBEAT_S
while True:
    if sock.poll(int(HEARTBEAT_S * 1000)) & zmq.POLLIN:
        frames = sock.recv_multipart()
        liveness = LIVENESS
        if len(frames) == 1 and frames[0] == HEARTBEAT:
            pass
        elif len(frames) >= 3 and frames[-2] == b"":
            req = zmk.decode(frames[-1])
            if log:
                log.write(req["id"].hex() + "\n")
            if detail:
                detail.write("%s %d %s\n" % (req["id"].hex(), time.monotonic_ns(), req["headers"].get("zmk.redelivered", "0")))
            if args.delay_ms:
                time.sleep(args.delay_ms / 1000)
            body = msgpack.packb({"worker": args.name, "echo": req["body"]}, use_bin_type=True)
            sock.send_multipart(frames[:-1] + [zmk.encode(zmk.reply(req, req["type"] + ".done", body))])
        else:
            print("worker: unexpected", frames, file=sys.stderr)
    else:
        liveness -= 1
        if liveness == 0:  # the device is gone: reconnect and READY again
            sock.close()
            sock = connect()
            liveness = LIVENESS
    if time.time() > heartbeat_at:
        heartbeat_at = time.time() + HEARTBEAT_S
        sock.send(HEARTBEAT)
