"""Figures of the connected power mode (issue 13 section 1), measured end to end.

- connected_command_to_ack_ms_p50 / _p99: a relay command through the cloud service
  (its API, CloudTestbed: the service as its own process, a real Mosquitto, loopback)
  to a connected smart plug (the built firmware under the unix port) until its ACK is
  back in the cloud: the command's acked_at - created_at, as the cloud records them.
  Beside it sleepy_command_to_ack_ms_p50 / _p99: the same plug told "power": "sleepy"
  (wake every SLEEPY_WAKE_MS), the commands sent at random moments between its wakes,
  and the ratio of the medians.
- connected_soak_*: host_tools/sim/connected_soak.py: connected devices (the firmware
  in this process) through power cuts anywhere, broker restarts (one SIGKILL) and the
  cloud service killed; every command sent is applied exactly once:
  "connected_soak_lost", "connected_soak_duplicated" and "connected_soak_unfinished"
  (floors 0), with the cuts,
  restarts and kills counted beside them.
"""
from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

SITE = "home"
PLUG = 0x3102
SLEEPY_WAKE_MS = 1000


def _pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def _send(tb, on: bool) -> dict:
    from host_tools.cloud.testbed import ApiError

    end = time.monotonic() + 20
    while True:
        try:
            return tb.api("POST", f"/api/devices/{PLUG:08x}/commands", {"kind": "relay", "on": on})
        except ApiError as e:  # 422 until the plug's capability record is in
            if e.status != 422 or time.monotonic() > end:
                raise
            time.sleep(0.1)


def _latencies(tb, n: int, spread_s: float, rng: random.Random) -> list[float]:
    out = []
    for i in range(n):
        if spread_s:
            time.sleep(rng.uniform(0, spread_s))
        c = tb.wait_command(_send(tb, i % 2 == 0)["id"], ("applied", "adapted"), 30)
        out.append((c["acked_at"] - c["created_at"]) * 1000)
    return out


def latency_figures(quick: bool = False) -> dict[str, float]:
    from host_tools.board import build
    from host_tools.cloud.testbed import CloudTestbed, DeviceProcess

    build.build_arch("x64")
    n, n_sleepy = (40, 4) if quick else (200, 12)
    rng = random.Random(13)
    with tempfile.TemporaryDirectory(prefix="spot-connected-") as d, CloudTestbed(Path(d)) as tb:
        tmp = Path(d)
        fs = tb.provision(SITE, PLUG)
        tb.start()
        with DeviceProcess(tmp, fs, tb.broker.port, control_ms=100) as dev:
            dev.wait_for(lambda e: e.get("ev") == "session", 20)
            _latencies(tb, 3, 0, rng)  # the capability record is in, the paths warm
            fast = _latencies(tb, n, 0, rng)
            s = dev.stop()
        if s.get("sessions") != 1:
            raise RuntimeError(f"the connected plug reconnected during the measurement: {s}")
        with DeviceProcess(tmp, fs, tb.broker.port, control_ms=100, power="sleepy",
                           wake_ms=SLEEPY_WAKE_MS) as dev:
            dev.wait_for(lambda e: e.get("ev") == "cycle", 20)
            sleepy = _latencies(tb, n_sleepy, SLEEPY_WAKE_MS / 1000, rng)
            dev.stop()
    p50, p99 = _pct(fast, 50), _pct(fast, 99)
    s50, s99 = _pct(sleepy, 50), _pct(sleepy, 99)
    print(f"command to ACK through the cloud: connected p50 {p50:.1f} ms, p99 {p99:.1f} ms "
          f"({len(fast)} commands); sleepy (a wake every {SLEEPY_WAKE_MS} ms) p50 {s50:.0f} ms, "
          f"p99 {s99:.0f} ms ({len(sleepy)}): {s50 / p50:.0f}x the connected median")
    return {"connected_command_to_ack_ms_p50": round(p50, 2),
            "connected_command_to_ack_ms_p99": round(p99, 2),
            "connected_command_to_ack_ms_mean": round(statistics.fmean(fast), 2),
            "sleepy_command_to_ack_ms_p50": round(s50, 1),
            "sleepy_command_to_ack_ms_p99": round(s99, 1),
            "sleepy_over_connected_command_to_ack_p50": round(s50 / p50, 1)}


def figures(quick: bool = False) -> dict[str, float]:
    from host_tools.sim import connected_soak

    out = latency_figures(quick)
    r = connected_soak.run(seconds=25 if quick else 90)
    print(f"connected soak: {r.summary()}")
    out.update(r.figures())
    return out


if __name__ == "__main__":
    import sys

    print(figures(quick="--quick" in sys.argv))
