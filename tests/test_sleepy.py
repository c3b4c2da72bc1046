"""Sleepy nodes against a real Mosquitto: queued frames, the end-of-queue marker,
expiry, broker outages and restarts, a broker that hangs.

The device is the built firmware (main.py) under the MicroPython unix port where the path
matters, and the same firmware under CPython where faults must be injected.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import MICROPYTHON, ROOT, ScriptedBroker, provision
from host_tools.sim import fleet_host
from host_tools.cloud.broker import Broker
from host_tools.cloud.controller import Controller
from spot import builders, frame, messages, topics

SITE = "test"
DEV = 0x00003001
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def world(tmp_path: Path):
    reg = provision(tmp_path, SITE, DEV)
    with Broker() as broker:
        ctl = Controller(reg, SITE, f"127.0.0.1:{broker.port}")
        ctl.connect()
        try:
            yield reg, broker, ctl, tmp_path
        finally:
            ctl.close()


def run_unix_port(tmp: Path, port: int, cycles: int = 1, **cfg: Any) -> list[dict[str, Any]]:
    """The built firmware under the unix port for `cycles` wakes; its JSON events."""
    conf = {"dir": str(tmp / "fs"), "broker": {"host": "127.0.0.1", "port": port},
            "cycles": cycles, "wake_ms": 50, "run_s": 30, **cfg}
    path = tmp / "device.json"
    path.write_text(json.dumps(conf))
    image = ROOT / "build" / "mpy" / "x64"  # what a board's filesystem holds
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([".frozen", str(image)]))
    p = subprocess.run([str(MICROPYTHON), str(image / "main.py"), str(path)],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return [json.loads(line) for line in p.stdout.splitlines()]


def cycles_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["ev"] == "cycle"]


def wait_for(cond, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def command(ctl: Controller, percent: int = 20, **kw: Any):
    return ctl.send_command(DEV, lambda seq, key: builders.reduce_power(
        DEV, ctl.address, seq, percent, 0, 60, key=key, **kw), f"reduce {percent} %")


def test_command_queued_while_asleep_is_applied_at_the_next_wake(world) -> None:
    reg, broker, ctl, tmp = world
    run_unix_port(tmp, broker.port)  # the first wake makes the session
    sent = command(ctl)
    [c] = cycles_of(ev := run_unix_port(tmp, broker.port))
    # The command and the cloud's answer to the wake's time request.
    assert c["ok"] and c["received"] == 2 and c["session_present"] and c["time_answered"]
    assert any(e["ev"] == "applied" for e in ev)
    assert wait_for(lambda: not ctl.waiting()), "no ACK reached the controller"
    assert ctl.stats.acks[-1].body[messages.K_ACK_SEQ] == sent.seq
    assert wait_for(lambda: ctl.stats.reports), "no status report"
    # Drained by the marker, not by waiting: two round trips, milliseconds awake.
    assert c["round_trips"] == 2
    assert c["ms"] < 1000, c


def test_marker_comes_after_everything_queued_on_every_topic(world) -> None:
    reg, broker, ctl, tmp = world
    run_unix_port(tmp, broker.port)
    group = reg.site_group(SITE)
    for i in range(12):  # interleave the device's topic, its site group, broadcast
        command(ctl, 10 + i)
        ctl.send_signal(group, lambda seq, key: builders.price_forecast(
            group, ctl.address, seq, 0, 3600, [i, i + 1], -2, key=key), retain=(i == 11))
        ctl.client.publish(topics.topic(SITE, frame.BROADCAST), b"\x01not for anyone", qos=1)
    time.sleep(0.2)
    [c] = cycles_of(ev := run_unix_port(tmp, broker.port))
    assert c["received"] == 36 + 1, c  # all of it (and the time answer) in this one wake
    assert sum(1 for e in ev if e["ev"] == "applied") == 24
    [c2] = cycles_of(run_unix_port(tmp, broker.port))
    assert c2["received"] == 1  # the time answer only: nothing was left over


def test_expired_command_is_not_applied_and_says_so(world) -> None:
    reg, broker, ctl, tmp = world
    run_unix_port(tmp, broker.port)
    late = command(ctl, 30, valid_until=int(time.time()) - 60)
    ok = command(ctl, 40, valid_until=int(time.time()) + 3600)
    ev = run_unix_port(tmp, broker.port)
    assert [e["what"] for e in ev if e["ev"] == "expired"] == ["reduce"]
    assert sum(1 for e in ev if e["ev"] == "applied") == 1
    assert wait_for(lambda: len(ctl.stats.acks) == 2)
    status = {a.body[messages.K_ACK_SEQ]: a.body[messages.K_ACK_STATUS] for a in ctl.stats.acks}
    assert status == {late.seq: messages.ACK_EXPIRED, ok.seq: messages.ACK_APPLIED}


def test_broker_down_at_wake_costs_one_bounded_wake_and_loses_nothing(world) -> None:
    reg, broker, ctl, tmp = world
    fw = fleet_host.firmware()
    cfg = fleet_host.device_config(tmp / "fs", broker.port, budget_ms=800)
    fw.wake_once(cfg)
    broker.stop()
    t0 = time.monotonic()
    node, res = fw.wake_once(cfg)
    assert not res.ok and time.monotonic() - t0 < 1.5
    assert len(node.journal.outbox) == 1  # this wake's report, kept for the next
    broker.start()
    assert ctl.connected.wait(5)
    node, res = fw.wake_once(cfg)
    assert res.ok and res.delivered == 2 and not node.journal.outbox


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_broker_restart_while_asleep(world, kill: bool) -> None:
    reg, broker, ctl, tmp = world
    run_unix_port(tmp, broker.port)
    command(ctl, 55)
    time.sleep(0.3)  # Mosquitto saves on every change; give it the moment
    broker.stop(kill=kill)
    broker.start()
    assert ctl.connected.wait(5)
    ev = run_unix_port(tmp, broker.port, cycles=2)
    if ctl.waiting():  # a SIGKILL may take a queued message with it: resend
        ctl.resend_pending()
        ev += run_unix_port(tmp, broker.port)
    assert wait_for(lambda: not ctl.waiting())
    assert sum(1 for e in ev if e["ev"] == "applied") == 1


def test_broker_killed_while_awake(world) -> None:
    reg, broker, ctl, tmp = world
    fw = fleet_host.firmware()
    cfg = fleet_host.device_config(tmp / "fs", broker.port, budget_ms=1500)
    fw.wake_once(cfg)
    sent = command(ctl, 66)
    time.sleep(0.2)
    calls = {"n": 0}

    def kill_midway(where: str, link: Any = None) -> None:
        calls["n"] += 1
        if calls["n"] == 6:
            broker.stop(kill=True)

    applied: list[int] = []

    def count(node: Any) -> None:
        node.on_applied = lambda src, seq: applied.append(seq)

    node, res = fw.wake_once(cfg, kill_midway, count)
    assert not res.ok
    broker.start()
    assert ctl.connected.wait(5)
    for _ in range(3):
        if not ctl.waiting():
            break
        ctl.resend_pending()
        fw.wake_once(cfg, None, count)
        wait_for(lambda: not ctl.waiting(), 2)
    assert not ctl.waiting()
    assert applied == [sent.seq]  # once, whichever wake it was
    acked = [a for a in ctl.stats.acks if a.body[messages.K_ACK_SEQ] == sent.seq]
    assert acked and all(a.body[messages.K_ACK_STATUS] == messages.ACK_APPLIED for a in acked)


@pytest.mark.parametrize("connack", [False, True], ids=["no-connack", "silent-after-connack"])
def test_a_hanging_broker_cannot_stall_the_device(tmp_path: Path, connack: bool) -> None:
    provision(tmp_path, SITE, DEV)
    fake = ScriptedBroker(b"\x20\x02\x01\x00" if connack else None)  # session present, then nothing
    try:
        t0 = time.monotonic()
        ev = run_unix_port(tmp_path, fake.port, budget_ms=700)
        took = time.monotonic() - t0
    finally:
        fake.close()
    [c] = cycles_of(ev)
    assert not c["ok"] and c["ms"] <= 900, c
    assert took < 10


def test_unreachable_broker_backs_off_and_keeps_the_outbox(tmp_path: Path) -> None:
    provision(tmp_path, SITE, DEV)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here: connection refused at once
    ev = run_unix_port(tmp_path, port, cycles=4, wake_ms=40, budget_ms=500)
    starts = [e["t"] - e["ms"] for e in cycles_of(ev)]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(not c["ok"] for c in cycles_of(ev))
    # Each failure doubles the sleep: 80, 160, 320 ms after wakes of a few ms.
    assert gaps[0] >= 75 and gaps[1] >= 1.8 * gaps[0] * 0.9 and gaps[2] >= 1.8 * gaps[1] * 0.9, gaps
    summary = ev[-1]
    assert summary["outbox"] == 4  # every wake's report, kept


def test_a_demand_response_event_fires_once_on_time_by_the_corrected_clock(world) -> None:
    reg, broker, ctl, tmp = world
    run_unix_port(tmp, broker.port)
    start = int(time.time()) + 2
    ctl.send_command(DEV, lambda seq, key: builders.reduce_power(
        DEV, ctl.address, seq, 30, start, 60, key=key), "reduce at start")
    ev = run_unix_port(tmp, broker.port, cycles=3, wake_ms=1500, run_s=20)
    fires = [e for e in ev if e["ev"] == "fire"]
    assert [f["outcome"] for f in fires] == ["fired"], fires
    # Acted on within a fraction of a second of its start, by the device's own clock.
    at = fires[0]["t"]
    cycle_t = [e["t"] for e in ev if e["ev"] == "cycle"]
    assert fires[0]["planned"] == start * 1000 and fires[0]["late_ms"] < 500
    assert at > cycle_t[0]
