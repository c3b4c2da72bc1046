"""A simulated week per device role: the real role firmware on a virtual board.

Each run builds a provisioned device (its keys, journal and counter files in a
temporary directory) whose node and role are the firmware's own
(firmware/node.py, role.py, thermostat.py, smart_plug.py, heat_pump.py), on a
virtual board whose peripheral models (boards/virtual/models.py) follow the
physics. A seeded scenario sends it, as sealed SPOT frames at its wakes (every
15 min): a weekly program, daily price forecasts, and random commands, some of
them outside the device's limits. Faults come too: failing sensors, a short
circuit behind the plug, a silent Modbus bus, power cuts that reboot the device.

The world judges, not the device: the models count broken limits (frost,
late over-current trips, compressor minimum run and off times, blocked time),
and this harness counts the thermostat relay's minimum on and off times from
the relay's own history (switches caused by a power cut excepted).
"""
from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from host_tools.paths import board_import_path

board_import_path(virtual=True, umqtt=True)

MIN = 60_000
H = 3_600_000
DAY = 24 * H
T0 = 1_795_651_200_000  # 2026-11-26T00:00Z, a Thursday: the program's week starts here
WAKE_MS = 15 * MIN
STEP_MS = {"thermostat": 30_000, "heat_pump": 30_000, "smart_plug": 1_000}
# A room of 3 MJ/K losing 80 W/K behind a 2 kW heater: 0.9 C/h up at 20 C, 1.5 C/h down.
ROOM = {"ua": 80.0, "c": 3e6}
# An 800 l buffer store (3.3 MJ/K), as SG Ready installations that shift load have.
STORE = {"c_store": 3.3e6}
# The user's week (thermostat): (seconds into the week, 0.1 C), every day alike.
_DAY_PROGRAM = ((6 * 3600 + 1800, 210), (8 * 3600 + 1800, 180), (17 * 3600, 210),
                (22 * 3600 + 1800, 170))


@dataclass
class RoleWeek:
    role: str
    seed: int
    violations: dict[str, int] = field(default_factory=dict)
    acks: dict[str, int] = field(default_factory=dict)  # status name -> count
    commands: int = 0
    faults: int = 0
    power_cuts: int = 0
    comfort_minutes_outside: int = 0
    cost: float = 0.0  # EUR
    energy_kwh: float = 0.0
    store_cold_minutes: int = 0

    @property
    def violation_count(self) -> int:
        return sum(v for k, v in self.violations.items() if k in _COUNTED)


# Broken limits; the rest of what the models record (cold store minutes) is comfort.
_COUNTED = {"relay_min_on", "relay_min_off", "frost_min", "overcurrent_late", "min_run",
            "min_off", "blocked_too_long", "store_overheat"}
_PARAMS = {"thermostat": ROOM, "heat_pump": STORE}
_STATUS = ("applied", "adapted", "refused", "expired", "unsupported")


def day_prices(rng: random.Random) -> list[int]:
    """24 hourly prices (EUR/MWh): a cheap night and midday, morning and evening peaks."""
    shape = [0.6, 0.55, 0.55, 0.55, 0.6, 0.8, 1.2, 1.6, 1.5, 1.1, 0.9, 0.7,
             0.65, 0.7, 0.85, 1.0, 1.3, 1.8, 1.9, 1.6, 1.2, 1.0, 0.85, 0.7]
    level = rng.uniform(80, 160)
    return [max(1, int(level * s * rng.uniform(0.85, 1.15))) for s in shape]


class _Device:
    """The firmware's node and role for one device, with the cloud's side of its keys."""

    def __init__(self, role: str, seed: int, fs: Path, params: dict) -> None:
        from host_tools.cloud.registry import Registry

        import board as vboard

        self.role_name = role
        self.fs = fs
        self.reg = Registry(fs / "registry.json")
        self.address = self.reg.provision("sim", 0x5000 + seed % 0x1000)
        self.reg.write_device_files(self.address, fs / "dev")
        self.key = self.reg.sender_key(self.reg.cloud, self.address)
        self.seq = 0
        self.board = vboard.make(role, seed=seed, start_ms=T0, **params)
        self.events: list[tuple[str, dict]] = []
        self.sent: list[bytes] = []  # every frame the device sent (ACKs, reports)
        self.boot(power_on=True)

    def boot(self, power_on: bool) -> None:
        import json

        import node as nodemod
        import role as rolemod
        from spot.counter import SendCounter
        from spot.journal import Journal
        from spot.keyring import Keyring

        self.board.live_role = None  # a new boot: nothing of the last one is in RAM
        d = self.fs / "dev"
        ident = json.loads((d / "identity.json").read_text())
        b = self.board

        def emit(ev: str, **f: object) -> None:
            if ev in ("applied", "refused"):
                self.events.append((ev, f))

        self.node = nodemod.Node(
            self.address, emit, Keyring(str(d / "keys.json")), SendCounter(str(d / "counter.json")),
            Journal(str(d / "journal.json")), ident.get("groups", ()), clock=lambda: b.now_ms,
            cloud=ident.get("cloud", 1),
            make_role=lambda n: rolemod.make(self.role_name, b, n, power_on))

    def frame(self, build) -> bytes:
        self.seq += 1
        return build(self.seq, self.key)

    def wake(self, frames: list[bytes]) -> None:
        n = self.node
        for buf in frames:
            n.receive(buf)
        n.tick()
        n.report()
        j = n.journal
        pending = list(j.pending())
        self.sent += [bytes(raw) for _i, raw in pending]
        j.delivered({i for i, _ in pending})  # the cloud got everything
        j.commit(n.keyring.windows())


def _commands(role: str, rng: random.Random, now_s: int, dev: int, cloud: int):
    """One random command for the role (a builder of (seq, key) -> frame), some out of range."""
    from spot import builders, messages as m
    from spot.objects import UNIT_PERCENT, UNIT_W, Analog

    pick = rng.random()
    dur = rng.choice([600, 1800, 3600, 7200, 4 * 3600, 0])
    start = now_s + rng.choice([0, 0, 600, 3600])
    if pick < 0.35:  # demand response
        kind = rng.choice([m.DR_REDUCE, m.DR_LIMIT, m.DR_RESTORE, m.DR_SHUT_DOWN, m.DR_KEEP_BAND])
        amount = low = high = None
        if kind == m.DR_REDUCE:
            amount = Analog(rng.choice([10, 20, 50, 100, 150]), UNIT_PERCENT)
        elif kind == m.DR_LIMIT:
            amount = Analog(rng.choice([0, 500, 1000, 3000, 5000]), UNIT_W)
        elif kind == m.DR_KEEP_BAND:
            lo = rng.choice([30, 170, 190, 200, 250])
            low, high = builders.celsius(lo), builders.celsius(lo + rng.choice([-5, 10, 20]))
        return lambda seq, key: builders.demand(dev, cloud, seq, kind, amount, start, dur, key=key,
                                         low=low, high=high)
    if pick < 0.75:
        if role == "thermostat":
            v = builders.celsius(rng.choice([160, 190, 210, 230, 400, 20]))
            return lambda seq, key: builders.device_command(dev, cloud, seq, 1, v, dur, key=key)
        if role == "smart_plug":
            v = rng.choice([1, 1, 1, 0, 7])
            return lambda seq, key: builders.device_command(dev, cloud, seq, 2, v, key=key)
        v = rng.choice([1, 1, 2, 3, 4, 9])
        d = rng.choice([900, 3600, 5 * 3600])
        return lambda seq, key: builders.device_command(dev, cloud, seq, 3, v, d, key=key)
    # An installer sets minimum times from the unit's datasheet: never under the
    # heat pump's own (the model's 600 s); a thermostat's relay may take 4 min.
    mins = 900 if role == "heat_pump" else 240
    settings = rng.choice([{1: rng.choice([60, 300, 900])}, {9: mins, 10: mins}, {8: 20},
                           {6: rng.choice([8000, 16000, 20000])}, {5: rng.choice([90000, 110000])},
                           {12: rng.choice([7200, 14400, 21600])}, {99: 1}])
    return lambda seq, key: builders.device_command(dev, cloud, seq, 4, settings=settings, key=key)


def simulate(role: str, seed: int = 1, days: int = 7, prices: bool = True,
             commands: bool = True, faults: bool = True, params: dict | None = None) -> RoleWeek:
    """One role's simulated days; deterministic for a seed."""
    from spot import builders

    rng = random.Random(seed * 7919 + len(role))
    out = RoleWeek(role, seed)
    with tempfile.TemporaryDirectory(prefix="spot-sim-") as tmp:
        dev = _Device(role, seed, Path(tmp), dict(params or _PARAMS.get(role, {})))
        b, model = dev.board, dev.board.model
        cloud = dev.reg.cloud
        end = T0 + days * DAY
        step = STEP_MS[role]
        queue: list[bytes] = []
        if role == "thermostat":
            offs = [d * 86400 + o for d in range(7) for o, _ in _DAY_PROGRAM]
            vals = [v for _ in range(7) for _, v in _DAY_PROGRAM]
            queue.append(dev.frame(lambda seq, key: builders.weekly_program(
                dev.address, cloud, seq, T0 // 1000, offs, vals, key=key, unit=4, scale=-1)))
        price_by_hour: dict[int, int] = {}
        next_cmd = T0 + int(rng.expovariate(1 / (3 * H)))
        next_fault = T0 + int(rng.expovariate(1 / (18 * H)))
        next_cut = T0 + int(rng.expovariate(1 / (60 * H)))
        fault_end = None
        next_wake = T0
        relay_on, relay_since = None, T0
        cut_now = False
        min_on = min_off = 180_000
        while b.now_ms < end:
            t = b.now_ms
            # The cloud: a forecast for tomorrow at 13:00 (and today's at the start).
            if (t - T0) % DAY == 13 * H or t == T0:
                day0 = (t // DAY + (0 if t == T0 else 1)) * DAY
                ps = day_prices(rng)
                for i, p in enumerate(ps):
                    price_by_hour[day0 // H + i] = p
                if prices:
                    queue.append(dev.frame(lambda seq, key, day0=day0, ps=ps: builders.price_forecast(
                        dev.address, cloud, seq, day0 // 1000, 3600, ps, 0, key=key)))
            if commands and t >= next_cmd:
                queue.append(dev.frame(_commands(role, rng, t // 1000, dev.address, cloud)))
                out.commands += 1
                next_cmd = t + int(rng.expovariate(1 / (3 * H))) + MIN
            if faults and t >= next_fault and fault_end is None:
                out.faults += 1
                fault_end = t + rng.choice([10 * MIN, H, 3 * H])
                _fault(role, model, rng, True)
            if fault_end is not None and t >= fault_end:
                _fault(role, model, rng, False)
                fault_end = None
                next_fault = t + int(rng.expovariate(1 / (18 * H)))
            if faults and t >= next_cut:  # a power cut: outputs drop, the device reboots
                out.power_cuts += 1
                for name in ("heat", "load", "sg1", "sg2"):
                    try:
                        b.relay(name).set(False)
                    except ValueError:
                        pass
                cut_now = True
                b.advance(rng.choice([MIN, 10 * MIN]))
                b.cause = "power_on"
                dev.boot(power_on=True)
                next_cut = b.now_ms + int(rng.expovariate(1 / (60 * H)))
                next_wake = b.now_ms
                continue
            if t >= next_wake:
                dev.wake(queue)
                queue = []
                next_wake = t + WAKE_MS
            dev.node.control()
            if role == "thermostat":
                g = dev.node.role.guard
                min_on, min_off = g.min_on, g.min_off
                on = b.relay("heat").on
                if relay_on is None or cut_now:
                    relay_on, relay_since = on, t
                elif on != relay_on:
                    held = t - relay_since
                    if held < (min_on if relay_on else min_off):
                        k = "relay_min_on" if relay_on else "relay_min_off"
                        out.violations[k] = out.violations.get(k, 0) + 1
                    relay_on, relay_since = on, t
                # Colder than the user's band (setpoint -1 C), or heated above it
                # (+1 C over this step or the next, which a good thermostat heats
                # for ahead of time; coasting down after a setback is physics).
                base = _program_setpoint(t)
                top = max(_program_setpoint(t + k * 30 * MIN) for k in range(13)) + 10
                tc = model.temp * 10
                if t % MIN == 0 and (tc < base - 10 or (tc > top and on)):
                    out.comfort_minutes_outside += 1
            cut_now = False
            e0 = _energy_wh(model)
            b.advance(step)
            de = _energy_wh(model) - e0
            out.cost += de / 1e6 * price_by_hour.get(t // H, 0)  # Wh * EUR/MWh
        for k, v in model.violations().items():
            out.violations[k] = out.violations.get(k, 0) + v
        out.energy_kwh = round(_energy_wh(model) / 1000, 2)
        out.store_cold_minutes = model.violations().get("store_cold", 0)
        out.cost = round(out.cost, 3)
        for ev, f in dev.events:
            s = f.get("status")
            if isinstance(s, int) and 0 <= s < len(_STATUS):
                out.acks[_STATUS[s]] = out.acks.get(_STATUS[s], 0) + 1
    return out


def _energy_wh(model) -> float:
    return float(getattr(model, "energy_wh", 0.0))


def _program_setpoint(t: int) -> int:
    """The thermostat user's setpoint in force at t (0.1 C), from the program alone."""
    s = (t - T0) // 1000 % 86400
    v = _DAY_PROGRAM[-1][1]
    for o, val in _DAY_PROGRAM:
        if s >= o:
            v = val
    return v


def _fault(role: str, model, rng: random.Random, on: bool) -> None:
    if role == "thermostat":
        model.fault = rng.choice(["dead", "85", "stuck", "nonsense"]) if on else None
    elif role == "smart_plug":
        model.short = on
    else:
        if rng.random() < 0.5 or not on:
            model.uart_fault = rng.choice(["silent", "garbage", "badcrc"]) if on else None
        model.fault = rng.choice(["dead", "85"]) if on else None


def week_figures(seed: int = 1, days: int = 7) -> dict[str, float]:
    """The roles' figures for make bench: violations, comfort, and the heat pump's saving."""
    runs = {r: simulate(r, seed, days) for r in ("thermostat", "smart_plug", "heat_pump")}
    blind = simulate("heat_pump", seed, days, prices=False)
    saving = 100.0 * (blind.cost - runs["heat_pump"].cost) / blind.cost if blind.cost else 0.0
    return {
        "role_constraint_violations": sum(r.violation_count for r in runs.values()),
        "role_sim_commands": sum(r.commands for r in runs.values()),
        "role_sim_faults": sum(r.faults + r.power_cuts for r in runs.values()),
        "thermostat_comfort_minutes_outside_band": runs["thermostat"].comfort_minutes_outside,
        "heatpump_cost_eur": runs["heat_pump"].cost,
        "heatpump_cost_price_blind_eur": blind.cost,
        "heatpump_cost_saving_pct": round(saving, 1),
        "heatpump_store_cold_minutes": runs["heat_pump"].store_cold_minutes,
        "heatpump_store_cold_minutes_price_blind": blind.store_cold_minutes,
    }, runs
