"""`spot ctl` end to end: through the cloud's API (a real service, broker and firmware) and,
where there is no cloud, straight to the broker with --direct."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from host_tools import cli
from host_tools.cloud.broker import Broker
from host_tools.cloud.registry import Registry
from host_tools.cloud.testbed import CloudTestbed, run_device
from host_tools.sim import fleet_host

DEV = 0x00005001


def _spot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "host_tools", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60, env=env)


@pytest.mark.timeout(180)
def test_ctl_through_the_cloud(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    def ctl(*args: str) -> tuple[int, str, str]:
        code = cli.main(["ctl", *args])  # the CLI itself, in this process: quicker than a new one
        out, err = capsys.readouterr()
        return code, out, err

    with CloudTestbed(tmp_path) as tb:
        fs = tb.provision("home", DEV)
        tb.start()
        base = f"http://127.0.0.1:{tb.port}"
        monkeypatch.setenv("SPOT_CLOUD_URL", base)
        monkeypatch.setenv("SPOT_CLOUD_TOKEN", tb.token)
        run_device(tmp_path, fs, tb.broker.port, "thermostat", 1)  # first contact; asleep after
        end = time.monotonic() + 10
        while not tb.api("GET", f"/api/devices/{DEV:08x}").get("capabilities") and time.monotonic() < end:
            time.sleep(0.05)

        code, out, _ = ctl("devices", "--json")
        assert code == 0
        assert [(d["address"], d["capabilities"]["role"]) for d in json.loads(out)] == [(f"{DEV:08x}", "thermostat")]
        code, out, _ = ctl("devices")
        assert code == 0 and f"{DEV:08x}" in out and "thermostat" in out and "room 18.0 C" in out

        # A command through the API: 202 with its id; the device sleeps, so it waits.
        code, out, _ = ctl("setpoint", hex(DEV), "21.5", "--for", "600", "--json")
        assert code == 0
        accepted = json.loads(out)
        cid = accepted["id"]
        assert accepted["kind"] == "setpoint" and accepted["device"] == f"{DEV:08x}"
        code, out, _ = ctl("wait", str(cid), "--timeout", "0.3")
        assert code == 1 and "asleep" in out
        code, out, _ = ctl("--json", "pending")  # options before the action work too
        assert code == 0 and [c["id"] for c in json.loads(out)] == [cid]
        assert json.loads(out)[0]["state"] == "published"

        # The live stream, from the real entry point, while the device wakes and applies it.
        watcher = subprocess.Popen([sys.executable, "-m", "host_tools", "ctl", "watch", "--seconds", "20",
                                    "--json"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        try:
            assert "watching" in watcher.stderr.readline()  # subscribed from here on
            run_device(tmp_path, fs, tb.broker.port, "thermostat", 1)
            code, out, _ = ctl("wait", str(cid), "--timeout", "10", "--json")
            assert code == 0, out
            assert json.loads(out)["state"] == "applied"
        finally:
            time.sleep(0.3)
            watcher.terminate()
            events = [json.loads(line) for line in watcher.communicate(timeout=10)[0].splitlines()]
        assert any(e["type"] == "command" and e["id"] == cid and e["state"] == "applied" for e in events), events
        assert any(e["type"] == "state" and e["body"]["target_c"] == 21.5 for e in events), events

        code, out, _ = ctl("state", f"{DEV:08x}")
        assert code == 0 and "target 21.5 C" in out and "commands waiting for the device: none" in out
        code, out, _ = ctl("commands", hex(DEV))
        assert code == 0 and "setpoint 21.5 C for 10 min" in out and "applied" in out
        code, out, _ = ctl("price", "home", "--prices", "85.2,80.15,78.4", "--json")
        assert code == 0 and json.loads(out)["steps"] == 3

        # What the API refuses: its reason on one line, status 2.
        code, out, err = ctl("relay", hex(DEV), "on")
        assert code == 2 and out == ""
        assert err == "spot ctl relay: HTTP 422: a thermostat has no 'relay': that is for a smart_plug\n"
        code, _, err = ctl("setpoint", hex(DEV), "99")
        assert code == 2 and err.count("\n") == 1
        assert "HTTP 422: value_c: Input should be less than or equal to 30" in err
        code, _, err = ctl("cancel", str(cid))
        assert code == 2 and "HTTP 409" in err and "only a command not yet handed to the broker" in err
        code, _, err = ctl("--token", "spot_not-a-token", "devices")
        assert code == 2 and "HTTP 401: unknown or revoked token" in err
        code, _, err = ctl("state", "nonsense!")
        assert code == 2 and "not a device address" in err
        code, _, err = ctl("--mqtt", tb.broker_addr, "restore", hex(DEV))
        assert code == 2 and "add --direct" in err

    # No cloud there: status 1 and what to do, from the real entry point.
    env = dict(os.environ, SPOT_CLOUD_URL="http://127.0.0.1:1", SPOT_CLOUD_TOKEN="x")
    r = _spot("ctl", "devices", env=env)
    assert r.returncode == 1 and r.stdout == ""
    assert "cannot reach the cloud at http://127.0.0.1:1" in r.stderr and "spot cloud serve" in r.stderr


@pytest.mark.timeout(120)
def test_ctl_direct_without_a_cloud(tmp_path: Path) -> None:
    # The old path, kept for where there is no cloud: the controller and the JSON registry,
    # a command queued for a sleeping device, its ACK, its reports.
    reg_path = tmp_path / "registry" / "registry.json"
    reg = Registry(reg_path)
    reg.provision("home", DEV)
    reg.save()
    reg.write_device_files(DEV, tmp_path / "fs")
    fw = fleet_host.firmware()
    with Broker() as broker:
        mqtt = f"127.0.0.1:{broker.port}"
        direct = ("ctl", "--direct", "--registry", str(reg_path), "--mqtt", mqtt)
        cfg = fleet_host.device_config(tmp_path / "fs", broker.port)
        fw.wake_once(cfg)  # the device's session; it sleeps now
        r = _spot(*direct, "reduce", hex(DEV), "20", "--for", "600", "--wait", "0.5")
        assert r.returncode == 1 and "asleep" in r.stdout, r.stdout + r.stderr
        r = _spot("ctl", "--direct", "pending", "--registry", str(reg_path))
        assert f"{DEV:08x}" in r.stdout and "reduce 20 % for 10 min" in r.stdout
        r = _spot(*direct, "price", "home", "--prices", "85.2,80.15,78.4")
        assert r.returncode == 0 and "3-step price forecast" in r.stdout
        node, res = fw.wake_once(cfg)
        assert res.ok and res.received == 2 and node.applied == 2
        r = _spot(*direct, "watch", "--seconds", "1.5")
        assert "ACK of seq" in r.stdout and "applied" in r.stdout, r.stdout
        assert "report seq" in r.stdout
        r = _spot("ctl", "--direct", "pending", "--json", "--registry", str(reg_path))
        assert r.returncode == 0 and json.loads(r.stdout) == []
    r = _spot("ctl", "--direct", "resend", "--registry", str(reg_path), "--mqtt", "127.0.0.1:1")
    assert r.returncode != 0 and "cannot reach the MQTT broker" in r.stderr + r.stdout
