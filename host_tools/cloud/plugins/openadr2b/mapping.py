"""What an OpenADR 2.0b event means for SPOT: checked, then turned into commands and forecasts.

Pure functions, no I/O, so the rules are read (and tested) in one place:

- `check_event(event, resources, now)` -> `Plan` or `Refusal` (an OpenADR status code and
  a reason). Refused: signals OpenADR names but SPOT does not carry (460), events for
  resources this VEN does not hold (462), impossible intervals and values (454).
- `device_command(role, caps, shed, now)` -> one SPOT command body per device. This is the
  one mapping a site energy manager (host_tools/cloud/energy_manager.py, in progress) will
  replace: today every device gets the same percentage; the manager will split a site
  target over the devices by their capability records.
  A site with an energy manager gets a site request (../site_requests.py, site_watts)
  instead (plugin.py), and this mapping stays the fallback.
- price signals become one `PriceForecast` body for the site's group.

Signal levels (the OpenADR 2.0b profile's SIMPLE signal): 0 normal, 1 moderate, 2 high,
3 special, carried as a reduction of SIMPLE_PERCENT of each device's consumption.
LOAD_CONTROL: x-loadControlPercentOffset (the offset's size is the reduction: VTNs differ
in its sign), x-loadControlCapacity (a fraction of normal load allowed: 0.8 -> reduce
20 %), x-loadControlLevelOffset (as SIMPLE levels). A signal with several intervals is
carried as its highest reduction over its whole span: SPOT's reduce has one amount,
and holding the highest level never sheds less than asked.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

# OpenADR 2.0b status codes (openleadr.enums.STATUS_CODES), named here for the reader.
OK = 200
INVALID_DATA = 454
SIGNAL_NOT_SUPPORTED = 460
TARGET_MISMATCH = 462

SIMPLE_PERCENT = {0: 0, 1: 20, 2: 50, 3: 100}  # moderate, high, special
DAY_S = 86_400
MIN_SHED_S = 60  # SPOT's reduce lasts at least a minute (command_kinds.Reduce)
LOAD_SIGNALS = {"SIMPLE", "simple", "LOAD_CONTROL"}
PRICE_SIGNALS = {"ELECTRICITY_PRICE", "ENERGY_PRICE"}


@dataclass
class Refusal:
    code: int
    reason: str


@dataclass
class Shed:
    """A reduction of every targeted device's consumption by percent (0: restore)."""
    percent: int
    start: int  # epoch s
    end: int


@dataclass
class Plan:
    devices: list[int]
    shed: Shed | None = None
    prices: list[dict] = field(default_factory=list)


def _epoch(t: Any) -> float:
    if isinstance(t, datetime):
        return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()
    raise ValueError(f"not a time: {t!r}")


def _seconds(d: Any) -> float:
    if isinstance(d, timedelta):
        return d.total_seconds()
    raise ValueError(f"not a duration: {d!r}")


def _intervals(signal: dict, start: float) -> list[tuple[float, float, float]]:
    """(start epoch, duration s, value) of each interval; refuses what cannot be."""
    ivs = signal.get("intervals")
    if isinstance(ivs, dict):
        ivs = [ivs]
    if not ivs:
        raise ValueError(f"signal {signal.get('signal_name')!r} has no intervals")
    out = []
    t = start
    for i, iv in enumerate(ivs):
        d = _seconds(iv.get("duration"))
        if d <= 0:
            raise ValueError(f"interval {i} of {signal.get('signal_name')!r} lasts {d:g} s: "
                             "zero and negative durations are impossible")
        v = iv.get("signal_payload")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"interval {i} of {signal.get('signal_name')!r} has no numeric payload ({v!r})")
        s = _epoch(iv["dtstart"]) if iv.get("dtstart") is not None else t
        out.append((s, d, float(v)))
        t = s + d
    return out


def _percent(signal: dict, value: float) -> int:
    name, kind = signal.get("signal_name"), signal.get("signal_type")
    if name in ("SIMPLE", "simple") or kind == "x-loadControlLevelOffset":
        if value not in SIMPLE_PERCENT:
            raise ValueError(f"level {value:g} is not one of 0 normal, 1 moderate, 2 high, 3 special")
        return SIMPLE_PERCENT[int(value)]
    if kind == "x-loadControlPercentOffset":
        if not 0 <= abs(value) <= 100:
            raise ValueError(f"a {abs(value):g} % offset is impossible")
        return round(abs(value))
    if kind == "x-loadControlCapacity":
        if not 0 <= value <= 1:
            raise ValueError(f"capacity {value:g} is not a fraction of normal load (0..1)")
        return round((1 - value) * 100)
    raise LookupError(f"{name} {kind}")


def _price_forecast(signal: dict, ivs: list[tuple[float, float, float]]) -> dict:
    lengths = {round(d) for _, d, _ in ivs}
    if len(lengths) != 1:
        raise ValueError(f"price intervals of different lengths ({sorted(lengths)} s): a SPOT "
                         "forecast has one step")
    step = lengths.pop()
    if not 300 <= step <= DAY_S or len(ivs) > 96:
        raise ValueError(f"{len(ivs)} prices of {step} s: a SPOT forecast holds at most 96 steps "
                         "of 5 min to 24 h")
    unit = (signal.get("measurement") or {}).get("name", "currencyPerKWh")
    if unit != "currencyPerKWh":
        raise ValueError(f"price unit {unit!r}: only currency per kWh is understood")
    # OpenADR prices are per kWh; SPOT's forecast is per MWh (2 decimals).
    return {"start": int(ivs[0][0]), "interval_s": step, "prices": [round(v * 1000, 2) for _, _, v in ivs]}


def check_event(event: dict, resources: dict[str, int], now: float) -> Plan | Refusal:
    """The plan for one event, or why it is refused. resources: this VEN's resource ids
    (device addresses as 8 hex digits) to device addresses."""
    try:
        period = event.get("active_period") or {}
        start = _epoch(period.get("dtstart"))
        signals = event.get("event_signals")
        if isinstance(signals, dict):
            signals = signals.get("event_signals", [signals])
        if not signals:
            return Refusal(INVALID_DATA, "the event has no signals")
        devices = list(resources.values())
        wanted = [t.get("resource_id") for t in (event.get("targets") or []) if isinstance(t, dict)]
        wanted = [w for w in wanted if w]
        if wanted:
            unknown = [w for w in wanted if w not in resources]
            if unknown:
                return Refusal(TARGET_MISMATCH, f"no resource {', '.join(map(str, unknown))} at this VEN")
            devices = [resources[w] for w in wanted]
        plan = Plan(devices)
        for sig in signals:
            name = sig.get("signal_name")
            ivs = _intervals(sig, start)
            if name in PRICE_SIGNALS and sig.get("signal_type") == "price":
                plan.prices.append(_price_forecast(sig, ivs))
                continue
            if name not in LOAD_SIGNALS:
                return Refusal(SIGNAL_NOT_SUPPORTED, f"signal {name} {sig.get('signal_type')} is not carried")
            try:
                pcts = [_percent(sig, v) for _, _, v in ivs]
            except LookupError:
                return Refusal(SIGNAL_NOT_SUPPORTED, f"signal {name} {sig.get('signal_type')} is not carried")
            begin, end = ivs[0][0], ivs[-1][0] + ivs[-1][1]
            if end - begin > DAY_S:
                return Refusal(INVALID_DATA, f"a {end - begin:g} s shed is longer than a SPOT "
                                             "command may run (24 h)")
            shed = Shed(max(pcts), round(begin), round(end))
            if plan.shed is None or shed.percent > plan.shed.percent:
                plan.shed = shed
        if plan.shed and plan.shed.end <= now:
            plan.shed = None  # already over: nothing to send
        return plan
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return Refusal(INVALID_DATA, str(e) or type(e).__name__)


def device_command(role: str | None, caps: dict | None, shed: Shed, now: float) -> dict | None:
    """The SPOT command one device gets for a site shed (None: nothing left to do).

    Every role takes `reduce` (and `restore`), and keeps the last word: a plug that can
    only switch answers adapted, a thermostat sets back by 1 C per 10 %. The energy
    manager replaces this with a split of the site's target by capability record."""
    if shed.percent == 0:
        return {"kind": "restore"}
    begin = max(shed.start, int(now))
    if shed.end <= now:
        return None
    return {"kind": "reduce", "percent": max(1, min(100, shed.percent)),
            "duration_s": min(DAY_S, max(MIN_SHED_S, shed.end - begin)), "start": begin,
            # a device that wakes after the event's end must not start it: it answers expired
            "valid_for_s": max(1, int(shed.end - now))}
