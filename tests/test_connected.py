"""Connected power mode (issue 13 section 1): a mains-powered device holds one MQTT
session open. Real Mosquitto, the real cloud service where a command goes through it,
and the built firmware under the MicroPython unix port (testbed.DeviceProcess)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from host_tools.cloud.testbed import ApiError, CloudTestbed, DeviceProcess

from conftest import ScriptedBroker, provision

pytestmark = pytest.mark.timeout(180)

SITE = "home"
PLUG = 0x3102


def _command(tb: CloudTestbed, on: bool) -> dict:
    """A relay command through the cloud's API (once the plug's capability record is in)."""
    end = time.monotonic() + 15
    while True:
        try:
            return tb.api("POST", f"/api/devices/{PLUG:08x}/commands", {"kind": "relay", "on": on})
        except ApiError as e:
            if e.status != 422 or time.monotonic() > end:
                raise
            time.sleep(0.1)


def _session(n: int):
    return lambda e: e.get("ev") == "session" and e.get("n") == n


def test_power_mode_by_role_and_config() -> None:
    from host_tools.sim import fleet_host

    fw = fleet_host.firmware()
    said: list[dict] = []
    fw.emit = lambda ev, **f: said.append(dict(f, ev=ev))
    assert fw.power_mode({"role": "smart_plug"}) == "connected"
    assert fw.power_mode({"role": "heat_pump"}) == "connected"
    assert fw.power_mode({"role": "thermostat"}) == "sleepy"
    assert fw.power_mode({}) == "sleepy"
    assert fw.power_mode({"role": "smart_plug", "power": "sleepy"}) == "sleepy"
    assert fw.power_mode({"role": "thermostat", "power": "connected"}) == "connected"
    assert not said
    assert fw.power_mode({"role": "thermostat", "power": "always"}) == "sleepy"
    assert said and said[0]["ev"] == "refused" and "sleepy or connected" in said[0]["what"]


def test_a_connected_plug_applies_cloud_commands_on_arrival(tmp_path: Path) -> None:
    with CloudTestbed(tmp_path) as tb:
        fs = tb.provision(SITE, PLUG)
        tb.start()
        with DeviceProcess(tmp_path, fs, tb.broker.port) as dev:
            first = dev.wait_for(_session(1), 20)
            assert first["present"] is False  # a new device: no session at the broker yet
            ms = []
            for i in range(10):
                c = tb.wait_command(_command(tb, i % 2 == 0)["id"], ("applied",), 10)
                ms.append((c["acked_at"] - c["created_at"]) * 1000)
            s = dev.stop()
    # No wake interval between a command and its ACK: loopback and one packet each way.
    # (A sleepy device waits for its next wake: seconds to minutes.) The median says it;
    # the maximum only bounds a loaded 2-core machine's scheduling (a wake would be 1 s+).
    assert sorted(ms)[len(ms) // 2] < 100 and max(ms) < 2000, ms
    assert s["power"] == "connected" and s["why"] == "stop", s
    assert s["sessions"] == 1 and s["applied"] == 10 and s["duplicates"] == 0, s
    assert s["outbox"] == 0 and s["acks"] == 10, s
    assert not [e for e in dev.events if e["ev"] == "cycle"]  # no wake cycles at all
    # The step is 50 ms; below 1 s even on a loaded machine (a stall would show seconds).
    assert s["watchdog_resets"] == 0 and s["control_gap_ms"] < 1000, s


def test_reconnects_after_a_broker_sigkill_and_drains_its_queue(tmp_path: Path) -> None:
    with CloudTestbed(tmp_path) as tb:
        fs = tb.provision(SITE, PLUG)
        tb.start()
        with DeviceProcess(tmp_path, fs, tb.broker.port, reconnect_ms=200) as dev:
            dev.wait_for(_session(1), 20)
            tb.wait_command(_command(tb, True)["id"], ("applied",), 10)
            tb.broker.stop(kill=True)  # a crash: no DISCONNECT, the socket just dies
            dev.wait_for(lambda e: e.get("ev") == "session_end", 10)
            dev.wait_for(lambda e: e.get("ev") == "backoff", 10)
            tb.broker.start()
            again = dev.wait_for(_session(2), 30)
            assert again["present"] is True  # the broker's persistence kept the session
            tb.wait_command(_command(tb, False)["id"], ("applied",), 20)
            s = dev.stop()
        assert s["sessions"] == 2 and s["applied"] == 2 and s["duplicates"] == 0, s

        # Commands that come while the device is away wait at the broker; the next
        # session receives them all before it reports it is up (the end-of-queue
        # marker came back after them), each applied once.
        ids = [_command(tb, i % 2 == 0)["id"] for i in range(3)]
        for cid in ids:
            tb.wait_command(cid, ("published",), 10)
        with DeviceProcess(tmp_path, fs, tb.broker.port) as dev:
            first = dev.wait_for(_session(1), 20)
            for cid in ids:
                tb.wait_command(cid, ("applied",), 10)
            s = dev.stop()
    assert first["present"] is True and first["received"] == 3, first
    assert s["kept"] == 3 and s["duplicates"] == 0 and s["outbox"] == 0, s
    applied = [e for e in dev.events if e["ev"] == "applied"]
    assert len(applied) == 3 and all(e["t"] <= first["t"] for e in applied), (applied, first)


def test_a_broker_refusing_credentials_is_logged_and_backed_off(tmp_path: Path) -> None:
    from host_tools.bench import broker_figures as bf

    with bf.auth_device_world(tmp_path, tls=False) as (_reg, broker, _ctl, fs):
        ident = json.loads((fs / "identity.json").read_text())
        ident["broker"]["password"] = "guessed"
        (fs / "identity.json").write_text(json.dumps(ident))
        with DeviceProcess(tmp_path, fs, broker.port, reconnect_ms=200) as dev:
            time.sleep(4)
            s = dev.stop()
    refused = [e for e in dev.events if e["ev"] == "broker_refused"]
    backoff = [e for e in dev.events if e["ev"] == "backoff"]
    # 0.2 s doubling, each wait a half to all of it: 0.1+0.2+0.4+0.8+1.6 s at least, so
    # at most six attempts in 4 s; a crash loop would make hundreds.
    assert 3 <= len(refused) <= 6, refused
    assert all(r["code"] == 5 and r["why"] == "not authorised" for r in refused), refused
    assert [b["failures"] for b in backoff] == list(range(1, len(backoff) + 1)), backoff
    assert all(b["ms"] >= 100 << k for k, b in enumerate(backoff)), backoff
    assert s["why"] == "stop" and s["sessions"] == 0 and s["power"] == "connected", s


def test_a_hung_broker_never_stalls_control(tmp_path: Path) -> None:
    # A listener that accepts and says nothing: the CONNACK never comes. The link's
    # reads wait in slices with the role's control step (100 ms) and the watchdog
    # (1 s) between them; an unsliced read would hold them for its 2 s timeout.
    provision(tmp_path, SITE, PLUG)
    hung = ScriptedBroker(None)
    try:
        with DeviceProcess(tmp_path, tmp_path / "fs", hung.port, control_ms=100, watchdog_ms=1000,
                           reconnect_ms=200) as dev:
            time.sleep(5)
            s = dev.stop()
    finally:
        hung.close()
    ends = [e for e in dev.events if e["ev"] == "session_end"]
    assert ends and all("went quiet" in e["why"] for e in ends), ends
    assert s["sessions"] == 0, s
    # An unsliced read would show its 2 s timeout here; the slack is a loaded machine's.
    assert s["control_gap_ms"] < 1000, s
    assert s["watchdog_resets"] == 0, s


def test_keepalive_holds_an_idle_session(tmp_path: Path) -> None:
    # Mosquitto drops a client silent for 1.5 keepalives (3 s here); the device pings at
    # half its keepalive, so eight idle seconds later the first session still serves.
    with CloudTestbed(tmp_path) as tb:
        fs = tb.provision(SITE, PLUG)
        tb.start()
        with DeviceProcess(tmp_path, fs, tb.broker.port, keepalive_s=2) as dev:
            dev.wait_for(_session(1), 20)
            tb.wait_command(_command(tb, True)["id"], ("applied",), 10)
            time.sleep(8)
            tb.wait_command(_command(tb, False)["id"], ("applied",), 10)
            s = dev.stop()
    assert s["sessions"] == 1 and not [e for e in dev.events if e["ev"] == "session_end"
                                       and e["why"] != "stop"], dev.events[-5:]


def test_a_long_session_keeps_exchanging_time_past_its_budget(tmp_path: Path) -> None:
    # The link's budget (1 s here) bounds each burst of work, not the session: a time
    # exchange every second, long after the session opened, goes out on the same session.
    with CloudTestbed(tmp_path) as tb:
        fs = tb.provision(SITE, PLUG)
        tb.start()
        with DeviceProcess(tmp_path, fs, tb.broker.port, budget_ms=1000, time_s=1) as dev:
            dev.wait_for(_session(1), 20)
            time.sleep(4.5)
            s = dev.stop()
    assert s["sessions"] == 1 and s["time_answers"] >= 4, s
    assert [e["why"] for e in dev.events if e["ev"] == "session_end"] == ["stop"]


# In-process (CPython, the same firmware source): hooks the process tests cannot reach.

def _in_process(tmp: Path, port: int, **extra: object) -> tuple:
    from host_tools.sim import fleet_host

    fw = fleet_host.firmware()
    import board as vboard
    import connected

    provision(tmp, SITE, PLUG)
    cfg = fleet_host.device_config(tmp / "fs", port, budget_ms=1500)
    cfg.update(role="smart_plug", power="connected", control_ms=50, reconnect_ms=50,
               board_obj=vboard.make("smart_plug", seed=1, clock="wall"), **extra)
    events: list[dict] = []
    fw.emit = lambda ev, **f: events.append(dict(f, ev=ev))
    return fw, connected, cfg, events


def _kill_sessions_as_they_open(fw: object, events: list[dict]):  # noqa: ANN202
    """fw's emit records events and shuts the link down as each session opens; the
    fault hook to pass to connected.run (it is how the test sees the link)."""
    import socket

    last: list = [None]

    def fault(where: str, link: object = None) -> None:
        if link is not None:
            last[0] = link

    def emit(ev: str, **f: object) -> None:
        events.append(dict(f, ev=ev))
        if ev == "session" and last[0] is not None:
            last[0].raw.shutdown(socket.SHUT_RDWR)  # the session dies as it opens

    fw.emit = emit  # type: ignore[attr-defined]
    return fault


def test_a_session_killed_right_after_it_opens_keeps_backing_off(tmp_path: Path) -> None:
    # A broker (or a middlebox) that drops every session as soon as it opens: the failure
    # streak must go on, each wait longer, not restart at every open (a reconnect every
    # 25-50 ms for ever).
    from host_tools.cloud.broker import Broker

    with Broker() as broker:
        fw, connected, cfg, events = _in_process(tmp_path, broker.port)
        fault = _kill_sessions_as_they_open(fw, events)
        end = time.monotonic() + 30
        connected.run(fw, cfg, fault=fault, should_stop=lambda: time.monotonic() > end or sum(
            1 for e in events if e["ev"] == "backoff") >= 5)
    opened = [e for e in events if e["ev"] == "session"]
    backoff = [e for e in events if e["ev"] == "backoff"]
    assert len(opened) >= 4, events[-10:]
    assert [b["failures"] for b in backoff] == [1, 2, 3, 4, 5], backoff


class _Bug(Exception):
    pass


def test_a_bug_in_a_session_is_said_and_backed_off_but_a_power_cut_ends_the_run(
        tmp_path: Path) -> None:
    from host_tools.cloud.broker import Broker
    from host_tools.sim.soak import PowerCut

    with Broker() as broker:
        fw, connected, cfg, events = _in_process(tmp_path, broker.port)
        def setup(node: object) -> None:
            real = node.report  # type: ignore[attr-defined]
            calls = [0]

            def report() -> None:  # the session's first report fails: a bug, no OSError
                calls[0] += 1
                if calls[0] == 1:
                    raise _Bug("a bug under the session")
                real()

            node.report = report  # type: ignore[attr-defined]

        end = time.monotonic() + 20
        assert connected.run(fw, cfg, setup=setup, should_stop=lambda: time.monotonic() > end or any(
            e["ev"] == "session" for e in events)) == 0
        [err] = [e for e in events if e["ev"] == "error"]
        assert err["stage"] == "connected" and "a bug under the session" in err["detail"], err
        kinds = [e["ev"] for e in events]
        assert kinds.index("error") < kinds.index("backoff") < kinds.index("session"), kinds
        assert events[-1]["ev"] == "summary" and events[-1]["sessions"] == 1

        def cut(where: str, link: object = None) -> None:
            raise PowerCut(where)

        with pytest.raises(PowerCut):  # a BaseException: nothing runs after a cut
            connected.run(fw, cfg, fault=cut, should_stop=lambda: time.monotonic() > end)


def test_backoff_doubles_to_its_cap_with_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    from host_tools.sim import fleet_host

    fleet_host.firmware()
    import connected

    rand = [b"\x00\x00"]
    monkeypatch.setattr(connected, "_urandom", lambda n: rand[0])
    lo = [connected.backoff_ms(500, f) for f in range(1, 12)]
    rand[0] = b"\xff\xff"
    hi = [connected.backoff_ms(500, f) for f in range(1, 12)]
    full = [min(500 << min(f - 1, 8), 60000) for f in range(1, 12)]
    assert hi == full and lo == [m // 2 for m in full], (lo, hi)
    assert full[-1] == 60000 and full[7] == 60000 and full[6] == 32000  # capped at 60 s
    rand[0] = b"\x80\x00"
    assert 8000 < connected.backoff_ms(500, 6) < 16000

    # _backoff waits what it says, on the device's clock, with control between.
    clock = [0]
    monkeypatch.setattr(connected, "ticks_ms", lambda: clock[0])

    def sleep(ms: int) -> None:
        clock[0] += ms

    monkeypatch.setattr(connected, "sleep_ms", sleep)
    said: list[dict] = []

    class _Node:
        role = None
        steps = 0

        def control(self) -> None:
            self.steps += 1

        def tick(self) -> None:
            pass

    class _Dev:
        @staticmethod
        def _feed() -> None:
            pass

    c = object.__new__(connected.Connected)
    c.dev, c.node, c.emit = _Dev, _Node(), lambda ev, **f: said.append(dict(f, ev=ev))
    c.extra, c.stdin, c.stop, c.run_ms, c.should_stop = (), False, None, 0, None
    c.step, c.base_ms, c.failures, c.last_control, c.gap_ms = 100, 500, 0, 0, 0
    rand[0] = b"\xff\xff"
    for f in range(1, 11):
        t0 = clock[0]
        c._backoff()
        assert said[-1] == {"ev": "backoff", "ms": full[f - 1], "failures": f}, said[-1]
        assert clock[0] - t0 == full[f - 1]
    assert c.node.steps >= sum(full[:10]) // 100 - 10  # the role's step every 100 ms


def test_local_changes_are_reported_rate_limited_and_the_state_saved_at_the_end(
        tmp_path: Path) -> None:
    # The plug's button is a local change the cloud must hear of (role_report.due, the
    # wake's predicate too), but a button pressed (or a fault flapping) at every step
    # makes one report per report_min_ms, not one per step. The role's state (energy)
    # is on flash at the end of the run as after a sleepy wake.
    import threading

    from host_tools.cloud.broker import Broker
    from spot.journal import Journal

    with Broker() as broker:
        fw, connected, cfg, events = _in_process(tmp_path, broker.port, report_min_ms=1000,
                                                 save_ms=500)
        model = cfg["board_obj"].model
        reports: list[float] = []
        nodes: list = []

        def setup(node: object) -> None:
            nodes.append(node)
            real = node.report  # type: ignore[attr-defined]

            def report() -> None:
                reports.append(time.monotonic())
                real()

            node.report = report  # type: ignore[attr-defined]

        marks: dict[str, float] = {}
        finished = threading.Event()

        def user() -> None:
            while not any(e["ev"] == "session" for e in events):
                time.sleep(0.02)
            time.sleep(0.3)
            marks["press"] = time.monotonic()
            model.button = 1  # one press: the relay on
            time.sleep(0.15)
            model.button = 0
            time.sleep(1.5)
            marks["flap"] = time.monotonic()
            for i in range(40):  # pressed and released every 50 ms for 2 s
                model.button = i % 2
                time.sleep(0.05)
            model.button = 0
            marks["end"] = time.monotonic()
            time.sleep(0.5)  # the relay as the last press left it, drawing power
            finished.set()

        t = threading.Thread(target=user, daemon=True)
        t.start()
        connected.run(fw, cfg, setup=setup, should_stop=lambda: finished.is_set() or (
            time.monotonic() - marks.get("press", time.monotonic()) > 20))
        t.join(5)
    node = nodes[0]
    after_press = [r for r in reports if marks["press"] <= r < marks["flap"]]
    assert after_press and after_press[0] - marks["press"] < 1.2, (reports, marks)
    flapping = [r for r in reports if marks["flap"] <= r <= marks["end"]]
    assert 1 <= len(flapping) <= 3, (flapping, marks)  # 2 s at one per second at most
    assert all(b - a >= 0.95 for a, b in zip(reports[1:], reports[2:])), reports
    saved = Journal(str(tmp_path / "fs" / "journal.json")).app["role"]
    st = node.role.st
    assert (saved["wh"], saved["mws"], saved["want"]) == (st["wh"], st["mws"], st["want"]), (saved, st)


def test_the_network_is_brought_up_before_every_session(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Wi-Fi that dropped with the broker must be up again before the next session
    # (net.up returns at once when it is): asked before every attempt, not once.
    import sys
    import types

    from host_tools.cloud.broker import Broker

    ups: list[int] = []
    net = types.ModuleType("net")
    net.up = lambda cfg, ms, wait: ups.append(ms) or True  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "net", net)
    with Broker() as broker:
        fw, connected, cfg, events = _in_process(tmp_path, broker.port, wifi={"ssid": "x"})
        fault = _kill_sessions_as_they_open(fw, events)
        end = time.monotonic() + 20
        connected.run(fw, cfg, fault=fault, should_stop=lambda: time.monotonic() > end or sum(
            1 for e in events if e["ev"] == "session_end") >= 3)
    ends = [e for e in events if e["ev"] == "session_end"]
    assert len(ends) == 3 and len(ups) == 3, (len(ends), ups)


def test_keepalive_zero_sends_no_pings(tmp_path: Path) -> None:
    # MQTT keepalive 0: the broker never drops a silent client, so no PINGREQ is needed.
    from host_tools.cloud.broker import Broker

    pings: list[float] = []
    with Broker() as broker:
        fw, connected, cfg, events = _in_process(tmp_path, broker.port, keepalive_s=0)
        seen: set[int] = set()

        def fault(where: str, link: object = None) -> None:
            if link is not None and id(link) not in seen:
                seen.add(id(link))
                real = link.ping  # type: ignore[attr-defined]
                link.ping = lambda: (pings.append(time.monotonic()), real())  # type: ignore

        end: list[float] = []

        def stop() -> bool:
            if not end and any(e["ev"] == "session" for e in events):
                end.append(time.monotonic() + 2.5)
            return bool(end) and time.monotonic() > end[0]

        connected.run(fw, cfg, fault=fault, should_stop=stop)
    assert [e["why"] for e in events if e["ev"] == "session_end"] == ["stopped"], events[-4:]
    assert not pings, pings


def test_a_connect_that_hangs_is_waited_for_in_slices_with_control_between() -> None:
    # A listener whose accept queue is full drops the SYN: connect() would block for the
    # whole operation timeout. Sliced (POLLOUT), the role's idle step runs every slice.
    import socket

    from spot import mqtt_link

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))  # the queue is full now
    link = mqtt_link.MqttLink("spot-test", "127.0.0.1", port, [], "t", None, budget_ms=5000,
                              op_timeout_ms=1000)
    steps: list[float] = []
    link.idle = lambda: steps.append(time.monotonic())
    link.idle_ms = 50
    s = mqtt_link.BoundedSocket(link)
    t0 = time.monotonic()
    try:
        with pytest.raises(OSError):
            s.connect(("127.0.0.1", port))
    finally:
        s.close()
        filler.close()
        srv.close()
    took = time.monotonic() - t0
    assert 0.9 < took < 3, took  # the operation timeout bounds it
    gaps = [b - a for a, b in zip([t0] + steps, steps)]
    assert len(steps) >= 10 and max(gaps) < 0.5, (len(steps), max(gaps))


def test_the_broker_name_is_resolved_once_until_a_connect_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from spot import mqtt_link

    asked: list[tuple] = []

    def resolve(host: str, port: int) -> list:
        asked.append((host, port))
        return [(2, 1, 0, "", ("127.0.0.1", port))]

    monkeypatch.setattr(mqtt_link._socket, "getaddrinfo", resolve)
    monkeypatch.setattr(mqtt_link, "_addrs", {})
    link = mqtt_link.MqttLink("spot-test", "broker.example", 1883, [], "t", None)
    sm = mqtt_link._SocketModule(link)
    assert sm.getaddrinfo("broker.example", 1883) == sm.getaddrinfo("broker.example", 1883)
    assert asked == [("broker.example", 1883)]
    mqtt_link._forget(link)
    sm.getaddrinfo("broker.example", 1883)
    assert len(asked) == 2


def test_a_kept_session_without_its_subscription_is_subscribed_again(tmp_path: Path) -> None:
    # The broker says it kept our session (a persistence file restored after a SIGKILL
    # can hold a session without its subscriptions): the marker never comes back. After
    # that failure the next session subscribes anyway, and drains.
    import paho.mqtt.client as mqtt

    from host_tools.cloud.broker import Broker

    with Broker() as broker:
        fw, connected, cfg, events = _in_process(tmp_path, broker.port, budget_ms=800)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"spot-{PLUG:08x}",
                        clean_session=False)
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        time.sleep(0.3)
        c.disconnect()  # a session at the broker, no subscription in it
        c.loop_stop()
        end = time.monotonic() + 15
        connected.run(fw, cfg, should_stop=lambda: time.monotonic() > end or any(
            e["ev"] == "session" for e in events))
    ends = [e for e in events if e["ev"] == "session_end"]
    opened = [e for e in events if e["ev"] == "session"]
    assert ends and "budget" in ends[0]["why"], ends[:2]
    assert opened and opened[0]["present"] is True, (opened, ends[:3])


def test_a_sleepy_wake_after_a_failed_one_subscribes_again(tmp_path: Path) -> None:
    # The same broker state for a sleepy device: its first wake fails on its budget (the
    # marker never comes back); the next one does not trust the kept session, and drains.
    import paho.mqtt.client as mqtt

    from host_tools.cloud.broker import Broker

    with Broker() as broker:
        fw, _connected, cfg, events = _in_process(tmp_path, broker.port, budget_ms=800)
        cfg["power"] = "sleepy"
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"spot-{PLUG:08x}",
                        clean_session=False)
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        time.sleep(0.3)
        c.disconnect()  # a session at the broker, no subscription in it
        c.loop_stop()
        _, first = fw.wake_once(cfg)
        _, second = fw.wake_once(cfg)
    assert not first.ok and first.session_present, first.as_dict()
    assert second.ok, second.as_dict()
