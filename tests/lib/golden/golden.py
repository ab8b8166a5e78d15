#!/usr/bin/python3
"""ZMK/1 golden vectors from an independent msgpack implementation (Debian python3-msgpack).

  golden.py generate            print Python-encoded vectors as JSON (python_vectors.json)
  golden.py check FILE          decode every vector in FILE (e.g. cpp_vectors.json) and compare
                                it with the fields the file says it holds; exit 1 on a mismatch

Written from docs/protocol.md alone: it shares no code with the C++ encoder.
"""
import json
import sys
import uuid

import msgpack


def encode(f):
    ts = msgpack.Timestamp.from_unix_nano(f["timestamp_ns"])
    corr = bytes.fromhex(f["correlation_id"]) if f["correlation_id"] else b""
    return msgpack.packb(
        [1, f["type"], f["priority"], ts, f["ttl_ms"], bytes.fromhex(f["id"]), corr,
         f["headers"], bytes.fromhex(f["body_hex"])] + f.get("extra", []),
        use_bin_type=True)


def decode(raw):
    arr = msgpack.unpackb(raw, raw=False, timestamp=0, strict_map_key=True,
                          max_bin_len=len(raw), max_str_len=len(raw),
                          max_array_len=len(raw), max_map_len=len(raw))
    assert isinstance(arr, list) and len(arr) >= 9, "envelope: not an array of >= 9"
    version, type_, prio, ts, ttl, id_, corr, headers, body = arr[:9]
    assert version == 1, "version"
    assert isinstance(type_, str) and 1 <= len(type_.encode()) <= 255, "type"
    assert isinstance(prio, int) and 0 <= prio <= 9, "priority"
    assert isinstance(ts, msgpack.Timestamp), "timestamp"
    assert isinstance(ttl, int) and ttl >= 0, "ttl_ms"
    assert isinstance(id_, bytes) and len(id_) == 16, "id"
    assert isinstance(corr, bytes) and len(corr) in (0, 16), "correlation_id"
    assert isinstance(headers, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()), "headers"
    assert isinstance(body, bytes), "body"
    return {"type": type_, "priority": prio, "timestamp_ns": ts.to_unix_nano(), "ttl_ms": ttl,
            "id": id_.hex(), "correlation_id": corr.hex(), "headers": headers, "body_hex": body.hex()}


VECTORS = [
    ("minimal", "type 'a', default priority, 32-bit timestamp, no ttl, empty headers and body",
     {"type": "a", "priority": 4, "timestamp_ns": 1_700_000_000 * 10**9, "ttl_ms": 0,
      "id": "0190f3a47c1e7a2b9c3d5e6f7a8b9c0d", "correlation_id": "", "headers": {}, "body_hex": ""}),
    ("full", "every field set: 64-bit timestamp, ttl, correlation id, headers, msgpack body {'sku':'book','qty':2}",
     {"type": "order.created", "priority": 9, "timestamp_ns": 1_732_000_000_123_456_789, "ttl_ms": 5000,
      "id": "0193456789ab7def8123456789abcdef", "correlation_id": "0193456789ab7def8123456789abcd00",
      "headers": {"tenant": "acme", "zmk.attempt": "2"},
      "body_hex": msgpack.packb({"sku": "book", "qty": 2}).hex()}),
    ("error-reply", "an error reply: type zmk.error, zmk.error=expired, zmk.reason, empty body",
     {"type": "zmk.error", "priority": 4, "timestamp_ns": 1_732_000_001_000_000_001, "ttl_ms": 0,
      "id": "01934567890a7000800000000000000a", "correlation_id": "0193456789ab7def8123456789abcdef",
      "headers": {"zmk.error": "expired", "zmk.reason": "ttl of 5000 ms passed"}, "body_hex": ""}),
    ("wide", "96-bit timestamp (before 1970), 300-byte binary body, utf-8 type",
     {"type": "cours\u00e9.r\u00e9view", "priority": 0, "timestamp_ns": -1_500_000_007,
      "ttl_ms": 4_294_967_296, "id": "ffffffffffff7fffbfffffffffffffff", "correlation_id": "",
      "headers": {}, "body_hex": bytes(range(256)).hex() + "00" * 44}),
    ("future", "two extra trailing elements a ZMK/1 decoder must ignore",
     {"type": "pay.authorise", "priority": 5, "timestamp_ns": 1_732_000_002_000_000_000, "ttl_ms": 250,
      "id": "01934567890b70008000000000000001", "correlation_id": "", "headers": {"x": ""},
      "body_hex": "c3", "extra": ["v2 field", {"nested": [1, 2.5]}]}),
]


def main():
    if sys.argv[1:] == ["generate"]:
        out = []
        for name, description, fields in VECTORS:
            out.append({"name": name, "description": description, "producer": "python3-msgpack",
                        "hex": encode(fields).hex(),
                        "fields": {k: v for k, v in fields.items() if k != "extra"}})
        json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
        print()
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "check":
        failures = 0
        for v in json.load(open(sys.argv[2], encoding="utf-8")):
            try:
                got = decode(bytes.fromhex(v["hex"]))
                if got != v["fields"]:
                    raise AssertionError(f"decoded {got} != expected {v['fields']}")
                print(f"ok   {v['name']}")
            except Exception as e:  # report every vector, not only the first failure
                failures += 1
                print(f"FAIL {v['name']}: {e}")
        return 1 if failures else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
