"""Run both builds of the hot path (native viper and plain bytecode) over the same inputs.

usage: micropython tests/mp_hotpath_diff.py VARIANTS_DIR INPUT_FILE
INPUT_FILE: first line the filter table in hex, then one frame in hex per line.
Prints one line per frame: `check parse screen f0..f7` for each variant,
separated by ` | `; the screen pass runs with the heap locked.
"""
import sys
from array import array

import micropython

sys.path.insert(0, sys.argv[1])
import hotpath_bytecode  # noqa: E402
import hotpath_native  # noqa: E402


def row(mod, raw, table, out):
    n = len(raw)
    for i in range(8):
        out[i] = 0
    c = mod.check(raw, n)
    p = mod.parse(raw, n, out)
    parsed = " ".join(str(x) for x in out)
    for i in range(8):
        out[i] = 0
    micropython.heap_lock()
    s = mod.screen(raw, n, table, out)
    micropython.heap_unlock()
    return "%d %d %d %s %s" % (c, p, s, parsed, " ".join(str(x) for x in out))


def main():
    out = array("I", bytes(32))
    with open(sys.argv[2]) as f:
        table = bytearray(bytes.fromhex(f.readline().strip()))
        for line in f:  # one frame at a time: the input may be larger than the heap
            raw = bytes.fromhex(line.strip())
            print(row(hotpath_native, raw, table, out) + " | " + row(hotpath_bytecode, raw, table, out))


main()
