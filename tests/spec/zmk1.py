"""ZMK/1 as docs/protocol.md specifies it, for the conformance peers in this folder.

Written from docs/protocol.md alone: imports only msgpack and the standard library, nothing of
zmqkit (not even tests/queue/python/zmk.py). Section numbers refer to docs/protocol.md.
"""
import os
import time

import msgpack

ERROR_TYPE = "zmk.error"
MIN_SECONDS, MAX_SECONDS = -9_223_372_035, 9_223_372_035  # 3.4
RETRYABLE = {"unavailable", "overloaded"}  # 4.3


class SpecError(Exception):
    """A rule of the spec broken by what a peer sent: field is the 3.3 field name."""

    def __init__(self, field, problem):
        super().__init__("%s: %s" % (field, problem))
        self.field = field


def new_id():
    """3.5: UUIDv7 layout, 48-bit Unix ms, version 7, variant 10, the rest random."""
    b = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    b[6] = (b[6] & 0x0F) | 0x70
    b[8] = (b[8] & 0x3F) | 0x80
    return bytes(b)


def uuid_text(raw):
    """Section 2: canonical lowercase 8-4-4-4-12 text of a 16-byte id."""
    h = raw.hex()
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def parse_uuid_text(text):
    parts = text.split("-")
    if [len(p) for p in parts] != [8, 4, 4, 4, 12] or text != text.lower():
        raise SpecError("uuid", "not canonical UUID text: %r" % text)
    return bytes.fromhex("".join(parts))


def is_decimal(text):
    """Section 2: "0" or a nonzero digit then digits; no sign, no leading zero, no space."""
    return text == "0" or (text[:1] in "123456789" and text != "" and text.isascii() and text.isdigit())


def make(type_, body=b"", priority=4, ttl_ms=0, correlation_id=b"", headers=None, id_=None,
         timestamp_ns=None):
    return {"type": type_, "priority": priority,
            "timestamp_ns": time.time_ns() if timestamp_ns is None else timestamp_ns,
            "ttl_ms": ttl_ms, "id": id_ or new_id(), "correlation_id": correlation_id,
            "headers": dict(headers or {}), "body": body}


def reply_to(request, type_, body=b""):
    """3.2: a reply carries the request's id as correlation_id and its priority."""
    return make(type_, body, priority=request["priority"], correlation_id=request["id"])


def encode(env, extra=()):
    """3.1/3.2: nine elements, smallest forms (msgpack-python writes them), str vs bin kept apart."""
    ts = msgpack.Timestamp.from_unix_nano(env["timestamp_ns"])
    return msgpack.packb([1, env["type"], env["priority"], ts, env["ttl_ms"], env["id"],
                          env["correlation_id"], env["headers"], env["body"], *extra], use_bin_type=True)


def _ext_hook(code, data):
    return msgpack.ExtType(code, data)


def is_envelope_candidate(frame):
    """3.7: the whole frame is one complete msgpack array (nested at most 32 levels)."""
    if not frame or not (0x90 <= frame[0] <= 0x9F or frame[0] in (0xDC, 0xDD)):
        return False
    try:
        value = msgpack.unpackb(frame, raw=True, strict_map_key=False, ext_hook=_ext_hook,
                                object_pairs_hook=lambda pairs: pairs)
    except Exception:  # incomplete, trailing bytes, invalid type byte
        return False
    return isinstance(value, list)


def _uint(v, field):
    if type(v) is not int:  # bool is not an integer on the wire
        raise SpecError(field, "not a msgpack integer")
    if v < 0:
        raise SpecError(field, "negative integer")
    return v


def _is_str(v):
    return isinstance(v, str)


def decode(frame, max_frame_bytes=1 << 20, max_headers=64):
    """3.3: every rejection raises SpecError naming the field."""
    if len(frame) > max_frame_bytes:
        raise SpecError("frame", "over the limit")
    try:
        a = msgpack.unpackb(frame, raw=False, strict_map_key=False, timestamp=0,
                            object_pairs_hook=lambda pairs: ("map", pairs))
    except msgpack.ExtraData:
        raise SpecError("envelope", "trailing bytes after the array")
    except UnicodeDecodeError:
        raise SpecError("str", "not valid UTF-8")  # the field is refined by the C++ decoder; any name is a rejection
    except Exception as e:
        raise SpecError("envelope", "not msgpack: %s" % e)
    if not isinstance(a, list):
        raise SpecError("envelope", "not a msgpack array")
    if len(a) < 9:
        raise SpecError("envelope", "fewer than 9 elements")
    if _uint(a[0], "version") != 1:
        raise SpecError("version", "not 1")
    if not _is_str(a[1]) or not 1 <= len(a[1].encode()) <= 255:
        raise SpecError("type", "not a str of 1-255 bytes")
    if _uint(a[2], "priority") > 9:
        raise SpecError("priority", "greater than 9")
    ts = a[3]
    if not isinstance(ts, msgpack.Timestamp):
        raise SpecError("timestamp", "not a timestamp extension")
    if not MIN_SECONDS <= ts.seconds <= MAX_SECONDS:
        raise SpecError("timestamp", "out of range")
    ttl = min(_uint(a[4], "ttl_ms"), 9_223_372_036_854)
    if not isinstance(a[5], bytes) or len(a[5]) != 16:
        raise SpecError("id", "not a 16-byte bin")
    if not isinstance(a[6], bytes) or len(a[6]) not in (0, 16):
        raise SpecError("correlation_id", "neither 0 nor 16 bytes")
    h = a[7]
    if not (isinstance(h, tuple) and h[0] == "map"):
        raise SpecError("headers", "not a map")
    pairs = h[1]
    if len(pairs) > max_headers:
        raise SpecError("headers", "too many entries")
    headers = {}
    for k, v in pairs:
        if not _is_str(k) or not _is_str(v):
            raise SpecError("headers", "key or value not a str")
        if k in headers:
            raise SpecError("headers", "duplicate key")
        headers[k] = v
    if not isinstance(a[8], bytes):
        raise SpecError("body", "not a bin")
    return {"type": a[1], "priority": a[2], "timestamp_ns": ts.to_unix_nano(), "ttl_ms": ttl, "id": a[5],
            "correlation_id": a[6], "headers": headers, "body": a[8]}


def expired(env, now_ns=None):
    """11: expired when now >= timestamp + ttl_ms, on the receiver's clock."""
    if env["ttl_ms"] == 0:
        return False
    now_ns = time.time_ns() if now_ns is None else now_ns
    return now_ns >= env["timestamp_ns"] + env["ttl_ms"] * 1_000_000


def error_code(env):
    return env["headers"].get("zmk.error") if env["type"] == ERROR_TYPE else None


def check_error_reply(env, code):
    """4.1: type zmk.error, zmk.error = code, a zmk.reason, ttl 0, empty body."""
    problems = []
    if env["type"] != ERROR_TYPE:
        problems.append("type %r" % env["type"])
    if env["headers"].get("zmk.error") != code:
        problems.append("zmk.error %r, expected %r" % (env["headers"].get("zmk.error"), code))
    if "zmk.reason" not in env["headers"]:
        problems.append("no zmk.reason")
    if env["ttl_ms"] != 0 or env["body"] != b"":
        problems.append("ttl or body set")
    return problems


class Checks:
    """ok/FAIL lines; a check listed in known (name -> why) is reported XFAIL instead of failing."""

    def __init__(self, known=None):
        self.failures, self.known, self.xfails = [], dict(known or {}), []

    def check(self, cond, what, key=None):
        if cond:
            print("ok    " + what)
            if key in self.known:
                print("      (XPASS: %s is fixed; remove it from the known deviations)" % key)
        elif key in self.known:
            print("XFAIL " + what + "  [known code deviation: " + self.known[key] + "]")
            self.xfails.append(what)
        else:
            print("FAIL  " + what)
            self.failures.append(what)
        return cond

    def finish(self):
        print("%d failed, %d known deviations" % (len(self.failures), len(self.xfails)))
        return 1 if self.failures else 0


def read_line(proc, prefix, timeout=10):
    """The next stdout line of proc starting with prefix (the programs print their endpoints)."""
    end = time.time() + timeout
    while time.time() < end:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("%s exited" % proc.args[0])
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise RuntimeError("no %r line" % prefix)
