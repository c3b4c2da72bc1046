"""The energy manager plugin in the real cloud, with the real firmware: a site request from the
API split over a thermostat, a smart plug and a heat pump, the devices carrying it out at
their next wake, a device's adapted answer re-planned, the request resumed after a restart
(nothing sent twice), and a clear 409 for a site without a manager."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from host_tools.cloud.testbed import ApiError, CloudTestbed, wait_for, wake_devices

pytestmark = pytest.mark.timeout(120)
SITE, OTHER = "home", "flat"
THERMO, PLUG, HP, LONE = 0x3101, 0x3102, 0x3103, 0x3201
ROLES = {THERMO: "thermostat", PLUG: "smart_plug", HP: "heat_pump"}
FINAL = ("applied", "adapted", "refused", "expired", "unsupported")
EM = "plugin:energy_manager"


def wake(tb: CloudTestbed, devs=tuple(ROLES)) -> None:  # type: ignore[no-untyped-def]
    # The heat pump's store at 38 C: warm enough to be asked to block (its record's low limit
    # is 30 C), cool enough that its compressor is running (its own band starts at 40 C), so
    # its minimum run time holds a block back and it answers adapted.
    board = {HP: {"board": {"chip": "esp32", "clock": "wall", "seed": 3, "store_c": 38.0}}}
    wake_devices(tb, tb.fs, {d: ROLES[d] for d in devs}, extra=board)


def em_commands(tb: CloudTestbed) -> list[dict]:
    return [c for c in tb.api("GET", "/api/commands?limit=1000") if c["requested_by"] == EM]


def test_a_site_request_is_split_carried_out_and_replanned(tmp_path: Path) -> None:
    conf = tmp_path / "plugins.toml"
    conf.write_text(f'[[plugin]]\nname = "energy_manager"\nsites = ["{SITE}"]\n[plugin.options]\ntick_s = 1\n')
    with CloudTestbed(tmp_path) as tb:
        tb.fs = {dev: tb.provision(SITE, dev) for dev in ROLES}
        tb.provision(OTHER, LONE)
        tb.start(plugins=conf)
        assert [p["state"] for p in tb.api("GET", "/api/plugins")] == ["running"]
        wake(tb)  # first wakes: capability records and states
        wait_for(lambda: sum(1 for d in tb.api("GET", f"/api/devices?site={SITE}") if d["capabilities"]) == 3,
                 what="capability records")
        with pytest.raises(ApiError) as e:  # a site without a manager: 409, saying why
            tb.api("POST", f"/api/sites/{OTHER}/requests", {"kind": "reduce", "watts": 1000, "duration_s": 3600})
        assert e.value.status == 409 and "no energy manager" in e.value.detail
        with pytest.raises(ApiError) as e:
            tb.api("GET", f"/api/sites/{OTHER}/requests")
        assert e.value.status == 409
        with pytest.raises(ApiError) as e:  # a request that cannot be: 422, before any manager sees it
            tb.api("POST", f"/api/sites/{SITE}/requests", {"kind": "reduce", "watts": 1000})
        assert e.value.status == 422

        rec = tb.api("POST", f"/api/sites/{SITE}/requests", {"kind": "reduce", "watts": 2500, "duration_s": 7200})
        assert rec["id"] and rec["status"] == "active" and rec["by"].startswith("test-")
        asked = {int(o["device"], 16): o for o in rec["orders"]}
        # The heat pump first (its store), the room for the rest; not the plug: its relay is
        # off (each run here is a power-on) and a plug that draws nothing has nothing to shed.
        assert set(asked) == {HP, THERMO}, rec["orders"]
        assert asked[HP]["command"] == {"kind": "reduce", "percent": 100, "duration_s": asked[HP]["command"]["duration_s"]}
        assert asked[HP]["command"]["duration_s"] <= 7200 - 180  # under its longest block, by its record
        assert asked[THERMO]["command"]["kind"] == "reduce" and 5 <= asked[THERMO]["command"]["percent"] <= 30
        cmds = {c["id"]: c for c in em_commands(tb)}
        assert {o["id"] for o in rec["orders"]} == set(cmds) and len(cmds) == 2

        wake(tb)  # the devices apply them at their next wake
        final = {dev: tb.wait_command(o["id"], FINAL) for dev, o in asked.items()}
        assert final[THERMO]["state"] == "applied", final
        assert (final[HP]["state"], final[HP]["reason"]) == ("adapted", 33), final[HP]  # its minimum run
        # The record shows every answer, and the re-plan the adapted one caused.
        got = wait_for(lambda: (r := tb.api("GET", f"/api/sites/{SITE}/requests")[0]) and r["replans"] and r,
                       what="the re-plan after the heat pump's answer")
        states = {int(o["device"], 16): (o["state"], o["reason"] or 0) for o in got["orders"] if o["id"] in cmds}
        assert states == {THERMO: ("applied", 0), HP: ("adapted", 33)}, states
        assert got["replans"][0]["device"] == f"{HP:08x}" and got["replans"][0]["answer"] == "adapted"
        assert got["replans"][0]["reason"] == 33
        th = tb.api("GET", f"/api/devices/{THERMO:08x}")["state"]
        assert th["dr_kind"] == 1 and th["target_c"] < 20.0, th  # the setback, below the user's 20 C

        # A restart resumes the open request: listed, still active, and nothing asked twice.
        n = len(em_commands(tb))
        tb.stop()
        tb.start(plugins=conf)
        again = tb.api("GET", f"/api/sites/{SITE}/requests")
        assert [r["id"] for r in again] == [rec["id"]] and again[0]["status"] == "active"
        time.sleep(2.5)  # two ticks
        assert len(em_commands(tb)) == n, [c for c in em_commands(tb)][n:]
        # Withdrawn: every device it shed gets its restore.
        out = tb.api("POST", f"/api/sites/{SITE}/requests/{rec['id']}/cancel")
        assert out["status"] == "cancelled"
        restores = [o for o in out["orders"] if o["command"] == {"kind": "restore"}]
        assert {int(o["device"], 16) for o in restores} == {HP, THERMO}, out["orders"]
