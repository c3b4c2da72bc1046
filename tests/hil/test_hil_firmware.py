"""Hardware-in-the-loop: the firmware deployed to a board, driven through its REPL and
over MQTT. In CI the board is virtual (`--board virtual:esp32`, the default); on a
bench, `pytest tests/hil --board /dev/ttyUSB0 --board-chip esp32 --broker-host <this
machine's address>`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import provision
from host_tools.cloud.broker import Broker
from host_tools.cloud.controller import Controller
from spot import builders, messages

SITE = "hil"
DEV = 0x00003301
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def bench(board, tmp_path_factory):
    """A provisioned device, a private broker the board can reach, a controller."""
    tmp = tmp_path_factory.mktemp("hil")
    reg = provision(tmp, SITE, DEV)
    with Broker(bind="127.0.0.1" if board.virtual else "0.0.0.0") as broker:
        ctl = Controller(reg, SITE, f"127.0.0.1:{broker.port}")
        ctl.connect()
        try:
            yield tmp, broker, ctl
        finally:
            ctl.close()


def test_deploy_copies_everything_once_then_nothing(board, bench):
    tmp, broker, _ctl = bench
    first = board.deploy("thermostat", tmp / "fs", broker.port)
    assert first["copied"] == first["files"] > 20
    again = board.deploy("thermostat", tmp / "fs", broker.port)
    assert again["copied"] == 0 and again["unchanged"] + again.get("kept", 0) == again["files"]
    assert again["seconds"] < first["seconds"]
    listing = board.mpremote("fs", "ls", ":")
    for name in ("main.py", "device.mpy", "thermostat.mpy", "config.json", "keys.json"):
        assert name in listing


def test_command_queued_while_asleep_is_applied_at_the_next_wake(board, bench):
    tmp, broker, ctl = bench
    board.deploy("thermostat", tmp / "fs", broker.port)
    first = board.run_firmware(1)  # the broker session, first contact
    assert [e for e in first if e["ev"] == "cycle"][0]["ok"], first
    ctl.send_command(DEV, lambda seq, key: builders.device_command(
        DEV, ctl.address, seq, 1, builders.celsius(225), 3600, key=key), "setpoint 22.5 C")
    time.sleep(0.2)  # queued while the board runs nothing: asleep
    ev = board.run_firmware(1)
    assert [e for e in ev if e["ev"] == "applied" and e.get("status") == 0], ev
    deadline = time.monotonic() + 5
    while ctl.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ctl.pending
    with ctl.lock:
        assert ctl.stats.acks[-1].body[messages.K_ACK_STATUS] == messages.ACK_APPLIED
    # Through the REPL: the setpoint is in the journal on the board's flash.
    journal = json.loads(board.read("journal.json"))
    assert journal["app"]["role"]["man"][0] == 225


def test_reset_starts_the_board_again_with_its_cause(board, bench):
    board.exec("import machine; machine.RTC().memory(b'kept?')")
    board.reset()
    time.sleep(1.0)
    out = board.exec("import machine; print(machine.reset_cause() == machine.HARD_RESET, "
                     "machine.RTC().memory())", resume=True)  # resume: no soft reset first
    assert out.split() == ["True", "b''"]  # a reset loses RTC memory (deep sleep keeps it)


@pytest.mark.real_board
def test_relay_clicks_on_the_real_board(board, bench):
    """A person at the bench hears the relay: only meaningful on hardware."""
    out = board.exec("import board; b = board.make('thermostat'); r = b.relay('heat'); "
                     "r.set(True); import time; time.sleep_ms(300); r.set(False); print(r.on)")
    assert out.strip() == "False"
