"""Bad input to the cloud: each gets a 4xx that says why, or a logged and retried failure,
and nothing already accepted is lost.

Malformed, oversized and odd requests against the live service; a database held
locked by another connection (503 with the reason; the uplink loop holds the
broker's frames and retries; the lock gone, everything lands); a broker killed
and restarted (commands accepted meanwhile are published when it returns, and
each device applies each command once). Real service, Mosquitto and firmware.
"""
from __future__ import annotations

import http.client
import json
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from host_tools.cloud.testbed import ApiError, CloudTestbed, run_device
from spot import frame

pytestmark = pytest.mark.timeout(240)
SITE = "home"
THERMO, PLUG = 0x3301, 0x3302
ROLES = {THERMO: "thermostat", PLUG: "smart_plug"}


@pytest.fixture
def cloud(tmp_path: Path):
    with CloudTestbed(tmp_path) as tb:
        tb.fs = {dev: tb.provision(SITE, dev) for dev in ROLES}
        tb.start()
        for dev in ROLES:
            wake(tb, dev)
        wait_for(lambda: all(tb.api("GET", f"/api/devices/{d:08x}")["capabilities"] for d in ROLES))
        yield tb


def wake(tb: CloudTestbed, dev: int, cycles: int = 1) -> list[dict]:
    return run_device(tb.tmp, tb.fs[dev], tb.broker.port, ROLES[dev], cycles)


def wait_for(cond, timeout: float = 10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise TimeoutError("condition not met")


def raw(tb: CloudTestbed, method: str, path: str, body: bytes | None = None,
        headers: dict | None = None, chunked: bool = False) -> tuple[int, dict, float]:
    """A request as bytes (the test client would refuse to send most of these)."""
    h = {"Authorization": f"Bearer {tb.token}", "Content-Type": "application/json", **(headers or {})}
    c = http.client.HTTPConnection("127.0.0.1", tb.port, timeout=30)
    t0 = time.monotonic()
    if chunked:
        c.putrequest(method, path)
        for k, v in h.items():
            c.putheader(k, v)
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        c.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body or b""), body or b""))
    else:
        c.request(method, path, body, h)
    r = c.getresponse()
    data = r.read()
    c.close()
    try:
        value = json.loads(data)
    except ValueError:
        value = {"text": data.decode("latin-1")}
    return r.status, value, time.monotonic() - t0


def said(value: dict) -> str:
    """The reason a 4xx gave, as one string (FastAPI's validation errors are a list)."""
    d = value.get("detail", value)
    return d if isinstance(d, str) else json.dumps(d)


def kept(events: list[dict]) -> Counter:
    """How often the device took in each of the cloud's commands, by counter."""
    return Counter(e["seq"] for e in events
                   if e.get("ev") == "kept" and e.get("cls") == frame.CLASS_COMMAND and e.get("src") == 1)


def test_malformed_oversized_and_odd_requests_get_a_4xx_that_says_why(cloud) -> None:
    cmds = f"/api/devices/{THERMO:08x}/commands"
    cases: list[tuple[str, str, bytes | None, dict, int, str]] = [
        ("POST", cmds, b'{"kind": "rest', {}, 422, "JSON decode error"),
        ("POST", cmds, b'["kind", "restore"]', {}, 422, "valid dictionary"),
        ("POST", cmds, b"[" * 3000 + b"]" * 3000, {}, 400, "error parsing the body"),
        ("POST", cmds, b'{"kind": "\xff\xfe"}', {}, 400, "error parsing the body"),  # not UTF-8
        ("POST", cmds, b'{"kind":"restore"}', {"Content-Type": "text/plain"}, 422, "dictionary"),
        # NaN, Infinity and lone surrogates are JSON to Python's parser: the answer
        # used to echo them back and fail to encode itself (a 500).
        ("POST", cmds, b'{"kind": "setpoint", "value_c": NaN}', {}, 422, "value_c"),
        ("POST", cmds, b'{"kind": "setpoint", "value_c": Infinity}', {}, 422, "less than or equal to 30"),
        ("POST", cmds, rb'{"kind": "\ud800"}', {}, 422, "does not match any of the expected tags"),
        ("POST", cmds, rb'{"kind": "restore", "\udfff": 1}', {}, 422, "restore"),
        ("POST", f"/api/sites/{SITE}/prices", b'{"prices": [NaN]}', {}, 422, "finite number"),
        ("POST", f"/api/sites/{SITE}/prices", b'{"prices": [1e308]}', {}, 422, "less than or equal to 21000000"),
        ("POST", cmds, b'{"kind": "relay", "on": true, "extra": 1}', {}, 422, "Extra inputs"),
        ("POST", cmds, b'{"kind": "config", "settings": {"telemetry_s": 1' + b"0" * 4000 + b"}}", {}, 422,
         "outside 10..86400"),
        ("POST", cmds, b'{"kind": "program", "week_origin": 0, "steps": [[1' + b"0" * 40 + b', 20]]}', {}, 422,
         "rising offsets"),
        ("POST", cmds, b'{"kind": "event", "event_id": 1, "start": 1' + b"0" * 30 + b', "duration_s": 60}', {},
         422, "start"),
        # Oversized: by Content-Length, and by a chunked body that carries none.
        ("POST", cmds, b'{"kind":"restore","pad":"' + b"a" * 20_000 + b'"}', {}, 413, "over 16384 bytes"),
        ("POST", cmds, b'{"kind":"restore"}', {"__chunked": True}, 411, "needs a Content-Length"),
        # Unknown or malformed devices, sites, command ids and queries.
        ("GET", "/api/devices/0000abcd", None, {}, 404, "no device 0000abcd"),
        ("POST", "/api/devices/0000abcd/commands", b'{"kind":"restore"}', {}, 404, "no device 0000abcd"),
        ("GET", "/api/devices/123456789", None, {}, 404, "up to 8 hex digits"),
        ("GET", "/api/devices/%D9%A1%D9%A2", None, {}, 404, "not a device address"),  # Arabic digits
        ("GET", "/api/devices/%ED%A0%80", None, {}, 404, "not a device address"),  # a surrogate's UTF-8
        ("GET", "/api/devices/3301%0A", None, {}, 404, "not a device address"),  # a trailing newline
        ("GET", "/api/commands/1" + "0" * 30, None, {}, 422, "less than or equal to 2147483647"),
        ("GET", "/api/commands/-1", None, {}, 422, "greater than or equal to 1"),
        ("GET", "/api/commands/999999", None, {}, 404, "no command 999999"),
        ("GET", "/api/sites/%00", None, {}, 422, "pattern"),
        ("GET", "/api/sites/nowhere", None, {}, 404, "nowhere"),
        ("GET", "/api/devices?site=" + "x" * 100, None, {}, 422, "\"site\""),
        ("GET", f"/api/devices/{THERMO:08x}/reports?since=nan", None, {}, 422, "since"),
        ("GET", f"/api/devices/{THERMO:08x}/reports?limit=99999999999999999999", None, {}, 422, "limit"),
        # What the device's capability record rules out, and impossible values.
        ("POST", cmds, b'{"kind": "relay", "on": true}', {}, 422, "a thermostat has no 'relay'"),
        ("POST", f"/api/devices/{PLUG:08x}/commands", b'{"kind": "setpoint", "value_c": 21}', {}, 422,
         "a smart_plug has no 'setpoint'"),
        ("POST", cmds, b'{"kind": "comfort_band", "low_c": 22, "high_c": 20}', {}, 422, "must be under high"),
    ]
    for method, path, body, headers, status, why in cases:
        chunked = bool(headers.pop("__chunked", False))
        got, value, _s = raw(cloud, method, path, body, headers, chunked)
        assert got == status and why in said(value), (method, path, (body or b"")[:60], got, value)
    assert cloud.api("GET", "/api/commands") == []  # nothing refused was stored
    assert "Traceback" not in cloud.log.read_text()  # and no request raised inside the service


def test_a_locked_database_is_a_503_with_the_reason_and_loses_nothing(cloud) -> None:
    first = cloud.api("POST", f"/api/devices/{PLUG:08x}/commands", {"kind": "relay", "on": True})
    cloud.wait_command(first["id"], ("published",))
    before = cloud.api("GET", f"/api/devices/{PLUG:08x}")["last_seen"]
    lock = sqlite3.connect(cloud.db, timeout=1, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
    try:
        # Reads go on (WAL); a write waits the busy timeout, then says why.
        assert cloud.api("GET", f"/api/devices/{PLUG:08x}")["address"] == f"{PLUG:08x}"
        status, value, seconds = raw(cloud, "POST", f"/api/devices/{PLUG:08x}/commands",
                                     b'{"kind": "relay", "on": false}')
        assert status == 503 and "database is locked" in value["detail"] and "nothing was changed" in value["detail"]
        assert seconds < 10  # before any reasonable client gives up
        # The device wakes meanwhile: it applies the published command and ACKs it;
        # the cloud cannot store the ACK or the report yet, and holds them.
        events = wake(cloud, PLUG)
        assert kept(events) == Counter({first["seq"]: 1})
        wait_for(lambda: cloud.api("GET", "/api/stats")["db_retries"] >= 1, timeout=20)
        assert cloud.api("GET", f"/api/commands/{first['id']}")["state"] == "published"
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    # The lock gone: the held ACK and report land, nothing was lost, nothing was doubled.
    assert cloud.wait_command(first["id"], ("applied",), timeout=20)["state"] == "applied"
    assert cloud.api("GET", f"/api/devices/{PLUG:08x}")["last_seen"] > before
    assert cloud.api("GET", f"/api/devices/{PLUG:08x}")["state"]["outputs"] == 1
    again = cloud.api("POST", f"/api/devices/{PLUG:08x}/commands", {"kind": "relay", "on": False})
    assert [c["id"] for c in cloud.api("GET", "/api/commands")] == [again["id"], first["id"]]
    assert "database is locked" in cloud.log.read_text()  # the uplink loop logged its retries
    events = wake(cloud, PLUG)
    assert kept(events) == Counter({again["seq"]: 1})
    assert cloud.wait_command(again["id"], ("applied",))["state"] == "applied"


def test_commands_accepted_while_the_broker_is_dead_are_published_when_it_returns(cloud) -> None:
    # One command waits in the sleeping plug's queue at the broker when the broker dies.
    queued = cloud.api("POST", f"/api/devices/{PLUG:08x}/commands", {"kind": "relay", "on": True})
    cloud.wait_command(queued["id"], ("published",))
    cloud.broker.stop(kill=True)
    wait_for(lambda: not cloud.api("GET", "/health")["mqtt"])
    sent = [cloud.api("POST", f"/api/devices/{PLUG:08x}/commands", {"kind": "limit", "watts": 500,
                                                                    "duration_s": 600}),
            cloud.api("POST", f"/api/devices/{THERMO:08x}/commands", {"kind": "setpoint", "value_c": 21.5}),
            cloud.api("POST", f"/api/devices/{THERMO:08x}/commands", {"kind": "restore"})]
    assert all(c["state"] == "accepted" for c in sent)  # stored; nothing to hand them to yet
    with pytest.raises(ApiError) as e:  # a forecast is not tracked: refused, not kept
        cloud.api("POST", f"/api/sites/{SITE}/prices", {"prices": [40.5, 41]})
    assert e.value.status == 503 and "broker is unreachable" in e.value.detail
    time.sleep(1.0)
    assert all(cloud.api("GET", f"/api/commands/{c['id']}")["state"] == "accepted" for c in sent)
    cloud.broker.start()
    for c in sent:
        cloud.wait_command(c["id"], ("published",), timeout=20)
    plug, thermo = wake(cloud, PLUG), wake(cloud, THERMO)
    assert kept(plug) == Counter({queued["seq"]: 1, sent[0]["seq"]: 1})
    assert kept(thermo) == Counter({sent[1]["seq"]: 1, sent[2]["seq"]: 1})
    for c in [queued, *sent]:
        assert cloud.wait_command(c["id"], ("applied", "adapted"))["state"] in ("applied", "adapted")
    # Woken again: resends (the cloud resends what is open on every reconnect) change nothing.
    plug2 = wake(cloud, PLUG)
    assert not kept(plug2)
