"""The virtual board's peripheral models: physics directions and sizes, sensors, faults,
the judges' exact counts, SG Ready contacts, determinism, and the board around them."""
import math

import board
import models
from models import KI_TRUE, KP_TRUE, KU_TRUE, HeatPump, PlugLoad, Room

H = 3600000  # ms
MIN = 60000


def _calm_room(**kw):
    """No daily swing, no weather noise, no windows, no gains: the textbook 1R1C."""
    return Room(out_amp=0.0, out_noise=0.0, windows_per_day=0, gains_w=0.0, **kw)


def _run(m, ms, step_ms=10000):
    while ms > 0:
        h = min(ms, step_ms)
        m.step_ms(h)
        ms -= h


def _f32(x):
    """x rounded to a 32-bit float, as rp2's single-precision MicroPython holds it."""
    from array import array

    return array("f", (x,))[0]


def test_energy_near_2000_wh_keeps_increments_a_32bit_float_would_drop():
    # 0.2 W for 1 s is 5.6e-5 Wh: below half a float32 step at 2,000 Wh (1.2e-4), so a
    # float accumulator on rp2 drops every one of these (issue 15). Integers keep them.
    inc = 0.2 * 1000 / 3600000.0
    acc = _f32(2000.0)
    for _ in range(100):
        acc = _f32(acc + inc)
    assert acc == 2000.0  # the defect, as single precision has it
    for make in (lambda: Room(heater_w=0.2, **_CALM), lambda: PlugLoad("heater", power_w=0.2)):
        m = make()
        m.energy.wh = 2000
        for _ in range(18000):  # 5 h of 1 s steps: 1 Wh
            m.energy.add(0.2, 1000)
        assert m.energy.wh == 2001 and m.energy.mj == 0, (m.energy.wh, m.energy.mj)
        assert _f32(m.energy_wh) == 2001.0
    r = Room(heater_w=0.2, temp_c=3.0, out_mean=3.0, **_CALM)
    r.energy.wh = 2000
    r.heat = True
    _run(r, 5 * H, 1000)  # the room's own steps
    assert r.energy.wh == 2001 and r.energy.mj == 0


_CALM = {"out_amp": 0.0, "out_noise": 0.0, "windows_per_day": 0, "gains_w": 0.0}


# --- the room -------------------------------------------------------------------------

def test_room_cools_toward_outdoor_with_its_time_constant():
    r = _calm_room(temp_c=20.0, out_mean=3.0)
    tau_s = 6e6 / 120  # C / UA: about 14 h
    _run(r, H)
    assert 18.5 < r.temp < 19.0  # 17 K * (1 - e^(-3600/50000)): 1.18 K in the first hour
    _run(r, int(tau_s * 1000) - H, MIN)
    assert abs(r.temp - (3.0 + 17.0 / math.e)) < 0.02, r.temp  # one time constant: 1/e left
    _run(r, 10 * int(tau_s * 1000), 10 * MIN)
    assert abs(r.temp - 3.0) < 0.01


def test_room_heats_with_the_heater_on():
    r = _calm_room(temp_c=3.0, out_mean=3.0)
    r.heat = True
    _run(r, H)
    rise = (2000.0 / 120) * (1 - math.exp(-3600 / 50000.0))  # 1.16 K
    assert abs(r.temp - 3.0 - rise) < 0.01, r.temp
    assert abs(r.energy_wh - 2000.0) < 1e-6
    _run(r, 20 * 50000 * 1000, 10 * MIN)
    assert abs(r.temp - (3.0 + 2000.0 / 120)) < 0.01  # the steady state
    r.heat = False
    t = r.temp
    _run(r, H)
    assert r.temp < t - 1.0  # off again: it cools


def test_room_gains_and_daily_outdoor_cycle():
    r = Room(out_noise=0.0, windows_per_day=0)
    _run(r, 5 * H)
    assert abs(r.t_out - (-1.0)) < 0.05, r.t_out  # coldest at 05:00: mean 3 - amplitude 4
    _run(r, 12 * H)
    assert abs(r.t_out - 7.0) < 0.05, r.t_out  # warmest at 17:00
    warm = Room(out_amp=0.0, out_noise=0.0, windows_per_day=0, gains_w=120.0, temp_c=3.0)
    _run(warm, 20 * 50000 * 1000, 10 * MIN)
    assert abs(warm.temp - 4.0) < 0.01  # 120 W of gains over 120 W/K: one kelvin


def test_open_window_quadruples_the_losses_then_closes():
    shut = _calm_room(temp_c=20.0, out_mean=3.0)
    aired = _calm_room(temp_c=20.0, out_mean=3.0)
    aired.open_window(1800)
    assert aired.window
    _run(shut, 30 * MIN, 1000)
    _run(aired, 30 * MIN, 1000)
    ratio = (20.0 - aired.temp) / (20.0 - shut.temp)
    assert 3.7 < ratio < 3.9, ratio  # 4x UA: a little under 4x the drop (3.79)
    _run(aired, 1000, 1000)
    assert not aired.window
    windy = Room(seed=3, windows_per_day=48)
    opened = 0
    was = False
    for _ in range(24 * 60):
        windy.step_ms(MIN)
        if windy.window and not was:
            opened += 1
        was = windy.window
    assert 20 < opened < 80, opened


def test_room_sensor_lags_and_quantises():
    r = _calm_room(temp_c=20.0, out_mean=20.0, noise_c=0.0)
    r.temp = 30.0  # a step in the true temperature: the sensor follows with a 60 s lag
    _run(r, MIN, 1000)
    v = r.temperature()
    assert v * 16 == int(v * 16)  # 1/16 C steps
    assert abs(v - (20 + 10 * (1 - math.exp(-1)))) < 0.1, v  # 63 % of the way after 60 s
    assert v < r.temp - 3
    _run(r, 10 * MIN, 1000)
    assert abs(r.temperature() - r.temp) < 0.07
    noisy = _calm_room(temp_c=20.0, out_mean=20.0)
    seen = set()
    for _ in range(200):
        noisy.step_ms(10000)
        v = noisy.temperature()
        assert abs(v - 20.0) < 0.2 and v * 16 == int(v * 16)
        seen.add(v)
    assert len(seen) >= 2  # noise is there, and small


def test_room_sensor_faults():
    r = _calm_room(temp_c=3.0, out_mean=3.0)
    r.heat = True
    _run(r, MIN)
    good = r.temperature()
    for fault, want in (("dead", None), ("85", 85.0), ("nonsense", -127.0)):
        r.fault = fault
        assert r.temperature() == want
    _run(r, 10 * MIN)
    r.fault = "stuck"
    assert r.temperature() == good  # the last good value read, not today's
    _run(r, 2 * H)
    assert r.temperature() == good and r.temp > good + 1.5  # forever, while the room warms
    r.fault = None
    assert r.temperature() > good + 1.5


def test_room_counts_frost_minutes():
    r = _calm_room(temp_c=6.0, out_mean=-5.0)
    assert r.violations() == {"frost_min": 0}
    _run(r, 2 * H)
    cross_s = 50000 * math.log(11.0 / 10.0)  # 6 C -> 5 C toward -5 C: 4766 s
    want = (7200 - cross_s) / 60
    assert abs(r.violations()["frost_min"] - want) <= 1, (r.violations(), want)


# --- the plug load ----------------------------------------------------------------------

def _reading(p):
    u, i, w = p.meter()
    return u * KU_TRUE, i * KI_TRUE, w * KP_TRUE


def test_kettle_draws_2kw_then_switches_itself_off():
    b = board.make("smart_plug", load="kettle", uses_per_day=0)
    p = b.model
    assert b.sample_ms == 1000 and b.name == "virtual:esp32" and b.role == "smart_plug"
    b.relay("load").set(True)
    b.advance(10000)
    v, a, w = _reading(p)
    assert 220 < v < 240 and abs(w - 2000) < 12 and abs(a - w / v) < 0.1, (v, a, w)
    b.advance(4 * MIN)
    assert _reading(p)[2] == 0 and _reading(p)[0] > 220  # boiled: off by itself, mains still there
    assert 94 < p.energy_wh < 106, p.energy_wh  # 2 kW for about 3 min
    p.use()  # boil again
    b.advance(5000)
    assert abs(_reading(p)[2] - 2000) < 12


def test_fridge_inrush_is_averaged_over_the_sample():
    p = PlugLoad("fridge", volts_sd=0.0)
    p.load = True
    p.step_ms(1000)
    v, a, w = _reading(p)
    avg = 0.3 * 6 * 90 + 0.7 * 90  # 0.3 s at six times the running power
    assert abs(w - avg) < avg * 0.006, w
    assert abs(a - avg / (230 * 0.8)) < 0.01, a  # power factor 0.8
    p.step_ms(1000)
    assert abs(_reading(p)[2] - 90) < 0.6
    big = PlugLoad("fridge", power_w=1000)  # a big motor: 26 A for 0.3 s
    big.load = True
    _run(big, 3 * H, 1000)
    assert big.max_a > 16 and big.violations() == {"overcurrent_late": 0}


def test_fridge_cycles_a_third_of_the_time():
    p = PlugLoad("fridge")
    p.load = True
    _run(p, 6 * H)
    assert 150 < p.energy_wh < 210, p.energy_wh  # 90 W for 1/3 of 6 h = 180 Wh
    p.load = False
    e = p.energy_wh
    _run(p, H)
    assert p.energy_wh == e and _reading(p)[2] == 0


def test_washer_and_heater_profiles():
    w = PlugLoad("washer", uses_per_day=0, volts_sd=0.0)
    w.load = True
    seen = []
    for _ in range(120):
        w.step_ms(MIN)
        seen.append(_reading(w)[2])
    assert abs(seen[5] - 2000) < 12  # heating
    wash = seen[20:55]
    assert min(wash) > 145 and max(wash) < 405 and max(wash) - min(wash) > 50
    assert abs(seen[65] - 500) < 4  # spin
    assert seen[-1] < 2  # done: standby
    h = PlugLoad("heater", volts_sd=0.0)
    h.load = True
    on = off = 0
    for _ in range(120):
        h.step_ms(MIN)
        w = _reading(h)[2]
        on += abs(w - 1500) < 8
        off += w == 0
    # 1500 W, switched by its own thermostat (12 min on, 8 off); a reading may catch a switch.
    assert on + off >= 117 and 55 < on < 90 and 30 < off < 65, (on, off)


def test_overcurrent_judge_counts_each_late_sample():
    p = PlugLoad("kettle", uses_per_day=0)
    p.load = True
    p.short = True
    for _ in range(10):
        p.step_ms(1000)
    assert p.max_a == 40.0 and _reading(p)[1] > 39
    # Sample 1 is the first over the limit, sample 2 the grace: samples 3..10 are late.
    assert p.violations() == {"overcurrent_late": 8}


def _short_then_open(open_at_ms):
    p = PlugLoad("kettle", uses_per_day=0)
    p.load = True
    p.short = True
    p.step_ms(open_at_ms)
    p.load = False
    p.step_ms(10000 - open_at_ms)
    return p.violations()["overcurrent_late"]


def test_overcurrent_judge_spares_a_trip_within_one_sample():
    assert _short_then_open(1000) == 0  # opened on reading the first bad sample
    assert _short_then_open(1900) == 0  # late in the grace sample: still in time
    assert _short_then_open(2000) == 0
    assert _short_then_open(2500) == 1  # half a sample too late
    assert _short_then_open(4200) == 3
    b = board.make("smart_plug", load="kettle", uses_per_day=0)  # a role-like loop
    relay = b.relay("load")
    relay.set(True)
    for t in range(20):
        if t == 5:
            b.model.short = True
        b.advance(1000)
        if b.meter()[1] * KI_TRUE > 16.0:
            relay.set(False)
    assert b.violations() == {"overcurrent_late": 0} and relay.switches == 2


def test_meter_noise_calibration_and_faults():
    p = PlugLoad("kettle", uses_per_day=0, volts_sd=0.0)
    p.load = True
    for _ in range(50):
        p.step_ms(1000)
        u, i, w = p.meter()
        assert abs(u * KU_TRUE - 230) <= 230 * 0.005 + 0.1
        assert abs(w * KP_TRUE - 2000) <= 2000 * 0.005 + 0.1
        assert abs(i * KI_TRUE - 2000 / 230.0) <= 8.7 * 0.005 + 0.001
    assert p.meter() == p.meter()  # reading does not move the noise
    p, q = (PlugLoad("kettle", seed=s, uses_per_day=0, volts_sd=0.0) for s in (1, 2))
    p.load = q.load = True
    differ = 0
    for _ in range(20):
        p.step_ms(1000)
        q.step_ms(1000)
        differ += p.meter() != q.meter()
    assert differ > 15  # another seed, other noise
    p.fault = "dead"
    assert p.meter() is None


# --- the heat pump -------------------------------------------------------------------

def _hp_board(**kw):
    kw.setdefault("out_noise", 0.0)
    return board.make("heat_pump", **kw)


def _sg(b, sg1, sg2):
    b.relay("sg1").set(sg1)
    b.relay("sg2").set(sg2)


def test_sg_ready_contacts_map_to_the_four_states():
    b = _hp_board()
    for sg1, sg2, state in ((1, 0, 1), (0, 0, 2), (0, 1, 3), (1, 1, 4)):
        _sg(b, sg1, sg2)
        b.advance(10000)
        assert b.model.state == state == models.sg_state(sg1, sg2)
        assert b.model.holding()[3] == state


def test_store_warms_while_running_and_cools_while_off():
    b = _hp_board(store_c=45.0)
    hp = b.model
    _sg(b, 1, 1)  # FORCED: runs at once
    b.advance(10000)
    assert hp.running and b.input("compressor").value() == 1 and hp.power_w == 2500
    t0 = hp.store
    b.advance(10 * MIN - 10000)
    # 2.5 kW at COP ~3.1 = 7.7 kW in, the house takes ~4.5 kW (250 W/K at ~2 C outside).
    assert 1.0 < hp.store - t0 < 2.2, hp.store - t0
    assert abs(hp.energy_wh - 2500 * 600 / 3600.0) < 1
    _sg(b, 1, 0)  # BLOCKED: stops at once
    b.advance(10000)
    assert not hp.running and b.input("compressor").value() == 0
    t0 = hp.store
    b.advance(10 * MIN)
    assert 1.8 < t0 - hp.store < 2.6, t0 - hp.store  # ~4.5 kW out of 1.25 MJ/K
    assert hp.violations()["min_run"] == 0  # it ran 10 min: long enough


def test_heat_pump_judges_min_run_and_min_off_exactly():
    b = _hp_board(store_c=39.0)
    hp = b.model
    b.advance(10000)
    assert hp.running  # NORMAL, store below 40: starts (off "for ever" before)
    b.advance(290000)
    _sg(b, 1, 0)  # blocked after 300 s of running
    b.advance(100000)
    assert not hp.running
    _sg(b, 1, 1)  # forced after 100 s off
    b.advance(MIN)
    assert hp.running
    v = hp.violations()
    assert v["min_run"] == 1 and v["min_off"] == 1, v
    b.advance(9 * MIN)  # now 600 s of running: blocking is fine
    _sg(b, 1, 0)
    b.advance(10 * MIN)  # and 600 s off before forcing again is fine
    _sg(b, 1, 1)
    b.advance(MIN)
    assert hp.running
    v = hp.violations()
    assert v["min_run"] == 1 and v["min_off"] == 1, v
    _sg(b, 0, 0)  # NORMAL for a day: the unit keeps its own times
    b.advance(24 * H)
    v = hp.violations()
    assert v["min_run"] == 1 and v["min_off"] == 1 and hp.starts > 15, (v, hp.starts)
    assert v["store_cold"] == 0 and v["store_overheat"] == 0


def test_normal_keeps_the_band_and_raised_targets_heat_higher():
    b = _hp_board(store_c=42.0)
    hp = b.model
    lo, hi = 99.0, 0.0
    for _ in range(8 * 60):
        b.advance(MIN)
        lo, hi = min(lo, hp.store), max(hi, hp.store)
    assert 39.5 < lo < 40.5 and 44.9 < hi < 46.0, (lo, hi)  # seen once a minute
    _sg(b, 0, 1)  # RECOMMENDED: up to 50
    for _ in range(3 * 360):
        b.advance(10000)
        hi = max(hi, hp.store)
    assert 50.0 <= hi < 52.0, hi
    _sg(b, 1, 1)  # FORCED: up to 58
    for _ in range(3 * 360):
        b.advance(10000)
        hi = max(hi, hp.store)
    assert 58.0 <= hi < 60.0, hi


def test_blocking_judge_continuous_and_daily():
    b = _hp_board(store_c=58.0)
    hp = b.model
    _sg(b, 1, 0)
    b.advance(2 * H)  # exactly the limit
    _sg(b, 0, 0)
    assert hp.violations()["blocked_too_long"] == 0
    b.advance(H)
    _sg(b, 1, 0)
    b.advance(2 * H + 10000)  # ten seconds over
    _sg(b, 0, 0)
    assert hp.violations()["blocked_too_long"] == 1
    b.advance(H)
    _sg(b, 1, 0)
    b.advance(2 * H - 10000)  # the day now holds exactly 6 h of blocking
    _sg(b, 0, 0)
    assert hp.violations()["blocked_too_long"] == 1
    b.advance(H)
    _sg(b, 1, 0)
    b.advance(MIN)  # over the daily 3 x 2 h
    _sg(b, 0, 0)
    b.advance(H)
    _sg(b, 1, 0)
    b.advance(MIN)  # counted once a day
    _sg(b, 0, 0)
    assert hp.violations()["blocked_too_long"] == 2
    b.advance(24 * H - hp.now_ms % (24 * H))  # midnight: a new day
    _sg(b, 1, 0)
    b.advance(H)
    _sg(b, 0, 0)
    assert hp.violations()["blocked_too_long"] == 2
    short = _hp_board(max_block_s=600, max_block_day_s=900)
    _sg(short, 1, 0)
    short.advance(610000)
    _sg(short, 0, 0)
    short.advance(MIN)
    _sg(short, 1, 0)
    short.advance(300000)
    assert short.violations()["blocked_too_long"] == 2  # 601 s continuous, 910 s that day


def test_store_cold_and_overheat_are_recorded():
    b = _hp_board(store_c=40.0, max_block_s=86400, max_block_day_s=86400)
    _sg(b, 1, 0)
    b.advance(4 * H)  # a long block empties the store
    cold = b.violations()["store_cold"]
    assert 0 < cold < 4 * 60, cold
    assert b.model.store < 30.0
    hot = HeatPump(store_c=61.0, out_noise=0.0)
    hot.step_ms(10000)
    assert hot.violations()["store_overheat"] == 1
    assert b.temperature("store") is not None and abs(b.temperature("store") - b.model.store) < 0.3


# --- determinism --------------------------------------------------------------------

def _trace(seed):
    r = Room(seed=seed, windows_per_day=6)
    r.heat = True
    p = PlugLoad("washer", seed=seed, uses_per_day=3)
    p.load = True
    hp = HeatPump(seed=seed)
    out = []
    for _ in range(24 * 6):
        for m in (r, p, hp):
            m.step_ms(10 * MIN)
        out.append((r.temperature(), p.meter(), hp.holding(), hp.temperature()))
    return out


def test_same_seed_same_world_other_seed_other_world():
    a = _trace(5)
    assert a == _trace(5)
    b = _trace(6)
    assert a != b
    differ = 0
    for x, y in zip(a, b):
        differ += (x[0] != y[0]) + (x[1] != y[1]) + (x[2] != y[2])
    assert differ > len(a), differ  # not one stray sample: the worlds differ throughout


# --- the board ---------------------------------------------------------------------

def test_board_time_rtc_cause_and_names():
    b = board.make("thermostat", seed=2)
    assert b.name == "virtual:esp32" and b.role == "thermostat" and b.now_ms == models.START_MS
    assert b.ticks_ms() == models.START_MS & 0x3FFFFFFF
    b.sleep(1234)
    assert b.now_ms == models.START_MS + 1234 and b.model.now_ms == b.now_ms
    assert b.reset_cause() == "power_on"
    b.cause = "deep_sleep"
    assert b.reset_cause() == "deep_sleep"
    assert b.rtc_memory() == b""
    b.set_rtc_memory(b"state")
    assert b.rtc_memory() == b"state"
    try:
        b.set_rtc_memory(bytes(2049))
    except ValueError:
        pass
    else:
        raise AssertionError("2 KB of rtc memory at most")
    for call, arg in ((b.relay, "load"), (b.input, "button"), (b.temperature, "store"), (b.uart, "modbus")):
        try:
            call(arg)
        except ValueError:
            pass
        else:
            raise AssertionError("thermostat has no " + arg)
    heat = b.relay("heat")
    assert heat is b.relay("heat") and not heat.on
    heat.set(True)
    heat.set(True)
    heat.set(False)
    assert b.switches() == {"heat": 2} and heat.changed_ms == b.now_ms
    b.model.open_window(60)
    assert b.input("window").value() == 1
    b.advance(2 * MIN)
    assert b.input("window").value() == 0
    try:
        board.make("toaster")
    except ValueError:
        pass
    else:
        raise AssertionError("unknown role")


def test_board_relay_drives_the_model():
    b = board.make("thermostat", out_noise=0.0, windows_per_day=0, temp_c=5.0)
    t0 = b.model.temp
    b.relay("heat").set(True)
    b.advance(2 * H)
    assert b.model.temp > t0 + 1.0 and abs(b.model.energy_wh - 4000) < 1e-6
    assert b.violations() == {"frost_min": 0}


def test_board_watchdog_counts_missed_feeds():
    b = board.make("smart_plug")
    dog = b.watchdog(5000)
    b.advance(4000)
    dog.feed()
    b.advance(4000)
    dog.feed()
    assert b.watchdog_resets == 0 and b.fed_ms == b.now_ms
    b.advance(12000)  # due at +5 s and again at +10 s
    assert b.watchdog_resets == 2
    dog.feed()
    b.sleep(60000)  # a sleeping board's watchdog does not run
    assert b.watchdog_resets == 2
    b.advance(5001)
    assert b.watchdog_resets == 3


def test_board_follows_a_clock():
    now = [models.START_MS + 7 * H]
    b = board.make("thermostat", clock=lambda: now[0], out_noise=0.0, windows_per_day=0)
    assert b.now_ms == now[0]
    now[0] += 3 * H
    b.relay("heat").set(True)  # switched at the clock's time
    assert b.now_ms == now[0] and b.relay("heat").changed_ms == now[0]
    now[0] += H
    b.temperature("room")
    assert b.now_ms == now[0] and abs(b.model.energy_wh - 2000) < 1e-6
    now[0] -= 1000  # a clock going back does not turn time back
    assert b.ticks_ms() == (now[0] + 1000) & 0x3FFFFFFF


def test_virtual_rp2040_chains_lightsleeps_and_caps_its_watchdog():
    import board

    b = board.make("thermostat", seed=2, chip="rp2040")
    assert b.name == "virtual:rp2040"
    t0 = b.now_ms
    b.sleep(3 * 3600 * 1000)
    assert b.sleeps == 3 and b.now_ms - t0 == 3 * 3600 * 1000  # 71 + 71 + 38 minutes
    b.watchdog(20000)
    assert b._wdt == 8388
    e = board.make("thermostat", seed=2, chip="esp32")
    e.sleep(3 * 3600 * 1000)
    assert e.sleeps == 1
    try:
        board.make("thermostat", chip="esp8266")
    except ValueError:
        pass
    else:
        raise AssertionError("an unknown chip was accepted")
