"""The cloud service against a real Mosquitto and the real firmware under the unix port:
shadows, commands tracked to the device's ACK for every role, refusals at the API,
tokens and scopes, cancel, duplicates stored once; the store's migrations and the
registry import, on SQLite and on PostgreSQL."""
from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from host_tools.cloud.testbed import ApiError, CloudTestbed, run_device

pytestmark = pytest.mark.timeout(180)
SITE = "home"
THERMO, PLUG, HP = 0x3101, 0x3102, 0x3103
ROLES = {THERMO: "thermostat", PLUG: "smart_plug", HP: "heat_pump"}


@pytest.fixture
def cloud(tmp_path: Path):
    with CloudTestbed(tmp_path) as tb:
        tb.fs = {dev: tb.provision(SITE, dev) for dev in ROLES}
        tb.start()
        yield tb


def wake(tb: CloudTestbed, dev: int, cycles: int = 1) -> list[dict]:
    return run_device(tb.tmp, tb.fs[dev], tb.broker.port, ROLES[dev], cycles)


def wait_for(cond, timeout: float = 5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise TimeoutError("condition not met")


def test_first_wake_fills_the_shadow_and_every_role_applies_its_command(cloud) -> None:
    for dev in ROLES:
        wake(cloud, dev)
    shadows = wait_for(lambda: [d for d in cloud.api("GET", "/api/devices") if d["capabilities"]]
                       if len([d for d in cloud.api("GET", "/api/devices") if d["capabilities"]]) == 3 else None)
    roles = {d["address"]: d["capabilities"]["role"] for d in shadows}
    assert roles == {f"{d:08x}": r for d, r in ROLES.items()}
    t = cloud.api("GET", f"/api/devices/{THERMO:08x}")
    assert t["availability"] == "asleep" and t["next_wake"] and t["reset_cause"] == "power_on"
    assert t["state"]["temp_c"] == pytest.approx(18.0) and t["capabilities"]["comfort_c"] == [19.0, 21.0]

    sent = {
        THERMO: cloud.api("POST", f"/api/devices/{THERMO:08x}/commands",
                          {"kind": "setpoint", "value_c": 22, "duration_s": 3600}),
        PLUG: cloud.api("POST", f"/api/devices/{PLUG:08x}/commands", {"kind": "relay", "on": True}),
        HP: cloud.api("POST", f"/api/devices/{HP:08x}/commands",
                      {"kind": "sg_state", "state": 1, "duration_s": 3 * 3600}),
    }
    for c in sent.values():
        assert c["state"] == "accepted" and c["frame_bytes"] < 64
    assert {c["id"] for c in cloud.api("GET", "/api/pending")} == {c["id"] for c in sent.values()}
    for dev in ROLES:
        wake(cloud, dev)
    done = {dev: cloud.wait_command(c["id"], ("applied", "adapted", "refused")) for dev, c in sent.items()}
    assert done[THERMO]["state"] == "applied" and done[PLUG]["state"] == "applied"
    # A 3 h block is longer than a heat pump may be blocked: carried out, shortened, and said so.
    assert done[HP]["state"] == "adapted" and done[HP]["reason_text"] == "longest block reached"
    for c in done.values():
        assert c["published_at"] <= c["delivered_at"] <= c["acked_at"] and c["sends"] >= 1
    assert cloud.api("GET", "/api/pending") == []
    plug = cloud.api("GET", f"/api/devices/{PLUG:08x}")
    assert plug["state"]["outputs"] == 1  # the state report after the command
    reports = cloud.api("GET", f"/api/devices/{THERMO:08x}/reports?kind=state")
    assert len(reports) >= 2 and reports[-1]["body"]["target_c"] == pytest.approx(22.0)


def test_the_api_refuses_what_a_device_cannot_do_and_says_why(cloud) -> None:
    with pytest.raises(ApiError) as e:
        cloud.api("POST", f"/api/devices/{PLUG:08x}/commands", {"kind": "relay", "on": True})
    assert e.value.status == 422 and "capability record" in e.value.detail  # no first contact yet
    wake(cloud, PLUG)
    wake(cloud, THERMO)
    wait_for(lambda: cloud.api("GET", f"/api/devices/{THERMO:08x}")["capabilities"])
    wait_for(lambda: cloud.api("GET", f"/api/devices/{PLUG:08x}")["capabilities"])
    cases = [
        (PLUG, {"kind": "setpoint", "value_c": 21}, "a smart_plug has no 'setpoint'"),
        (THERMO, {"kind": "relay", "on": True}, "a thermostat has no 'relay'"),
        (THERMO, {"kind": "config", "settings": {"power_on": 1}}, "a thermostat has no setting 'power_on'"),
        (PLUG, {"kind": "config", "settings": {"telemetry_s": 5}}, "outside 10..86400"),
        (PLUG, {"kind": "config", "settings": {"warp": 1}}, "no setting 'warp'"),
        (THERMO, {"kind": "comfort_band", "low_c": 22, "high_c": 20}, "must be under high"),
        (THERMO, {"kind": "program", "week_origin": 0, "steps": [[3600, 20], [0, 18]]}, "rising offsets"),
    ]
    for dev, body, why in cases:
        with pytest.raises(ApiError) as e:
            cloud.api("POST", f"/api/devices/{dev:08x}/commands", body)
        assert e.value.status == 422 and why in str(e.value.detail), (body, e.value.detail)
    for body in ({"kind": "setpoint", "value_c": 99}, {"kind": "teleport"}, {"kind": "relay"},
                 {"kind": "relay", "on": True, "extra": 1}):
        with pytest.raises(ApiError) as e:
            cloud.api("POST", f"/api/devices/{THERMO:08x}/commands", body)
        assert e.value.status == 422  # pydantic's validation, with the field named
    with pytest.raises(ApiError) as e:
        cloud.api("POST", "/api/devices/00009999/commands", {"kind": "restore"})
    assert e.value.status == 404 and "00009999" in e.value.detail
    with pytest.raises(ApiError) as e:
        cloud.api("GET", "/api/devices/not-hex")
    assert e.value.status == 404
    assert cloud.api("GET", "/api/commands") == []  # nothing refused was stored


def test_tokens_and_scopes(cloud) -> None:
    assert cloud.api("GET", "/health", token="")["ok"] is True
    for tok in ("", "spot_not-a-token"):
        with pytest.raises(ApiError) as e:
            cloud.api("GET", "/api/devices", token=tok)
        assert e.value.status == 401
    reader = cloud.cli("token", "reader", "--scopes", "read")
    assert cloud.api("GET", "/api/devices", token=reader)
    with pytest.raises(ApiError) as e:
        cloud.api("POST", f"/api/devices/{THERMO:08x}/commands", {"kind": "restore"}, token=reader)
    assert e.value.status == 403 and "command" in e.value.detail
    with pytest.raises(ApiError) as e:
        cloud.api("GET", "/api/keys", token=reader)
    assert e.value.status == 403
    keys = cloud.api("GET", "/api/keys")
    assert keys and all("secret" not in k for k in keys)
    assert not any(len(str(v)) >= 64 for k in keys for v in k.values())  # no secret in any form
    cloud.cli("token", "reader", "--revoke")
    with pytest.raises(ApiError) as e:
        cloud.api("GET", "/api/devices", token=reader)
    assert e.value.status == 401
    audit = cloud.api("GET", "/api/audit")
    assert any(a["action"] == "import" for a in audit)


def test_a_command_accepted_while_the_broker_is_down_waits_and_can_be_cancelled(cloud) -> None:
    wake(cloud, PLUG)
    wait_for(lambda: cloud.api("GET", f"/api/devices/{PLUG:08x}")["capabilities"])
    cloud.broker.stop()
    wait_for(lambda: not cloud.api("GET", "/health")["mqtt"])
    first = cloud.api("POST", f"/api/devices/{PLUG:08x}/commands", {"kind": "relay", "on": True})
    second = cloud.api("POST", f"/api/devices/{PLUG:08x}/commands", {"kind": "relay", "on": False})
    assert cloud.api("POST", f"/api/commands/{second['id']}/cancel")["state"] == "cancelled"
    cloud.broker.start()
    cloud.wait_command(first["id"], ("published",), timeout=15)
    with pytest.raises(ApiError) as e:
        cloud.api("POST", f"/api/commands/{first['id']}/cancel")
    assert e.value.status == 409 and "published" in e.value.detail
    events = wake(cloud, PLUG)
    assert cloud.wait_command(first["id"], ("applied",))["state"] == "applied"
    assert cloud.api("GET", f"/api/commands/{second['id']}")["state"] == "cancelled"
    applied = [e for e in events if e.get("ev") == "applied"]
    assert len(applied) == 1, events  # the cancelled one never reached the device


def test_an_uplink_delivered_twice_is_stored_once(cloud) -> None:
    import paho.mqtt.client as mqtt

    from spot import builders, topics
    from spot.objects import Analog, UNIT_W, UNIT_WH

    entry = next(e for e in cloud.reg.entries(PLUG) if e.admin)
    raw = builders.meter_report(1, PLUG, 900, 1_800_000_000, Analog(40, UNIT_W), Analog(7, UNIT_WH), True,
                                key=entry.device_key())
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.connect("127.0.0.1", cloud.broker.port)
    c.loop_start()
    for _ in range(3):
        c.publish(topics.topic(SITE, PLUG, up=True), raw, qos=1).wait_for_publish(5)
    rows = wait_for(lambda: cloud.api("GET", f"/api/devices/{PLUG:08x}/reports?kind=meter"))
    time.sleep(0.5)
    c.loop_stop()
    c.disconnect()
    assert len(cloud.api("GET", f"/api/devices/{PLUG:08x}/reports?kind=meter")) == 1
    assert rows[0]["body"] == {"energy_wh": 7, "power_w": 40, "relay": True, "time": 1_800_000_000}
    assert cloud.api("GET", "/api/stats")["duplicates"] == 2


def test_the_cli_imports_a_registry_once_and_migrations_are_idempotent(tmp_path: Path) -> None:
    from host_tools.cloud import migrations
    from host_tools.cloud.store import Store

    with CloudTestbed(tmp_path) as tb:
        tb.provision(SITE, THERMO)
        first = tb.cli("import", str(tb.reg.path))
        again = tb.cli("import", str(tb.reg.path))
        assert first == again and "1 devices, 2 keys" in first
    store = Store(tb.db)
    assert len(store.devices()) == 1 and len(store.key_rows()) == 2
    assert migrations.migrate(store.engine) == []  # nothing left to do
    with store.engine.connect() as conn:
        assert migrations.current(conn) == migrations.LATEST
    newer = [*migrations.STEPS, (migrations.LATEST + 1, "test", lambda conn: None)]
    assert migrations.migrate(store.engine, newer) == [migrations.LATEST + 1]
    with pytest.raises(RuntimeError, match="newer than this code"):
        Store(tb.db)  # a database from a newer release is never touched by an older one


@pytest.fixture
def pg_url():
    name = f"spot_test_{uuid.uuid4().hex[:10]}"
    try:
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f"CREATE DATABASE {name}"],
                       check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {e}")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f"DROP DATABASE {name} WITH (FORCE)"],
                   capture_output=True, timeout=30)


def test_the_same_store_on_postgresql(pg_url: str) -> None:
    from host_tools.cloud.store import Store, UplinkBatch

    store = Store(pg_url)
    dev = store.provision(SITE, None, "kitchen plug")
    assert store.device(dev)["site"] == SITE and len(store.key_rows(dev)) == 2
    c = store.create_command(dev, "relay", {"on": True}, "test", lambda seq, key: b"frame%d" % seq)
    c2 = store.create_command(dev, "relay", {"on": False}, "test", lambda seq, key: b"frame%d" % seq)
    assert c2["seq"] == c["seq"] + 1
    store.mark_published([c["id"]])
    b = UplinkBatch()
    b.reports.append((dev, 5, time.time(), "state", {"outputs": 1}))
    b.reports.append((dev, 5, time.time(), "state", {"outputs": 1}))  # twice: stored once
    b.shadow(dev, state={"outputs": 1}, uplink_seq=5, last_seen=time.time())
    b.acks.append((dev, c["seq"], "applied", None, time.time()))
    changed = store.store_uplinks(b)
    assert [x["id"] for x in changed] == [c["id"]]
    assert store.command(c["id"])["state"] == "applied"
    assert len(store.reports(dev)) == 1 and store.shadow(dev)["state"] == {"outputs": 1}
    b = UplinkBatch()
    b.shadow(dev, uplink_seq=3)  # an older frame from another worker never lowers it
    store.store_uplinks(b)
    assert store.shadow(dev)["uplink_seq"] == 5
    a, n = store.next_seq(1, dev), store.next_seq(1, dev)
    assert n == a + 1 and a > c2["seq"]  # time answers draw from the same counter, above commands
    store.close()


def test_an_event_stream_carries_reports_and_command_states(cloud) -> None:
    import http.client
    import threading

    got: list[dict] = []

    def listen() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=20)
        conn.request("GET", f"/api/events?token={cloud.token}")
        r = conn.getresponse()
        assert r.status == 200
        for line in r:
            if line.startswith(b"data: "):
                got.append(json.loads(line[6:]))
                if any(e.get("state") == "applied" for e in got):
                    return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    time.sleep(0.3)
    wake(cloud, PLUG)
    wait_for(lambda: cloud.api("GET", f"/api/devices/{PLUG:08x}")["capabilities"])
    c = cloud.api("POST", f"/api/devices/{PLUG:08x}/commands", {"kind": "relay", "on": True})
    wake(cloud, PLUG)
    t.join(10)
    kinds = {e["type"] for e in got}
    assert {"capabilities", "state", "availability", "command"} <= kinds, kinds
    states = [e["state"] for e in got if e["type"] == "command" and e["id"] == c["id"]]
    assert states[0] == "accepted" and states[-1] == "applied"


def test_a_cancel_loses_to_a_publish_already_under_way(tmp_path: Path) -> None:
    """Publishing claims a command first: a cancel that comes after the claim is refused,
    even while the broker has not yet confirmed it (the frame may be in the device's queue)."""
    from host_tools.cloud.store import Conflict, Store

    store = Store(str(tmp_path / "c.sqlite"))
    dev = store.provision(SITE, THERMO)
    a = store.create_command(dev, "restore", {}, "t", lambda seq, key: b"a")
    b = store.create_command(dev, "restore", {}, "t", lambda seq, key: b"b")
    assert store.claim(a["id"])  # handed to the broker, no PUBACK yet: still "accepted"
    assert store.command(a["id"])["state"] == "accepted"
    with pytest.raises(Conflict, match="being published"):
        store.cancel(a["id"], "t")
    assert store.cancel(b["id"], "t")["state"] == "cancelled"
    assert not store.claim(b["id"])  # a cancelled command never leaves
    store.close()


def test_a_failed_mark_published_announces_nothing() -> None:
    # The store could not say which commands still wait: announcing the ids the broker
    # acknowledged could show an answered command "published" after its answer.
    import queue

    from sqlalchemy.exc import OperationalError

    from host_tools.cloud.bridge import Bridge

    class _Store:
        def mark_published(self, ids: list[int]) -> list[int]:
            raise OperationalError("UPDATE commands", {}, Exception("database is locked"))

    said: list[dict] = []
    b = object.__new__(Bridge)
    b._published = queue.Queue()
    b.store = _Store()
    b.on_event = said.append
    for cid in (7, 8):
        b._published.put(cid)
    b._note_published()
    assert said == [] and b._published.empty()
