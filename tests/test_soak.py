"""The soak, short: power cuts and broker crashes lose and duplicate nothing.

`make bench` runs the long one (over 1,000 wakes). The second test breaks the
journal on purpose and requires the soak to notice: a soak that cannot fail
proves nothing.
"""
from __future__ import annotations

import pytest

from host_tools.sim import soak


@pytest.mark.timeout(300)
def test_short_soak_loses_and_duplicates_nothing() -> None:
    r = soak.run(cycles=300, devices=3, seed=11)
    assert r.power_cuts > 30 and r.cuts_in_writes > 3 and r.broker_restarts == 3
    assert r.sent > 50
    assert r.lost == 0 and r.duplicated == 0, r.figures()
    assert r.acknowledged == r.sent


@pytest.mark.timeout(300)
def test_soak_catches_a_journal_that_forgets_replay_windows(monkeypatch) -> None:
    from spot import journal

    real = journal.Journal.commit
    monkeypatch.setattr(journal.Journal, "commit", lambda self, windows=None: real(self, None))
    r = soak.run(cycles=400, devices=3, seed=5)
    assert r.duplicated > 0, r.figures()
