"""The hardware-in-the-loop test bench: a pytest plugin with a `board` fixture.

    pytest tests/hil                                  # a virtual ESP32 (CI)
    pytest tests/hil --board virtual:rp2040
    pytest tests/hil --board /dev/ttyUSB0 --board-chip esp32 --broker-host 192.168.1.20

The same tests run on a real board (a serial port) and on a virtual one (the
MicroPython unix port behind a REPL that stock mpremote drives,
host_tools/board/virtual_board/). They deploy the firmware with `spot deploy`, run
it and talk to it through its REPL (mpremote) and over MQTT. Tests that need a
real board carry `@pytest.mark.real_board` and are skipped, saying so, on a
virtual one. Installed as a pytest plugin by the project (pyproject.toml).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

MPREMOTE = str(Path(sys.executable).parent / "mpremote")
ROLE = "thermostat"  # what the bench deploys unless a test asks for another


@dataclass
class Board:
    """A board under test: its mpremote port, its chip, and whether it is virtual."""

    port: str
    chip: str
    virtual: bool
    broker_host: str = "127.0.0.1"
    server: Any = None  # the VirtualBoardServer behind a virtual board
    log: list[str] = field(default_factory=list)

    def mpremote(self, *args: str, timeout: float = 60) -> str:
        """Run stock mpremote against the board; its output (a failure is an AssertionError)."""
        p = subprocess.run([MPREMOTE, "connect", self.port, *args], capture_output=True,
                           text=True, timeout=timeout)
        self.log.append(f"$ mpremote {' '.join(args)}\n{p.stdout}{p.stderr}")
        assert p.returncode == 0, f"mpremote {' '.join(args)} failed:\n{p.stdout}{p.stderr}"
        return p.stdout

    def exec(self, code: str, timeout: float = 60, resume: bool = False) -> str:
        """Run code on the board; mpremote soft-resets it first unless resume."""
        return self.mpremote(*(("resume",) if resume else ()), "exec", code, timeout=timeout)

    def read(self, path: str) -> str:
        return self.mpremote("fs", "cat", ":" + path)

    def deploy(self, role: str, device_dir: Path, broker_port: int, **kw: Any) -> dict:
        from host_tools.board import deploy

        return deploy.deploy(self.port, role=role, device_dir=device_dir,
                             broker=f"{self.broker_host}:{broker_port}", show=False, **kw)

    def run_firmware(self, cycles: int, timeout: float = 60) -> list[dict[str, Any]]:
        """Run the deployed firmware for `cycles` wakes from the REPL; its JSON events.

        Wakes are counted, so the run is sleepy whatever the role's power mode."""
        out = self.exec(
            "import json\n"
            "cfg = json.load(open('config.json'))\n"
            f"cfg.update(cycles={cycles}, power='sleepy', stdin_stop=False, run_s=0)\n"
            "json.dump(cfg, open('config.run.json', 'w'))\n"
            "import device\n"
            "device.main('config.run.json')\n", timeout=timeout)
        events = []
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass
        return events

    def reset(self) -> None:
        """A hard reset: the interpreter starts again from boot.py and main.py."""
        if self.server is not None:
            self.server.reset()
        else:
            self.mpremote("reset")


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("spot-hil", "SPOT hardware-in-the-loop bench")
    g.addoption("--board", default="virtual:esp32",
                help="the board under test: a serial port (/dev/ttyUSB0), a mpremote "
                     "socket://HOST:PORT, or virtual:esp32 / virtual:rp2040 (default)")
    g.addoption("--board-chip", default=None, choices=("esp32", "rp2040"),
                help="the chip of a real board (virtual boards know theirs)")
    g.addoption("--broker-host", default="127.0.0.1",
                help="the address at which the board reaches this machine's test broker")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_board: needs a real board on a serial port (skipped on virtual boards)")


def _is_virtual(config: pytest.Config) -> bool:
    return str(config.getoption("--board")).startswith("virtual:")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _is_virtual(config):
        return
    skip = pytest.mark.skip(reason=f"needs a real board; this run has {config.getoption('--board')} "
                                   "(give --board /dev/ttyUSB0 --board-chip esp32)")
    for item in items:
        if "real_board" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def board(request: pytest.FixtureRequest) -> Iterator[Board]:
    """The board under test, fresh for each test module when virtual."""
    spec = str(request.config.getoption("--board"))
    host = str(request.config.getoption("--broker-host"))
    if spec.startswith("virtual:"):
        from host_tools.board.virtual_board import VirtualBoardServer

        chip = spec.split(":", 1)[1]
        with tempfile.TemporaryDirectory(prefix="spot-hil-") as root:
            with VirtualBoardServer(chip=chip, role=ROLE, root=Path(root) / "flash") as server:
                yield Board(server.url, chip, True, host, server)
        return
    chip = request.config.getoption("--board-chip")
    if chip is None:
        pytest.exit("--board-chip esp32|rp2040 is needed with a real board", returncode=4)
    yield Board(spec, chip, False, host)
