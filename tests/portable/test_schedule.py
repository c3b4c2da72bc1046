"""Schedules: bad input refused, missed-occurrence policies, nothing ever twice."""
from spot import schedule
from spot.schedule import DROPPED, FIRED, LATE, SUPERSEDED, ScheduleError, Scheduler

H = 3600000
T0 = 1795651200000  # a week origin


def _expect_refused(reason, fn, *args):
    try:
        fn(*args)
    except ScheduleError as e:
        assert e.reason == reason, (e.reason, reason)
        return
    raise AssertionError("accepted: " + reason)


def test_bad_schedules_are_refused_and_the_old_one_stays():
    s = Scheduler(1, week_origin_ms=T0)
    s.set_program([[6 * H, 200], [22 * H, 170]])
    _expect_refused("unsorted", s.set_program, [[8 * H, 1], [6 * H, 2]])
    _expect_refused("overlap", s.set_program, [[6 * H, 1], [6 * H, 2]])
    _expect_refused("range", s.set_program, [[schedule.WEEK_MS, 1]])
    _expect_refused("limit", s.set_program, [[i * 1000, 1] for i in range(schedule.MAX_STEPS + 1)])
    _expect_refused("duration", s.add_event, 1, T0, -5)
    _expect_refused("duration", s.add_event, 1, T0, 0)
    _expect_refused("window", s.add_event, 1, T0, 5, -1)
    for i in range(schedule.MAX_EVENTS):
        s.add_event(i, T0 + H, H)
    _expect_refused("events", s.add_event, 99, T0 + H, H)
    assert s.program == [[6 * H, 200], [22 * H, 170]]


def test_program_fires_each_step_once_and_supersedes_slept_steps():
    s = Scheduler(1, week_origin_ms=T0)
    s.set_program([[6 * H, 200], [8 * H, 180], [22 * H, 170]])
    assert s.next_time(T0) == T0 + 6 * H
    s.due(T0 + 1)  # first look: nothing yet... but the past week is history
    assert s.due(T0 + 6 * H)[0][:2] == (FIRED, 0)
    assert s.due(T0 + 6 * H + 500) == []  # not again
    acts = s.due(T0 + 23 * H)  # slept through 08:00 and 22:00
    assert [a[0] for a in acts] == [SUPERSEDED, LATE]
    assert acts[-1][4] == 170  # the latest setpoint is the one applied
    # These steps are on day 0 of the week only: next comes a week later.
    assert s.next_time(T0 + 23 * H) == T0 + schedule.WEEK_MS + 6 * H


def test_events_start_late_or_are_dropped_and_reported():
    s = Scheduler(1)
    s.add_event(1, T0, H)
    s.add_event(2, T0 + 2 * H, H)
    s.add_event(3, T0 + 10 * H, H)
    acts = s.due(T0 + 2 * H + 20 * 60000)  # woke 2 h 20 min in
    outcome = dict((a[2], (a[0], a[5])) for a in acts)
    assert outcome[1] == (DROPPED, 0)  # over an hour before
    assert outcome[2] == (LATE, 40 * 60000)  # what is left of it
    assert 3 not in outcome
    assert s.due(T0 + 10 * H)[0][0] == FIRED
    assert s.due(T0 + 10 * H + 1) == [] and s.events == []


def test_nothing_fires_twice_across_reboots_and_backward_clocks():
    s = Scheduler(7, week_origin_ms=T0)
    s.set_program([[d * 24 * H + h * H, v] for d in range(7) for h, v in ((6, 200), (18, 160))])
    s.add_event(5, T0 + 12 * H, H)
    s.due(T0 + 1)
    fired = s.due(T0 + 12 * H) + s.due(T0 + 18 * H)
    assert len(fired) == 2 + 1  # 06:00 (late), 12:00 event, 18:00
    after = Scheduler(7, s.to_record(), week_origin_ms=T0)  # a reboot
    assert after.due(T0 + 18 * H + 10) == []
    assert after.due(T0 + 11 * H) == []  # the clock moved back 7 h: nothing again
    assert after.due(T0 + 19 * H) == []
    assert after.due(T0 + 30 * H)[0][3] == T0 + 30 * H  # the next day's 06:00, once


def test_spread_is_fixed_per_device_and_within_the_window():
    w = 15 * 60000
    offs = [schedule.spread(a, 42, w) for a in range(1, 200)]
    assert all(0 <= o < w for o in offs)
    assert len(set(offs)) > 150  # devices spread out
    assert schedule.spread(5, 42, w) == schedule.spread(5, 42, w)
    assert schedule.spread(5, 42, 0) == 0
    s = Scheduler(5)
    s.add_event(42, T0, H, w)
    assert s.next_time(T0 - 1) == T0 + schedule.spread(5, 42, w)


def test_price_rule_windows():
    prices = [90, 60, 50, 80, 40, 30, 20, 90]
    assert schedule.price_windows(T0, H, prices, 70) == [(T0 + H, 2 * H), (T0 + 4 * H, 3 * H)]
    assert schedule.price_windows(T0, H, prices, 70, min_len=3) == [(T0 + 4 * H, 3 * H)]
    assert schedule.price_windows(T0, H, [10, 10], 70) == [(T0, 2 * H)]
