"""Shared test set-up: paths, the MicroPython unix port, and the device library on sys.path."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_BIN = Path(sys.executable).parent
MICROPYTHON = _BIN / "micropython" if (_BIN / "micropython").exists() else Path(
    shutil.which("micropython") or "micropython")

# The device library and the portable tests import as they do on a board.
for p in (ROOT / "lib", ROOT / "tests" / "portable", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def pytest_sessionstart(session: pytest.Session) -> None:
    # Tests use the compiled tree; build it if a bare `pytest` run came first.
    from host_tools import build

    build.build_all(["x64"])

# Portable modules run through test_portable.py (on every interpreter), not directly.
collect_ignore = ["portable", "mp_runner.py"]
