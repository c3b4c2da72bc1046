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
for p in (ROOT / "boards" / "virtual", ROOT / "firmware", ROOT / "lib", ROOT / "tests" / "portable", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def pytest_sessionstart(session: pytest.Session) -> None:
    # Tests use the compiled tree; build it if a bare `pytest` run came first.
    from host_tools.board import build

    build.build_all(["x64"])

# Portable modules run through test_portable.py (on every interpreter), not directly.
collect_ignore = ["portable", "mp_runner.py"]


def provision(tmp: Path, site: str, dev: int):
    """A registry under tmp/registry with one device, its files written to tmp/fs."""
    from host_tools.cloud.registry import Registry

    reg = Registry(tmp / "registry" / "registry.json")
    reg.provision(site, dev)
    reg.save()
    reg.write_device_files(dev, tmp / "fs")
    return reg


class ScriptedBroker:
    """A TCP listener that answers every connection's first packet with fixed bytes
    (or nothing at all, reply None) and then stays silent until close()."""

    def __init__(self, reply: bytes | None) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.conns: list = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            if self.reply is not None:
                try:
                    c.recv(1024)
                    c.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()
