"""Device code times short intervals with ticks_ms/ticks_us, never with time.time().

time.time() counts whole seconds on rp2 (issue 15: a 50 ms Modbus timeout measured
with it read 0 s or 1 s). The wall clock is read only where the wall is what is
wanted: the device's RTC, which spot/clock.py corrects, and a virtual board's start.
Scanned: everything that runs on a board or beside it in the portable tests.
"""
from __future__ import annotations

import ast

from conftest import ROOT

SCANNED = ("lib", "firmware", "boards", "tests/portable")
WALL = {"time", "time_ns"}
# (file, function) -> why the wall clock is right there
ALLOWED = {
    ("firmware/device.py", "local_ms"): "the RTC: absolute time, corrected by spot/clock.py",
    ("boards/virtual/board.py", "make"): "the models' start on the wall; intervals by ticks",
}


def _wall_reads(path):
    tree = ast.parse(path.read_text())
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr in WALL and getattr(f.value, "id", "") in ("time", "utime"):
            p = node
            while p in parents and not isinstance(p, ast.FunctionDef):
                p = parents[p]
            yield node.lineno, f.attr, getattr(p, "name", "<module>")


def test_no_short_interval_is_timed_by_the_wall_clock() -> None:
    found = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            for line, what, func in _wall_reads(path):
                if (rel, func) not in ALLOWED:
                    found.append(f"{rel}:{line} time.{what}() in {func}()")
    assert not found, "time short intervals with ticks_ms/ticks_us:\n" + "\n".join(found)
