"""`spot ctl` end to end: a command queued for a sleeping device, its ACK, its reports."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from host_tools.sim import fleet_host
from host_tools.cloud.broker import Broker
from host_tools.cloud.registry import Registry

DEV = 0x00005001


def _spot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "host_tools", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


@pytest.mark.timeout(120)
def test_ctl_command_pending_watch(tmp_path: Path) -> None:
    reg_path = tmp_path / "registry" / "registry.json"
    reg = Registry(reg_path)
    reg.provision("home", DEV)
    reg.save()
    reg.write_device_files(DEV, tmp_path / "fs")
    fw = fleet_host.firmware()
    with Broker() as broker:
        mqtt = f"127.0.0.1:{broker.port}"
        cfg = fleet_host.device_config(tmp_path / "fs", broker.port)
        fw.wake_once(cfg)  # the device's session; it sleeps now
        r = _spot("ctl", "command", hex(DEV), "--reduce", "20", "--for", "600", "--wait", "0.5",
                  "--registry", str(reg_path), "--mqtt", mqtt)
        assert r.returncode == 1 and "asleep" in r.stdout, r.stdout + r.stderr
        r = _spot("ctl", "pending", "--registry", str(reg_path))
        assert f"{DEV:08x}" in r.stdout and "reduce 20 %" in r.stdout
        r = _spot("ctl", "price", "home", "--prices", "85.2,80.15,78.4", "--registry", str(reg_path),
                  "--mqtt", mqtt)
        assert r.returncode == 0 and "3-step price forecast" in r.stdout
        node, res = fw.wake_once(cfg)
        assert res.ok and res.received == 2 and node.applied == 2
        r = _spot("ctl", "watch", "--seconds", "1.5", "--registry", str(reg_path), "--mqtt", mqtt)
        assert "ACK of seq" in r.stdout and "applied" in r.stdout, r.stdout
        assert "report seq" in r.stdout
        r = _spot("ctl", "pending", "--registry", str(reg_path))
        assert f"{DEV:08x}" not in r.stdout
    r = _spot("ctl", "resend", "--registry", str(reg_path), "--mqtt", "127.0.0.1:1")
    assert r.returncode != 0 and "cannot reach the MQTT broker" in r.stderr + r.stdout
