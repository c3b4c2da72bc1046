"""The cloud behind a broker that lets no one in where they don't belong (spot broker-config):
the service logs in with its own account, devices with theirs, and a command still travels
from the API to the firmware and its ACK back; with a wrong password the service says so and
serves nothing from the broker."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from host_tools.cloud import broker_config
from host_tools.cloud.broker import Broker
from host_tools.cloud.registry import Registry
from host_tools.cloud.testbed import CloudTestbed, run_device

pytestmark = pytest.mark.timeout(180)
SITE, PLUG = "acl", 0x3301


def test_the_cloud_logs_in_with_its_own_account_and_commands_reach_the_device(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry" / "registry.json")
    reg.provision(SITE, PLUG)
    reg.save()
    fs = tmp_path / f"fs-{PLUG:08x}"
    reg.write_device_files(PLUG, fs)
    access = tmp_path / "access"
    broker_config.write(reg, access)
    login = reg.broker_account(reg.cloud)
    with Broker(access=access) as broker, CloudTestbed(tmp_path, broker=broker) as tb:
        tb.reg = Registry(reg.path)  # the same registry the broker's files came from
        tb.start(broker_login=login)
        run_device(tmp_path, fs, broker.port, "smart_plug", 1)
        end = time.monotonic() + 10
        while time.monotonic() < end and not tb.api("GET", f"/api/devices/{PLUG:08x}")["capabilities"]:
            time.sleep(0.05)
        c = tb.api("POST", f"/api/devices/{PLUG:08x}/commands", {"kind": "relay", "on": True})
        run_device(tmp_path, fs, broker.port, "smart_plug", 1)
        assert tb.wait_command(c["id"], ("applied",))["state"] == "applied"
        tb.stop()

        tb.start(broker_login=(login[0], "wrong"), wait=False)
        end = time.monotonic() + 10
        health = None
        while time.monotonic() < end:
            try:
                health = tb.api("GET", "/health")
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(1.0)
        assert tb.api("GET", "/health")["mqtt"] is False  # serving HTTP, refused by the broker
        assert "refused the cloud's connection" in tb.log.read_text()
        assert health is not None
