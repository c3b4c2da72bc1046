"""`make demo`: three virtual boards, prices, demand response, commands while asleep."""
from __future__ import annotations

import io
import subprocess

import pytest
from rich.console import Console

from conftest import ROOT
from host_tools import role_demo

pytestmark = pytest.mark.timeout(120)


def test_demo_answers_every_command_and_leaves_nothing_running() -> None:
    out = io.StringIO()
    assert role_demo.run(Console(file=out, width=140)) == 0
    text = out.getvalue()
    for role in ("thermostat", "smart plug", "heat pump"):
        assert f"from {role}: seq" in text  # its ACK reached the controller
    assert "adapted" in text  # the plug can only switch; the heat pump waits its minimum times
    assert text.count("capabilities") == 3  # first contact, once each
    assert "every command answered" in text
    assert "deployed" in text  # each board got the firmware through spot deploy
    left = subprocess.run(["pgrep", "-af", "spot-demo-"], capture_output=True, text=True)
    # Ours only: other checkouts on this machine may be running their own demo.
    ours = [line for line in left.stdout.splitlines() if str(ROOT) in line]
    assert ours == []  # no board's interpreter left running
