"""ZMK/1 envelopes, written from docs/protocol.md alone."""
import os
import time

import msgpack

ERROR_TYPE = "zmk.error"


def new_id():
    """16 bytes, UUIDv7 layout: 48-bit Unix ms, version 7, variant 10, random."""
    ms = time.time_ns() // 1_000_000
    b = bytearray(ms.to_bytes(6, "big") + os.urandom(10))
    b[6] = (b[6] & 0x0F) | 0x70
    b[8] = (b[8] & 0x3F) | 0x80
    return bytes(b)


def envelope(type_, body=b"", priority=4, ttl_ms=0, correlation_id=b"", headers=None, id_=None, timestamp_ns=None):
    return {
        "type": type_, "priority": priority,
        "timestamp": msgpack.Timestamp.from_unix_nano(timestamp_ns if timestamp_ns is not None else time.time_ns()),
        "ttl_ms": ttl_ms, "id": id_ or new_id(), "correlation_id": correlation_id,
        "headers": headers or {}, "body": body,
    }


def encode(env):
    return msgpack.packb([1, env["type"], env["priority"], env["timestamp"], env["ttl_ms"], env["id"],
                          env["correlation_id"], env["headers"], env["body"]], use_bin_type=True)


def decode(frame):
    a = msgpack.unpackb(frame, raw=False)
    if not isinstance(a, list) or len(a) < 9 or a[0] != 1:
        raise ValueError("not a ZMK/1 envelope")
    return {"type": a[1], "priority": a[2], "timestamp": a[3], "ttl_ms": a[4], "id": a[5],
            "correlation_id": a[6], "headers": a[7], "body": a[8]}


def reply(request, type_, body=b""):
    return envelope(type_, body, priority=request["priority"], correlation_id=request["id"])


def error_code(env):
    return env["headers"].get("zmk.error") if env["type"] == ERROR_TYPE else None
