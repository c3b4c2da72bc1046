"""Fleet emulation: 200 devices' firmware with their roles in one process, one broker."""
from __future__ import annotations

import pytest

from host_tools.sim import fleet

pytestmark = pytest.mark.timeout(300)


def test_two_hundred_devices_each_complete_a_wake_in_the_window() -> None:
    r = fleet.run(200)
    assert r.ok == 200 and r.complete
    # Each device applied the retained price forecast; every tenth also its queued command.
    assert r.commands_applied == 200 + 20
    assert r.seconds < fleet.WINDOW_S


def test_the_fleet_command_prints_its_round(capsys) -> None:
    from host_tools import cli

    assert cli.main(["fleet", "--devices", "12"]) == 0
    out = capsys.readouterr().out
    assert "one wake round of 12 devices" in out and "12" in out
