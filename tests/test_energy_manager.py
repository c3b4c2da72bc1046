"""The site energy manager (host_tools/cloud/energy_manager.py) and its simulated days."""
from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from host_tools.cloud import command_kinds as ck
from host_tools.cloud.energy_manager import EnergyManager, NaiveSplit, PriceForecast, SiteRequest

T = 1_795_651_200  # epoch s

TH_CAPS = {"role": "thermostat", "nominal_w": 2000, "shed_w": 2000, "max_shed_s": 7200,
           "min_on_s": 180, "min_off_s": 180, "comfort_c": [19.0, 21.0], "frost_c": 5.0}
PLUG_CAPS = {"role": "smart_plug", "nominal_w": 3680, "shed_w": 1500, "max_shed_s": 3600,
             "min_on_s": 0, "min_off_s": 0}
HP_CAPS = {"role": "heat_pump", "nominal_w": 2500, "shed_w": 2500, "max_shed_s": 7200,
           "min_on_s": 600, "min_off_s": 600, "max_block_s": 7200, "max_block_day_s": 21600,
           "power_floor_w": 4200, "store_c": [44.0, 30.0, 58.0]}


def site(plug_on: bool = True, store_c: float = 44.0, target_c: float = 21.0,
         **kw) -> EnergyManager:
    m = EnergyManager(**kw)
    m.add_device("th", TH_CAPS, {"role": "thermostat", "outputs": 1, "temp_c": 20.9,
                                 "target_c": target_c, "dr_kind": 0, "fault": 0})
    m.add_device("plug", PLUG_CAPS, {"role": "smart_plug", "outputs": int(plug_on),
                                     "power_w": 1500 if plug_on else 0, "fault": 0, "dr_kind": 0})
    m.add_device("hp", HP_CAPS, {"role": "heat_pump", "sg_state": 2, "temp_c": store_c,
                                 "blocked_today_s": 0, "fault": 0, "dr_kind": 0})
    return m


def by_dev(orders):
    return {o.device: o.command for o in orders}


def test_orders_are_valid_cloud_commands():
    m = site()
    orders = m.add_request(SiteRequest("r", "reduce", 5000, T, T + 7200), T)
    assert {o.device for o in orders} == {"th", "plug", "hp"}
    for o in orders:  # every order passes the cloud's own model and role check
        cmd = TypeAdapter(ck.Command).validate_python(o.command)
        ck.check(cmd, m.devices[o.device].role, m.devices[o.device].caps)


def test_sheds_what_costs_no_comfort_first_and_the_room_only_when_needed():
    m = site()
    o = by_dev(m.add_request(SiteRequest("r", "reduce", 900, T, T + 7200), T))
    # A small reduction: the heat pump (on its store, 2 h less a margin) and the plug
    # (its record's hour); the room is left alone.
    assert set(o) == {"hp", "plug"}
    assert o["hp"] == {"kind": "reduce", "percent": 100, "duration_s": 7200 - 180}
    assert o["plug"] == {"kind": "reduce", "percent": 100, "duration_s": 3600}
    # A cap the heat pump's block covers alone: nothing else is asked.
    m = site()
    o = by_dev(m.add_request(SiteRequest("c", "cap", 5200, T, T + 3600), T))
    assert list(o) == ["hp"]


def test_room_setback_as_deep_as_the_target_needs_within_the_device_limit():
    m = site()  # 2.2 kW for 2 h: the half-width of the comfort band is not enough
    o = by_dev(m.add_request(SiteRequest("r", "reduce", 2200, T, T + 7200), T))
    th = o["th"]
    assert th["kind"] == "reduce" and 10 < th["percent"] <= 30  # deeper than 1 C, 3 C at most
    m = site()  # 1.6 kW for 1 h: one degree (the half-width) will do
    o = by_dev(m.add_request(SiteRequest("r", "reduce", 1600, T, T + 3600), T))
    assert o["th"]["percent"] == 10
    # A room that reached its setback while the request goes on: one degree deeper.
    m = site()
    o = by_dev(m.add_request(SiteRequest("r", "reduce", 1600, T, T + 3600), T))
    st = {"role": "thermostat", "outputs": 1, "temp_c": 20.0, "target_c": 20.0, "dr_kind": 1,
          "fault": 0}
    again = by_dev(m.on_state("th", st, T + 1200))
    assert again["th"]["percent"] == 20 and again["th"]["duration_s"] == 3600 - 1200


def test_warms_the_room_before_a_request():
    m = site(plug_on=False, store_c=50.0)
    req = SiteRequest("r", "reduce", 1500, T + 3600, T + 7200)
    o = by_dev(m.add_request(req, T))
    assert o["th"] == {"kind": "comfort_band", "low_c": 22.0, "high_c": 22.5, "duration_s": 3600}
    assert m.tick(T + 60) == []  # asked once


def test_never_asks_a_plug_whose_relay_is_off():
    m = site(plug_on=False)
    o = by_dev(m.add_request(SiteRequest("r", "reduce", 6000, T, T + 3600), T))
    assert "plug" not in o and set(o) == {"th", "hp"}


def test_thermostat_never_set_back_beyond_its_own_limit_or_near_frost():
    m = site(target_c=21.0)  # all of it for 2 h: the room would need 3 C to coast through
    o = by_dev(m.add_request(SiteRequest("r", "reduce", 6000, T, T + 7200), T))
    assert o["th"]["kind"] == "reduce" and o["th"]["percent"] == 30  # the firmware's own 3 C
    m = site(target_c=7.0)  # 2 C above frost: 1.5 C at most
    m.devices["th"].state["temp_c"] = 7.0
    assert by_dev(m.add_request(SiteRequest("r", "reduce", 6000, T, T + 3600), T))["th"][
        "percent"] == 15
    m2 = site(target_c=5.0)  # at frost level: nothing to set back
    assert "th" not in by_dev(m2.add_request(SiteRequest("r", "reduce", 6000, T, T + 3600), T))


def test_cold_store_or_spent_budget_is_not_blocked():
    m = site(store_c=33.0)
    assert "hp" not in by_dev(m.add_request(SiteRequest("r", "reduce", 6000, T, T + 3600), T))
    m = site()
    m.devices["hp"].state["blocked_today_s"] = 21600 - 100
    assert "hp" not in by_dev(m.add_request(SiteRequest("r", "reduce", 6000, T, T + 3600), T))


def test_rotation_covers_a_request_longer_than_any_shed():
    m = site()
    req = SiteRequest("r", "reduce", 800, T, T + 5 * 3600)
    asked = {d: [] for d in m.devices}
    now = T
    for o in m.add_request(req, now):
        asked[o.device].append((now, o.command))
    while now < req.end_s:
        now += 60
        for o in m.tick(now):
            asked[o.device].append((now, o.command))
        # the need is covered all the time, with a successor before each shed ends
        if now < req.end_s - 60:
            assert m.covered_w(now) > 0, now
    sheds = [(d, t) for d, cmds in asked.items() for t, c in cmds if c["kind"] != "restore"]
    assert len(sheds) >= 3 and len({d for d, _ in sheds}) >= 2
    for d, cmds in asked.items():  # no device asked beyond its own limit
        for t, c in cmds:
            if c["kind"] == "reduce":
                assert c["duration_s"] <= m.devices[d].caps["max_shed_s"]


def test_rests_at_least_min_off_after_a_shed():
    m = site()
    m.devices["hp"].caps["min_off_s"] = 1500
    m.add_request(SiteRequest("r", "reduce", 800, T, T + 10 * 3600), T)
    hp = m.devices["hp"]
    end = hp.shed.until_s
    m.tick(end)
    assert hp.shed is None and hp.rest_until_s >= end + 1500
    for t in range(end, end + 1500, 60):
        assert all(o.device != "hp" for o in m.tick(t))


def test_replans_when_refused_or_adapted():
    m = site()
    o = by_dev(m.add_request(SiteRequest("r", "reduce", 900, T, T + 7200), T))
    assert set(o) == {"hp", "plug"}
    again = by_dev(m.on_ack("hp", o["hp"], "refused", 42, T + 60))
    assert "hp" not in again and again  # someone else asked instead
    assert m.devices["hp"].shed is None
    assert all(x.device != "hp" for x in m.tick(T + 120))  # and the heat pump left alone
    # adapted for the store: counted out as well
    m = site()
    o = by_dev(m.add_request(SiteRequest("r", "reduce", 900, T, T + 7200), T))
    assert by_dev(m.on_ack("hp", o["hp"], "adapted", 42, T + 60))
    # adapted for minimum times: it comes a little later, nothing more to ask
    m = site()
    o = by_dev(m.add_request(SiteRequest("r", "reduce", 900, T, T + 7200), T))
    assert m.on_ack("hp", o["hp"], "adapted", 33, T + 60) == []


def test_replans_when_a_plug_ends_its_shed_itself():
    m = site(store_c=33.0, target_c=5.0)  # neither the heat pump nor the thermostat can help
    o = by_dev(m.add_request(SiteRequest("r", "reduce", 900, T, T + 7200), T))
    assert "plug" in o
    st = {"role": "smart_plug", "outputs": 1, "power_w": 1500, "fault": 0, "dr_kind": 0}
    m.on_state("plug", st, T + 1800)
    assert m.devices["plug"].shed is None


def test_cap_sheds_the_peak_over_the_cap_and_releases_early_on_cancel():
    m = site()
    orders = m.add_request(SiteRequest("c", "cap", 4200, T, T + 3600), T)
    assert orders and m.need_w(T) == pytest.approx(2000 + 1500 + 2500 - 4200)
    out = m.cancel("c", T + 1800)
    assert {o.device for o in out} == {o.device for o in orders}
    assert all(o.command == {"kind": "restore"} for o in out)
    # a request that simply runs out needs no restore: each shed had its own duration
    m = site()
    m.add_request(SiteRequest("c", "cap", 4200, T, T + 3600), T)
    assert m.tick(T + 3600) == [] and all(v.shed is None for v in m.devices.values())


def test_precharges_the_store_before_a_request_at_the_cheapest_hour():
    m = site(store_c=42.0)
    prices = PriceForecast(T, 3600, (50.0, 10.0, 90.0, 90.0))
    req = SiteRequest("r", "reduce", 1000, T + 3 * 3600, T + 4 * 3600, prices)
    assert m.add_request(req, T + 3600 - 900) == []  # the cheap hour is still to come
    o = by_dev(m.tick(T + 3600))
    assert o["hp"]["kind"] == "sg_state" and o["hp"]["state"] == 3
    assert o["hp"]["duration_s"] <= 2 * 3600 - 900  # over before the request starts


def test_naive_split_sends_everyone_the_same_percentage():
    n = NaiveSplit()
    for d, caps in (("th", TH_CAPS), ("plug", PLUG_CAPS), ("hp", HP_CAPS)):
        n.add_device(d, caps)
    o = n.add_request(SiteRequest("r", "reduce", 1500, T, T + 3600), T)
    pcts = {x.command["percent"] for x in o}
    assert len(o) == 3 and len(pcts) == 1


def test_request_types_refuse_nonsense():
    with pytest.raises(ValueError):
        SiteRequest("r", "reduce", 100, T, T)
    with pytest.raises(ValueError):
        SiteRequest("r", "shed", 100, T, T + 60)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def quick_day():
    from host_tools.sim import emd_week

    return emd_week.compare(seed=1, days=1, parallel=True)


def test_quick_day_manager_beats_the_naive_split_without_breaking_limits(quick_day):
    # Measured on this day (seed 1): manager 93.2 %, naive split 82.4 %; cold-room
    # minutes 120 vs 131 (baseline 54). Deterministic; the margins below
    # hold with room to spare; the week's figures are the bench's.
    sm, sn = quick_day["score_manager"], quick_day["score_naive"]
    assert sm.asked_wmin > 0 and sm.intervals > 0
    assert sm.met_pct >= 90.0 and sm.met_pct >= sn.met_pct + 5.0
    assert quick_day["manager"].comfort_minutes_below < quick_day["naive"].comfort_minutes_below
    assert sum(quick_day["manager"].violations.values()) == 0
    assert quick_day["manager"].refused_by_cloud == 0  # every order a valid command


def test_doing_nothing_scores_below_the_floor(quick_day):
    """The score can fail: the baseline itself (no planner) delivers nothing."""
    from host_tools.sim import emd_week

    s = emd_week.score(quick_day["baseline"], quick_day["baseline"], 1, 1)
    assert s.met_pct < 90.0 and s.delivered_wmin == 0


def test_where_devices_may_shed_only_briefly_the_naive_split_falls_apart():
    """The multi-site week's office (four panel heaters on plugs that may each be off 30 min
    at most, a thermostat): one command per device for the whole request has every plug
    come back at the same moment with the request still running; the manager staggers
    and re-asks them. Measured on this day (seed 1): manager 100.0 %, naive 66.1 %."""
    from host_tools.sim import emd_week

    c = emd_week.compare(seed=1, days=1, sites=(emd_week.OFFICE,))
    sm, sn = c["score_manager"], c["score_naive"]
    assert sm.asked_wmin > 0
    assert sm.met_pct >= 95.0 and sn.met_pct <= 80.0
    assert sum(c["manager"].violations.values()) == 0 and c["manager"].refused_by_cloud == 0
    assert c["manager"].acks.get("adapted", 0) == 0 < c["naive"].acks.get("adapted", 0)  # the plugs' max shed
