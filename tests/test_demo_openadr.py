"""`spot demo --openadr`: a VTN's load-shed event reaches the three virtual boards through the
cloud's energy manager, their ACKs come back, the VTN gets the opt-in, nothing is left running."""
from __future__ import annotations

import io
import os
import re

import pytest
from rich.console import Console

from host_tools.demo import openadr
from host_tools.demo.roles import DEVICES


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone in all but name
        return f.read().split(") ")[-1][0] != "Z"


@pytest.mark.timeout(150)
def test_openadr_demo_event_reaches_every_device_through_the_manager(tmp_path) -> None:
    out = io.StringIO()
    res = openadr.run_demo(Console(file=out, width=200), db=tmp_path / "cloud.sqlite")
    text = out.getvalue()
    assert res.code == 0, text[-3000:]
    # the event reached the manager: one request of openadr2b's, for this event
    (req,) = [r for r in res.requests if r["ref"] == f"openadr2b:{res.event_id}"]
    assert req["by"] == "plugin:openadr2b" and req["kind"] == "reduce" and req["watts"] > 0
    # its per-device commands reached all three devices' final states, each with an ACK
    hexes = {f"{a:08x}" for a, *_ in DEVICES}
    mine = {o["id"] for o in req["orders"]}
    answered = {c["device"]: c for c in res.commands if c["id"] in mine}
    assert all(c["requested_by"] == "plugin:energy_manager" for c in res.commands)
    assert len(answered) == 3 and all(c["state"] in ("applied", "adapted") for c in answered.values()), answered
    assert set(answered) == hexes
    assert all(o["state"] == answered[o["device"]]["state"] for o in req["orders"] if o["device"] in answered)
    # the VTN got the opt-in, and the timeline shows each step
    assert res.opts and res.opts[-1] == ("optIn", 200)
    for step in ("VTN          event", "manager      request", "manager      order", "ACK from heat pump",
                 "ACK from smart plug", "ACK from thermostat", "holds optIn"):
        assert step in text, step
    assert re.search(r"; \d+\.\d s", text)
    # nothing left running: the cloud, the broker, every board's interpreter
    assert res.pids and not [p for p in res.pids if _alive(p)]
