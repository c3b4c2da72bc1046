"""The drift simulation, short: floors met with skew estimation, visibly missed without.

`make bench` runs the full one (64 devices, 4 weeks, over 10,000 occurrences).
"""
from __future__ import annotations

import pytest

from host_tools.sim import sched_sim


@pytest.mark.timeout(300)
def test_corrected_clock_meets_the_floor_and_nothing_is_missed_or_doubled() -> None:
    r = sched_sim.simulate(devices=16, weeks=2, seed=3)
    norm = r.normalised()
    assert len(norm) > 1200 and r.jumps >= 3
    assert sched_sim.percentile(norm, 0.99) <= 1.0, sched_sim.percentile(r.errors(), 0.99)
    assert r.missed == 0 and r.doubled == 0


@pytest.mark.timeout(300)
def test_without_skew_estimation_the_same_world_misses_the_floor() -> None:
    # The simulation can fail: the same devices, trusting their oscillators.
    r = sched_sim.simulate(devices=16, weeks=2, seed=3, use_skew=False)
    assert sched_sim.percentile(r.normalised(), 0.99) > 10
