"""What an OpenADR 3 event means for SPOT: checked, then turned into commands, forecasts and reports.

Pure functions, no I/O, so the rules are read (and tested) in one place:

- `parse_event(raw)` -> (toadr3 `Event`, its targets as strings). OpenADR 3.1.0 made targets
  plain strings; 3.0.1 had valuesMaps ({"type": "RESOURCE_NAME", "values": [...]}). Both are
  read; toadr3's models (3.0.1) check everything else.
- `check_event(event, targets, resources, ven_name, programs, now)` -> `Plan` or `Refusal`.
  Refused: events of programs this VEN does not follow, targets naming neither this VEN nor
  one of its resources, impossible intervals (zero or negative durations, non-numeric or
  out-of-range values, price steps SPOT cannot carry), events with nothing SPOT carries.
- `device_command(role, caps, item, n_devices, now)` -> one SPOT command body per device.
  A shed is the same percentage at every device and an import limit is split evenly: the
  fallback for a site without an energy manager (a site with one gets a site request
  instead, ../site_requests.py, and the manager splits it by capability records).
- `report(...)` -> the REPORT body for the payload types an event asks for, with the
  devices' own latest values (nothing made up when a device has not reported one).

Payload types carried (OpenADR 3 enumerations):
  PRICE                 -> a site price forecast (per kWh unless the descriptor says MWH;
                           SPOT's forecast is per MWh): equal steps of 5 min..24 h, at most 96.
  SIMPLE                -> levels 0..3 as the OpenADR 2.0b plugin reads them (SIMPLE_PERCENT:
                           0 normal, 1 -20 %, 2 -50 %, 3 -100 %) as a `reduce`.
  IMPORT_CAPACITY_LIMIT -> a site import limit (KW unless the descriptor says W) as `limit`s.
  EXPORT_CAPACITY_LIMIT -> checked (>= 0) and noted: SPOT's devices are loads, they never
                           export, so any export limit is already met.
Other payload types are noted and not acted on. As in the 2.0b plugin, several intervals of
a load signal are carried as their strongest value over the whole span (the highest shed,
the lowest limit): SPOT's reduce and limit have one amount, and that never does less than asked.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import ValidationError
from toadr3 import models

from host_tools.cloud.plugins.openadr2b.mapping import DAY_S, MIN_SHED_S, SIMPLE_PERCENT, Shed
from host_tools.cloud.plugins.openadr2b.mapping import device_command as shed_command

PRICE, SIMPLE = "PRICE", "SIMPLE"
IMPORT_LIMIT, EXPORT_LIMIT = "IMPORT_CAPACITY_LIMIT", "EXPORT_CAPACITY_LIMIT"
CARRIED = {PRICE, SIMPLE, IMPORT_LIMIT, EXPORT_LIMIT}
# What a report may ask for and where a device's shadow has it: (field, unit -> factor).
REPORTABLE = {"DEMAND": ("power_w", {"KW": 1e-3, "W": 1.0}),
              "USAGE": ("energy_wh", {"KWH": 1e-3, "WH": 1.0}),
              "OPERATING_STATE": ("outputs", {None: 1.0})}
EPOCH_NOW_BEFORE = 86_400 * 365  # a start in 1970 or before ("0001-01-01" in 3.1) means now


@dataclass
class Refusal:
    reason: str


@dataclass
class Cap:
    """A site import limit (watts) from start to end (epoch s)."""
    watts: int
    start: int
    end: int


@dataclass
class Plan:
    devices: list[int]
    shed: Shed | None = None
    cap: Cap | None = None
    prices: list[dict] = field(default_factory=list)
    reports: list[dict] = field(default_factory=list)  # the event's reportDescriptors, as given
    notes: list[str] = field(default_factory=list)


def resource_name(device: int) -> str:
    """A device's OpenADR resourceName (the same as the 2.0b plugin's resource ids)."""
    return f"dev-{device:08x}"


def _targets(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError("targets is not a list")
    out: list[str] = []
    for t in raw:
        if isinstance(t, str):
            out.append(t)  # 3.1.0
        elif isinstance(t, dict) and isinstance(t.get("values"), list):
            out += [str(v) for v in t["values"]]  # 3.0.1 valuesMap
        else:
            raise ValueError(f"target {t!r} is neither a string (3.1) nor a valuesMap (3.0.1)")
    return out


def parse_event(raw: Any) -> tuple[models.Event, list[str]]:
    """The event as toadr3's model and its targets; ValueError says what is malformed."""
    if not isinstance(raw, dict):
        raise ValueError(f"an event is a JSON object, not {type(raw).__name__}")
    body = dict(raw)
    targets = _targets(body.pop("targets", None))
    descs = body.get("reportDescriptors")
    if isinstance(descs, list):  # their targets too: strings in 3.1, valuesMaps in toadr3's 3.0.1
        body["reportDescriptors"] = [
            dict(d, targets=[{"type": "RESOURCE_NAME", "values": _targets(d.get("targets"))}]
                 if d.get("targets") else None) if isinstance(d, dict) else d for d in descs]
    try:
        ev = models.Event.model_validate(body, context={"allow_P9999Y_duration": True})
    except ValidationError as e:
        first = e.errors()[0]
        raise ValueError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return ev, targets


def _epoch(t: Any, now: float) -> float:
    if isinstance(t, str):  # toadr3's "0000-00-00": unspecified, i.e. now
        return now
    t = t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    s = t.timestamp()
    return now if s < EPOCH_NOW_BEFORE else s


def _intervals(ev: models.Event, now: float) -> list[tuple[float, float, dict[str, list]]]:
    """(start epoch, duration s, {payload type: values}) per interval, in order; intervals
    without their own period follow each other from the event's intervalPeriod."""
    if not ev.intervals:
        raise ValueError("the event has no intervals")
    default = ev.interval_period
    t = _epoch(default.start, now) if default else None
    out = []
    for i, iv in enumerate(sorted(ev.intervals, key=lambda x: x.id)):
        own = iv.interval_period
        if own is None and default is None:
            raise ValueError(f"interval {iv.id} has no intervalPeriod and the event none")
        start = _epoch(own.start, now) if own is not None else t
        dur = (own.duration if own is not None and own.duration else default.duration if default else own.duration)
        d = dur.total_seconds()
        if d <= 0:
            raise ValueError(f"interval {iv.id} lasts {d:g} s: zero and negative durations are impossible")
        payloads: dict[str, list] = {}
        for p in iv.payloads:
            payloads.setdefault(p.type, []).extend(p.values)
        out.append((start, d, payloads))
        t = start + d
    return out


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{what}: {v!r} is not a number")
    return float(v)


def _units(ev: models.Event, kind: str) -> models.EventPayloadDescriptor | None:
    return next((d for d in ev.payload_descriptors or [] if d.payload_type == kind), None)


def _price_forecast(ev: models.Event, ivs: list) -> dict:
    steps = [(s, d, _number(p[PRICE][0], f"PRICE at {s:.0f}")) for s, d, p in ivs if p.get(PRICE)]
    lengths = {round(d) for _, d, _ in steps}
    if len(lengths) != 1:
        raise ValueError(f"price intervals of different lengths ({sorted(lengths)} s): a SPOT forecast has one step")
    step = lengths.pop()
    if not 300 <= step <= DAY_S or len(steps) > 96:
        raise ValueError(f"{len(steps)} prices of {step} s: a SPOT forecast holds at most 96 steps of 5 min to 24 h")
    for (a, d, _), (b, _, _) in zip(steps, steps[1:]):
        if round(b - a) != step:
            raise ValueError("price intervals overlap or leave gaps: a SPOT forecast is one contiguous series")
    desc = _units(ev, PRICE)
    unit = (desc.units or "KWH").upper() if desc else "KWH"
    if unit not in ("KWH", "MWH"):
        raise ValueError(f"price unit {unit!r}: only per KWH and per MWH are understood")
    per_mwh = 1000 if unit == "KWH" else 1
    return {"start": int(steps[0][0]), "interval_s": step, "prices": [round(v * per_mwh, 2) for _, _, v in steps]}


def check_event(ev: models.Event, targets: list[str], resources: dict[str, int], ven_name: str,
                programs: dict[str, str], now: float) -> Plan | Refusal:
    """The plan for one event, or why it is refused. resources: resourceName -> device
    address; programs: the programIDs this VEN follows -> their names."""
    try:
        if ev.program_id not in programs:
            return Refusal(f"program {ev.program_id!r} is not one this VEN follows")
        devices = list(resources.values())
        named = [t for t in targets if t in resources]
        unknown = [t for t in targets if t not in resources and t not in (ven_name, programs[ev.program_id])]
        if unknown:
            return Refusal(f"no resource {', '.join(unknown)} at this VEN")
        if named and ven_name not in targets:
            devices = [resources[t] for t in named]
        plan = Plan(devices, reports=[d.model_dump(by_alias=True, exclude_none=True)
                                      for d in ev.report_descriptors or []])
        ivs = _intervals(ev, now)
        kinds = {k for _, _, p in ivs for k in p}
        for k in sorted(kinds - CARRIED):
            plan.notes.append(f"{k} not acted on")
        if PRICE in kinds:
            plan.prices.append(_price_forecast(ev, ivs))
        if SIMPLE in kinds:
            pcts, span = [], []
            for s, d, p in ivs:
                for v in p.get(SIMPLE, []):
                    lv = _number(v, "SIMPLE level")
                    if lv not in SIMPLE_PERCENT:
                        raise ValueError(f"SIMPLE level {lv:g} is not one of 0 normal, 1 moderate, 2 high, 3 special")
                    pcts.append(SIMPLE_PERCENT[int(lv)])
                    span += [s, s + d]
            if max(span) - min(span) > DAY_S:
                return Refusal(f"a {max(span) - min(span):g} s shed is longer than a SPOT command may run (24 h)")
            plan.shed = Shed(max(pcts), round(min(span)), round(max(span)))
        for kind in (IMPORT_LIMIT, EXPORT_LIMIT):
            if kind not in kinds:
                continue
            desc = _units(ev, kind)
            unit = (desc.units or "KW").upper() if desc else "KW"
            if unit not in ("KW", "W"):
                return Refusal(f"{kind} in {unit!r}: only KW and W are understood")
            vals, span = [], []
            for s, d, p in ivs:
                for v in p.get(kind, []):
                    w = _number(v, kind) * (1000 if unit == "KW" else 1)
                    if not 0 <= w <= 10_000_000:
                        raise ValueError(f"{kind} of {w:g} W is impossible")
                    vals.append(w)
                    span += [s, s + d]
            if kind == EXPORT_LIMIT:
                plan.notes.append(f"{kind} {min(vals):g} W met: SPOT's devices do not export")
                continue
            if max(span) - min(span) > DAY_S:
                return Refusal(f"a {max(span) - min(span):g} s limit is longer than a SPOT command may run (24 h)")
            plan.cap = Cap(int(min(vals)), round(min(span)), round(max(span)))
        if plan.shed and plan.shed.end <= now:
            plan.shed = None  # already over: nothing to send
        if plan.cap and plan.cap.end <= now:
            plan.cap = None
        if not (kinds & CARRIED):
            return Refusal(f"no payload SPOT carries (has {', '.join(sorted(kinds))})")
        return plan
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        return Refusal(str(e) or type(e).__name__)


def device_command(role: str | None, caps: dict | None, item: Shed | Cap, n_devices: int,
                   now: float) -> dict | None:
    """The SPOT command one device gets for a site shed or import limit (None: nothing to do
    now). A shed is the 2.0b plugin's rule (the same percentage everywhere, `reduce` with a
    start and a validity); a limit is the site's watts split evenly, from its start (SPOT's
    `limit` has no start: the plugin sends it when the interval begins). The energy manager
    replaces this with a split by capability record."""
    if isinstance(item, Shed):
        return shed_command(role, caps, item, now)
    if item.end <= now or item.start > now + 1:
        return None
    return {"kind": "limit", "watts": max(0, min(100_000, item.watts // max(1, n_devices))),
            "duration_s": min(DAY_S, max(MIN_SHED_S, int(item.end - max(item.start, now))))}


def sample(shadow: dict, field_name: str) -> float | None:
    """A device's latest reported value: power and energy from its meter report if it sends
    one (the plug), otherwise from its state report; outputs from its state."""
    meter, state = shadow.get("meter") or {}, shadow.get("state") or {}
    v = state.get(field_name) if field_name == "outputs" else meter.get(field_name, state.get(field_name))
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def report(program_id: str, event_id: str, ven_name: str, descriptors: list[dict],
           shadows: dict[str, dict], now: float) -> tuple[dict | None, list[str]]:
    """The REPORT (reportRequest) for an event's reportDescriptors from the devices' shadows
    (resourceName -> shadow), and notes on what could not be reported. None if nothing can."""
    notes: list[str] = []
    wanted: list[tuple[str, str | None, float, str, list[str]]] = []
    for d in descriptors:
        kind = d.get("payloadType")
        if kind not in REPORTABLE:
            notes.append(f"{kind} cannot be reported")
            continue
        fname, units = REPORTABLE[kind]
        unit = d.get("units")
        unit = unit.upper() if isinstance(unit, str) else next(iter(units))
        if unit not in units:
            notes.append(f"{kind} in {unit} cannot be reported")
            continue
        tg = [v for t in d.get("targets") or [] for v in (t.get("values", []) if isinstance(t, dict) else [t])]
        wanted.append((kind, unit, units[unit], fname, tg))
    start = datetime.fromtimestamp(now, timezone.utc).isoformat().replace("+00:00", "Z")
    resources = []
    for name, sh in sorted(shadows.items()):
        payloads = []
        for kind, _unit, factor, fname, tg in wanted:
            if tg and name not in tg:
                continue
            v = sample(sh, fname)
            if v is not None:
                payloads.append({"type": kind, "values": [round(v * factor, 6)]})
        if payloads:
            resources.append({"resourceName": name, "intervalPeriod": {"start": start, "duration": "PT0S"},
                              "intervals": [{"id": 0, "payloads": payloads}]})
    if not resources:
        return None, notes + ["no device has reported what the event asks for"]
    descs = [{"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": k, "readingType": "DIRECT_READ",
              **({"units": u} if u else {})} for k, u, _, _, _ in wanted]
    body = {"objectType": "REPORT", "programID": program_id, "eventID": event_id, "clientName": ven_name,
            "reportName": f"spot-{event_id}", "payloadDescriptors": descs, "resources": resources}
    models.Report.model_validate(body)  # what goes out is checked as well as what comes in
    return body, notes


def iso_duration(seconds: float) -> str:
    return models.isoduration.create_iso8601_duration(timedelta(seconds=seconds))
