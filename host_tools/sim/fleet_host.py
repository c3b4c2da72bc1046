"""Run the device firmware (firmware/device.py and the spot library) inside CPython.

The same files a board runs, imported here with stand-ins for MicroPython's
module names (host_tools/cpython_shims) and umqtt.simple from build/deps, so
many devices can wake in one process: soak tests, fleet emulation.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from host_tools.paths import DEPS, FIRMWARE, board_import_path


def firmware() -> ModuleType:
    """firmware/device.py as a module (its main() is not run)."""
    board_import_path(umqtt=True)
    if not (DEPS / "umqtt" / "simple.py").exists():
        raise SystemExit("umqtt.simple is missing: run `make setup`")
    spec = importlib.util.spec_from_file_location("spot_firmware_device", FIRMWARE / "device.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.emit = lambda ev, **fields: None  # quiet: the caller reads results, not prints
    return mod


def device_config(fs: Path, port: int, budget_ms: int = 3000) -> dict:
    return {"dir": str(fs), "broker": {"host": "127.0.0.1", "port": port}, "budget_ms": budget_ms}
