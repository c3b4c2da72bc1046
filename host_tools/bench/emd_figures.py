"""The site energy manager's figures for make bench (issue 14 section 3).

figures() runs host_tools/sim/emd_week.py twice: the single-site week (the house) and
the multi-site week (the house and three sites whose devices differ in what they may
shed and for how long; see emd_week's doc), each the same seeded week with no requests,
with the energy manager and with the naive split (every device the same percentage).
The floors are judged on the multi-site week:
  emd_site_target_met_pct      requested site reduction (W x min, per 15-min interval)
                               the manager delivered, percent (floor 90)
  emd_vs_naive_ratio           the manager's met percentage over the naive split's (floor 1.2)
  emd_device_limit_violations  limits the models saw broken under the manager (floor 0)
and, beside them, the naive split's own figures, the rooms' comfort minutes, each
site's met percentages (emd_site_<name>_met_pct, ..._naive_met_pct), and the same
figures of the single-site week as emd_single_* (no floors: shown so the scenario's
part in the ratio can be seen). quick=True simulates one day instead of seven.
"""
from __future__ import annotations


def _week(sites: tuple, days: int, prefix: str) -> dict:
    from host_tools.sim import emd_week

    out, c = emd_week.figures(seed=1, days=days, sites=sites)
    out = {k.replace("emd_", prefix, 1): v for k, v in out.items()}
    for name, man, naive in c["per_site"]:
        out[f"{prefix}site_{name}_met_pct"] = round(man, 1)
        out[f"{prefix}site_{name}_naive_met_pct"] = round(naive, 1)
    return out


def figures(quick: bool = False) -> dict:
    from host_tools.sim import emd_week

    days = 1 if quick else 7
    return {**_week(emd_week.MULTI, days, "emd_"), **_week(emd_week.SINGLE, days, "emd_single_")}


if __name__ == "__main__":
    for k, v in figures().items():
        print(f"{k:44} {v}")
