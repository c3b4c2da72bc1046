"""Regenerate the test-vector blocks of lib/spot/SPEC.md from the library itself.

Run after a deliberate change of the wire format; the tests then check that the
library still produces and refuses exactly what the spec shows.
usage: python -m host_tools.spec.vectors [--check]
"""
from __future__ import annotations

import re
import importlib.util
import sys

from host_tools.paths import LIB, ROOT

SPEC = LIB / "spot" / "SPEC.md"


def _cases():
    # The cases live beside the portable tests, which check the same vectors on
    # both interpreters; loaded by path, as they are no package of the host's.
    spec = importlib.util.spec_from_file_location("vector_cases", ROOT / "tests" / "portable" / "vector_cases.py")
    vector_cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vector_cases)
    from spot import builders, cbor, frame, messages, secure
    from spot.keyring import Key
    from spot.objects import Schedule, Unknown
    CONTROLLER, PLUG, plug_keys, valid = (vector_cases.CONTROLLER, vector_cases.PLUG,
                                          vector_cases.plug_keys, vector_cases.valid)

    pair, group = plug_keys()
    ok = valid()
    ok.append(("unknown-key-skipped", builders.build(
        messages.SVC_DR, frame.CLASS_COMMAND, PLUG, CONTROLLER, 12, {0: 3, 9: Unknown(60000, 1)}, key=pair)))
    good = ok[0][1]

    def raw(seq, payload, key=pair):
        return secure.seal(key, messages.SVC_DR, 1, frame.CLASS_COMMAND, PLUG, CONTROLLER,
                                    seq, payload)

    flipped = bytearray(good)
    flipped[-1] ^= 1
    readdressed = bytearray(good)
    readdressed[8] = 0x08  # the same frame, now to device 0x108
    version2 = bytearray(good)
    version2[0] = 2
    must = bytearray(good)
    must[1] |= 0x40
    enc_unsecured = bytearray(frame.encode(2, 1, 0, PLUG, CONTROLLER, 5, b"\xa0"))
    enc_unsecured[1] = frame.FLAG_ENCRYPTED
    bad = [
        ("truncated-header", "truncated", good[:12]),
        ("truncated-tag", "truncated", good[:-3]),
        ("protocol-version-2", "bad-protocol-version", bytes(version2)),
        ("trailing-byte", "length-mismatch", good + b"\x00"),
        ("must-understand-flag", "unknown-mandatory-field", bytes(must)),
        ("encrypted-unsecured", "bad-flag-combination", bytes(enc_unsecured)),
        ("forged-tag", "authentication-failed", bytes(flipped)),
        ("readdressed", "authentication-failed", bytes(readdressed)),
        ("unknown-key-id", "sender-not-paired", secure.seal(
            Key(7, CONTROLLER, bytes(32), 0xFF), 2, 1, 0, PLUG, CONTROLLER, 13, b"\xa0")),
        ("command-under-group-key", "not-permitted-for-this-sender", raw(14, b"\xa0", group)),
        ("float-in-payload", "bad-payload", raw(6, bytes.fromhex("a101fb3fc999999999999a"))),
        ("nesting-too-deep", "nesting-too-deep", raw(7, bytes.fromhex("a101818181818100"))),
        ("string-too-long", "oversized", raw(8, bytes.fromhex("a1015841") + bytes(65))),
        ("unknown-mandatory-key", "unknown-mandatory-field", raw(9, cbor.encode({0: 1, -5: 1}))),
        ("duplicate-key", "bad-payload", raw(10, bytes.fromhex("a200010002"))),
        ("payload-not-a-map", "bad-payload", raw(11, bytes.fromhex("83010203"))),
        # Version 1.1: item budget, order of checks, ranges (SPEC 4, 5)
        ("forecast-over-item-budget", "oversized", secure.seal(
            group, messages.SVC_PRICE, 1, frame.CLASS_INFO, 0x80000001, CONTROLLER, 15, cbor.encode(
                {0: 1, 1: Schedule.uniform(1795651200, 900, [90] * 117, 9), 2: 978}))),
        ("text-map-key", "bad-payload", raw(16, bytes.fromhex("a1614101"))),
        ("string-too-long-and-cut", "truncated", raw(17, bytes.fromhex("a1015841") + bytes(10))),
        ("text-key-cut", "truncated", raw(18, bytes.fromhex("a1634101"))),
        ("integer-beyond-int64", "oversized", raw(19, bytes.fromhex("a1011bffffffffffffffff"))),
        ("analog-not-canonical", "bad-payload", raw(20, bytes.fromhex("a101d9d35083140300"))),
        ("analog-shape-first", "bad-value", raw(21, bytes.fromhex("a101d9d35084fa3f800000010203"))),
        ("analog-scale-25", "bad-value", raw(22, bytes.fromhex("a101d9d350831403" + "1819"))),
        ("analog-unit-256", "bad-value", raw(23, bytes.fromhex("a101d9d3508214190100"))),
        ("schedule-unsorted", "bad-value", raw(24, bytes.fromhex("a101d9d35188000000001910e001183c02"))),
        ("schedule-offset-2-30", "bad-value", raw(25, bytes.fromhex("a101d9d3518700000" + "01a20000000010203"))),
    ]
    return [(n, "ok", r) for n, r in ok], bad


def render() -> str:
    ok, bad = _cases()
    text = SPEC.read_text()
    blocks = ["# name                    outcome  frame\n" + "".join(
        f"{n:25s} ok {r.hex()}\n" for n, _, r in ok),
        "".join(f"{n:25s} {o} {r.hex()}\n" for n, o, r in bad)]
    parts = re.split(r"(```spot-vectors\n)(.*?)(```)", text, flags=re.S)
    # parts: text, open, body, close, text, open, body, close, text
    assert len(parts) == 9, "SPEC.md must have exactly two spot-vectors blocks"
    parts[2], parts[6] = blocks
    return "".join(parts)


def main(argv: list[str]) -> int:
    new = render()
    if "--check" in argv:
        return 0 if new == SPEC.read_text() else 1
    SPEC.write_text(new)
    print(f"rewrote the vectors in {SPEC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
