"""The Home Assistant plugin against a real Mosquitto, the real firmware and a paho client
in Home Assistant's place: every device of a site is announced by MQTT discovery that the
documented schema accepts; a switch command from Home Assistant reaches the plug through
the cloud's tracked path and its state comes back; malformed commands, commands a role
rules out and commands for an offline device are refused and never stored."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from host_tools.cloud.plugins.home_assistant import entities, schema
from host_tools.cloud.plugins.home_assistant.peer import HomeAssistantPeer
from host_tools.cloud.testbed import CloudTestbed, run_device

pytestmark = pytest.mark.timeout(120)
SITE = "home"
THERMOSTAT, PLUG, HEAT_PUMP, LOST_PLUG = 0x3101, 0x3102, 0x3103, 0x3104
ROLES = {THERMOSTAT: "thermostat", PLUG: "smart_plug", HEAT_PUMP: "heat_pump", LOST_PLUG: "smart_plug"}
BASE = "spot-ha"


def root(dev: int) -> str:
    return f"{BASE}/{SITE}/{dev:08x}"


def power_cut_mid_wake(fs: Path, port: int) -> None:
    """The real firmware (under CPython) loses power while connected: no DISCONNECT, so the
    broker publishes its last will, "lost" (as tests/test_roles_device.py does)."""
    from host_tools.sim import fleet_host

    fw = fleet_host.firmware()
    cfg = dict(fleet_host.device_config(fs, port), role="smart_plug", board={"clock": "wall"})

    class PowerCut(BaseException):  # not an Exception: nothing in the firmware catches it
        pass

    def fault(_kind: str, link: object) -> None:
        if getattr(link, "poller", None) is not None:
            link.raw.close()  # type: ignore[attr-defined]
            raise PowerCut()

    with pytest.raises(PowerCut):
        fw.wake_once(cfg, fault=fault)


def test_home_assistant_sees_commands_and_is_refused_what_it_may_not(tmp_path: Path) -> None:
    with CloudTestbed(tmp_path) as tb:
        fss = {dev: tb.provision(SITE, dev) for dev in ROLES}
        conf = tmp_path / "plugins.toml"
        conf.write_text(f'[[plugin]]\nname = "home_assistant"\nsites = ["{SITE}"]\n'
                        '[plugin.options]\ndiscovery_prefix = "homeassistant"\n')
        ha = HomeAssistantPeer(tb.broker.port)
        try:
            tb.start(plugins=conf)
            for dev, role in ROLES.items():  # first wakes: capability records and states
                run_device(tmp_path, fss[dev], tb.broker.port, role, 1)

            # Discovery: climate; switch + power + energy per plug; select + store + power.
            ha.wait(lambda: len(ha.discovery) >= 10, 15)
            by_component = sorted(t.split("/")[1] for t in ha.discovery)
            assert by_component == ["climate", "select"] + ["sensor"] * 6 + ["switch"] * 2, by_component
            assert ha.wait(lambda: all(ha.raw.get(f"{root(d)}/state") for d in ROLES))
            assert ha.invalid() == {}  # ha_discovery_invalid = 0
            for topic, p in ha.discovery.items():
                dev = int(p["unique_id"].split("_")[1], 16)
                assert p["device"] == {"identifiers": [f"spot_{dev:08x}"], "manufacturer": "SPOT",
                                       "model": ROLES[dev], "name": f"SPOT {ROLES[dev]} {dev:08x}"}
                assert p["availability_topic"] == f"{root(dev)}/availability"
                assert not any(isinstance(v, str) and v.startswith("spot/") for v in p.values()), topic
            climate = next(p for t, p in ha.discovery.items() if t.split("/")[1] == "climate")
            assert climate["modes"] == ["off", "heat"] and (climate["min_temp"], climate["max_temp"]) == (5.0, 30.0)
            select = next(p for t, p in ha.discovery.items() if t.split("/")[1] == "select")
            assert select["options"] == ["blocked", "normal", "recommended on", "forced on"]
            energy = next(p for p in ha.discovery.values() if p.get("device_class") == "energy")
            assert (energy["unit_of_measurement"], energy["state_class"]) == ("Wh", "total_increasing")
            assert ha.json(f"{root(THERMOSTAT)}/state")["temp_c"] == 18.0
            assert ha.json(f"{root(HEAT_PUMP)}/state")["sg_ready"] == "normal"
            assert ha.json(f"{root(PLUG)}/state")["switch"] == "OFF"
            # Asleep counts as online: a sleeper takes commands at its next wake.
            assert ha.raw[f"{root(PLUG)}/availability"] == b"online"

            # One plug dies mid-wake: its last will says lost, Home Assistant sees offline.
            power_cut_mid_wake(fss[LOST_PLUG], tb.broker.port)
            ha.wait(lambda: ha.raw.get(f"{root(LOST_PLUG)}/availability") == b"offline", 10)

            # Home Assistant switches the plug on: a tracked command, requested by the plugin.
            ha_bytes = ha.command(f"{root(PLUG)}/switch/set", "ON")
            path = f"/api/devices/{PLUG:08x}/commands"
            cmds = ha.wait(lambda: tb.api("GET", path), 10)
            assert [(c["kind"], c["params"], c["requested_by"]) for c in cmds] == [
                ("relay", {"on": True}, "plugin:home_assistant")]
            run_device(tmp_path, fss[PLUG], tb.broker.port, "smart_plug", 1)
            c = tb.wait_command(cmds[0]["id"], ("applied", "adapted", "refused", "expired"))
            assert c["state"] == "applied"
            ha.wait(lambda: (json.loads(ha.raw[f"{root(PLUG)}/state"]).get("switch") == "ON"), 10)
            ha.wait(lambda: (ha.json(f"{root(PLUG)}/command") or {}).get("state") == "applied", 10)
            print(f"\nswitch on: Home Assistant's MQTT PUBLISH {ha_bytes} B (payload 2 B); "
                  f"SPOT's sealed frame to the plug {c['frame_bytes']} B")

            # Refused, each with its reason, and never stored as a command.
            bad = [(f"{root(PLUG)}/switch/set", b"MAYBE", "ON or OFF"),
                   (f"{root(PLUG)}/switch/set", b"\xff\xfe", "UTF-8"),
                   (f"{root(PLUG)}/climate/temperature/set", b"22", "is for a thermostat"),
                   (f"{root(THERMOSTAT)}/climate/temperature/set", b"45", "outside"),
                   (f"{root(THERMOSTAT)}/climate/mode/set", b"cool", "modes are off and heat"),
                   (f"{root(HEAT_PUMP)}/sg_ready/set", b"turbo", "SG Ready options"),
                   (f"{root(LOST_PLUG)}/switch/set", b"ON", "offline (lost)"),
                   (f"{BASE}/{SITE}/00009999/switch/set", b"ON", "no device")]
            for topic, payload, _ in bad:
                ha.command(topic, payload)
            refusals = ha.wait(lambda: [(t, p) for t, p in ha.seen if t.endswith("/refused")]
                               if sum(t.endswith("/refused") for t, _ in ha.seen) >= len(bad) else None, 10)
            reasons = [json.loads(p)["reason"] for _, p in refusals]
            for (_, _, why), reason in zip(bad, reasons):
                assert why in reason, (why, reason)
            # A good one after the bad ones: the refusals were processed before it (one thread).
            ha.command(f"{root(HEAT_PUMP)}/sg_ready/set", "forced on")
            sg = ha.wait(lambda: tb.api("GET", f"/api/devices/{HEAT_PUMP:08x}/commands"), 10)
            assert [(c["kind"], c["params"]["state"]) for c in sg] == [("sg_state", 4)]
            assert len(tb.api("GET", f"/api/devices/{PLUG:08x}/commands")) == 1
            assert tb.api("GET", f"/api/devices/{LOST_PLUG:08x}/commands") == []
            assert tb.api("GET", f"/api/devices/{THERMOSTAT:08x}/commands") == []
            log = tb.log.read_text()
            assert "refused Home Assistant command" in log and "offline (lost)" in log
            status = tb.api("GET", "/api/plugins")
            assert [(p["name"], p["state"], p["errors"]) for p in status] == [("home_assistant", "running", 0)]
        finally:
            ha.close()


def test_the_schema_rejects_what_home_assistant_would(tmp_path: Path) -> None:
    """The schema can fail: broken variants of good payloads are each rejected."""
    t = entities.Topics(BASE, "homeassistant", SITE, PLUG)
    caps = {"role": "smart_plug"}
    good = entities.discovery({"address": PLUG, "capabilities": caps}, t)
    sw = next(p for k, p in good.items() if "/switch/" in k)
    power = next(p for p in good.values() if p.get("device_class") == "power")
    energy = next(p for p in good.values() if p.get("device_class") == "energy")
    assert all(schema.problems(k.split("/")[1], p) == [] for k, p in good.items())
    broken = [("switch", {k: v for k, v in sw.items() if k != "command_topic"}),
              ("switch", dict(sw, command_topic="spot-ha/+/set")),
              ("switch", dict(sw, stat_topic="x")),  # a misspelt key
              ("switch", dict(sw, device={"name": "no identifiers"})),
              ("sensor", {k: v for k, v in power.items() if k != "state_topic"}),
              ("sensor", dict(power, unit_of_measurement="kWh")),
              ("sensor", dict(energy, state_class="measurement")),
              ("sensor", dict(energy, device_class="energy_meter")),
              ("select", {"command_topic": "a/b", "options": []}),
              ("climate", {"modes": ["heat", "warm"]}),
              ("climate", {"min_temp": 30, "max_temp": 5}),
              ("climate", {"precision": 0.2})]
    for component, payload in broken:
        assert schema.problems(component, payload), (component, payload)
    # A template reading a field the state topic does not carry is caught too.
    assert schema.problems("sensor", power, {"energy_wh": 1})


def test_home_assistants_own_schema_takes_the_payloads_when_it_is_at_hand() -> None:
    """Home Assistant's own MQTT schemas, where a Python with the homeassistant package is
    given (SPOT_HA_PYTHON; it cannot live in the project's environment): they take every
    payload, and they refuse a broken one (so the check can fail)."""
    import os
    import subprocess

    python = os.environ.get("SPOT_HA_PYTHON")
    if not python:
        pytest.skip("SPOT_HA_PYTHON (a Python with homeassistant==2024.3.3) is not set")
    shadows = [{"address": THERMOSTAT, "capabilities": {"role": "thermostat", "frost_c": 5.0,
                                                        "comfort_c": [19.0, 21.0]}},
               {"address": PLUG, "capabilities": {"role": "smart_plug"}},
               {"address": HEAT_PUMP, "capabilities": {"role": "heat_pump", "modes": [1, 2, 3, 4],
                                                       "max_block_s": 7200}}]
    payloads: dict[str, dict] = {}
    for d in shadows:
        payloads.update(entities.discovery(d, entities.Topics(BASE, "homeassistant", SITE, d["address"])))
    sw = next(k for k in payloads if "/switch/" in k)
    payloads[sw.replace("/relay/", "/broken/")] = dict(payloads[sw], command_topic="a/+/set")
    script = Path(entities.__file__).with_name("crosscheck.py")
    p = subprocess.run([python, str(script)], input=json.dumps(payloads), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    verdicts = json.loads(p.stdout)
    assert [t for t, why in verdicts.items() if why] == [sw.replace("/relay/", "/broken/")], verdicts
