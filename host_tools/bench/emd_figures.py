"""The site energy manager's figures for make bench (issue 14 section 3).

figures() runs host_tools/sim/emd_week.py: the same seeded week with no requests,
with the energy manager and with the naive split, and returns
  emd_site_target_met_pct      requested site reduction (W x min, per 15-min interval)
                               the manager delivered, percent (floor 90)
  emd_vs_naive_ratio           the manager's met percentage over the naive split's (floor 1.2)
  emd_device_limit_violations  limits the models saw broken under the manager (floor 0)
and, beside them, the naive split's own figures and the rooms' comfort minutes.
quick=True simulates one day instead of seven (for tests).
"""
from __future__ import annotations


def figures(quick: bool = False) -> dict:
    from host_tools.sim import emd_week

    out, _runs = emd_week.figures(seed=1, days=1 if quick else 7)
    return out
