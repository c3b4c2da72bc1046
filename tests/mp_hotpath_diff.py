"""Run both builds of the hot path (native viper and plain bytecode) over the same inputs.

usage: micropython tests/mp_hotpath_diff.py VARIANTS_DIR INPUT_FILE
INPUT_FILE: first line the filter table in hex, then one frame in hex per line.
Prints one line per frame: `check parse screen f0..f10` for each variant,
separated by ` | `; the screen pass runs with the heap locked. A port without
the native emitter for x64 (a 32-bit one: tests/mp32_runner.py) runs the
bytecode build alone and prints its row only.
"""
import sys
from array import array

import micropython

sys.path.insert(0, sys.argv[1])
import hotpath_bytecode  # noqa: E402

try:
    import hotpath_native
except (ImportError, ValueError):  # no x64 native code on this port
    hotpath_native = None


def row(mod, raw, table, out):
    n = len(raw)
    for i in range(len(out)):
        out[i] = 0
    c = mod.check(raw, n)
    p = mod.parse(raw, n, out)
    parsed = " ".join(str(x) for x in out)
    for i in range(len(out)):
        out[i] = 0
    micropython.heap_lock()
    try:
        s = mod.screen(raw, n, table, out)
    finally:  # a MemoryError must be reported, not left with the heap locked
        micropython.heap_unlock()
    return "%d %d %d %s %s" % (c, p, s, parsed, " ".join(str(x) for x in out))


def main():
    out = array("H", bytes(2 * 11))  # hotpath.FIELDS
    with open(sys.argv[2]) as f:
        table = bytearray(bytes.fromhex(f.readline().strip()))
        for line in f:  # one frame at a time: the input may be larger than the heap
            raw = bytes.fromhex(line.strip())
            b = row(hotpath_bytecode, raw, table, out)
            print(b if hotpath_native is None else row(hotpath_native, raw, table, out) + " | " + b)


main()
