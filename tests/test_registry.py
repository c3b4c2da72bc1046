"""Provisioning, pairing and key rotation, from the registry to a device and back.

The last test rotates a sleeping device's key over a real Mosquitto: frames
queued under the old key, the new key, and frames under the new key all
arrive and apply when the device (the built firmware on the unix port) wakes.
"""
from __future__ import annotations

import json
import queue
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from host_tools.demo import security as demo
from host_tools.cloud import publish
from host_tools.cloud.broker import Broker
from host_tools.cloud.registry import Registry, class_mask
from spot import builders, errors, frame, key_admin, messages, secure
from spot.errors import SpotError
from spot.filter_table import FilterTable
from spot.keyring import Keyring

ROOT = Path(__file__).resolve().parent.parent
CLOUD = 0x00000001
HEMS = 0x00010001  # a home energy manager


def _device_ring(reg: Registry, device: int, tmp: Path) -> Keyring:
    reg.write_device_files(device, tmp)
    return Keyring(str(tmp / "keys.json"), str(tmp / "window.json"))


def _table(device: int, group: int) -> FilterTable:
    t = FilterTable(device)
    t.add_address(group)
    t.set_service(messages.SVC_DR, [frame.CLASS_COMMAND])
    t.set_service(messages.SVC_PRICE, [frame.CLASS_INFO])
    t.set_service(messages.SVC_CORE, [frame.CLASS_COMMAND, frame.CLASS_TIMESYNC])
    return t


def _apply_key_command(raw: bytes, table: FilterTable, ring: Keyring) -> tuple[int, int]:
    f = secure.open_frame(raw, table, ring)
    return key_admin.apply(ring, f, messages.read_payload(f))


def test_provisioned_files_are_private_and_work(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg" / "registry.json")
    dev = reg.provision("home")
    reg.save()
    assert stat.S_IMODE((tmp_path / "reg" / "registry.json").stat().st_mode) == 0o600
    ring = _device_ring(reg, dev, tmp_path / "fs")
    for name in ("keys.json", "identity.json"):
        assert stat.S_IMODE((tmp_path / "fs" / name).stat().st_mode) == 0o600
    ident = json.loads((tmp_path / "fs" / "identity.json").read_text())
    assert ident["address"] == dev and ident["groups"] == [reg.site_group("home")]
    table = _table(dev, reg.site_group("home"))
    cmd = builders.reduce_power(dev, CLOUD, reg.counter(CLOUD).next(), 20, 0, 60,
                                key=reg.sender_key(CLOUD, dev))
    assert secure.open_frame(cmd, table, ring).seq >= 1
    fc = builders.price_forecast(reg.site_group("home"), CLOUD, reg.counter(CLOUD).next(), 0, 3600,
                                 [1, 2], -2, key=reg.group_key("home"))
    assert secure.open_frame(fc, table, ring).cls == frame.CLASS_INFO
    # The device's answer verifies at the cloud with the registry's keyring.
    up = builders.ack(CLOUD, dev, 1, 1, messages.ACK_APPLIED, key=ring.for_peer(CLOUD))
    cloud_table = FilterTable(CLOUD)
    cloud_table.set_service(messages.SVC_CORE, [frame.CLASS_ACK])
    assert secure.open_frame(up, cloud_table, reg.keyring_for(CLOUD)).src == dev


def test_pairing_grants_exactly_the_classes_asked(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry.json")
    dev = reg.provision("home")
    ring = _device_ring(reg, dev, tmp_path / "fs")
    table = _table(dev, reg.site_group("home"))
    with pytest.raises(KeyError):  # not paired yet: no key to seal with at all
        reg.sender_key(HEMS, dev)
    entry = reg.pair(HEMS, dev, class_mask("info"))
    assert _apply_key_command(reg.key_add_frame(entry), table, ring) == (messages.ACK_APPLIED, 0)
    key = reg.sender_key(HEMS, dev)
    info = builders.price_forecast(dev, HEMS, 2, 0, 3600, [1], 0, key=key)
    assert secure.open_frame(info, table, ring).src == HEMS
    cmd = builders.reduce_power(dev, HEMS, 3, 20, 0, 60, key=key)
    with pytest.raises(SpotError) as e:
        secure.open_frame(cmd, table, ring)
    assert e.value.code == errors.NOT_PERMITTED
    # The pairing survives the device's reboot (it is in keys.json now).
    again = Keyring(str(tmp_path / "fs" / "keys.json"), str(tmp_path / "fs" / "window.json"))
    assert again.find(HEMS, entry.key_id) is not None


def test_registry_refuses_nonsense(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry.json")
    dev = reg.provision("home", 0x200)
    for bad in (lambda: reg.provision("home", 0x200), lambda: reg.provision("home", 0x80000005),
                lambda: reg.pair(HEMS, 0x999, 1), lambda: reg.pair(HEMS, dev, 0),
                lambda: class_mask("commands"), lambda: reg.rotate(dev, HEMS)):
        with pytest.raises((KeyError, ValueError)):
            bad()


def test_cli_provision_pair_rotate_keys(tmp_path: Path) -> None:
    reg = tmp_path / "registry.json"

    def spot(*args: str) -> str:
        p = subprocess.run([sys.executable, "-m", "host_tools", *args, "--registry", str(reg)],
                           capture_output=True, text=True, cwd=ROOT)
        assert p.returncode == 0, p.stderr
        return p.stdout

    assert "provisioned" in spot("provision", "--site", "home", "--device", "0x300",
                                 "--out", str(tmp_path / "fs"))
    assert "pairing key 2" in spot("pair", "0x10001", "0x300", "--classes", "command,info")
    out = spot("rotate", "0x300")
    assert "new key 3" in out and "spot retire 0x00000300 1" in out
    table = spot("keys")
    assert "retiring" in table
    secret = json.loads(reg.read_text())["keys"][0]["secret"]
    assert secret[:12] not in table + out
    bad = subprocess.run([sys.executable, "-m", "host_tools", "pair", "1", "0x999", "--registry",
                          str(reg)], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "not in the registry" in bad.stderr


def _run_device(port: int, workdir: Path, until: int, timeout: float = 20) -> list[dict[str, Any]]:
    """Run the built firmware until it has applied `until` frames; its events."""
    events: queue.Queue[tuple[float, str, Any]] = queue.Queue()
    dev = demo.Device(port, events, workdir)
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                _t, source, item = events.get(timeout=0.2)
            except queue.Empty:
                continue
            if source == "device":
                got.append(item)
            if until == 0 and any(e.get("ev") == "cycle" and e.get("ok") for e in got):
                break
            if until and sum(1 for e in got if e.get("ev") == "applied") >= until and any(
                    e.get("ev") == "acked" for e in got[-3:]):
                break
        time.sleep(0.2)  # let the last ACKs go out
    finally:
        dev.close()
    return got


@pytest.mark.timeout(90)
def test_rotation_loses_no_queued_message(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry" / "registry.json")
    dev = reg.provision(demo.SITE, demo.DEVICE)
    reg.save()
    reg.write_device_files(dev, tmp_path / "device-fs")
    with Broker() as broker:
        mqtt = f"127.0.0.1:{broker.port}"
        first = _run_device(broker.port, tmp_path, until=0, timeout=3)  # session, then sleep
        assert any(e.get("ev") == "cycle" and e.get("ok") for e in first)
        topic = publish.device_topic(demo.SITE, dev)
        seq = reg.counter(CLOUD).next

        def command(percent: int) -> bytes:
            return builders.reduce_power(dev, CLOUD, seq(), percent, 0, 60, key=reg.sender_key(CLOUD, dev))

        queued = [command(10), command(11)]
        old, new = reg.rotate(dev)
        queued.append(reg.key_add_frame(new))
        queued += [command(12), command(13)]  # sealed with the new key now
        for raw in queued:
            publish.publish(mqtt, topic, raw)
        woke = _run_device(broker.port, tmp_path, until=len(queued))
        applied = [e for e in woke if e.get("ev") == "applied"]
        assert len(applied) == 5, [e for e in woke if e.get("ev") in ("dropped", "refused")]
        assert [e["seq"] for e in woke if e.get("ev") == "kept"] == [
            frame.decode(raw).seq for raw in queued]
        # Retire the old key; afterwards a frame under it is refused.
        stale = builders.reduce_power(dev, CLOUD, seq(), 14, 0, 60, key=old.device_key())
        publish.publish(mqtt, topic, reg.key_retire_frame(dev, old.key_id, CLOUD))
        publish.publish(mqtt, topic, stale)
        publish.publish(mqtt, topic, command(15))
        last = _run_device(broker.port, tmp_path, until=2)
        assert [e["code"] for e in last if e.get("ev") == "dropped"] == [errors.NOT_PAIRED]
        assert sum(1 for e in last if e.get("ev") == "applied") == 2
