"""The site energy manager: a grid request for a site, split into commands its devices can carry out.

Pure planning logic, no I/O and no clock of its own: the caller (the cloud's API,
a plugin, a simulation) hands it what it knows and the time, and gets back
`Order`s to send through the cloud's tracked command path.

Inputs
  - `SiteRequest`: "reduce the site by `watts` W" or "keep the site under `watts` W",
    from `start_s` to `end_s` (epoch s), optionally with a `PriceForecast` (the
    manager picks the cheapest time to pre-charge stores before the request).
  - per device, its capability record and its state reports, as the cloud's
    uplink.py names them (`shed_w, max_shed_s, min_on_s, min_off_s, comfort_c,
    store_c, max_block_s, max_block_day_s, power_floor_w, nominal_w, role`;
    `power_w, outputs, temp_c, target_c, sg_state, blocked_today_s, ...`).
  - the devices' answers: every ACK (applied, adapted, refused, expired) and
    every state report, through `on_ack` and `on_state`.

Output: `Order(device, command, why)` where `command` is a dict in the cloud's
command vocabulary (host_tools/cloud/command_kinds.py), ready for its `Command`
model:
  thermostat  {"kind": "reduce", "percent", "duration_s"}: a setback below the
              user's setpoint in force (the firmware's 1 C per 10 %), the half-width
              of the comfort band its record declares (1 C for 19-21 C) when that is
              enough, deeper when the target needs it, never beyond what the firmware
              itself accepts (3 C) nor within 0.5 C of its frost protection;
              {"kind": "comfort_band", "low_c", "high_c", "duration_s"} before a
              request: warm the room to the setpoint + the half-width (pre-heat);
  smart plug  {"kind": "reduce", "percent": 100, "duration_s"}: open the relay
              for at most its max_shed_s;
  heat pump   {"kind": "reduce", "percent": 100, "duration_s"}: SG Ready blocked
              for at most its max_block_s and what is left of its day's budget;
              {"kind": "sg_state", "state": 3, "duration_s"}: pre-charge the store;
  any         {"kind": "restore"}: the shed is no longer needed.

How it splits (a receding horizon, re-run on every request, ACK, state report
and `tick`):
  need   reduce: the watts asked; cap: what the site could draw at its peak (each
         device's running power) over the cap;
  cover  each shedding device counts for the power it would draw on average
         (its running power times the duty seen in its reports); a device whose
         shed ends within `handover_s` while the request goes on no longer
         counts, so its successor starts before it stops (rotation);
  choose among the devices that can shed now (a plug whose relay is off, a
         thermostat near frost protection, a heat pump with a cold store or a
         spent day's budget cannot), have rested since their last shed (at least
         their minimum off time; a room as long as its setback lasted, half an hour
         at most: a request longer than a room's longest shed sets it back again
         rather than let it heat flat out to recover while the request runs), and
         were not refused lately: what costs nobody comfort first (the heat pump
         on its store, the plug), the room last;
         in a reduction the heat pump and the plug are asked whenever they can
         (a reduction is judged per quarter hour against what each cycling load
         would have drawn, and nobody can tell that in advance), the room only
         until the cover reaches need x `margin`, its setback depth from the
         watts still missing, the room's learnt cooling rate and the time left;
  deepen a room that reached its setback while the target still needs it, by
         1 C, up to its limit.
  prepare before a request: pre-charge heat-pump stores (at the cheapest time
         when prices are known), pre-heat rooms within the comfort half-width.
Devices keep the last word: a refusal or an adaptation (minimum times, store,
comfort, longest block) is taken as the device's answer, the device is counted
as the answer says and others are asked instead; nothing is ever repeated at a
device that said no, and no command is sent that the capability record rules out.

`NaiveSplit` (the comparison the figures make) has the same interface and sends
every device the same percentage for the whole request.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from spot import role_codes as R

Command = dict[str, Any]

_DEFAULT_DUTY = {"thermostat": 0.6, "smart_plug": 0.6, "heat_pump": 0.5}
_BLOCK_MARGIN_S = 180  # under a heat pump's longest block: its control step may come late
_REFUSED_BACKOFF_S = 1800


@dataclass(frozen=True)
class PriceForecast:
    """Prices (any currency per MWh) for consecutive steps of `step_s` from `start_s`."""
    start_s: int
    step_s: int
    prices: tuple[float, ...]

    def price_at(self, t_s: int) -> float | None:
        i = (t_s - self.start_s) // self.step_s
        return self.prices[i] if 0 <= i < len(self.prices) else None


@dataclass(frozen=True)
class SiteRequest:
    """What the grid asks of a site (from the API or a plugin).

    kind "reduce": draw `watts` W less than the site would have, from start_s to end_s.
    kind "cap":    keep the site's draw under `watts` W from start_s to end_s.
    """
    id: str
    kind: Literal["reduce", "cap"]
    watts: int
    start_s: int
    end_s: int
    prices: PriceForecast | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("reduce", "cap"):
            raise ValueError(f"unknown request kind {self.kind!r}")
        if self.watts < 0 or self.end_s <= self.start_s:
            raise ValueError("a request needs watts >= 0 and end_s after start_s")

    def active(self, now_s: int) -> bool:
        return self.start_s <= now_s < self.end_s


@dataclass(frozen=True)
class Order:
    """One command for one device, in command_kinds' vocabulary, and why."""
    device: Any
    command: Command
    why: str = ""


@dataclass
class _Shed:
    since_s: int
    until_s: int
    status: str = "asked"  # asked | applied | adapted
    reason: int | None = None
    depth_c: float = 0.0  # a thermostat's setback below the user's setpoint


@dataclass
class DeviceView:
    """What the manager knows of one device: its record, its last state, what it was asked."""
    id: Any
    caps: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    run_w: float = 0.0  # the power it draws when running
    duty: float = -1.0  # share of reports it was running in (learnt; -1 unknown)
    shed: _Shed | None = None
    rest_until_s: int = 0
    charged_until_s: int = 0  # a pre-charge asked until then
    exhausted: bool = False  # shedding, but its own limits have it running again
    base_target_c: float | None = None  # a thermostat's setpoint when no shed is in force
    cool_c_h: float = 1.5  # how fast the room cools with the heater off (learnt)
    off_since: tuple[int, float] | None = None  # (s, C) since the heater is off
    preheat_for: str | None = None  # the request a thermostat is warming the room for

    @property
    def role(self) -> str:
        return str(self.caps.get("role") or self.state.get("role") or "")

    def running(self) -> bool | None:
        """Whether it draws power now (None: its reports do not say)."""
        r = self.role
        out = self.state.get("outputs")
        if r == "smart_plug":
            p = self.state.get("power_w")
            return None if p is None else p > 0
        if r == "thermostat":
            return None if out is None else bool(out & 1)
        return None

    def mean_w(self) -> float:
        """The power it draws on average when left alone."""
        d = self.duty if self.duty >= 0 else _DEFAULT_DUTY.get(self.role, 0.5)
        return self.run_w * d


def _nominal(v: DeviceView) -> float:
    n = float(v.caps.get("nominal_w") or 0)
    if v.role == "smart_plug":
        return 0.0  # a plug's rating is not its load: learn the load from its reports
    return n


class EnergyManager:
    """Splits site requests across one site's devices; re-plans on answers and state.

    margin    cover at least need x margin with shedding devices (duty cycles make
              the draw of any device uncertain);
    handover_s a shed ending this close to now counts no more: its successor starts;
    prep_s    how long before a request a heat pump's store may be pre-charged;
    thermostat_shed_s the longest setback asked of a thermostat at a time (None: what
              its record declares);
    preheat_s how long before a request a thermostat warms the room to the top of
              its comfort band (the user's setpoint + the band's half-width), so
              the room coasts longer during the request;
    max_setback_c the deepest setback ever asked of a thermostat: what the firmware
              itself accepts for "reduce" (1 C per 10 %, 3 C at most); asked only
              when the other devices and the comfort band's half-width fall short.
    """

    def __init__(self, margin: float = 1.5, handover_s: int = 300, prep_s: int = 7200,
                 precharge_below_c: float = 48.0, thermostat_shed_s: int | None = None,
                 preheat_s: int = 5400, max_setback_c: float = 3.0) -> None:
        self.thermostat_shed_s = thermostat_shed_s
        self.preheat_s = preheat_s
        self.max_setback_c = max_setback_c
        self.margin = margin
        self.handover_s = handover_s
        self.prep_s = prep_s
        self.precharge_below_c = precharge_below_c
        self.devices: dict[Any, DeviceView] = {}
        self.requests: dict[str, SiteRequest] = {}
        self.log: list[str] = []

    # what the cloud tells it ----------------------------------------------------
    def add_device(self, dev: Any, caps: dict[str, Any] | None = None,
                   state: dict[str, Any] | None = None) -> None:
        v = self.devices.setdefault(dev, DeviceView(dev))
        if caps:
            self.on_caps(dev, caps)
        if state:
            self._learn(v, state)

    def on_caps(self, dev: Any, caps: dict[str, Any]) -> None:
        v = self.devices.setdefault(dev, DeviceView(dev))
        v.caps = dict(caps)
        if v.run_w <= 0:
            v.run_w = _nominal(v) or float(caps.get("shed_w") or 0)

    def on_state(self, dev: Any, state: dict[str, Any], now_s: int) -> list[Order]:
        """A state report: learn from it, and re-plan if it changes what is covered."""
        v = self.devices.setdefault(dev, DeviceView(dev))
        before = (v.exhausted, v.shed is not None)
        self._learn(v, state)
        if v.role == "thermostat":
            self._learn_cooling(v, state, now_s)
        if v.shed is not None:
            on = v.running()
            if v.role == "smart_plug" and on:
                # Running again while asked to shed: the plug ended it (its max shed).
                self._ended(v, now_s, "the plug runs again")
            elif v.role == "thermostat":
                t, lo = state.get("temp_c"), _setback_to(v, v.shed.depth_c)
                v.exhausted = bool(on) and t is not None and lo is not None and t <= lo + 0.3
            elif v.role == "heat_pump" and state.get("sg_state") not in (None, 1) \
                    and v.shed.status != "adapted" and now_s - v.shed.since_s > 120:
                self._ended(v, now_s, "the heat pump released its block")
        if (v.exhausted, v.shed is not None) != before:
            return self.plan(now_s)
        return []

    def on_ack(self, dev: Any, command: Command, status: str, reason: int | None,
               now_s: int) -> list[Order]:
        """The device's answer to a command this manager sent; re-plans on anything but applied."""
        v = self.devices.get(dev)
        if v is None or command.get("kind") in ("restore", "sg_state") or v.shed is None:
            return []
        if status == "applied":
            v.shed.status = "applied"
            return []
        if status == "adapted":
            v.shed.status, v.shed.reason = "adapted", reason
            if reason in (_R_MAX_BLOCK,):
                v.shed.until_s = min(v.shed.until_s, v.shed.since_s + _max_shed_s(v))
            elif reason in (_R_STORE, _R_FROST, _R_SENSOR, _R_POWER_FLOOR):
                # It will not shed (now): count it out, let it rest, ask others.
                v.shed = None
                v.rest_until_s = now_s + _REFUSED_BACKOFF_S
                self.log.append(f"{now_s} {dev}: adapted ({reason}), counted out")
            return self.plan(now_s)
        # refused, expired, unsupported: the device said no.
        v.shed = None
        v.rest_until_s = now_s + _REFUSED_BACKOFF_S
        self.log.append(f"{now_s} {dev}: {status} ({reason}), asking others")
        return self.plan(now_s)

    # what the grid asks -------------------------------------------------------------
    def add_request(self, req: SiteRequest, now_s: int) -> list[Order]:
        self.requests[req.id] = req
        return self.plan(now_s)

    def cancel(self, req_id: str, now_s: int) -> list[Order]:
        self.requests.pop(req_id, None)
        return self.plan(now_s)

    def tick(self, now_s: int) -> list[Order]:
        """Call every minute or so: sheds end and start as time goes on."""
        return self.plan(now_s)

    # planning ---------------------------------------------------------------------
    def need_w(self, now_s: int, at_s: int | None = None) -> float:
        """Watts the site must shed at at_s (default now) for the requests in force then."""
        t = now_s if at_s is None else at_s
        need = 0.0
        for r in self.requests.values():
            if not r.active(t):
                continue
            if r.kind == "reduce":
                need += r.watts
            else:
                peak = sum(v.run_w for v in self.devices.values() if self._may_draw(v))
                need = max(need, peak - r.watts)
        return need

    def covered_w(self, now_s: int) -> float:
        return sum(v.mean_w() for v in self.devices.values() if self._covering(v, now_s))

    def plan(self, now_s: int) -> list[Order]:
        orders: list[Order] = []
        for r in [r for r in self.requests.values() if r.end_s <= now_s]:
            del self.requests[r.id]
        for v in self.devices.values():  # sheds that ran out on their own
            if v.shed is not None and v.shed.until_s <= now_s:
                self._ended(v, now_s, "its time is up")
        end = self._horizon(now_s)
        need = self.need_w(now_s)
        if need <= 0:
            for v in self.devices.values():  # nothing asked any more: give them back
                if v.shed is not None:
                    orders.append(Order(v.id, {"kind": "restore"}, "no request in force"))
                    self._ended(v, now_s, "released")
            orders += self._prepare(now_s)
            return orders
        covered = self.covered_w(now_s)
        want = need * self.margin
        reducing = any(r.kind == "reduce" and r.active(now_s) for r in self.requests.values())
        for v in self._candidates(now_s, end):
            # A reduction is judged interval by interval against what the site would have
            # drawn, and a cycling load's draw in any quarter hour is anyone's guess: a
            # device whose shed costs nobody's comfort is asked whenever a reduction is
            # in force (within its record's limits); the room only as far as needed.
            free = reducing and _COMFORT_RANK.get(v.role, 2) < 2
            if covered >= want and not free:
                continue
            o = self._ask(v, now_s, end, want - covered)
            if o is not None:
                orders.append(o)
                covered += v.mean_w()
        if covered < want:  # a room at the edge of its setback: deeper, within the device's limit
            for v in self.devices.values():
                if v.role == "thermostat" and v.shed is not None and v.exhausted \
                        and v.shed.depth_c + 0.5 <= self._max_depth(v) \
                        and min(v.shed.until_s, end) - now_s >= 900:
                    o = self._deepen(v, now_s, end)
                    if o is not None:
                        orders.append(o)
        return orders

    # the parts ---------------------------------------------------------------------
    def _horizon(self, now_s: int) -> int:
        """When the requests in force (and any starting right after) end."""
        end = now_s
        for r in sorted(self.requests.values(), key=lambda r: r.start_s):
            if r.start_s <= max(end, now_s) + 60 and r.end_s > end:
                end = r.end_s
        return end

    def _may_draw(self, v: DeviceView) -> bool:
        if v.role == "smart_plug" and v.state.get("outputs") == 0 and v.shed is None:
            return False  # its relay is off: it draws nothing
        return v.run_w > 0

    def _covering(self, v: DeviceView, now_s: int) -> bool:
        s = v.shed
        if s is None or v.exhausted:
            return False
        ends_soon = s.until_s - now_s <= self.handover_s and self._horizon(now_s) > s.until_s
        return not ends_soon

    def _available_s(self, v: DeviceView, now_s: int) -> int:
        """How long the device could shed from now, by its record and state (0: not now)."""
        if v.shed is not None or now_s < v.rest_until_s or v.run_w <= 0:
            return 0
        c, st, role = v.caps, v.state, v.role
        if st.get("fault"):
            return 0
        if role == "smart_plug":
            if st.get("outputs") == 0:
                return 0  # never ask a plug to shed when its relay is already off
            return int(c.get("max_shed_s") or 0)
        if role == "thermostat":
            if self._max_depth(v) < 0.5:
                return 0  # already at (or near) frost protection: nothing to set back
            cap = int(c.get("max_shed_s") or 0)
            return cap if self.thermostat_shed_s is None else min(cap, self.thermostat_shed_s)
        if role == "heat_pump":
            store = c.get("store_c") or []
            now_c = st.get("temp_c", store[0] if store else None)
            if now_c is not None and store and len(store) > 1 and store[1] is not None \
                    and now_c < store[1] + 6:
                return 0  # store nearly at its low limit: a block would end at once
            left_day = int(c.get("max_block_day_s") or 0) - int(st.get("blocked_today_s") or 0)
            return max(0, min(_max_shed_s(v), left_day - _BLOCK_MARGIN_S))
        return int(c.get("max_shed_s") or 0)

    def _candidates(self, now_s: int, end_s: int) -> list[DeviceView]:
        left = end_s - now_s
        out = []
        for v in self.devices.values():
            a = self._available_s(v, now_s)
            if a >= min(left, 600):
                out.append((_COMFORT_RANK.get(v.role, 1), min(a, left), v.mean_w(), v))
        # What costs nobody comfort first (a store, a load that can wait), the room last;
        # among equals the ones that can hold longest.
        out.sort(key=lambda x: (x[0], -x[1], -x[2], str(x[3].id)))
        return [v for _r, _a, _w, v in out]

    def _ask(self, v: DeviceView, now_s: int, end_s: int, short_w: float = 0.0
             ) -> Order | None:
        dur = min(self._available_s(v, now_s), end_s - now_s)
        if dur < 60:
            return None
        depth = 0.0
        if v.role == "thermostat":
            depth = self._depth_for(v, short_w, dur)
            if depth < 0.5:
                return None
            # A setback relative to the user's setpoint in force (it follows the program).
            cmd: Command = {"kind": "reduce", "percent": int(round(depth * 10)), "duration_s": dur}
        else:
            cmd = {"kind": "reduce", "percent": 100, "duration_s": dur}
        v.shed = _Shed(now_s, now_s + dur, depth_c=depth)
        v.exhausted = False
        v.preheat_for = None
        return Order(v.id, cmd, f"shed {v.mean_w():.0f} W for {dur} s"
                     + (f", {depth:.1f} C setback" if depth else ""))

    def _max_depth(self, v: DeviceView) -> float:
        """The deepest setback a thermostat may be asked: the firmware's own limit for a
        setback, and never within half a degree of its frost protection."""
        if v.base_target_c is None:
            return 0.0
        frost = float(v.caps.get("frost_c") or 5.0)
        return max(0.0, min(self.max_setback_c, v.base_target_c - frost - 0.5))

    def _depth_for(self, v: DeviceView, short_w: float, dur_s: int) -> float:
        """The setback that keeps the heater off long enough to cover short_w on average
        for dur_s: the comfort band's half-width when that is enough, deeper (up to the
        device's own limit) when the target needs it. The room falls cool_c_h per hour
        with the heater off; a room warmed above the setpoint first falls from higher."""
        c = v.caps.get("comfort_c")
        half = (float(c[1]) - float(c[0])) / 2 if c else 1.0
        top = self._max_depth(v)
        mean = v.mean_w()
        frac = min(1.0, max(0.0, short_w / mean)) if mean > 0 else 1.0
        t = v.state.get("temp_c")
        above = max(0.0, float(t) - v.base_target_c) if t is not None and v.base_target_c else 0.0
        need = frac * v.cool_c_h * dur_s / 3600.0 - above
        return round(min(top, max(half, need)) * 2) / 2

    def _deepen(self, v: DeviceView, now_s: int, end_s: int) -> Order | None:
        """A thermostat whose room reached its setback while the request needs more."""
        assert v.shed is not None
        dur = min(v.shed.until_s, end_s) - now_s
        depth = min(self._max_depth(v), v.shed.depth_c + 1.0)
        v.shed.depth_c = depth
        v.shed.status = "asked"
        v.exhausted = False
        return Order(v.id, {"kind": "reduce", "percent": int(round(depth * 10)),
                            "duration_s": dur}, f"setback deepened to {depth:.1f} C")

    def _ended(self, v: DeviceView, now_s: int, why: str) -> None:
        if v.shed is None:
            return
        held = now_s - v.shed.since_s
        rest = max(int(v.caps.get("min_off_s") or 0), int(v.caps.get("min_on_s") or 0), 600)
        if v.role == "thermostat":
            rest = max(rest, min(held, 1800))  # the room recovers, for half an hour at most
        v.rest_until_s = now_s + rest
        v.shed = None
        v.exhausted = False
        self.log.append(f"{now_s} {v.id}: shed ended ({why})")

    def _prepare(self, now_s: int) -> list[Order]:
        """Before a request: charge heat-pump stores, at the cheapest time if prices are known."""
        out = []
        nxt = [r for r in self.requests.values() if r.start_s > now_s]
        if not nxt:
            return out
        r = min(nxt, key=lambda r: r.start_s)
        if r.start_s - now_s > self.prep_s:
            return out
        if r.prices is not None:  # start at the cheapest hour of the window left
            lead = [t for t in range(now_s, r.start_s - 1800, 900) if r.prices.price_at(t) is not None]
            if lead and min(lead, key=lambda t: (r.prices.price_at(t), t)) > now_s + 899:
                return out
        for v in self.devices.values():
            if v.role == "thermostat":
                o = self._preheat(v, r, now_s)
                if o is not None:
                    out.append(o)
                continue
            if v.role != "heat_pump" or v.charged_until_s >= r.start_s or v.shed is not None:
                continue
            t = v.state.get("temp_c")
            if t is None or t >= self.precharge_below_c or v.state.get("fault"):
                continue
            # Ends before the request, so the compressor's minimum run is over by then.
            dur = r.start_s - now_s - max(900, int(v.caps.get("min_on_s") or 0))
            if dur < 600:
                continue
            v.charged_until_s = r.start_s
            out.append(Order(v.id, {"kind": "sg_state", "state": 3, "duration_s": dur},
                             f"pre-charge the store before {r.id}"))
        return out

    def _preheat(self, v: DeviceView, r: SiteRequest, now_s: int) -> Order | None:
        """Warm the room to the top of its comfort band (the user's setpoint + the band's
        half-width) before a request: it then coasts longer before the heater is needed."""
        lead = r.start_s - now_s
        if v.preheat_for == r.id or lead > self.preheat_s or lead < 900 or v.shed is not None \
                or v.base_target_c is None or v.state.get("fault") or now_s < v.rest_until_s:
            return None
        c = v.caps.get("comfort_c")
        half = (float(c[1]) - float(c[0])) / 2 if c else 1.0
        low = round(v.base_target_c + half, 1)
        if low + 0.5 > 30.0:
            return None
        v.preheat_for = r.id
        return Order(v.id, {"kind": "comfort_band", "low_c": low, "high_c": low + 0.5,
                            "duration_s": lead}, f"warm the room before {r.id}")

    def _learn_cooling(self, v: DeviceView, state: dict[str, Any], now_s: int) -> None:
        """How fast the room cools with the heater off, from spans of 20 min or more."""
        t = state.get("temp_c")
        if t is None or state.get("outputs") != 0 or state.get("fault"):
            v.off_since = None
            return
        if v.off_since is None:
            v.off_since = (now_s, float(t))
            return
        t0, c0 = v.off_since
        if now_s - t0 >= 1200:
            rate = (c0 - float(t)) * 3600.0 / (now_s - t0)
            v.cool_c_h = min(4.0, max(0.3, 0.7 * v.cool_c_h + 0.3 * rate))
            v.off_since = (now_s, float(t))

    def _learn(self, v: DeviceView, state: dict[str, Any]) -> None:
        v.state = dict(state)
        if v.role == "thermostat" and v.shed is None and not state.get("dr_kind") \
                and state.get("target_c") is not None:
            v.base_target_c = float(state["target_c"])
        on = v.running()
        if v.role == "smart_plug":
            p = state.get("power_w")
            if p:
                v.run_w = p if v.run_w <= 0 else 0.8 * v.run_w + 0.2 * p
        if on is not None and (v.shed is None or v.role == "smart_plug"):
            if v.shed is None:
                d = 0.6 if v.duty < 0 else v.duty
                v.duty = d + ((1.0 if on else 0.0) - d) / 60  # about an hour of minute reports


# ACK reasons the manager reads (SPEC 12.3)
_R_FROST, _R_MAX_BLOCK, _R_POWER_FLOOR, _R_SENSOR, _R_STORE = (
    R.R_FROST, R.R_MAX_BLOCK, R.R_POWER_FLOOR, R.R_SENSOR, R.R_STORE)


def _setback_to(v: DeviceView, depth_c: float) -> float | None:
    """Where a setback of depth_c takes a thermostat's room: the user's setpoint less it."""
    if v.base_target_c is None:
        return None
    return round(v.base_target_c - depth_c, 1)


# Who sheds first: a heat pump living on its store and a plug's load cost nobody's
# comfort within their records' limits; a room's temperature does.
_COMFORT_RANK = {"heat_pump": 0, "smart_plug": 1, "thermostat": 2}


def _max_shed_s(v: DeviceView) -> int:
    c = v.caps
    if v.role == "heat_pump":
        return max(0, int(c.get("max_block_s") or c.get("max_shed_s") or 0) - _BLOCK_MARGIN_S)
    return int(c.get("max_shed_s") or 0)


class NaiveSplit:
    """The naive split: every device gets the same "reduce P %" for the whole request.

    P is the request over what the site draws (reduce), or what the site could draw
    over the cap (cap); restore when it ends. No rotation, no re-planning.
    """

    def __init__(self) -> None:
        self.devices: dict[Any, DeviceView] = {}
        self.requests: dict[str, SiteRequest] = {}
        self._sent: set[str] = set()

    add_device = EnergyManager.add_device
    on_caps = EnergyManager.on_caps
    _learn = EnergyManager._learn

    def on_state(self, dev: Any, state: dict[str, Any], now_s: int) -> list[Order]:
        self._learn(self.devices.setdefault(dev, DeviceView(dev)), state)
        return []

    def on_ack(self, dev: Any, command: Command, status: str, reason: int | None,
               now_s: int) -> list[Order]:
        return []

    def add_request(self, req: SiteRequest, now_s: int) -> list[Order]:
        self.requests[req.id] = req
        return self.tick(now_s)

    def cancel(self, req_id: str, now_s: int) -> list[Order]:
        self.requests.pop(req_id, None)
        return []

    def tick(self, now_s: int) -> list[Order]:
        out: list[Order] = []
        for r in list(self.requests.values()):
            if r.end_s <= now_s:
                del self.requests[r.id]
                out += [Order(d, {"kind": "restore"}, f"{r.id} ended") for d in self.devices]
            elif r.active(now_s) and r.id not in self._sent:
                self._sent.add(r.id)
                if r.kind == "reduce":
                    site = sum(v.mean_w() for v in self.devices.values())
                    pct = r.watts / site if site else 1.0
                else:
                    peak = sum(v.run_w for v in self.devices.values())
                    pct = (peak - r.watts) / peak if peak else 0.0
                p = max(1, min(100, math.ceil(pct * 100)))
                dur = max(60, r.end_s - now_s)
                out += [Order(d, {"kind": "reduce", "percent": p, "duration_s": dur},
                              f"{r.id}: everyone {p} %") for d in self.devices]
        return out
