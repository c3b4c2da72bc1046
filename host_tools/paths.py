"""Where things are in the checkout, and the one way host code runs device modules.

The device library (`lib/spot`) is an installed package on the host (pyproject.toml
maps `spot` to lib/spot), so host code simply imports `spot`. The firmware's own
modules (`device`, `node`, the roles) and the virtual boards' (`board`, `models`)
are top-level modules on a board, as MicroPython's flash or frozen modules are;
host code that runs them on CPython (simulations, the fleet) puts the board's
import path in front with `board_import_path()`, and nothing else touches sys.path.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "lib"
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "boards"
VIRTUAL = BOARDS / "virtual"
BUILD = ROOT / "build"
DEPS = BUILD / "deps"  # umqtt.simple, fetched from the registry by `make setup`
SHIMS = ROOT / "host_tools" / "sim" / "cpython_shims"  # u-module names MicroPython has


def board_import_path(*, virtual: bool = False, umqtt: bool = False) -> None:
    """Make the firmware's modules importable on CPython, as a board's flash makes them."""
    wanted = [FIRMWARE]
    if virtual:
        wanted.append(VIRTUAL)
    if umqtt:
        wanted += [DEPS, SHIMS]
    for p in reversed(wanted):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))
