"""Each role as the built firmware under the MicroPython unix port, on a virtual
ESP32 and a virtual RP2040, against a real Mosquitto: a command queued while the
device sleeps is carried out at its next wake, acknowledged, and followed by a
state report; the capability record comes on first contact.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import MICROPYTHON, ROOT, provision
from host_tools.cloud.broker import Broker
from host_tools.cloud.controller import Controller
from spot import builders, frame, messages

SITE = "roles"
DEV = 0x00003101
pytestmark = pytest.mark.timeout(120)

# What the state report after the command shows: (key, value).
SHOWS = {"thermostat": (3, 220), "smart_plug": (4, 1), "heat_pump": (7, 1)}
COMMANDS = {  # role -> (label, builder of (dev, ctl) -> (seq, key) -> frame, expected ACK status)
    "thermostat": ("setpoint 22 C", lambda d, c: lambda seq, key: builders.device_command(
        d, c, seq, 1, builders.celsius(220), 3600, key=key), messages.ACK_APPLIED),
    "smart_plug": ("relay on", lambda d, c: lambda seq, key: builders.device_command(
        d, c, seq, 2, 1, key=key), messages.ACK_APPLIED),
    "heat_pump": ("block 3 h", lambda d, c: lambda seq, key: builders.device_command(
        d, c, seq, 3, 1, 3 * 3600, key=key), messages.ACK_ADAPTED),
}


def run_device(tmp: Path, port: int, role: str, chip: str, cycles: int,
               heap: str | None = None) -> list[dict[str, Any]]:
    conf = {"dir": str(tmp / "fs"), "broker": {"host": "127.0.0.1", "port": port},
            "cycles": cycles, "wake_ms": 100, "run_s": 30, "role": role, "control_ms": 50,
            "power": "sleepy",  # wake cycles (connected mode: tests/test_connected.py)
            "board": {"chip": chip, "clock": "wall", "seed": 3}}
    path = tmp / "device.json"
    path.write_text(json.dumps(conf))
    image = ROOT / "build" / "mpy" / "x64"
    env = dict(os.environ, MICROPYPATH=os.pathsep.join(
        [".frozen", str(image), str(ROOT / "build" / "virtual")]))
    args = [str(MICROPYTHON)] + (["-X", f"heapsize={heap}"] if heap else [])
    p = subprocess.run(args + [str(image / "main.py"), str(path)], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return [json.loads(line) for line in p.stdout.splitlines()]


@pytest.mark.parametrize("chip", ["esp32", "rp2040"])
@pytest.mark.parametrize("role", list(COMMANDS))
def test_role_carries_out_a_command_queued_while_it_slept(tmp_path, role, chip):
    reg = provision(tmp_path, SITE, DEV)
    with Broker() as broker:
        ctl = Controller(reg, SITE, f"127.0.0.1:{broker.port}")
        ctl.connect()
        try:
            first = run_device(tmp_path, broker.port, role, chip, 1)
            boot = [e for e in first if e["ev"] == "boot"][0]
            assert boot["board"] == "virtual:" + chip and boot["cause"] == "power_on"
            label, build, status = COMMANDS[role]
            ctl.send_command(DEV, build(DEV, ctl.address), label)
            ev = run_device(tmp_path, broker.port, role, chip, 2)
            assert [e for e in ev if e["ev"] == "applied"], ev
            import time

            time.sleep(0.3)
            with ctl.lock:
                acks = [a.body for a in ctl.stats.acks]
                reports = [r.body for r in ctl.stats.reports if r.cls == frame.CLASS_REPORT]
            assert [a[messages.K_ACK_STATUS] for a in acks] == [status]
            kinds = [r.get(0) for r in reports if 1 in r and r.get(1) in (1, 2, 3)]
            assert kinds.count(2) == 1  # capabilities once: nothing changed after
            states = [r for r in reports if r.get(0) == 1 and r.get(1) in (1, 2, 3)]
            key, value = SHOWS[role]
            assert states[0].get(key) != value and states[-1].get(key) == value
            assert not ctl.pending
        finally:
            ctl.close()


def retained(port: int, topic: str, timeout: float = 3.0) -> bytes | None:
    """The retained message on topic, read by a fresh subscriber."""
    import threading

    import paho.mqtt.client as mqtt

    got: list[bytes] = []
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_connect = lambda cl, *_a: cl.subscribe(topic, qos=1)
    c.on_message = lambda _c, _u, msg: (got.append(msg.payload), done.set())
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(timeout)
    c.loop_stop()
    c.disconnect()
    return got[0] if got else None


def test_availability_is_retained_asleep_until_and_lost_when_a_wake_dies(tmp_path):
    import time

    from host_tools.sim import fleet_host, role_sim  # noqa: F401 (role_sim: the board's path)
    from spot import topics

    provision(tmp_path, SITE, DEV)
    status = topics.status(SITE, DEV)
    with Broker() as broker:
        run_device(tmp_path, broker.port, "smart_plug", "esp32", 1)
        msg = retained(broker.port, status)
        assert msg is not None and msg.startswith(b"asleep ")
        assert abs(int(msg.split()[1]) - time.time()) < 30  # the next wake, in epoch s
        fw = fleet_host.firmware()
        cfg = dict(fleet_host.device_config(tmp_path / "fs", broker.port), role="smart_plug",
                   board={"clock": "wall"})

        class PowerCut(BaseException):  # not an Exception: nothing in the firmware catches it
            pass

        def fault(kind, link):
            if link.poller is not None:  # connected: the socket just drops, no DISCONNECT
                link.raw.close()
                raise PowerCut()

        with pytest.raises(PowerCut):
            fw.wake_once(cfg, fault=fault)
        deadline = time.monotonic() + 5
        while retained(broker.port, status, 1.0) != b"lost" and time.monotonic() < deadline:
            pass
        assert retained(broker.port, status) == b"lost"


def test_boot_loop_safe_mode_holds_outputs_safe_until_a_healthy_wake(tmp_path):
    reg = provision(tmp_path, SITE, DEV)
    with Broker() as broker:
        ctl = Controller(reg, SITE, f"127.0.0.1:{broker.port}")
        ctl.connect()
        try:
            run_device(tmp_path, broker.port, "smart_plug", "esp32", 1)  # the session
            (tmp_path / "fs" / "boots.json").write_text("3")  # three boots that never got well
            label, build, _status = COMMANDS["smart_plug"]
            ctl.send_command(DEV, build(DEV, ctl.address), label)
            ev = run_device(tmp_path, broker.port, "smart_plug", "esp32", 1)
            assert [e for e in ev if e["ev"] == "boot"][0]["safe"] is True
            import time

            time.sleep(0.3)
            with ctl.lock:
                assert [(a.body[2], a.body.get(3)) for a in ctl.stats.acks] == [(2, 40)]
                states = [r.body for r in ctl.stats.reports if r.body.get(0) == 1 and 8 in r.body]
            assert states[-1][8] == 40 and states[-1][4] == 0
            assert (tmp_path / "fs" / "boots.json").read_text() == "0"  # the wake was healthy
            ctl.send_command(DEV, build(DEV, ctl.address), label)
            ev = run_device(tmp_path, broker.port, "smart_plug", "esp32", 1)
            assert [e for e in ev if e["ev"] == "boot"][0]["safe"] is False
            time.sleep(0.3)
            with ctl.lock:
                assert ctl.stats.acks[-1].body[2] == messages.ACK_APPLIED
        finally:
            ctl.close()


def test_the_role_keeps_control_through_a_slow_wake(tmp_path):
    """An over-current during a wake that takes seconds is still cut within a sample."""
    import time

    from host_tools.sim import fleet_host, role_sim  # noqa: F401 (role_sim: the board's path)

    import board as vboard

    reg = provision(tmp_path, SITE, DEV)
    with Broker() as broker:
        ctl = Controller(reg, SITE, f"127.0.0.1:{broker.port}")
        ctl.connect()
        try:
            fw = fleet_host.firmware()
            hw = vboard.make("smart_plug", seed=1, clock="wall", load="kettle")
            cfg = dict(fleet_host.device_config(tmp_path / "fs", broker.port), role="smart_plug",
                       board_obj=hw, control_ms=200, budget_ms=8000)
            fw.wake_once(cfg)  # the session
            ctl.send_command(DEV, COMMANDS["smart_plug"][1](DEV, ctl.address), "relay on")
            time.sleep(0.2)
            fw.wake_once(cfg)
            assert hw.relay("load").on
            hw.model.short = True
            node, res = fw.wake_once(cfg, fault=lambda kind, link: time.sleep(0.3))  # a slow link
            assert res.ms > 2000 and not hw.relay("load").on
            assert hw.model.violations()["overcurrent_late"] == 0
        finally:
            ctl.close()


def test_safe_mode_ends_with_the_first_good_wake_of_the_boot(tmp_path):
    from host_tools.sim import fleet_host, role_sim  # noqa: F401

    import board as vboard

    provision(tmp_path, SITE, DEV)
    with Broker() as broker:
        fw = fleet_host.firmware()
        cfg = dict(fleet_host.device_config(tmp_path / "fs", broker.port), role="smart_plug",
                   board_obj=vboard.make("smart_plug", seed=1, clock="wall"))
        fw._safe[0] = True
        node, res = fw.wake_once(cfg)
        assert res.ok and node.role.safe
        fw._healthy(cfg, node)
        assert not node.role.safe
        node, _res = fw.wake_once(cfg)
        assert not node.role.safe  # the next wake of the same boot takes commands again
