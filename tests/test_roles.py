"""Device roles on virtual boards: each limit holds whatever the commands say.

Every test drives the firmware's own node and role (firmware/) through sealed
SPOT frames, on a virtual board whose models follow the physics
(boards/virtual/models.py); the models, not the role, say what happened.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from host_tools.sim import role_sim
from spot import builders as b, messages as m
from spot.objects import UNIT_PERCENT, UNIT_W, Analog

MIN = 60_000
H = 3_600_000


def device(tmp: Path, role: str, seed: int = 1, **params) -> role_sim._Device:
    return role_sim._Device(role, seed, tmp, dict(role_sim._PARAMS.get(role, {}), **params))


def send(dev, build) -> tuple[int, int]:
    """Deliver one command at a wake; (ACK status, reason) the role gave."""
    n = len(dev.events)
    dev.wake([dev.frame(build)])
    answers = [f for ev, f in dev.events[n:] if "status" in f]
    assert answers, f"no answer in {dev.events[n:]}"
    return answers[-1]["status"], answers[-1]["reason"]


def cmd(dev, kind, value=None, dur=0, settings=None):
    return send(dev, lambda seq, key: b.device_command(dev.address, dev.reg.cloud, seq, kind, value,
                                                       dur, settings, key=key))


def dr(dev, kind, amount=None, dur=0, **kw):
    return send(dev, lambda seq, key: b.demand(dev.address, dev.reg.cloud, seq, kind, amount,
                                               dev.board.now_ms // 1000, dur, key=key, **kw))


def run(dev, ms: int, step: int = 30_000) -> None:
    end = dev.board.now_ms + ms
    while dev.board.now_ms < end:
        dev.node.control()
        dev.board.advance(step)


def reports(dev) -> list[dict]:
    """The state and capability reports the device sent since the last call, decoded."""
    from spot import frame, secure
    from spot.filter_table import FilterTable

    out = []
    ring = dev.reg.keyring_for(dev.reg.cloud)
    table = FilterTable(dev.reg.cloud)
    table.set_service(m.SVC_DEVICE, (frame.CLASS_REPORT,))
    for raw in dev.sent:
        if raw[2] == m.SVC_DEVICE:
            out.append(m.read_payload(secure.open_frame(raw, table, ring, 0)))
    dev.sent.clear()
    return out


# thermostat ---------------------------------------------------------------------------

def test_thermostat_holds_its_setpoint_with_hysteresis_and_minimum_times(tmp_path):
    dev = device(tmp_path, "thermostat", windows_per_day=0)
    assert cmd(dev, 1, b.celsius(210), 12 * 3600) == (0, 0)
    run(dev, 6 * H)
    room = dev.board.model
    temps = []
    switches0 = dev.board.switches()["heat"]
    for _ in range(4 * 120):
        dev.node.control()
        dev.board.advance(30_000)
        temps.append(room.temp)
    assert 20.4 <= min(temps) and max(temps) <= 21.6, (min(temps), max(temps))
    # 4 h with 3-minute minimum on and off times: at most one switch per 3 min.
    assert 2 <= dev.board.switches()["heat"] - switches0 <= 4 * 60 // 3


def test_thermostat_frost_protection_beats_shut_down_and_an_open_window(tmp_path):
    dev = device(tmp_path, "thermostat", windows_per_day=0, temp_c=8.0, out_mean=0.0, out_amp=0.0)
    assert dr(dev, m.DR_SHUT_DOWN, dur=24 * 3600) == (1, 34)  # adapted: frost protection stays
    dev.board.model.open_window(24 * 3600)
    run(dev, 24 * H)
    assert dev.board.model.violations()["frost_min"] == 0
    assert dev.board.model.temp > 5.0
    assert dev.board.switches()["heat"] > 0


def test_thermostat_comfort_band_and_refusals(tmp_path):
    dev = device(tmp_path, "thermostat")
    assert dr(dev, m.DR_KEEP_BAND, dur=7200, low=b.celsius(190), high=b.celsius(210)) == (0, 0)
    assert dr(dev, m.DR_KEEP_BAND, dur=7200, low=b.celsius(20), high=b.celsius(210)) == (1, 34)
    assert dev.node.role.st["dr"][1] == 50  # held at the frost limit
    assert dr(dev, m.DR_KEEP_BAND, dur=7200, low=b.celsius(220), high=b.celsius(200)) == (2, 32)
    assert dr(dev, m.DR_REDUCE, Analog(50, UNIT_PERCENT), 3600) == (1, 32)  # 3 C at most
    assert cmd(dev, 1, b.celsius(400)) == (2, 32)  # 40 C: no
    assert cmd(dev, 4, settings={99: 1}) == (2, 41)
    assert cmd(dev, 4, settings={8: 20}) == (2, 32)  # a frost limit of 2 C is refused
    assert cmd(dev, 9) == (4, 0)


@pytest.mark.parametrize("fault", ["dead", "85", "nonsense", "stuck"])
def test_thermostat_sensor_failure_runs_a_frost_safe_duty_and_says_why(tmp_path, fault):
    dev = device(tmp_path, "thermostat", windows_per_day=0, temp_c=18.0, out_mean=-5.0, out_amp=0.0)
    run(dev, 12 * H)  # long enough to learn how hard the heater has to work
    dev.board.model.fault = fault
    dev.board.advance(30_000)
    run(dev, 2 * 24 * H if fault == "stuck" else 24 * H)
    assert dev.node.role.fault == 38
    assert dev.board.model.violations()["frost_min"] == 0
    dev.wake([])
    states = [r for r in reports(dev) if r.get(0) == 1]
    assert states and states[-1][8] == 38


# smart plug ---------------------------------------------------------------------------

def test_plug_power_on_state_is_a_setting_not_a_replayed_command(tmp_path):
    dev = device(tmp_path, "smart_plug")
    assert cmd(dev, 2, 1) == (0, 0)
    assert dev.board.relay("load").on
    dev.board.relay("load").set(False)  # the power cut
    dev.boot(power_on=True)
    dev.wake([])
    run(dev, 10_000, 1000)
    assert not dev.board.relay("load").on  # off by default after a power cut
    assert cmd(dev, 4, settings={2: 2}) == (0, 0)  # "as before the cut"
    assert cmd(dev, 2, 1) == (0, 0)
    dev.board.relay("load").set(False)
    dev.boot(power_on=True)
    run(dev, 2000, 1000)
    assert dev.board.relay("load").on


def test_plug_trips_on_over_current_within_one_sample_and_stays_open(tmp_path):
    dev = device(tmp_path, "smart_plug", load="kettle")
    assert cmd(dev, 2, 1) == (0, 0)
    run(dev, 60_000, 1000)
    dev.board.model.short = True
    run(dev, 10_000, 1000)
    assert not dev.board.relay("load").on
    assert dev.board.model.violations()["overcurrent_late"] == 0
    dev.board.model.short = False
    run(dev, 60_000, 1000)
    assert not dev.board.relay("load").on  # tripped until someone says otherwise
    assert dev.node.role.fault == 37
    assert cmd(dev, 2, 1) == (0, 0)
    assert dev.board.relay("load").on


def test_plug_meters_energy_with_its_stored_calibration(tmp_path):
    dev = device(tmp_path, "smart_plug", load="heater")
    assert cmd(dev, 2, 1) == (0, 0)
    run(dev, 2 * H, 1000)
    true_wh = dev.board.model.energy_wh
    assert true_wh > 500
    assert abs(dev.node.role.st["wh"] - true_wh) <= 0.02 * true_wh + 1
    assert cmd(dev, 4, settings={5: 110000}) == (0, 0)  # a chip reading 10 % low
    w0 = dev.node.role.st["wh"]
    run(dev, H, 1000)
    gained = dev.node.role.st["wh"] - w0
    assert abs(gained - 1.1 * (dev.board.model.energy_wh - true_wh)) <= 0.03 * gained + 1


def test_plug_sheds_all_or_nothing_and_bounds_the_shed(tmp_path):
    dev = device(tmp_path, "smart_plug")
    assert cmd(dev, 2, 1) == (0, 0)
    assert dr(dev, m.DR_REDUCE, Analog(20, UNIT_PERCENT), 600) == (1, 39)
    assert dr(dev, m.DR_REDUCE, Analog(100, UNIT_PERCENT), 4 * 3600) == (1, 35)
    run(dev, 5_000, 1000)
    assert not dev.board.relay("load").on
    run(dev, H + MIN, 1000)  # the longest shed is an hour by default
    assert dev.board.relay("load").on
    assert dr(dev, m.DR_LIMIT, Analog(5000, UNIT_W), 600) == (0, 0)
    run(dev, 5_000, 1000)
    assert dev.board.relay("load").on  # a fridge draws less than 5 kW


def test_plug_meter_failure_opens_the_relay_and_says_why(tmp_path):
    dev = device(tmp_path, "smart_plug")
    assert cmd(dev, 2, 1) == (0, 0)
    dev.board.model.fault = "dead"
    run(dev, 5_000, 1000)
    assert not dev.board.relay("load").on
    assert dev.node.role.fault == 38
    dev.board.model.fault = None
    run(dev, 5_000, 1000)
    assert dev.board.relay("load").on


# heat pump ----------------------------------------------------------------------------

def test_heat_pump_never_blocks_a_compressor_before_its_minimum_run(tmp_path):
    dev = device(tmp_path, "heat_pump", store_c=39.5)
    hp = dev.board.model
    run(dev, 10 * MIN)
    while not hp.running:
        run(dev, 30_000)
    assert cmd(dev, 3, 1, 3600) == (1, 33)  # block now, it says: adapted, minimum run first
    assert hp.running and dev.node.role.sg == 2  # not yet: it has only just started
    run(dev, 15 * MIN)
    assert dev.node.role.sg == 1 and not hp.running
    assert hp.violations()["min_run"] == 0


def test_heat_pump_blocks_two_hours_at_most_and_leaves_the_power_floor(tmp_path):
    dev = device(tmp_path, "heat_pump", store_c=50.0)
    assert cmd(dev, 3, 1, 5 * 3600) == (1, 35)  # adapted: 2 h at most
    run(dev, 3 * H)
    assert dev.board.model.violations()["blocked_too_long"] == 0
    assert dev.node.role.sg != 1 or dev.node.role.st["since"] is not None
    assert dr(dev, m.DR_LIMIT, Analog(3000, UNIT_W), 3600) == (1, 36)  # raised to 4.2 kW
    assert dr(dev, m.DR_LIMIT, Analog(5000, UNIT_W), 3600) == (0, 0)
    assert cmd(dev, 3, 9) == (2, 32)


def test_heat_pump_daily_block_budget_holds_under_repeated_commands(tmp_path):
    dev = device(tmp_path, "heat_pump", store_c=55.0, max_block_day_s=3 * 3600)
    assert cmd(dev, 4, settings={12: 3 * 3600}) == (0, 0)
    for _ in range(12):
        cmd(dev, 3, 1, 7200)
        run(dev, H)
    v = dev.board.model.violations()
    assert v["blocked_too_long"] == 0 and v["min_run"] == 0 and v["min_off"] == 0


def test_heat_pump_reads_modbus_and_falls_back_when_the_bus_fails(tmp_path):
    dev = device(tmp_path, "heat_pump")
    assert cmd(dev, 4, settings={13: 1}) == (0, 0)
    run(dev, MIN)
    assert dev.node.role.fault == 0 and dev.node.role.store is not None
    dev.board.model.uart_fault = "silent"
    run(dev, MIN)
    assert dev.node.role.fault == 38 and dev.node.role.store is not None  # the sensor still reads


# what every role does -----------------------------------------------------------------

@pytest.mark.parametrize("role", ["thermostat", "smart_plug", "heat_pump"])
def test_capabilities_on_first_contact_state_after_every_command(tmp_path, role):
    dev = device(tmp_path, role)
    dev.node.reset_cause = 2
    dev.wake([])
    first = reports(dev)
    kinds = [r[0] for r in first]
    assert kinds.count(2) == 1 and kinds.count(1) == 1
    caps = [r for r in first if r[0] == 2][0]
    assert caps[1] == {"thermostat": 1, "smart_plug": 2, "heat_pump": 3}[role]
    assert caps[2] in (1, 4) and caps[3] > 0
    assert [r for r in first if r[0] == 1][0][9] == 2  # the reset cause, once
    dev.wake([])
    assert reports(dev) == []  # nothing changed, the period is not up
    cmd(dev, 4, settings={1: 300})
    again = reports(dev)
    assert [r[0] for r in again] == [1] and 9 not in again[0]


def test_role_week_is_judged_by_the_models_and_the_judge_can_fail(monkeypatch):
    good = role_sim.simulate("heat_pump", 3, days=2)
    assert good.violation_count == 0 and good.commands > 5
    import role

    monkeypatch.setattr(role.Guard, "may", lambda self, on: True)  # a role that ignores its limits
    bad = role_sim.simulate("heat_pump", 3, days=2)
    assert bad.violation_count > 0


# found in review: each once a defect ---------------------------------------------------

def test_a_week_in_one_state_does_not_freeze_the_minimum_times(tmp_path):
    """The board's ticks wrap every 12.4 days: a state held 6.5 days must not look new."""
    dev = device(tmp_path, "thermostat", windows_per_day=0, out_mean=24.0, out_amp=0.0)
    run(dev, int(6.5 * 24 * H), 300_000)  # a warm week: the heater never needed
    dev.board.model.out_mean = -10.0
    run(dev, 24 * H)
    assert dev.board.model.violations()["frost_min"] == 0
    assert dev.board.switches()["heat"] > 0


def test_a_room_that_changed_during_a_sensor_outage_is_taken_as_it_is(tmp_path):
    dev = device(tmp_path, "thermostat", windows_per_day=0)
    run(dev, 6 * H)
    dev.board.model.fault = "dead"
    dev.board.model.open_window(3600)
    run(dev, 8 * H)
    dev.board.model.fault = None
    run(dev, 30 * MIN)
    assert dev.node.role.fault == 0
    assert abs(dev.node.role.temp - dev.board.model.temp * 10) < 10


def test_heat_pump_blocks_survive_a_power_cut_in_the_bookkeeping(tmp_path):
    dev = device(tmp_path, "heat_pump", store_c=55.0)
    assert cmd(dev, 4, settings={12: 3 * 3600}) == (0, 0)
    for _ in range(3):  # 100-minute blocks, each ended by a power cut
        cmd(dev, 3, 1, 6000)
        run(dev, 100 * MIN)
        dev.wake([])
        for r in ("sg1", "sg2"):
            dev.board.relay(r).set(False)
        dev.boot(power_on=True)
        run(dev, 20 * MIN)
    v = dev.board.model.violations()
    assert v["blocked_too_long"] == 0
    # Booked, not forgotten: the budget (less its margin) was spent, and no more.
    assert 3 * H - 5 * MIN <= dev.node.role.st["blk"][1] <= 3 * H


def test_heat_pump_block_is_timed_by_the_board_not_a_clock_set_back(tmp_path):
    dev = device(tmp_path, "heat_pump", store_c=55.0)
    assert cmd(dev, 3, 1, 7200)[0] in (0, 1)
    run(dev, H)
    dev.wake([dev.frame(lambda seq, key: b.time_sync(dev.address, dev.reg.cloud, seq,
                                                     dev.board.now_ms // 1000 - 7200, 0,
                                                     key=key))])
    assert dev.node.now_ms() < dev.board.now_ms - H  # the device's clock went back 2 h
    run(dev, 3 * H)
    assert dev.board.model.violations()["blocked_too_long"] == 0


def test_plug_trip_outlives_a_power_cut(tmp_path):
    dev = device(tmp_path, "smart_plug", load="kettle")
    assert cmd(dev, 4, settings={2: 2}) == (0, 0)  # power-on: as before
    assert cmd(dev, 2, 1) == (0, 0)
    dev.board.model.short = True
    run(dev, 5_000, 1000)
    assert not dev.board.relay("load").on
    switches = dev.board.switches()["load"]
    dev.boot(power_on=True)
    run(dev, 10_000, 1000)
    assert not dev.board.relay("load").on and dev.board.switches()["load"] == switches


def test_acks_say_what_held_a_command_back(tmp_path):
    plug = device(tmp_path / "p", "smart_plug")
    assert cmd(plug, 4, settings={10: 600}) == (0, 0)  # 10 min minimum off
    assert cmd(plug, 2, 1) == (1, 33)  # a boot counts as just switched off
    run(plug, 11 * MIN, 1000)
    assert plug.board.relay("load").on  # and it closes when it may
    assert cmd(plug, 2, 0) == (0, 0)
    assert cmd(plug, 2, 1) == (1, 33)  # too soon after it opened
    hp = device(tmp_path / "h", "heat_pump", store_c=32.0)
    run(hp, 2 * MIN)
    assert dr(hp, m.DR_SHUT_DOWN, dur=3600) == (1, 42)  # a cold store is not blocked
    th = device(tmp_path / "t", "thermostat")
    n = len(th.events)
    th.wake([th.frame(lambda seq, key: b.weekly_program(  # 215 C: a typo, refused
        th.address, th.reg.cloud, seq, role_sim.T0 // 1000, [0, 3600], [2150, 200], key=key,
        unit=4, scale=-1))])
    assert any(ev == "refused" and "5..30 C" in f["what"] for ev, f in th.events[n:])
    assert th.node.schedule.program == []


@pytest.mark.parametrize("role", ["thermostat", "smart_plug", "heat_pump"])
def test_a_day_of_quarter_hour_prices_reaches_every_role(tmp_path, role):
    # SPEC 4.1 (v1.1): a 96-step forecast fits the default limits every role decodes with.
    from vector_cases import PRICES96, T0 as V0

    dev = device(tmp_path, role)
    group, cloud = dev.reg.site_group("sim"), dev.reg.cloud
    dev.wake([dev.frame(lambda seq, key: b.price_forecast(
        group, cloud, seq, V0, 900, PRICES96, 0, key=dev.reg.group_key("sim")))])
    assert sum(dev.node.drops) == 0 and dev.node.errors == 0, dev.node.drops
    applied = [f for ev, f in dev.events if ev == "applied" and f.get("svc") == m.SVC_PRICE]
    assert applied and applied[-1]["status"] == m.ACK_APPLIED, dev.events
    # and one step more than the default item budget carries is refused, counted
    from spot import cbor, errors, frame, secure
    from spot.objects import Schedule

    too_long = cbor.encode({0: 1, 1: Schedule.uniform(V0, 900, [90] * 117, 9), 2: 978})
    dev.wake([dev.frame(lambda seq, key: secure.seal(
        dev.reg.group_key("sim"), m.SVC_PRICE, 1, frame.CLASS_INFO, group, cloud, seq, too_long))])
    assert dev.node.drops[errors.OVERSIZED] == 1


@pytest.mark.parametrize("role", ["thermostat", "smart_plug", "heat_pump"])
def test_wrong_types_and_unknown_kinds_get_the_spec_answers(tmp_path, role):
    # SPEC 6 (v1.1): a known field of the wrong type refuses the command with
    # reason 9 (bad value), a boolean being no integer on any interpreter; an
    # unknown kind is answered unsupported (4).
    from spot import frame

    dev = device(tmp_path, role)
    cloud = dev.reg.cloud

    def raw(service, body):
        return send(dev, lambda seq, key: b.build(service, frame.CLASS_COMMAND, dev.address, cloud,
                                                  seq, body, frame.FLAG_ACK_WANTED, key=key))

    assert raw(m.SVC_DR, {0: m.DR_REDUCE, 1: Analog(20, UNIT_PERCENT), 3: True}) == (2, 9)
    assert raw(m.SVC_DR, {0: m.DR_REDUCE, 1: 20, 3: 600}) == (2, 9)
    assert raw(m.SVC_DEVICE, {0: 4, 3: {1: True}}) == (2, 9)
    assert raw(m.SVC_DEVICE, {0: 4, 3: [1]}) == (2, 9)
    assert raw(m.SVC_DR, {0: 99})[0] == m.ACK_UNSUPPORTED
    assert raw(m.SVC_DEVICE, {0: 99})[0] == m.ACK_UNSUPPORTED
    assert raw(m.SVC_DR, {1: Analog(20, UNIT_PERCENT)})[0] == m.ACK_UNSUPPORTED  # no kind
    assert raw(m.SVC_DR, {0: True, 1: Analog(20, UNIT_PERCENT)}) == (2, 9)  # true is no kind
    # SPEC 5.1: a reserved unit (11..255) decodes, but is no known quantity: refused.
    for unit in (11, 255):
        status, reason = raw(m.SVC_DR, {0: m.DR_REDUCE, 1: Analog(20, unit)})
        assert status == m.ACK_REFUSED and reason in (9, 32), (unit, status, reason)
