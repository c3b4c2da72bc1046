"""The OpenADR 3 VEN plugin against a loopback VTN whose every object is checked by an
independent library's models (openadr3's; the plugin reads with toadr3's): registration
with OAuth2 client credentials, an import-limit event becoming SPOT commands the real
firmware applies, a report reaching the VTN with the devices' own values, 96 quarter-hour
prices as a site forecast, a targeted SIMPLE event reaching only its device, a deleted
event restoring the devices, and bad input (not JSON, an unknown program or resource,
zero and negative durations) refused with nothing sent; with an energy manager on the
site, site-wide events become its site requests."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from host_tools.cloud.plugins.openadr3 import mapping
from host_tools.cloud.plugins.openadr3.loopback_vtn import Vtn, check
from host_tools.cloud.store import Store
from host_tools.cloud.testbed import CloudTestbed, wait_for, wake_devices

pytestmark = pytest.mark.timeout(150)
SITE = "home"
THERMO, PLUG, HP = 0x3101, 0x3102, 0x3103
ROLES = {THERMO: "thermostat", PLUG: "smart_plug", HP: "heat_pump"}
FINAL = ("applied", "adapted", "refused", "expired", "unsupported")
REPORTS = [{"payloadType": "DEMAND", "readingType": "DIRECT_READ", "units": "KW"},
           {"payloadType": "USAGE", "readingType": "DIRECT_READ", "units": "KWH"},
           {"payloadType": "OPERATING_STATE"}]


def wake_all(tb: CloudTestbed) -> None:
    wake_devices(tb, tb.fs, ROLES)


def plugin_commands(tb: CloudTestbed) -> list[dict]:
    return [c for c in tb.api("GET", "/api/commands?limit=1000") if c["requested_by"] == "plugin:openadr3"]


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def now() -> datetime:
    return datetime.now(timezone.utc)


def devnum(c: dict) -> int:
    return int(c["device"], 16) if isinstance(c["device"], str) else c["device"]


def stats(tb: CloudTestbed) -> dict:
    return Store(tb.db).plugin_get("openadr3", "", "stats") or {}


@pytest.fixture
def world(tmp_path: Path):
    vtn = Vtn({"ven-client": "ven-secret"})
    pid = vtn.program("spot-dr")
    vtn.program("not-followed")
    conf = tmp_path / "plugins.toml"
    conf.write_text(f'[[plugin]]\nname = "openadr3"\nsites = ["{SITE}"]\n[plugin.options]\n'
                    f'vtn_url = "{vtn.url}"\nclient_id = "ven-client"\nclient_secret = "ven-secret"\n'
                    f'programs = ["spot-dr"]\npoll_s = 0.1\nreport_delay_s = 0.5\n')
    try:
        with CloudTestbed(tmp_path) as tb:
            tb.fs = {dev: tb.provision(SITE, dev) for dev in ROLES}
            tb.conf = conf
            yield tb, vtn, pid
    finally:
        vtn.stop()


def test_mapping_refuses_what_cannot_be() -> None:
    def ev(**kw):  # type: ignore[no-untyped-def]
        raw = {"id": "e1", "programID": "p1", "createdDateTime": iso(now()),
               "intervalPeriod": {"start": iso(now()), "duration": "PT1H"},
               "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [1]}]}], **kw}
        e, t = mapping.parse_event(raw)
        return mapping.check_event(e, t, {"dev-00003101": THERMO}, "spot-home", {"p1": "dr"}, time.time())
    assert ev().shed.percent == 20
    assert isinstance(ev(programID="p2"), mapping.Refusal)
    assert "no resource dev-0000dead" in ev(targets=["dev-0000dead"]).reason
    assert ev(targets=[{"type": "RESOURCE_NAME", "values": ["dev-00003101"]}]).devices == [THERMO]  # 3.0.1
    assert "impossible" in ev(intervalPeriod={"start": iso(now()), "duration": "-PT15M"}).reason
    assert "not one of" in ev(intervals=[{"id": 0, "payloads": [{"type": "SIMPLE", "values": [7]}]}]).reason
    assert "no payload SPOT carries" in ev(intervals=[{"id": 0, "payloads": [{"type": "GHG", "values": [1]}]}]).reason
    with pytest.raises(ValueError):
        mapping.parse_event({"id": "e1", "programID": "p1"})  # no intervals
    cap = mapping.Cap(3000, int(time.time()) - 1, int(time.time()) + 3600)
    assert mapping.device_command("smart_plug", {}, cap, 3, time.time())["watts"] == 1000


def test_vtn_events_reach_the_devices_and_reports_go_back(world) -> None:  # noqa: PLR0915
    tb, vtn, pid = world
    tb.start(plugins=tb.conf)
    wake_all(tb)  # first wakes: capability records and states
    wait_for(lambda: len([d for d in tb.api("GET", "/api/devices") if d["capabilities"]]) == 3, what="capabilities")
    wait_for(lambda: len(vtn.resources) == 3, what="VEN and its resources registered")
    (ven,) = vtn.vens.values()
    assert ven["venName"] == f"spot-{SITE}" and ven["clientID"] == "ven-client"
    assert {r["resourceName"] for r in vtn.resources.values()} == {mapping.resource_name(d) for d in ROLES}

    # a load-control event: import at most 3 kW for 2 h from now, report demand, usage, state
    limit = vtn.event(pid, [{"id": 0, "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [3.0]}]}],
                      eventName="limit", intervalPeriod={"start": iso(now()), "duration": "PT2H"},
                      payloadDescriptors=[{"objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                                           "payloadType": "IMPORT_CAPACITY_LIMIT", "units": "KW"}],
                      reportDescriptors=REPORTS)
    created = datetime.fromisoformat(vtn.events[limit]["createdDateTime"].replace("Z", "+00:00")).timestamp()
    cmds = wait_for(lambda: (c := plugin_commands(tb)) and len(c) == 3 and all(x["published_at"] for x in c) and c,
                    what="three commands published")
    event_to_command_ms = (max(c["published_at"] for c in cmds) - created) * 1000
    assert all(c["kind"] == "limit" and c["params"]["watts"] == 1000 for c in cmds), [c["params"] for c in cmds]
    assert all(7100 <= c["params"]["duration_s"] <= 7200 for c in cmds)
    assert not vtn.reports  # the report waits for the devices' answers
    wake_all(tb)  # the devices apply them at their next wake
    final = {c["id"]: tb.wait_command(c["id"], FINAL)["state"] for c in cmds}
    assert set(final.values()) <= {"applied", "adapted"}, final

    # the report: the devices' own latest values, nothing made up
    (rep,) = wait_for(lambda: [r for r in vtn.reports if r["eventID"] == limit], what="the report")
    shadows = {mapping.resource_name(int(d["address"], 16)): d for d in tb.api("GET", "/api/devices")}
    got = {(r["resourceName"], p["type"]): p["values"][0] for r in rep["resources"] for p in r["intervals"][0]["payloads"]}
    want = {}
    for name, sh in shadows.items():
        for kind, fname, factor in (("DEMAND", "power_w", 1e-3), ("USAGE", "energy_wh", 1e-3),
                                    ("OPERATING_STATE", "outputs", 1)):
            v = mapping.sample(sh, fname)
            if v is not None:
                want[(name, kind)] = round(v * factor, 6)
    assert got == want and len(got) >= 5, (got, want)
    assert (mapping.resource_name(PLUG), "DEMAND") in got and rep["clientName"] == f"spot-{SITE}"

    # 96 quarter-hour prices -> one site forecast
    start = now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    prices = [round(0.10 + 0.002 * i, 3) for i in range(96)]
    price = vtn.event(pid, [{"id": i, "payloads": [{"type": "PRICE", "values": [p]}]} for i, p in enumerate(prices)],
                      eventName="prices", intervalPeriod={"start": iso(start), "duration": "PT15M"},
                      payloadDescriptors=[{"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": "PRICE",
                                           "units": "KWH", "currency": "EUR"}])
    sig = wait_for(lambda: [a for a in tb.api("GET", "/api/audit?limit=50") if a["action"] == "signal"],
                   what="the forecast")[0]
    assert sig["who"] == "plugin:openadr3"
    assert sig["detail"]["params"] == {"start": int(start.timestamp()), "interval_s": 900,
                                       "prices": [round(p * 1000, 2) for p in prices]}

    # a SIMPLE event targeted at the plug only
    prev = {c["id"] for c in plugin_commands(tb)}
    vtn.event(pid, [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [2]}]}], targets=[mapping.resource_name(PLUG)],
              intervalPeriod={"start": iso(now()), "duration": "PT1H"})
    time.sleep(0.5)  # time for a wrong second or third command to show up too
    (shed,) = wait_for(lambda: [c for c in plugin_commands(tb) if c["id"] not in prev], what="the shed")
    assert shed["kind"] == "reduce" and shed["params"]["percent"] == 50 and devnum(shed) == PLUG

    # bad input: refused, logged, nothing sent
    n, before = len(plugin_commands(tb)), stats(tb)
    signals = len([a for a in tb.api("GET", "/api/audit?limit=200") if a["action"] == "signal"])
    vtn.serve_raw_next = '[{"id": "broken", "programID": '  # not JSON
    wait_for(lambda: stats(tb).get("malformed", 0) > before.get("malformed", 0), what="the malformed answer counted")
    zero = vtn.event(pid, [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [1]}]}],  # valid JSON, impossible
                     intervalPeriod={"start": iso(now()), "duration": "PT0S"})
    stranger = vtn.event(pid, [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [1]}]}],
                         targets=["dev-0000dead"], intervalPeriod={"start": iso(now()), "duration": "PT1H"})
    wait_for(lambda: stats(tb)["refused"] >= before.get("refused", 0) + 2, what="two refusals")
    # what openadr3's models refuse themselves, so served raw: a negative duration, an unknown program
    bad = [{"id": "neg", "programID": pid, "createdDateTime": iso(now()),
            "intervalPeriod": {"start": iso(now()), "duration": "-PT15M"},
            "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [1]}]}]},
           {"id": "other", "programID": "not-a-program", "createdDateTime": iso(now()),
            "intervalPeriod": {"start": iso(now()), "duration": "PT1H"},
            "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [3]}]}]}]
    with pytest.raises(ValueError):
        check("EVENT", bad[0])
    vtn.serve_raw_next = json.dumps(bad)
    wait_for(lambda: stats(tb)["refused"] >= before.get("refused", 0) + 4, what="four refusals")
    events = Store(tb.db).plugin_get("openadr3", SITE, "events")
    assert "zero and negative" in events[zero]["refusal"] and "zero and negative" in events["neg"]["refusal"]
    assert "no resource dev-0000dead" in events[stranger]["refusal"]
    assert "not one this VEN follows" in events["other"]["refusal"]
    time.sleep(0.5)
    assert len(plugin_commands(tb)) == n
    assert len([a for a in tb.api("GET", "/api/audit?limit=200") if a["action"] == "signal"]) == signals
    assert tb.api("GET", "/health")
    assert "refuses event" in tb.log.read_text()

    # the VTN deletes the limit event while it runs: the devices are restored
    vtn.delete_event(limit)
    restores = wait_for(lambda: (c := [x for x in plugin_commands(tb) if x["kind"] == "restore"]) and len(c) == 3 and c,
                        what="three restores")
    assert {devnum(c) for c in restores} == set(ROLES)
    assert vtn.checked > 0 and ("POST", "/auth/token") in vtn.requests

    js = vtn.event_bytes(limit) if limit in vtn.events else events[limit]["json_bytes"]
    spot = sum(c["frame_bytes"] for c in cmds)
    print(f"\nopenadr3_event_to_command_ms={event_to_command_ms:.0f} (floor 500)\n"
          f"import limit: event JSON {js} B on the OpenADR 3 link, SPOT {spot} B to 3 devices ({js / spot:.1f}x); "
          f"96 prices: event JSON {vtn.event_bytes(price)} B, SPOT forecast "
          f"{events[price]['frame_bytes']} B; VTN checked {vtn.checked} objects; stats {stats(tb)}")


def test_site_events_go_to_the_energy_manager_when_the_site_has_one(world) -> None:
    """As the 2.0b plugin does: a shed or a limit for the whole site becomes a site request
    (reduce by the level's share of the site's nominal power; keep under the limit), the
    manager's orders are the event's commands, and a deleted event withdraws its request."""
    tb, vtn, pid = world
    conf = tb.tmp / "both.toml"
    conf.write_text(tb.conf.read_text() + f'[[plugin]]\nname = "energy_manager"\nsites = ["{SITE}"]\n'
                    '[plugin.options]\ntick_s = 1\n')
    tb.start(plugins=conf)
    wake_all(tb)
    devs = wait_for(lambda: (d := tb.api("GET", "/api/devices")) and all(x["capabilities"] for x in d) and d,
                    what="capabilities")
    nominal = sum(d["capabilities"]["nominal_w"] for d in devs)
    wait_for(lambda: len(vtn.resources) == 3, what="VEN registered")

    def requests() -> dict[str, dict]:
        return {r["ref"]: r for r in tb.api("GET", f"/api/sites/{SITE}/requests")}

    shed = vtn.event(pid, [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [2]}]}],
                     intervalPeriod={"start": iso(now()), "duration": "PT1H"})
    start = now().replace(microsecond=0) + timedelta(hours=1)
    limit = vtn.event(pid, [{"id": 0, "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [3.0]}]}],
                      intervalPeriod={"start": iso(start), "duration": "PT1H"},
                      payloadDescriptors=[{"objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                                           "payloadType": "IMPORT_CAPACITY_LIMIT", "units": "KW"}])
    reqs = wait_for(lambda: (r := requests()) and len(r) == 2 and r, what="two site requests")
    r_shed, r_cap = reqs[f"openadr3:{shed}"], reqs[f"openadr3:{limit}"]
    assert r_shed["kind"] == "reduce" and r_shed["watts"] == round(nominal * 0.5) and r_shed["status"] == "active"
    assert r_shed["orders"], r_shed  # the manager split it at once
    assert r_cap["kind"] == "keep_under" and r_cap["watts"] == 3000 and r_cap["status"] == "scheduled"
    assert r_cap["start"] == int(start.timestamp())
    assert plugin_commands(tb) == []  # nothing of the plugin's own mapping
    events = wait_for(lambda: (e := Store(tb.db).plugin_get("openadr3", SITE, "events")) and len(e) == 2 and e,
                      what="the events kept")
    assert events[shed]["requests"] == [r_shed["id"]] and events[limit]["requests"] == [r_cap["id"]]
    # the manager's orders are the event's commands: the devices' answers reach the plugin
    assert set(events[shed]["commands"]) == {str(o["id"]) for o in r_shed["orders"]}

    vtn.delete_event(shed)  # gone from the VTN: its request is withdrawn, the manager restores
    wait_for(lambda: requests()[f"openadr3:{shed}"]["status"] == "cancelled", what="the request cancelled")
    assert requests()[f"openadr3:{limit}"]["status"] == "scheduled"
    assert plugin_commands(tb) == []
