"""Every command the cloud sends: its API model, who may receive it, and its frame.

A command is checked here against the device's capability record before it is
accepted: a plug is never sent a setpoint, a thermostat never an SG Ready state.
Within what a role can do, the device keeps the last word (its ACK may say
adapted or refused); the cloud refuses only what is plainly impossible.
"""
from __future__ import annotations

from typing import Annotated, Any, Callable, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from host_tools.paths import board_import_path
from spot import builders, messages
from spot import role_codes as R
from spot.objects import UNIT_CELSIUS, UNIT_PERCENT, UNIT_W, Analog

board_import_path()
from role_config import RANGES  # noqa: E402 (firmware/role_config.py: the settings' ranges)

Seal = Callable[[int, int, int, Any], bytes]  # (dst, src, seq, key) -> frame
DAY = 86_400
WEEK = 7 * DAY


class _Cmd(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Setpoint(_Cmd):
    """Thermostat: hold this temperature (for duration_s, or until the program's next step)."""
    kind: Literal["setpoint"]
    value_c: float = Field(ge=5, le=30)
    duration_s: int = Field(0, ge=0, le=WEEK)


class ComfortBand(_Cmd):
    """Thermostat: keep the room between low_c and high_c (demand response)."""
    kind: Literal["comfort_band"]
    low_c: float = Field(ge=5, le=30)
    high_c: float = Field(ge=5, le=30)
    duration_s: int = Field(3600, ge=60, le=WEEK)


class Relay(_Cmd):
    """Smart plug: switch the relay (on also clears an over-current trip)."""
    kind: Literal["relay"]
    on: bool


class SgState(_Cmd):
    """Heat pump: SG Ready state 1 blocked, 2 normal, 3 recommended on, 4 forced on."""
    kind: Literal["sg_state"]
    state: int = Field(ge=1, le=4)
    duration_s: int = Field(0, ge=0, le=DAY)


class Reduce(_Cmd):
    """Any role: reduce consumption by a percentage for a while."""
    kind: Literal["reduce"]
    percent: int = Field(ge=1, le=100)
    duration_s: int = Field(ge=60, le=DAY)
    start: int | None = Field(None, ge=0, le=2**32 - 1, description="epoch s; default now")
    valid_for_s: int | None = Field(None, ge=1, le=WEEK, description="refused (expired) if it arrives later")


class Limit(_Cmd):
    """Any role: keep consumption under watts for a while."""
    kind: Literal["limit"]
    watts: int = Field(ge=0, le=100_000)
    duration_s: int = Field(ge=60, le=DAY)


class Restore(_Cmd):
    """Any role: end any demand-response state now."""
    kind: Literal["restore"]


class Config(_Cmd):
    """Settings by name: telemetry_s, power_on (0 off, 1 on, 2 as before), cal_u, cal_i, cal_p,
    limit_ma, hysteresis (0.1 C), frost (0.1 C), min_on_s, min_off_s, max_shed_s,
    max_block_day_s, modbus_unit, setpoint (0.1 C)."""
    kind: Literal["config"]
    settings: dict[str, int] = Field(min_length=1, max_length=14)


class Program(_Cmd):
    """Thermostat: a weekly program, steps of [seconds into the week, setpoint C]."""
    kind: Literal["program"]
    week_origin: int = Field(ge=0, le=2**32 - 1, description="epoch s the week starts")
    steps: list[tuple[int, float]] = Field(min_length=1, max_length=48)  # SPEC 9.2


class Event(_Cmd):
    """Any role: a timed event (SPEC 9.2), started within a random spread window."""
    kind: Literal["event"]
    event_id: int = Field(ge=0, le=65535)
    start: int = Field(ge=0, le=2**32 - 1)
    duration_s: int = Field(ge=1, le=DAY)
    window_s: int = Field(0, ge=0, le=3600)
    value: int = Field(1, ge=-1000, le=1000)


Command = Annotated[Union[Setpoint, ComfortBand, Relay, SgState, Reduce, Limit, Restore, Config,
                          Program, Event], Field(discriminator="kind")]


class PriceForecast(BaseModel):
    """A site's price forecast, sent to its group (retained, so sleepers get it at their wake)."""
    model_config = ConfigDict(extra="forbid")
    start: int | None = Field(None, ge=0, le=2**32 - 1, description="epoch s; default this hour")
    interval_s: int = Field(3600, ge=300, le=DAY, description="900 for quarter-hour prices")
    # Bounded so the cents fit the frame's 32-bit integers (an unbounded float made a 500).
    prices: list[Annotated[float, Field(ge=-21_000_000, le=21_000_000, allow_inf_nan=False)]] = Field(
        min_length=1, max_length=96, description="per MWh, 2 decimals; 96 quarter-hours a day (SPEC 1.1)")


SETTINGS = {"telemetry_s": R.CFG_TELEMETRY_S, "power_on": R.CFG_POWER_ON, "cal_u": R.CFG_CAL_U,
            "cal_i": R.CFG_CAL_I, "cal_p": R.CFG_CAL_P, "limit_ma": R.CFG_LIMIT_MA,
            "hysteresis": R.CFG_HYSTERESIS, "frost": R.CFG_FROST, "min_on_s": R.CFG_MIN_ON_S,
            "min_off_s": R.CFG_MIN_OFF_S, "max_shed_s": R.CFG_MAX_SHED_S,
            "max_block_day_s": R.CFG_MAX_BLOCK_DAY_S, "modbus_unit": R.CFG_MODBUS_UNIT,
            "setpoint": R.CFG_SETPOINT}
# Which role has which setting (the others answer "unknown setting").
ROLE_SETTINGS = {
    "thermostat": {"telemetry_s", "hysteresis", "frost", "min_on_s", "min_off_s", "max_shed_s",
                   "setpoint"},
    "smart_plug": {"telemetry_s", "power_on", "cal_u", "cal_i", "cal_p", "limit_ma", "max_shed_s"},
    "heat_pump": {"telemetry_s", "min_on_s", "min_off_s", "max_block_day_s", "modbus_unit"},
}
ROLE_KINDS = {"setpoint": {"thermostat"}, "comfort_band": {"thermostat"}, "program": {"thermostat"},
              "relay": {"smart_plug"}, "sg_state": {"heat_pump"}}


class Refused(ValueError):
    """A command the device's role or capability record rules out; the text says why."""


def check(cmd: Any, role: str | None, caps: dict | None) -> None:
    """Refuse what this device cannot do, naming the reason."""
    need = ROLE_KINDS.get(cmd.kind)
    if need is not None:
        if role is None:
            raise Refused(f"{cmd.kind!r} needs a {' or '.join(sorted(need))}, and this device has not "
                          "reported its capability record yet (it does at its first wake)")
        if role not in need:
            raise Refused(f"a {role} has no {cmd.kind!r}: that is for a {' or '.join(sorted(need))}")
    if cmd.kind == "comfort_band" and cmd.low_c >= cmd.high_c:
        raise Refused(f"comfort band low {cmd.low_c} C must be under high {cmd.high_c} C")
    if cmd.kind == "config":
        for name, value in cmd.settings.items():
            if name not in SETTINGS:
                raise Refused(f"no setting {name!r}; settings are {', '.join(SETTINGS)}")
            lo, hi = RANGES[SETTINGS[name]]
            if not lo <= value <= hi:
                raise Refused(f"setting {name} = {value} is outside {lo}..{hi}")
            if role is not None and name not in ROLE_SETTINGS.get(role, set()):
                raise Refused(f"a {role} has no setting {name!r}")
    if cmd.kind == "program":
        offsets = [s[0] for s in cmd.steps]
        if offsets != sorted(set(offsets)) or offsets[0] < 0 or offsets[-1] >= WEEK:
            raise Refused("program steps need rising offsets within the week (0..604799 s)")
        if any(not 5 <= s[1] <= 30 for s in cmd.steps):
            raise Refused("program setpoints must be within 5..30 C")
    if cmd.kind == "sg_state" and caps and cmd.state == 1 and not caps.get("max_block_s", 1):
        raise Refused("this heat pump may not be blocked (its capability record allows no block)")


def _deci(c: float) -> int:
    return round(c * 10)


def sealer(cmd: Any, now: int) -> Seal:
    """(dst, src, seq, key) -> the sealed frame of this command."""
    k = cmd.kind
    if k == "setpoint":
        return lambda d, s, q, key: builders.device_command(
            d, s, q, R.DEV_SETPOINT, builders.celsius(_deci(cmd.value_c)), cmd.duration_s, key=key)
    if k == "relay":
        return lambda d, s, q, key: builders.device_command(d, s, q, R.DEV_RELAY, int(cmd.on), key=key)
    if k == "sg_state":
        return lambda d, s, q, key: builders.device_command(
            d, s, q, R.DEV_SG_STATE, cmd.state, cmd.duration_s, key=key)
    if k == "config":
        settings = {SETTINGS[n]: v for n, v in cmd.settings.items()}
        return lambda d, s, q, key: builders.device_command(d, s, q, R.DEV_CONFIG, settings=settings, key=key)
    if k == "reduce":
        until = now + cmd.valid_for_s if cmd.valid_for_s else None
        return lambda d, s, q, key: builders.reduce_power(
            d, s, q, cmd.percent, cmd.start or now, cmd.duration_s, key=key, valid_until=until)
    if k == "limit":
        return lambda d, s, q, key: builders.demand(
            d, s, q, messages.DR_LIMIT, Analog(cmd.watts, UNIT_W), now, cmd.duration_s, key=key)
    if k == "restore":
        return lambda d, s, q, key: builders.demand(d, s, q, messages.DR_RESTORE, key=key)
    if k == "comfort_band":
        return lambda d, s, q, key: builders.demand(
            d, s, q, messages.DR_KEEP_BAND, None, now, cmd.duration_s, key=key,
            low=builders.celsius(_deci(cmd.low_c)), high=builders.celsius(_deci(cmd.high_c)))
    if k == "program":
        offsets = [s[0] for s in cmd.steps]
        values = [_deci(s[1]) for s in cmd.steps]
        return lambda d, s, q, key: builders.weekly_program(
            d, s, q, cmd.week_origin, offsets, values, key=key, unit=UNIT_CELSIUS, scale=-1)
    if k == "event":
        return lambda d, s, q, key: builders.timed_event(
            d, s, q, cmd.event_id, cmd.start, cmd.duration_s, cmd.window_s, cmd.value, key=key)
    raise Refused(f"unknown command kind {k!r}")


def percent(v: int) -> Analog:
    return Analog(v, UNIT_PERCENT)
