"""Schedules a device keeps and fires by its corrected clock: programs, events, price rules.

Three kinds, each with a written policy for an occurrence whose time was slept
through or jumped over (SPEC.md "Schedules"):

* weekly program (a thermostat's setpoints): steps (millisecond of the week, value).
  Slept through: apply the latest step in force, once; the earlier ones are
  superseded, not fired.
* one-off event (demand response): start, duration, and an optional window
  over which each device spreads its start (a per-device offset derived from
  its address and the event id, so the same device always picks the same
  moment, before and after a reboot). Slept through its start but not its end:
  start late for the remaining duration. Past its end: drop it and report.
* price rule: run for a duration wherever the forecast price is under a
  threshold; each such window is an occurrence with the one-off policy.

Nothing fires twice: the scheduler remembers the program step in force and
forgets an event once handled, and keeps both with the schedule on flash, so
neither a reboot nor a clock that moves backwards brings an occurrence back.
Bad input is refused with a reason and the schedule in force stays in force.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

WEEK_MS = const(604800000)
MAX_STEPS = const(48)
MAX_EVENTS = const(16)
# Outcomes of an occurrence.
FIRED = const(0)
LATE = const(1)  # started late for what remained of it
SUPERSEDED = const(2)  # a later program step made it moot
DROPPED = const(3)  # over before the device could act: reported
OUTCOMES = ("fired", "late", "superseded", "dropped")
# Reasons a schedule is refused.
REASONS = {
    "unsorted": "steps out of order",
    "overlap": "two steps at the same moment",
    "range": "a step outside the week",
    "limit": "more steps than the device can hold",
    "duration": "negative or zero duration",
    "window": "negative spread window",
    "events": "more events than the device can hold",
}


class ScheduleError(ValueError):
    def __init__(self, reason):
        super().__init__(REASONS.get(reason, reason))
        self.reason = reason


def check_program(steps):
    """Refuse a weekly program the device cannot hold; else return it as a list."""
    if len(steps) > MAX_STEPS:
        raise ScheduleError("limit")
    last = -1
    for at, _value in steps:
        if not 0 <= at < WEEK_MS:
            raise ScheduleError("range")
        if at == last:
            raise ScheduleError("overlap")
        if at < last:
            raise ScheduleError("unsorted")
        last = at
    return [[at, v] for at, v in steps]


def spread(address, event_id, window_ms):
    """This device's start offset within an event's window: fixed per (device, event)."""
    if window_ms <= 0:
        return 0
    h = 2166136261
    for b in (address >> 24, (address >> 16) & 255, (address >> 8) & 255, address & 255,
              (event_id >> 8) & 255, event_id & 255):
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF  # FNV-1a: cheap, well spread
    return h % window_ms


class Scheduler:
    """The schedules in force and how far they have been handled.

    A program step is handled once its time is at or before `last_step`; an
    event leaves the list once handled. Both are kept on flash with the
    schedule, so a reboot or a clock moving backwards cannot bring one back.
    """

    def __init__(self, address, record=None, week_origin_ms=0):
        self.address = address
        self.week_origin = week_origin_ms  # true time of "second 0 of the week"
        r = record or {}
        self.program = r.get("p", [])
        self.events = r.get("e", [])  # [id, start ms, duration ms, window ms, value]
        self.last_step = r.get("l")  # [time, value] of the program step in force

    def to_record(self):
        return {"p": self.program, "e": self.events, "l": self.last_step}

    # changes ----------------------------------------------------------------------
    def set_program(self, steps):
        self.program = check_program(steps)

    def add_event(self, event_id, start_ms, duration_ms, window_ms=0, value=1):
        if duration_ms <= 0:
            raise ScheduleError("duration")
        if window_ms < 0:
            raise ScheduleError("window")
        events = [e for e in self.events if e[0] != event_id]
        if len(events) >= MAX_EVENTS:
            raise ScheduleError("events")
        events.append([event_id, start_ms, duration_ms, window_ms, value])
        self.events = events

    # occurrences ------------------------------------------------------------------
    def _steps(self, lo, hi):
        """Program occurrences with lo < time <= hi, oldest first: (time, step index)."""
        out = []
        if not self.program:
            return out
        week = (lo - self.week_origin) // WEEK_MS
        while True:
            base = self.week_origin + week * WEEK_MS
            if base > hi:
                return out
            for i in range(len(self.program)):
                t = base + self.program[i][0]
                if lo < t <= hi:
                    out.append((t, i))
            week += 1

    def event_start(self, e):
        return e[1] + spread(self.address, e[0], e[3])

    def _after_last_step(self, now_ms):
        # Steps more than a week old are moot whatever happened: look back a week at most.
        lo = now_ms - WEEK_MS
        if self.last_step is not None and self.last_step[0] > lo:
            lo = self.last_step[0]
        return lo

    def next_time(self, now_ms):
        """The true time of the next occurrence after now_ms, or None."""
        best = None
        lo = max(now_ms, self._after_last_step(now_ms))
        steps = self._steps(lo, lo + WEEK_MS)
        if steps:
            best = steps[0][0]
        for e in self.events:
            t = self.event_start(e)
            if best is None or t < best:
                best = t
        return best

    def due(self, now_ms):
        """Handle every occurrence up to now: [(outcome, kind, id or step, time, value, ms left)].

        kind 0 is a program step, 1 an event. Each occurrence is handled once, ever.
        """
        acts = []
        steps = self._steps(self._after_last_step(now_ms), now_ms)
        for n in range(len(steps)):
            t, i = steps[n]
            if n < len(steps) - 1:
                acts.append((SUPERSEDED, 0, i, t, self.program[i][1], 0))
                continue
            acts.append((FIRED if now_ms - t < 1000 else LATE, 0, i, t, self.program[i][1], 0))
            self.last_step = [t, self.program[i][1]]
        keep = []
        for e in self.events:
            start = self.event_start(e)
            if start > now_ms:
                keep.append(e)
                continue
            end = start + e[2]
            if now_ms - start < 1000:
                acts.append((FIRED, 1, e[0], start, e[4], e[2]))
            elif now_ms < end:
                acts.append((LATE, 1, e[0], start, e[4], end - now_ms))
            else:
                acts.append((DROPPED, 1, e[0], start, e[4], 0))
        self.events = keep
        return acts


def price_windows(base_ms, step_ms, prices, threshold, min_len=1):
    """(start ms, duration ms) of each run of at least min_len steps priced under threshold."""
    out = []
    run = 0
    for i, p in enumerate(prices + [threshold]):  # a sentinel closes the last run
        if p < threshold:
            run += 1
            continue
        if run >= min_len:
            out.append((base_ms + (i - run) * step_ms, run * step_ms))
        run = 0
    return out
