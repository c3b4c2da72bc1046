"""Scale-out: two workers of the cloud service behind one MQTT shared subscription, sharing
one PostgreSQL database. Both serve; a worker SIGKILLed mid-load loses nothing; the other
keeps serving meanwhile. And the fleet round with the service as the devices' cloud.

What happens to the killed worker's share is Mosquitto's choice (2.0): a shared
subscription's messages go round-robin to its members, offline persistent sessions
included, and what is queued or in flight for a member stays with its session. So the
uplinks the broker gave the dead worker wait at the broker and are stored when that
worker restarts (its process manager's job: `spot cloud serve --workers N` stops all if
one dies; systemd or Kubernetes restart it); the other worker does not take them over.
A worker that will not come back is retired (`spot cloud retire`): its queue stored,
its session ended, and from then on the others get everything.

The broker saves its database periodically, as a production one does (BenchBroker): the
tests' broker saves after every change, and with a dead worker's queue growing that is a
write of the whole queue per uplink, which stalled the broker, not the workers.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from host_tools.bench.cloud_figures import BenchBroker, Wire, pg_database, provision, steady_wakes
from host_tools.cloud.testbed import CloudTestbed, free_port

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def pg_url():
    try:
        with pg_database("spot_scaleout") as url:
            yield url
    except Exception as e:  # noqa: BLE001
        if "connect" in str(e).lower():
            pytest.skip(f"PostgreSQL is not reachable at 127.0.0.1:5432: {e}")
        raise


def stored(url: str) -> list[tuple[int, int]]:
    import psycopg

    with psycopg.connect(url) as c:
        return [(int(d), int(s)) for d, s in c.execute("SELECT device, seq FROM reports")]


def wait_for(cond, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out: {what}")


def test_two_workers_share_the_load_and_a_killed_one_loses_nothing(tmp_path: Path, pg_url: str) -> None:
    with BenchBroker() as broker, CloudTestbed(tmp_path, db=pg_url, broker=broker) as tb:
        devs = provision(tb, "home", 100)
        ports = {"a": free_port(), "b": free_port()}
        procs = {w: tb.start(worker=w, shared="workers", port=ports[w]) for w in ports}
        wire = Wire(broker.port, devs)

        def uplinks(w: str) -> int:
            return tb.api("GET", "/api/stats", port=ports[w])["uplinks"]

        # Both serve: the broker spreads the devices' frames over the two.
        before = steady_wakes(wire, devs, rate=100, seconds=1.5, settle_s=1.0)
        wait_for(lambda: len(stored(pg_url)) == len(before.reports), 30, "the first reports stored")
        share = {w: uplinks(w) for w in ports}
        assert all(n > 0.25 * 2 * before.wakes for n in share.values()), share  # of ~2.3 frames a wake
        assert not before.unanswered and len(before.latencies_ms) == before.wakes

        # Worker a is SIGKILLed in the middle of a batch: frozen while the load goes on and a
        # burst of reports arrives (the broker holds a backlog for it), thawed, and killed
        # while it works through that backlog. The load goes on while it is dead.
        os.kill(procs["a"].pid, signal.SIGSTOP)
        frozen = steady_wakes(wire, devs, rate=100, seconds=1.0, settle_s=0.0)
        burst = []
        for d in devs:
            wire.send(d, *[d.state_report() for _ in range(8)])
            burst += [(d.address, seq) for seq in range(d.seq - 8, d.seq)]
        os.kill(procs["a"].pid, signal.SIGCONT)
        time.sleep(0.05)
        tb.kill(procs["a"])
        b_before = uplinks("b")
        during = steady_wakes(wire, devs, rate=100, seconds=2.0, settle_s=1.0)
        # The other kept serving meanwhile: answers to the devices and reports stored.
        assert uplinks("b") > b_before + 0.25 * 2 * during.wakes
        have = set(stored(pg_url))
        served = [r for r in during.reports if r in have]
        assert len(served) > 0.25 * len(during.reports), (len(served), len(during.reports))
        assert len(during.latencies_ms) > 0.25 * during.wakes

        # Worker a restarts (same id, so the same persistent session) and drains what the
        # broker kept for it; the load goes on.
        procs["a"] = tb.start(worker="a", shared="workers", port=ports["a"])
        after = steady_wakes(wire, devs, rate=100, seconds=1.5, settle_s=1.0)
        sent = before.reports + frozen.reports + burst + during.reports + after.reports
        assert len(set(sent)) == len(sent)
        wait_for(lambda: len(stored(pg_url)) >= len(sent), 60, "every report stored")
        time.sleep(0.5)  # anything stored twice would show now
        rows = stored(pg_url)
        assert len(rows) == len(set(rows)) == len(sent)  # exactly once each
        assert set(rows) == set(sent)  # and nothing else
        assert uplinks("a") > 0  # the restarted worker drained its share
        wire.close()


def test_a_fleet_round_through_the_service() -> None:
    """The firmware of 30 devices (CPython) against the service: time answered, reports
    stored, the forecast and every tenth device's command sent through the API."""
    from host_tools.sim import fleet

    r = fleet.run(30, cloud=True)
    assert r.ok == 30 and r.complete
    assert r.commands_applied == 30 + 3  # the forecast everywhere, the command on 3 devices
    assert r.received == 30 + 3 + 30  # ... and a time answer each


def test_a_retired_worker_leaves_no_uplink_behind(tmp_path: Path, pg_url: str) -> None:
    """A worker that will not come back: its persistent session goes on taking its share
    of the uplinks, queued at the broker (above). `spot cloud retire` stores that queue
    and ends the session; from then on the broker gives everything to the others."""
    import subprocess
    import sys

    with BenchBroker() as broker, CloudTestbed(tmp_path, db=pg_url, broker=broker) as tb:
        devs = provision(tb, "home", 40)
        ports = {"a": free_port(), "b": free_port()}
        procs = {w: tb.start(worker=w, shared="workers", port=ports[w]) for w in ports}
        wire = Wire(broker.port, devs)
        first = steady_wakes(wire, devs, rate=50, seconds=1.0, settle_s=1.0)
        wait_for(lambda: len(stored(pg_url)) == len(first.reports), 30, "the first reports stored")

        def retire() -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "host_tools", "cloud", "retire", "--worker", "a",
                                   "--shared", "workers", "--db", pg_url, "--broker",
                                   f"127.0.0.1:{broker.port}", "--idle", "1"],
                                  capture_output=True, text=True, timeout=120)

        # Asked while worker a still runs: it says so and leaves a its session.
        res = retire()
        assert res.returncode == 1 and "Stop it first" in res.stderr, res.stdout + res.stderr
        tb.kill(procs["a"])  # gone for good
        stranded = []
        for d in devs:
            wire.send(d, *[d.state_report() for _ in range(4)])
            stranded += [(d.address, seq) for seq in range(d.seq - 4, d.seq)]
        time.sleep(2.0)
        waiting = set(stranded) - set(stored(pg_url))
        assert len(waiting) > 0.25 * len(stranded), "the dead worker's share should wait at the broker"

        res = retire()
        assert res.returncode == 0, res.stdout + res.stderr
        assert "retired" in res.stdout
        assert not set(stranded) - set(stored(pg_url)), "the retired worker's queue stored"

        # From now on worker b takes every uplink, at once.
        later = []
        for d in devs:
            wire.send(d, d.state_report())
            later.append((d.address, d.seq - 1))
        wait_for(lambda: not set(later) - set(stored(pg_url)), 10, "every later report stored by b")
        rows = stored(pg_url)
        assert len(rows) == len(set(rows))  # exactly once each
        wire.close()
