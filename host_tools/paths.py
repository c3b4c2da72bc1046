"""Where things are in the checkout, and how host code reaches the device's modules.

The device library (`lib/spot`) is an installed package on the host (pyproject.toml
maps `spot` to lib/spot), so host code simply imports `spot`. The firmware's own
modules (`device`, `node`, the roles), the virtual boards' (`board`, `models`) and
umqtt.simple are top-level modules on a board, as MicroPython's flash or frozen
modules are; `make setup` installs their folders into the virtualenv's import path
(`python -m host_tools.paths` writes a .pth file), so host code that runs them on
CPython (simulations, the fleet) imports them too, and no code edits sys.path.
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


PTH_NAME = "spot_board_modules.pth"


def board_folders() -> list[Path]:
    """The folders a board's import path holds, as the host sees them."""
    return [FIRMWARE, VIRTUAL, DEPS, SHIMS]


def board_import_path(*, virtual: bool = False, umqtt: bool = False) -> None:
    """Check that the firmware's modules are importable on CPython (installed by `make
    setup`), with a clear message when they are not."""
    wanted = [FIRMWARE] + ([VIRTUAL] if virtual else []) + ([DEPS, SHIMS] if umqtt else [])
    missing = [p for p in wanted if str(p) not in sys.path]
    if missing:
        raise SystemExit(f"the board's modules are not installed in this Python ({', '.join(map(str, missing))}"
                         f" not on its import path): run `make setup`")


def install_board_path() -> Path:
    """Write the .pth file that puts the board's folders on this virtualenv's import path."""
    import sysconfig

    pth = Path(sysconfig.get_paths()["purelib"]) / PTH_NAME
    pth.write_text("".join(f"{p}\n" for p in board_folders()))
    return pth


if __name__ == "__main__":
    print(f"board modules: {install_board_path()}")
