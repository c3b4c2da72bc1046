"""`make bench` works end to end; exact figures (sizes, allocation) meet their floors.

Speed ratios are only checked for direction here: a loaded CI machine must not
fail a unit test over timing. The floors for them are checked by `make bench`.
"""
from __future__ import annotations

from host_tools.bench import suite as bench


def test_hotpath_figures_are_measured_and_allocation_free() -> None:
    figures = bench.hotpath_figures(rounds=1)
    assert figures["hotpath_reject_alloc_bytes"] == 0
    assert figures["hotpath_accept_alloc_bytes"] == 0
    assert figures["hotpath_reject_speedup"] > 1
    assert figures["hotpath_accept_speedup"] > 1
    assert 0 < figures["core_import_heap_bytes"] < 64 * 1024


def test_wire_sizes_beat_openadr_twenty_times() -> None:
    figures = bench.wire_figures()
    for name in ("price24", "shed", "telemetry"):
        assert figures[f"wire_ratio_{name}_vs_openadr"] <= 1 / 20, name
        assert figures[f"wire_bytes_{name}"] < figures[f"wire_bytes_{name}_openadr"]
    # Below the binary standards' figures for a power-adjust command (Matter ~72 B).
    assert figures["wire_bytes_shed"] < 72


def test_security_figures() -> None:
    figures = bench.security_figures(rounds=1)
    assert figures["sec_overhead_bytes"] <= 10
    assert figures["sec_attacks_accepted"] == 0
    assert figures["sec_attacks"] >= 25
    assert figures["sec_verify_us"] > figures["sec_hotpath_reject_us"] > 0


def test_wake_cycle_figures() -> None:
    figures = bench.wake_figures(rounds=1)
    assert figures["wake_cycle_round_trips"] == 2
    assert figures["wake_cycle_naive_ms"] >= 2000
    # Milliseconds against the naive two seconds: no machine is slow enough to blur that.
    assert figures["wake_cycle_speedup_vs_naive_wait"] >= 10
    assert 0 < figures["wake_cycle_bytes"] < 1000


def test_a_heap_run_counts_only_if_its_wakes_succeeded() -> None:
    good = [{"ev": "boot"}, {"ev": "cycle", "ok": True}, {"ev": "applied", "what": "x"},
            {"ev": "cycle", "ok": True}, {"ev": "summary", "why": "cycles"}]
    assert bench.wakes_succeeded(0, good, acked=True)
    # Every wake failed (LinkError 71), yet the run ended with "cycles": not a heap figure.
    failed = [{"ev": "cycle", "ok": False, "error": "LinkError(71)"}] * 3 + [
        {"ev": "summary", "why": "cycles"}]
    assert not bench.wakes_succeeded(0, failed, acked=True)
    assert not bench.wakes_succeeded(0, good[:1] + good[3:], acked=True)  # nothing applied
    assert not bench.wakes_succeeded(0, good, acked=False)  # the ACK never came
    assert not bench.wakes_succeeded(1, good, acked=True)  # out of memory at the end


def test_role_heap_figures_come_from_successful_wakes() -> None:
    figures = bench.role_heap_figures()
    for role in bench.ROLES:
        assert 0 < figures[f"role_heap_min_kb_{role}"] <= 512, figures


def test_every_floor_names_a_figure_some_bench_module_makes() -> None:
    """A floor whose figure no module writes would never be checked: a silent pass."""
    import re
    from pathlib import Path

    made = "".join(p.read_text() for p in Path(bench.__file__).parent.glob("*.py"))
    for name in bench.FLOORS:
        stem = re.sub(r"_(thermostat|smart_plug|heat_pump)$", "", name)
        assert f'"{name}"' in made or stem in made, f"no bench module makes {name}"
