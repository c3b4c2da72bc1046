"""Schedule commands (service SCHEDULE): weekly programs, timed events, price rules;
the occurrences that are due, and when to wake for the next.

Loaded by node.py on the first schedule command, or once a schedule is in force
(what is due, when the next occurrence is); spot.schedule (the scheduler) with
it. A bad command is refused and the schedule in force stays as it was.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from spot.errors import BAD_VALUE
from spot.objects import Schedule, Time
from spot.payload import is_int
from spot.schedule import OUTCOMES, ScheduleError

# spot.messages' numbers this module uses: private, free at run time.
_ACK_APPLIED = const(0)
_K_SCH_STEPS = const(1)
_SCH_PROGRAM = const(1)
_ACK_REFUSED = const(2)
_K_SCH_START = const(2)
_SCH_EVENT = const(2)
_K_SCH_DURATION = const(3)
_SCH_PRICE_RULE = const(3)
_ACK_UNSUPPORTED = const(4)
_K_SCH_WINDOW = const(4)
_K_SCH_VALUE = const(5)
_K_SCH_ID = const(6)
_K_SCH_THRESHOLD = const(7)


def apply(node, f, kind, body):
    """(ack status, reason); emits what was applied or why not."""
    app = node.journal.app
    sch = node.schedule
    try:
        if kind == _SCH_PROGRAM:
            s = body.get(_K_SCH_STEPS)
            if not isinstance(s, Schedule):
                raise ScheduleError("a weekly program is a schedule object")
            values = list(s.values)
            if node.role is not None and hasattr(node.role, "program_values"):
                values = node.role.program_values(s)  # in its units, within its range
            sch.set_program([[o * 1000, v] for o, v in zip(s.offsets, values)])
            sch.week_origin = s.base * 1000
            app["week"] = sch.week_origin
            what = "weekly program of %d steps" % len(s.values)
        elif kind == _SCH_EVENT:
            start = body.get(_K_SCH_START)
            dur = body.get(_K_SCH_DURATION)
            win = body.get(_K_SCH_WINDOW, 0)
            ident = body.get(_K_SCH_ID)
            if not isinstance(start, Time) or not is_int(dur) or not is_int(
                    win) or not is_int(ident):
                raise ScheduleError("an event needs an id, a start, a duration")
            sch.add_event(ident, start.seconds * 1000, dur * 1000, win * 1000,
                          body.get(_K_SCH_VALUE, 1))
            what = "event %d at %d for %d s" % (ident, start.seconds, dur)
        elif kind == _SCH_PRICE_RULE:
            thr = body.get(_K_SCH_THRESHOLD)
            steps = body.get(_K_SCH_DURATION, 1)
            if not is_int(thr) or not is_int(steps) or steps < 1:
                raise ScheduleError("a price rule needs a threshold and a run of 1 or more")
            app["rule"] = [thr, steps]
            what = "price rule: run under %d for %d steps or more" % (thr, steps)
        else:
            return _ACK_UNSUPPORTED, 0
    except ScheduleError as e:  # raised before anything changed: the old one stays
        node.emit("refused", what="schedule: %s" % e)
        return _ACK_REFUSED, BAD_VALUE
    app["sch"] = sch.to_record()
    app["applied"] += 1
    node.emit("applied", what=what)
    return _ACK_APPLIED, 0


def tick(node):
    """Act on every occurrence that is due by the corrected clock; each once, ever."""
    acts = node.sch.due(node.now_ms())
    for outcome, kind, ident, planned, value, left in acts:
        node.emit("fire", outcome=OUTCOMES[outcome], kind=kind, id=ident, planned=planned,
                  value=value, left_ms=left, late_ms=max(0, node.now_ms() - planned))
    if acts:
        node.journal.app["sch"] = node.schedule.to_record()
        node.journal.commit()
    return acts


def ms_to_next(node):
    """Local ms until the next occurrence by the corrected clock, or None."""
    now = node.now_ms()
    nxt = node.sch.next_time(now)
    if nxt is None:
        return None
    if node.time.synced:
        return max(0, node.time.local_ms(nxt) - node.local_ms())
    return max(0, nxt - now)


def plan_wake(node, default_ms, exchange_ms=2000):
    """(ms to sleep, whether the next wake needs the radio), drift-aware.

    If the clock will still be good enough at the next occurrence (its
    error bound within half the floor: 1 s, or 0.1 % of the time since the
    last sample), wake exactly on it and act without the radio. If not,
    wake early by the bound plus a time exchange, to correct the clock first.
    """
    nxt = node.sch.next_time(node.now_ms())
    t = node.time
    if nxt is None or not t.synced:
        return default_ms, True
    local_now = node.local_ms()
    at = t.local_ms(nxt)
    bound = t.error_bound_ms(at)
    since = nxt - t.true_ms(t.samples[-1][0])
    if bound <= max(1000, since // 1000) // 2:
        if at - local_now <= default_ms:
            return max(0, at - local_now), False
        return default_ms, True
    early = t.local_ms(nxt - min(bound, 3600000) - exchange_ms) - local_now
    return max(0, min(default_ms, early)), True
