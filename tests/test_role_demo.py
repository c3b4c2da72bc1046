"""`make demo`: three virtual boards run by the cloud service, everything sent through its API."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from host_tools.cloud.store import Store
from host_tools.demo import roles as role_demo

pytestmark = pytest.mark.timeout(150)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_demo_goes_through_the_cloud_and_leaves_nothing_running(tmp_path: Path) -> None:
    out = io.StringIO()
    db = tmp_path / "demo-cloud.sqlite"
    res = role_demo.run_demo(Console(file=out, width=160), db=db)
    text = out.getvalue()
    assert res.code == 0, text[-4000:]

    # The API listed every command the scenario sent, each at the end of its life.
    kinds = sorted(c["kind"] for c in res.commands)
    assert kinds == ["reduce", "reduce", "reduce", "relay", "relay", "sg_state"], res.commands
    assert all(c["state"] in ("applied", "adapted") and c["acked_at"] for c in res.commands), res.commands
    assert {c["requested_by"] for c in res.commands} == {"demo"}  # the demo's token sent them
    by = {(c["device"], c["kind"]): c for c in sorted(res.commands, key=lambda c: c["id"])}
    first, plug_relay = sorted((c for c in res.commands if c["kind"] == "relay"), key=lambda c: c["id"])
    # The connected plug switches at once: its first command, answered in milliseconds.
    assert first["state"] == "applied" and first["acked_at"] - first["created_at"] < 2.0, first
    assert re.search(r"smart plug\s+switched\s+relay on, \d+ ms from the API's 202", text)
    assert plug_relay["state"] == "adapted" and plug_relay["reason_text"] == "demand response in force"
    assert by[("00001101", "reduce")]["state"] == "applied"  # a thermostat can set back
    assert {d["address"] for d in res.devices} == {"00001101", "00001102", "00001103"}
    assert all(d["capabilities"] and d["state"] for d in res.devices)

    # The timeline: the cloud's own view, from its event stream, in lifecycle order.
    for c in res.commands:
        states = re.findall(rf"cloud\s+(\w+)\s+command {c['id']} ", text)
        # A connected device (the plug, the heat pump) may answer before the broker's
        # PUBACK reaches the cloud: then the command goes from accepted to its answer.
        assert states in (["accepted", "published", c["state"]], ["accepted", c["state"]]), (
            c["id"], states)
    for who in ("thermostat", "smart plug", "heat pump"):
        assert f"ACK from {who}" in text  # its ACK reached the cloud
        assert re.search(rf"{who}\s+deployed\s+\d+ files", text)  # through spot deploy
    assert text.count("capabilities") == 3  # first contact, once each
    assert "24 h price forecast -> site demo" in text
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/#token=spot_\S+", text)
    assert "every command answered" in text
    # Direct local control with the cloud and its broker stopped, then the cloud told once.
    assert re.search(r"local\s+applied\s+relay off from a home energy manager .* over UDP, no cloud", text)
    assert re.search(r"its ACK to the local\s+controller counted 1 time", text)

    # What the service wrote stays in its database after it stopped: the same commands,
    # and the audit log says the price forecast went through the API too.
    store = Store(str(db))
    try:
        stored = {c["id"]: c["state"] for c in store.commands(limit=100)}
        actions = [a["action"] for a in store.audit_log(100)]
    finally:
        store.close()
    assert stored == {c["id"]: c["state"] for c in res.commands}
    assert actions.count("signal") == 1 and actions.count("command") == 6

    # Nothing left running: the cloud, its broker and every board's interpreter are gone.
    assert len(res.pids) >= 5, res.pids  # broker, cloud, three boards (a board may boot twice)
    assert [p for p in res.pids if alive(p)] == []
