"""Schedules as SPOT messages: the device keeps programs, events and price rules,
refuses bad ones with a reason (the old one staying in force), and keeps them
across a reboot."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from conftest import provision

from host_tools.sim import fleet_host
from host_tools.cloud.registry import CLOUD, Registry
from spot import builders, cbor, errors, frame, messages, secure
from spot.objects import Schedule

DEV = 0x00006001
WEEK0 = 1795651200  # a Thursday, 00:00 UTC


@pytest.fixture
def dev(tmp_path: Path):
    reg = provision(tmp_path, "home", DEV)
    fw = fleet_host.firmware()
    return reg, fw, {"dir": str(tmp_path / "fs")}


def _send(reg: Registry, node, build) -> int:
    node.receive(build(reg.counter(CLOUD).next(), reg.sender_key(CLOUD, DEV)))
    return node.journal.inbox[-1][2]


def test_program_event_and_price_rule_survive_a_reboot_bad_ones_are_refused(dev) -> None:
    reg, fw, cfg = dev
    node = fw.make_node(cfg)
    program = ([d * 86400 + 6 * 3600 for d in range(7)], [210] * 7)
    assert _send(reg, node, lambda seq, key: builders.weekly_program(
        DEV, CLOUD, seq, WEEK0, *program, key=key)) == messages.ACK_APPLIED
    # Refused, each for its own reason, and the program in force stays. Unsorted
    # or overlapping steps cannot even be encoded: a sender that builds them by
    # hand gets its command refused by the payload decoder, with the reason.
    for bad in ([3600, 60], [60, 60]):
        steps = b"\xd9\xd3\x51" + cbor.encode([WEEK0, 0, 0, 0, bad[0], 1, bad[1], 2])
        payload = b"\xa2\x00\x01\x01" + steps  # {0: program, 1: the schedule}
        assert _send(reg, node, lambda seq, key, p=payload: secure.seal(
            key, messages.SVC_SCHEDULE, 1, frame.CLASS_COMMAND, DEV, CLOUD, seq, p,
            frame.FLAG_ACK_WANTED)) == messages.ACK_REFUSED
        assert node.journal.inbox[-1][3] == errors.BAD_VALUE
    # More steps than a device holds (SPEC 9.2): the builder refuses, naming the
    # limit; built by hand, the device refuses it with a reason.
    with pytest.raises(errors.SpotError, match="MAX_STEPS 48"):
        builders.weekly_program(DEV, CLOUD, 1, WEEK0, list(range(0, 49 * 60, 60)), [1] * 49)
    payload = cbor.encode({0: messages.SCH_PROGRAM, 1: Schedule.uniform(WEEK0, 60, [1] * 49)})
    assert _send(reg, node, lambda seq, key: secure.seal(
        key, messages.SVC_SCHEDULE, 1, frame.CLASS_COMMAND, DEV, CLOUD, seq, payload,
        frame.FLAG_ACK_WANTED)) == messages.ACK_REFUSED
    assert node.journal.inbox[-1][3] == errors.BAD_VALUE
    assert _send(reg, node, lambda seq, key: builders.timed_event(
        DEV, CLOUD, seq, 7, int(time.time()) + 600, -5, key=key)) == messages.ACK_REFUSED
    assert len(node.schedule.program) == 7 and node.schedule.program[0][1] == 210
    start = int(time.time()) + 3600
    assert _send(reg, node, lambda seq, key: builders.timed_event(
        DEV, CLOUD, seq, 7, start, 900, 300, key=key)) == messages.ACK_APPLIED
    assert _send(reg, node, lambda seq, key: builders.price_rule(
        DEV, CLOUD, seq, 6000, 2, key=key)) == messages.ACK_APPLIED
    hour = int(time.time()) // 3600 * 3600 + 7200
    group = reg.site_group("home")
    node.receive(builders.price_forecast(group, CLOUD, reg.counter(CLOUD).next(), hour, 3600,
                                         [9000, 5000, 5500, 8000, 4000], -2,
                                         key=reg.group_key("home")))
    ids = sorted(e[0] for e in node.schedule.events)
    assert 7 in ids and any(i >= 0x8000 for i in ids)  # the event and a cheap window
    again = fw.make_node(cfg)  # a reboot: everything from the journal
    assert again.schedule.to_record() == node.schedule.to_record()
    assert again.schedule.next_time(again.now_ms()) is not None


def test_wakes_for_occurrences_use_the_radio_only_when_the_clock_needs_it(dev) -> None:
    reg, fw, cfg = dev
    local = [1_795_700_000_000]  # the device's own clock, ms, driven by the test
    node = fw.make_node(cfg)
    node.clock = lambda: local[0]
    t = node.time
    for k in range(3):  # three good exchanges, an hour apart, on a clock that keeps time
        l1 = local[0] + k * 3_600_000
        t.add(l1, l1 + 40, l1 + 41, l1 + 80)
    local[0] += 2 * 3_600_000 + 100
    now = node.now_ms()
    node.schedule.add_event(1, now + 60_000, 60_000)  # a minute from now
    sleep, radio = node.plan_wake(600_000)
    assert not radio and 59_000 < sleep <= 60_000  # exactly on it, no radio
    node.schedule.add_event(2, now + 30_000, 60_000)
    assert node.plan_wake(10_000) == (10_000, True)  # the usual wake comes first
    # Far ahead, on a clock with only one sample: wake early, and use the radio.
    fresh = fw.make_node(cfg)
    fresh.clock = lambda: local[0]
    fresh.time.samples = [list(t.samples[-1])]
    fresh.time._fit()
    fresh.schedule.add_event(3, now + 6 * 3_600_000, 60_000)
    sleep, radio = fresh.plan_wake(24 * 3_600_000)
    assert radio and sleep < 6 * 3_600_000 - 60_000
