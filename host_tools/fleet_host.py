"""Run the device firmware (firmware/device.py and the spot library) inside CPython.

The same files a board runs, imported here with stand-ins for MicroPython's
module names (host_tools/cpython_shims) and umqtt.simple from build/deps, so
many devices can wake in one process: soak tests, fleet emulation.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

from host_tools.build import BUILD, LIB, ROOT

_PATHS = [str(LIB), str(ROOT / "firmware"), str(BUILD / "deps"), str(ROOT / "host_tools" / "cpython_shims")]


def firmware() -> ModuleType:
    """firmware/device.py as a module (its main() is not run)."""
    for p in reversed(_PATHS):
        if p not in sys.path:
            sys.path.insert(0, p)
    if not (BUILD / "deps" / "umqtt" / "simple.py").exists():
        raise SystemExit("umqtt.simple is missing: run `make setup`")
    spec = importlib.util.spec_from_file_location("spot_firmware_device", ROOT / "firmware" / "device.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.emit = lambda ev, **fields: None  # quiet: the caller reads results, not prints
    return mod


def device_config(fs: Path, port: int, budget_ms: int = 3000) -> dict:
    return {"dir": str(fs), "broker": {"host": "127.0.0.1", "port": port}, "budget_ms": budget_ms}
