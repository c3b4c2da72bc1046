"""The hot path compiled to native code must answer exactly as the portable build does.

Both builds run under the MicroPython unix port on the same inputs (valid,
random, mutated, and frames built to reach every filter branch); CPython runs
the same source as a third opinion.
"""
from __future__ import annotations

import random
import subprocess
from array import array

from conftest import MICROPYTHON, ROOT

from host_tools.board import build
from spot import frame, hotpath, messages
from spot.filter_table import FilterTable
from vector_cases import CONTROLLER, PLUG, SITE_GROUP, valid


def _table() -> FilterTable:
    t = FilterTable(PLUG)
    t.add_address(SITE_GROUP)
    t.add_address(0x80000002)
    t.set_service(messages.SVC_DR, [frame.CLASS_COMMAND], 1, 2)
    t.set_service(messages.SVC_PRICE, [frame.CLASS_INFO])
    t.set_service(messages.SVC_CORE, [frame.CLASS_ACK, frame.CLASS_TIMESYNC, frame.CLASS_DISCOVERY])
    t.require_security([frame.CLASS_COMMAND])
    t.set_max_payload(100)
    return t


def _inputs(rng: random.Random) -> list[bytes]:
    base = [raw for _, raw in valid()]
    out = list(base)
    addresses = [PLUG, SITE_GROUP, 0x80000002, 0x108, frame.BROADCAST, 0, 0x01000107]
    for _ in range(1500):  # well-formed frames with random header choices: every filter branch
        flags = rng.choice([0, 1, 3, 2, 4, 5, 0x08, 0x10, 0x20, 0x80])
        plen = rng.choice([0, 1, 5, 99, 100, 101, 300])
        raw = bytearray(19 + plen + (9 if flags & 1 else 0))
        raw[0] = rng.choice([1, 1, 1, 1, 0, 2, 255])
        raw[1] = flags
        raw[2] = rng.choice([0, 1, 2, 3, 4, 255, rng.randrange(256)])
        raw[3] = rng.choice([0, 1, 2, 3, 255])
        raw[4] = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 255])
        raw[5:9] = rng.choice(addresses).to_bytes(4, "big")
        raw[9:13] = CONTROLLER.to_bytes(4, "big")
        raw[13:17] = rng.randrange(1 << 32).to_bytes(4, "big")
        raw[17:19] = plen.to_bytes(2, "big")
        out.append(bytes(raw[: len(raw) + rng.choice([0, 0, 0, -1, 1])] if rng.random() < 0.9 else raw + b"\x00"))
    for _ in range(1500):  # random bytes
        out.append(rng.randbytes(rng.randrange(0, 64)))
    for _ in range(1500):  # mutated valid frames
        b = bytearray(rng.choice(base))
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        out.append(bytes(b))
    return out


def _cpython_rows(frames: list[bytes], table: bytearray) -> list[str]:
    rows = []
    for raw in frames:
        out = array("H", bytes(2 * hotpath.FIELDS))
        c = hotpath.check(raw, len(raw))
        p = hotpath.parse(raw, len(raw), out)
        parsed = list(out)
        out = array("H", bytes(2 * hotpath.FIELDS))
        s = hotpath.screen(raw, len(raw), table, out)
        rows.append("%d %d %d %s %s" % (c, p, s, " ".join(map(str, parsed)), " ".join(map(str, out))))
    return rows


def test_native_bytecode_and_cpython_agree(tmp_path) -> None:
    variants = build.build_variants()
    rng = random.Random(20261126)
    frames = _inputs(rng)
    table = _table().buf
    src = tmp_path / "frames.txt"
    src.write_text("\n".join([table.hex()] + [f.hex() for f in frames]))
    res = subprocess.run([str(MICROPYTHON), str(ROOT / "tests" / "mp_hotpath_diff.py"),
                          str(variants["native"].parent), str(src)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == len(frames)
    expected = _cpython_rows(frames, table)
    codes = set()
    for i, (line, want) in enumerate(zip(lines, expected)):
        native, bytecode = line.split(" | ")
        assert native == bytecode, (i, frames[i].hex(), native, bytecode)
        assert native == want, (i, frames[i].hex(), native, want)
        codes.add(int(native.split()[2]))
    # The inputs reached every answer the filter can give.
    assert codes >= {0, 1, 2, 3, 5, 7, 8, 16, 17, 18, 19, 20}, sorted(codes)


def test_bytecode_on_a_32bit_port_agrees_without_allocating(tmp_path) -> None:
    """The bytecode build on a 32-bit MicroPython, screen() with the heap locked: site
    groups (0x8000xxxx), broadcast and large sequence numbers must not become long
    ints there (issue 15: MemoryError at the second frame)."""
    import pytest

    import mp32_runner

    try:
        mp32_runner.ensure()
    except mp32_runner.Unavailable as e:
        pytest.skip(str(e))
    variants = build.build_variants()
    frames = _inputs(random.Random(20261127))[:2500]
    # Every 32-bit field past 2**30, kept and dropped alike.
    big = [frame.encode(messages.SVC_PRICE, 1, frame.CLASS_INFO, a, 0xC0000001, 0xFFFFFFF0 + i, b"\xa0")
           for i, a in enumerate((SITE_GROUP, 0x80000002, frame.BROADCAST, 0xFFFFFFFE))]
    frames = big + frames
    table = _table().buf
    src = tmp_path / "frames.txt"
    src.write_text("\n".join([table.hex()] + [f.hex() for f in frames]))
    res = mp32_runner.run(ROOT / "tests" / "mp_hotpath_diff.py", ["/v", "/in/frames.txt"],
                          files={"/v/hotpath_bytecode.py": variants["bytecode"].with_suffix(".py"),
                                 "/in/frames.txt": src})
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert len(lines) == len(frames)
    assert lines == _cpython_rows(frames, table)
    assert sum(1 for x in lines[:4] if x.split()[2] == "0") >= 3  # the big ones were kept
