"""Deterministic simulation of schedules on drifting clocks (virtual time, seeded).

The device's real clock model (spot.clock) and scheduler (spot.schedule) run
against simulated oscillators and a simulated network:
  * each device's oscillator is off by -5 % to +5 %, and its rate wanders by a
    random walk of at most 100 ppm per hour, bounded to +-0.5 % around that;
  * a device wakes every 15 min to 6 h (its own interval, in its own local
    time) and for every occurrence it has scheduled, and makes one two-way
    time exchange per wake, each way delayed 20 ms to 2 s;
  * some devices' clocks jump by -1 h, +1 h or +1 day while they sleep.
Every firing is compared with true time. The same run without skew estimation
shows what the estimation buys.
"""
from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field


from spot import clock as clockmod  # noqa: E402
from spot import schedule  # noqa: E402

H = 3_600_000
DAY = 24 * H
T0 = 1_795_651_200_000  # 2026-11-26T00:00Z, a Thursday: the program's week starts there


class Oscillator:
    """Local time as a drifting clock shows it, with injected jumps."""

    def __init__(self, rng: random.Random, hours: int, start: int) -> None:
        self.start = start
        base = rng.uniform(-0.05, 0.05)
        wander = 0.0
        self.rates = []
        for _ in range(hours + 2):
            self.rates.append(1.0 + base + wander)
            wander = max(-0.005, min(0.005, wander + rng.uniform(-100e-6, 100e-6)))
        self.cum = [float(start + rng.randint(-30_000, 30_000))]  # local at each true hour boundary
        for r in self.rates:
            self.cum.append(self.cum[-1] + r * H)
        self.jumps: list[tuple[int, int]] = []  # (true ms, local ms added from then on)

    def _base(self, t: int) -> float:
        h = (t - self.start) // H
        return self.cum[h] + (t - self.start - h * H) * self.rates[h]

    def local(self, t: int) -> int:
        return int(self._base(t) + sum(j for at, j in self.jumps if at <= t))

    def true_when(self, local: int, after: int) -> int:
        """The first true time >= after at which the local clock reads >= local."""
        bounds = sorted({after} | {at for at, _ in self.jumps if at > after})
        for n, lo in enumerate(bounds):
            hi = bounds[n + 1] if n + 1 < len(bounds) else None
            shift = sum(j for at, j in self.jumps if at <= lo)
            target = local - shift
            if self._base(lo) >= target:
                return lo
            # Solve _base(t) = target within this segment.
            h = bisect.bisect_left(self.cum, target) - 1
            t = self.start + h * H + int((target - self.cum[h]) / self.rates[h]) + 1
            if hi is None or t < hi:
                return max(t, lo)
        raise AssertionError("unreachable")


@dataclass
class Firing:
    device: int
    kind: int
    ident: int
    planned: int
    fired: int
    outcome: int
    since_sync: int
    measured: bool


@dataclass
class SimResult:
    firings: list[Firing] = field(default_factory=list)
    occurrences: int = 0
    missed: int = 0
    doubled: int = 0
    syncs: int = 0
    refused: int = 0
    jumps: int = 0

    def measured(self) -> list[Firing]:
        """Occurrences acted on (on time or late) after the device's third sync."""
        return [f for f in self.firings if f.measured and f.outcome in (schedule.FIRED, schedule.LATE)]

    def errors(self) -> list[int]:
        return sorted(abs(f.fired - f.planned) for f in self.measured())

    def normalised(self) -> list[float]:
        """Each error over its own floor: max(1 s, 0.1 % of the time since the last sync)."""
        return sorted(abs(f.fired - f.planned) / max(1000, f.since_sync / 1000) for f in self.measured())


def _program(rng: random.Random) -> list[list[int]]:
    hours = sorted(rng.sample(range(5, 23), 4))
    return [[d * DAY + h * H + rng.randint(0, 59) * 60_000, rng.randint(150, 230)]
            for d in range(7) for h in hours]


def simulate(devices: int = 60, weeks: int = 4, seed: int = 7, use_skew: bool = True) -> SimResult:
    res = SimResult()
    span = weeks * 7 * DAY
    for d in range(devices):
        rng = random.Random(seed * 1000 + d)  # the same world with and without skew
        address = 0x1000 + d
        start = T0 + rng.randint(0, 6 * H)
        osc = Oscillator(rng, span // H + 24, start)
        if d % 5 == 0:  # a fifth of the fleet has its clock jump once
            jump = (-H, H, DAY)[(d // 5) % 3]
            osc.jumps.append((start + rng.randint(5 * DAY, span - 5 * DAY), jump))
            res.jumps += 1
        interval = rng.randint(15 * 60_000, 6 * H)
        clk = clockmod.Clock(use_skew=use_skew)
        sch = schedule.Scheduler(address, week_origin_ms=T0)
        sch.set_program(_program(rng))
        events: list[tuple[int, int, int, int, int]] = []  # announce, id, start, duration, window
        for day in range(weeks * 7):
            t_ev = T0 + day * DAY + rng.randint(8, 20) * H + rng.randint(0, 3599) * 1000
            events.append((t_ev - DAY, day, t_ev, rng.randint(15, 120) * 60_000,
                           rng.choice([0, 0, 15 * 60_000])))
            prices = [rng.randint(50, 200) for _ in range(24)]
            for k, (ws, wd) in enumerate(schedule.price_windows(T0 + (day + 1) * DAY, H, prices, 70)[:1]):
                events.append((ws - DAY, 10_000 + day * 10 + k, ws, wd, 0))
        events.sort()
        seen: dict[tuple[int, int, int], int] = {}
        t = start
        first_look = None
        end = start + span
        need_sync = True
        last_sync = start
        while t < end:
            if need_sync:  # a wake with the radio on: time exchanges
                # Up to three, until one comes back fast (its round trip bounds
                # its error), when an occurrence is near; one otherwise.
                nxt = sch.next_time(clk.true_ms(osc.local(t))) if clk.synced else None
                tries = 3 if nxt is not None and nxt - clk.true_ms(osc.local(t)) < 2 * H else 1
                for _ in range(tries):
                    d_up, d_down = rng.randint(20, 2000), rng.randint(20, 2000)
                    l1 = osc.local(t)
                    t2 = t + d_up
                    t3 = t2 + 2
                    t = t3 + d_down
                    code = clk.add(l1, t2, t3, osc.local(t))
                    res.syncs += 1
                    if code >= clockmod.REFUSED_TIME:
                        res.refused += 1
                    if code in (clockmod.OK, clockmod.JUMPED):
                        last_sync = t
                    if d_up + d_down < 1000 and code == clockmod.OK:
                        break
                while events and events[0][0] <= t:  # announced meanwhile: it arrives now
                    _, ident, st, dur, win = events.pop(0)
                    sch.add_event(ident, st, dur, win)
            # Act on what is due; stay awake for what is due shortly.
            while True:
                now_est = clk.true_ms(osc.local(t))
                if first_look is None:
                    first_look = now_est
                for outcome, kind, ident, planned, _v, _left in sch.due(now_est):
                    key = (kind, ident, planned)
                    seen[key] = seen.get(key, 0) + 1
                    res.firings.append(Firing(address, kind, ident, planned, t, outcome, t - last_sync,
                                              clk.syncs >= 3))
                nxt = sch.next_time(now_est)
                if nxt is None or nxt - now_est > _guard(clk, clk.local_ms(nxt)):
                    break
                t = max(t, osc.true_when(clk.local_ms(nxt), t))  # awake, watching the corrected clock
            # Sleep until the next periodic wake or the next occurrence. If the
            # clock will still be good enough then, wake exactly at it and act
            # without a time exchange; if not, wake early enough to make one.
            now_l = osc.local(t)
            wake_l = now_l + interval
            need_sync = True
            nxt = sch.next_time(clk.true_ms(now_l))
            if nxt is not None:
                at = clk.local_ms(nxt)
                since = nxt - clk.true_ms(clk.samples[-1][0])
                if clk.error_bound_ms(at) <= _floor(since) // 2:
                    if at <= wake_l:
                        wake_l, need_sync = at, False
                else:
                    wake_l = min(wake_l, clk.local_ms(nxt - _guard(clk, at)))
            t = osc.true_when(max(wake_l, now_l + 1), t + 1)
        # Ground truth: every occurrence between the device's first look and the end.
        truth = set()
        lo, hi = max(first_look or start, start), end
        for tt, i in sch._steps(lo, hi - 2 * DAY):
            truth.add((0, i, tt))
        res.occurrences += len(truth)
        res.missed += len(truth - set(seen))
        res.doubled += sum(n - 1 for n in seen.values() if n > 1)
        res.occurrences += sum(1 for k in seen if k[0] == 1)
    return res


def _guard(clk: clockmod.Clock, local_fire: int) -> int:
    """How early to wake for an occurrence: the clock's error bound by then, plus
    the time the exchanges themselves take (three of up to two 2 s trips each),
    capped at an hour."""
    return min(clk.error_bound_ms(local_fire), H) + 13_000


def _floor(since_sync_ms: int) -> int:
    """The issue's floor for a firing error: 1 s or 0.1 % of the time since the last sync."""
    return max(1000, since_sync_ms // 1000)


def percentile(xs: list[int], p: float) -> int:
    if not xs:
        return 0
    return xs[min(len(xs) - 1, int(len(xs) * p))]
