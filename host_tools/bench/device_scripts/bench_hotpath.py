"""Hot-path benchmark, run under the MicroPython unix port by host_tools/bench.py.

usage: MICROPYPATH=LIB_MPY_DIR:VARIANTS_DIR micropython bench_hotpath.py ROUNDS
Both builds of the hot path screen the same frames in alternating rounds of
one run, so machine noise hits both alike. Prints one JSON object.
"""
import gc
import json
import sys
import time
from array import array

rounds = int(sys.argv[1])

# Import cost first, on a clean heap: the codec and hot path as a device loads them
# (from the compiled library: MICROPYPATH names it first, then the two builds).
gc.collect()
_before = gc.mem_alloc()
from spot import cbor, filter_table, frame, hotpath, messages  # noqa: E402,F401
gc.collect()
import_bytes = gc.mem_alloc() - _before
assert hotpath.__file__.endswith(".mpy"), hotpath.__file__

import hotpath_bytecode  # noqa: E402
import hotpath_native  # noqa: E402

PLUG = 0x107
CONTROLLER = 0x10001


def make_table():
    t = filter_table.FilterTable(PLUG)
    t.add_address(0x80000001)  # its site
    t.add_address(0x80000002)  # its device class group
    t.set_service(messages.SVC_DR, [frame.CLASS_COMMAND])
    t.set_service(messages.SVC_PRICE, [frame.CLASS_INFO])
    t.set_service(messages.SVC_CORE, [frame.CLASS_TIMESYNC, frame.CLASS_DISCOVERY])
    t.require_security([frame.CLASS_COMMAND])
    return t


def f(service, cls, dst, flags=1, version=1, plen=12):
    return frame.encode(service, version, cls, dst, CONTROLLER, 7, bytes(plen), flags)


# What a plug on a shared site channel drops, in proportion: mostly traffic for
# other devices, then services, versions and classes it does not handle.
DROPPED = (
    [f(2, 0, 0x200 + i) for i in range(12)]  # commands for other devices
    + [f(4, 2, CONTROLLER, 0)] * 3  # other devices' meter reports
    + [f(9, 1, 0x80000001), f(7, 0, PLUG), f(9, 1, 0xFFFFFFFF)]  # services it lacks
    + [f(2, 0, PLUG, 1, 2), f(3, 1, 0x80000001, 1, 3)]  # newer service versions
    + [f(2, 2, PLUG), f(3, 0, 0x80000002)]  # classes it does not take
    + [f(2, 0, PLUG, 0)]  # an unsecured command
)
KEPT = [f(2, 0, PLUG), f(3, 1, 0x80000001, 1, 1, 95), f(1, 4, 0xFFFFFFFF, 1, 1, 11),
        f(2, 0, 0x80000002), f(1, 5, PLUG, 0, 1, 1)]


def timed(screen, frames, lens, table, out, reps):
    # Eight calls per loop turn, so the loop itself costs little beside the
    # calls; every call is a real screen() of one frame, as a device makes it.
    total = 0
    for i in range(len(frames)):
        raw = frames[i]
        n = lens[i]
        t0 = time.ticks_us()
        for _ in range(reps):
            screen(raw, n, table, out)
            screen(raw, n, table, out)
            screen(raw, n, table, out)
            screen(raw, n, table, out)
            screen(raw, n, table, out)
            screen(raw, n, table, out)
            screen(raw, n, table, out)
            screen(raw, n, table, out)
        total += time.ticks_diff(time.ticks_us(), t0)
    return total


def loop_only(frames, lens, reps):
    # The harness alone, reported beside the figures so its share is visible.
    total = 0
    for i in range(len(frames)):
        t0 = time.ticks_us()
        for _ in range(reps):
            pass
        total += time.ticks_diff(time.ticks_us(), t0)
    return total


def compare(frames, expect_drop):
    table = make_table().buf
    out = array("H", bytes(2 * hotpath.FIELDS))
    lens = [len(x) for x in frames]
    for x, n in zip(frames, lens):
        code = hotpath_native.screen(x, n, table, out)
        assert (code != 0) == expect_drop, (code, x)
        assert code == hotpath_bytecode.screen(x, n, table, out)
    reps = 400
    best = {"native": 1 << 30, "bytecode": 1 << 30, "loop": 1 << 30}
    for _ in range(rounds):
        best["native"] = min(best["native"], timed(hotpath_native.screen, frames, lens, table, out, reps))
        best["bytecode"] = min(best["bytecode"], timed(hotpath_bytecode.screen, frames, lens, table, out, reps))
        best["loop"] = min(best["loop"], loop_only(frames, lens, reps))
    count = 8 * reps * len(frames)
    return {k: count * 1e6 / max(v, 1) for k, v in best.items()}


def alloc_per_frame(screen, frames):
    table = make_table().buf
    out = array("H", bytes(2 * hotpath.FIELDS))
    lens = [len(x) for x in frames]
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    timed(screen, frames, lens, table, out, 200)
    used = gc.mem_alloc() - before
    gc.enable()
    return used / (8 * 200 * len(frames))


reject = compare(DROPPED, True)
accept = compare(KEPT, False)
print(json.dumps({
    "hotpath_reject_fps_native": round(reject["native"]),
    "hotpath_reject_fps_bytecode": round(reject["bytecode"]),
    "hotpath_reject_speedup": round(reject["native"] / reject["bytecode"], 2),
    "hotpath_accept_fps_native": round(accept["native"]),
    "hotpath_accept_fps_bytecode": round(accept["bytecode"]),
    "hotpath_accept_speedup": round(accept["native"] / accept["bytecode"], 2),
    "bench_harness_ns_per_call": round(1e9 / reject["loop"], 2),
    "hotpath_reject_alloc_bytes": alloc_per_frame(hotpath_native.screen, DROPPED),
    "hotpath_reject_alloc_bytes_bytecode": alloc_per_frame(hotpath_bytecode.screen, DROPPED),
    "hotpath_accept_alloc_bytes": alloc_per_frame(hotpath_native.screen, KEPT),
    "core_import_heap_bytes": import_bytes,
}))
