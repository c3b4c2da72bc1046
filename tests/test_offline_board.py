"""A board without a network stack still runs its role and journals what it reports.

Once a defect (issue 15): device.py imported spot.mqtt_link at the top, which
imports `socket`; on a board without one (RPI_PICO) `device` failed at import,
so not even the role's control ran. Here the unix port runs the built firmware
with `socket` made unimportable (a launcher wraps __import__), then the same
device, networked again, delivers what it journalled meanwhile.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import MICROPYTHON, ROOT, provision
from host_tools.cloud.broker import Broker
from host_tools.cloud.controller import Controller

SITE = "offline"
DEV = 0x00003161
pytestmark = pytest.mark.timeout(120)

LAUNCHER = '''import builtins
import sys

_import = builtins.__import__


def _no_network(name, *args):
    if name in ("socket", "usocket", "ssl", "tls", "network"):
        raise ImportError("no module named '%s'" % name)
    return _import(name, *args)


builtins.__import__ = _no_network
import device  # noqa: E402

sys.exit(device.main())
'''


def _run(tmp: Path, port: int, launcher: Path | None, cycles: int, **extra: object) -> list[dict]:
    conf = {"dir": str(tmp / "fs"), "broker": {"host": "127.0.0.1", "port": port},
            "cycles": cycles, "wake_ms": 100, "run_s": 30, "role": "smart_plug", "power": "sleepy",
            "control_ms": 20, "list_modules": True, "budget_ms": 1000,
            "board": {"chip": "rp2040", "clock": "wall", "seed": 5}, **extra}
    path = tmp / "device.json"
    path.write_text(json.dumps(conf))
    image = ROOT / "build" / "mpy" / "x64"
    env = dict(os.environ, MICROPYPATH=os.pathsep.join(
        [".frozen", str(image), str(ROOT / "build" / "virtual")]))
    script = launcher or image / "main.py"
    p = subprocess.run([str(MICROPYTHON), str(script), str(path)], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


def test_a_board_without_socket_runs_its_role_offline_and_delivers_later(tmp_path: Path) -> None:
    reg = provision(tmp_path, SITE, DEV)
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    ev = _run(tmp_path, 1, launcher, cycles=3)
    cycles = [e for e in ev if e["ev"] == "cycle"]
    assert len(cycles) == 3, ev
    assert all(not c["ok"] and "no transport" in c["error"] for c in cycles), cycles
    [summary] = [e for e in ev if e["ev"] == "summary"]
    assert "socket" not in summary["modules"] and "spot.mqtt_link" not in summary["modules"]
    queued = summary["outbox"]
    assert queued >= 1, summary  # the role's reports, journalled on flash
    assert (tmp_path / "fs" / "journal.json").exists()
    # Networked again: what it journalled offline reaches the cloud.
    _journal_reaches_the_cloud(tmp_path, reg, queued)


def _journal_reaches_the_cloud(tmp_path: Path, reg, queued: int) -> None:  # noqa: ANN001
    """Networked again (the transport back, a broker up): one wake publishes at least the
    queued outbox entries, and the cloud's controller receives them."""
    with Broker() as broker:
        ctl = Controller(reg, SITE, f"127.0.0.1:{broker.port}")
        ctl.connect()
        try:
            ev = _run(tmp_path, broker.port, None, cycles=1)
            [c] = [e for e in ev if e["ev"] == "cycle"]
            assert c["ok"] and c["published"] >= queued, c
            end = time.monotonic() + 5
            while not ctl.stats.reports and time.monotonic() < end:
                time.sleep(0.02)
            assert ctl.stats.reports, "nothing journalled offline arrived"
        finally:
            ctl.close()


def test_a_connected_board_without_socket_journals_its_reports(tmp_path: Path) -> None:
    # Connected mode (the plug's default) over spot.offline: every session fails at
    # open(); the reports still go into the outbox, as a failed sleepy wake's do.
    reg = provision(tmp_path, SITE, DEV)
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    ev = _run(tmp_path, 1, launcher, cycles=0, power="connected", run_s=2, reconnect_ms=100)
    [summary] = [e for e in ev if e["ev"] == "summary"]
    assert summary["power"] == "connected" and summary["sessions"] == 0, summary
    ends = [e for e in ev if e["ev"] == "session_end"]
    assert ends and all("no transport" in e["why"] for e in ends), ends
    assert "socket" not in summary["modules"] and "spot.mqtt_link" not in summary["modules"]
    queued = summary["outbox"]
    assert queued >= 2, summary  # the state report and the capability record
    _journal_reaches_the_cloud(tmp_path, reg, queued)
