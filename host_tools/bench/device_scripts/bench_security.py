"""Security benchmark, run under the MicroPython unix port by host_tools/bench.py.

usage: micropython bench_security.py LIB_MPY_DIR TESTS_PORTABLE_DIR ROUNDS
Times opening (filter, pairing, tag, window, decode) of 64-byte secured frames
beside the hot path's rejection of a frame, in one run, and runs the attack
suite. Prints one JSON object.
"""
import json
import sys
import time
from array import array

libdir, portable, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path[:0] = [libdir, portable]

import attacks  # noqa: E402
from spot import builders, frame, hotpath, messages, secure  # noqa: E402
from spot.keyring import Key, Keyring  # noqa: E402

CONTROLLER = 0x10001
PLUG = 0x107
N = 300


def frames(key, start):
    # A 64-byte frame: 19 header + 36 payload + 9 trailer.
    out = []
    for i in range(N):
        raw = builders.build(messages.SVC_DR, frame.CLASS_COMMAND, PLUG, CONTROLLER, start + i,
                             {0: 1, 1: b"0123456789abcdef0123456789abcd"}, key=key)
        assert len(raw) == 64, len(raw)
        out.append(raw)
    return out


def main():
    secret = bytes(range(32))
    table = attacks.plug_table()
    best_open = best_reject = 1 << 30
    seq = 1
    dropped = frame.encode(messages.SVC_DR, 1, frame.CLASS_COMMAND, 0x999, CONTROLLER, 1, bytes(36), 1)
    out = array("H", bytes(2 * hotpath.FIELDS))
    for _ in range(rounds):
        ring = Keyring()
        ring.add(Key(1, CONTROLLER, secret, 0xFF, admin=True), save=False)
        batch = frames(Key(1, PLUG, secret, 0xFF), seq)
        seq += N
        t0 = time.ticks_us()
        for raw in batch:
            messages.read_payload(secure.open_frame(raw, table, ring, 0))
        best_open = min(best_open, time.ticks_diff(time.ticks_us(), t0))
        n = len(dropped)
        buf = table.buf
        t0 = time.ticks_us()
        for _ in range(N):
            hotpath.screen(dropped, n, buf, out)
        best_reject = min(best_reject, time.ticks_diff(time.ticks_us(), t0))
    results = attacks.run()
    print(json.dumps({
        "sec_overhead_bytes": frame.TRAILER_SIZE,
        "sec_verify_us": round(best_open / N, 2),
        "sec_hotpath_reject_us": round(best_reject / N, 3),
        "sec_verify_vs_reject_ratio": round(best_open / max(best_reject, 1), 1),
        "sec_attacks": len(results),
        "sec_attacks_accepted": len(attacks.accepted(results)),
    }))


main()
