"""what a broker (or any publisher on a device's topic) can send must not
take the device out of its main loop, and must not block its queue for ever.

Once a defect: umqtt.simple's wait_msg() reads an announced PUBLISH of any size in
one go (MicroPython: MemoryError), raises AssertionError on a QoS 2 PUBLISH or
a bad PINGRESP, and MQTTException on a refused CONNACK; wake.run() catches
OSError only, so each of these ends device.main() with a traceback. The
oversized message is never acknowledged, so it comes back at every boot: the
device never drains its queue again.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import MICROPYTHON, ROOT, ScriptedBroker, provision
from host_tools.cloud.broker import Broker
from host_tools.cloud.controller import Controller
from spot import builders, messages, topics

SITE = "test"
DEV = 0x00003001
pytestmark = pytest.mark.timeout(120)


def _run(tmp: Path, port: int, cycles: int = 1, **cfg: Any) -> subprocess.CompletedProcess:
    conf = {"dir": str(tmp / "fs"), "broker": {"host": "127.0.0.1", "port": port},
            "cycles": cycles, "wake_ms": 50, "run_s": 30, "budget_ms": 1500, **cfg}
    path = tmp / "device.json"
    path.write_text(json.dumps(conf))
    image = ROOT / "build" / "mpy" / "x64"
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([".frozen", str(image)]))
    return subprocess.run([str(MICROPYTHON), str(image / "main.py"), str(path)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)


SESSION = b"\x20\x02\x01\x00"  # CONNACK, session present


@pytest.mark.parametrize("reply", [
    b"\x20\x02\x00\x05",  # CONNACK: not authorised (MQTTException)
    SESSION + b"\x32\xff\xff\xff\x7f\x00\x01x\x00\x01",  # PUBLISH announcing 256 MB (MemoryError)
    SESSION + b"\x34\x06\x00\x01x\x00\x01\x41",  # QoS 2 PUBLISH (AssertionError)
    SESSION + b"\xd0\x01\x00",  # PINGRESP with a length (AssertionError)
], ids=["connack-refused", "huge-publish", "qos2-publish", "bad-pingresp"])
def test_a_misbehaving_broker_costs_a_failed_wake_not_the_firmware(tmp_path: Path, reply: bytes) -> None:
    provision(tmp_path, SITE, DEV)
    fake = ScriptedBroker(reply)
    try:
        p = _run(tmp_path, fake.port, cycles=2, budget_ms=700)
    finally:
        fake.close()
    assert p.returncode == 0, p.stdout[-1500:] + p.stderr[-1500:]
    cycles = [json.loads(line) for line in p.stdout.splitlines() if '"cycle"' in line]
    assert len(cycles) == 2 and not any(c["ok"] for c in cycles)


def test_an_oversized_message_on_the_device_topic_does_not_block_its_queue(tmp_path: Path) -> None:
    reg = provision(tmp_path, SITE, DEV)
    with Broker() as broker:
        assert _run(tmp_path, broker.port).returncode == 0  # the session
        ctl = Controller(reg, SITE, f"127.0.0.1:{broker.port}")
        ctl.connect()
        try:
            # Anyone who may publish to spot/<site>/<dev> (Mosquitto's default
            # message_size_limit is 256 MB); a SPOT frame is at most 65563 bytes.
            ctl.client.publish(topics.topic(SITE, DEV), b"\x01" * 3_000_000, qos=1).wait_for_publish()
            ctl.send_command(DEV, lambda seq, key: builders.reduce_power(
                DEV, ctl.address, seq, 20, 0, 60, key=key), "reduce")
            time.sleep(0.3)
            runs = [_run(tmp_path, broker.port) for _ in range(2)]
            assert all(r.returncode == 0 for r in runs), runs[-1].stdout[-1500:] + runs[-1].stderr[-1500:]
            end = time.monotonic() + 5
            while ctl.waiting() and time.monotonic() < end:
                time.sleep(0.05)
            assert not ctl.waiting(), "the command behind the oversized message never arrived"
        finally:
            ctl.close()
