"""The site energy manager as a cloud plugin: one EnergyManager per enabled site, fed by the cloud.

host_tools/cloud/energy_manager.py plans; this plugin gives it the cloud's eyes and hands:
  - what it knows: every device's capability record and state report (and the plug's
    meter, as its power) go to `on_caps` / `on_state`; every final command state of a
    command it sent (applied, adapted, refused, expired, unsupported) to `on_ack`;
  - time: a task ticks it every `tick_s` (60 s), so sheds end, rotate and start;
  - its hands: every `Order` goes through `ctx.send_command`, the cloud's tracked path
    (checked, sealed, audited, resent), as "plugin:energy_manager". A command the cloud
    itself refuses (its role or record rules it out) is the device's "no" as far as the
    manager is concerned: it asks others.
Site requests come from the API (POST /api/sites/{site}/requests, api.py) and from other
plugins (`ctx.site_request`, routed here by the PluginHost: this plugin registers as its
sites' energy manager). Each request has a record, kept in the cloud's database
(ctx.state "requests", per site), so a restart resumes it: the requests still open are
handed to a fresh manager, and the sheds its commands started are counted as running
(not asked again).

A record lists what the manager asked for it: "orders" (device, command, why, command id,
the device's answer and reason) and "replans" (an answer other than applied, and how
many new orders the re-plan made). An order belongs to every request in force, or being
prepared for, when it was made (the manager plans for the site, not per request); a
restore with none in force belongs to the request that just ended or was withdrawn.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from host_tools.cloud.energy_manager import EnergyManager, Order, PriceForecast, SiteRequest, _Shed
from host_tools.cloud.plugins.base import Plugin as Base

FINAL = {"applied", "adapted", "refused", "expired", "unsupported", "cancelled"}
RUNNING = {"accepted", "published", "delivered", "applied", "adapted"}
KINDS = {"reduce": "reduce", "keep_under": "cap", "cap": "cap"}
MAX_W = 1_000_000
MAX_S = 7 * 86_400


def parse_request(body: dict, now: int) -> tuple[str, int, int, int, PriceForecast | None]:
    """(kind, watts, start, end, prices) of a request body; ValueError says what is wrong."""
    kind = body.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: use \"reduce\" (by watts) or \"keep_under\" (watts)")
    watts = body.get("watts")
    if isinstance(watts, bool) or not isinstance(watts, (int, float)) or not 0 <= watts <= MAX_W:
        raise ValueError(f"watts {watts!r}: a number of W from 0 to {MAX_W}")
    start = body.get("start")
    start = now if start is None else int(start)
    if body.get("end") is not None:
        end = int(body["end"])
    elif body.get("duration_s") is not None:
        end = start + int(body["duration_s"])
    else:
        raise ValueError("give the request's end (epoch s) or its duration_s")
    if end <= max(start, now):
        raise ValueError("the request ends before it starts, or is already over")
    if end - start > MAX_S:
        raise ValueError(f"a request spans at most {MAX_S // 86400} days")
    prices = None
    p = body.get("prices")
    if p:
        vals = tuple(float(x) for x in p["prices"])
        prices = PriceForecast(int(p.get("start") or start), int(p.get("interval_s") or 3600), vals)
    return KINDS[kind], int(watts), start, end, prices


class _Site:
    def __init__(self, name: str, em: EnergyManager) -> None:
        self.name = name
        self.em = em
        self.records: dict[str, dict] = {}
        self.state: dict[int, dict] = {}  # each device's last state report (with its meter's power)
        self.closed: list[str] = []  # requests that just ended or were withdrawn (their restores)


class Plugin(Base):
    async def start(self) -> None:
        o = self.ctx.options
        self.tick_s = float(o.get("tick_s", 60))
        self.keep_s = float(o.get("keep_s", 86_400))
        kw = {k: o[k] for k in ("margin", "handover_s", "prep_s", "preheat_s") if k in o}
        self.lead_s = max(int(o.get("prep_s", 7200)), int(o.get("preheat_s", 5400)))
        self.sites: dict[str, _Site] = {}
        self.site_of: dict[int, str] = {}
        self.cids: dict[int, tuple[str, int, dict]] = {}  # command id -> (site, device, command)
        now = int(time.time())
        for name in self.ctx.sites:
            s = self.sites[name] = _Site(name, EnergyManager(**kw))
            for d in self.ctx.devices(name):
                self._adopt(s, d)
            s.records = self.ctx.state_get("requests", name) or {}
            self._resume(s, now)
        self.ctx.serve_site_requests(self._handle)
        self.task = asyncio.get_running_loop().create_task(self._ticker())

    async def stop(self) -> None:
        self.task.cancel()

    def _adopt(self, s: _Site, d: dict) -> None:
        dev = d["address"]
        self.site_of[dev] = s.name
        state = dict(d.get("state") or {})
        if (d.get("meter") or {}).get("power_w") is not None:
            state["power_w"] = d["meter"]["power_w"]
        s.state[dev] = state
        s.em.add_device(dev, d.get("capabilities") or None, state or None)

    def _resume(self, s: _Site, now: int) -> None:
        """After a restart: the open requests to the new manager, the sheds their commands
        started counted as running (the devices are carrying them out already)."""
        for rec in s.records.values():
            for od in rec["orders"]:
                if od.get("id") is not None and od.get("state") not in FINAL:
                    self.cids[od["id"]] = (s.name, int(od["device"], 16), od["command"])
            if rec.get("cancelled") or rec["end"] <= now:
                continue
            s.em.requests[rec["id"]] = SiteRequest(rec["id"], KINDS[rec["kind"]], rec["watts"], rec["start"],
                                                   rec["end"], _prices(rec.get("prices")))
            for od in rec["orders"]:
                c, dev = od["command"], int(od["device"], 16)
                v = s.em.devices.get(dev)
                until = od["at"] + int(c.get("duration_s") or 0)
                if v is None or c.get("kind") != "reduce" or od.get("state") not in RUNNING or until <= now:
                    continue
                # The manager's own record of a shed in force (it has no other way in).
                v.shed = _Shed(od["at"], until, "adapted" if od.get("state") == "adapted" else "applied",
                               od.get("reason"), depth_c=c.get("percent", 0) / 10 if v.role == "thermostat" else 0.0)
        if s.em.requests:
            self.ctx.log.info("site %s: %d open requests resumed", s.name, len(s.em.requests))

    # time goes on ---------------------------------------------------------------------------
    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            for s in self.sites.values():
                try:
                    self._tick(s)
                except Exception as e:  # noqa: BLE001 - one site's trouble is not the others'
                    self.ctx.log.error("site %s: tick: %s: %s", s.name, type(e).__name__, e)

    def _tick(self, s: _Site) -> None:
        now = int(time.time())
        self._close_ended(s, now)
        self._send(s, s.em.tick(now), now)
        for rid, rec in list(s.records.items()):  # ended records are kept a while, for the API
            if rec["end"] + self.keep_s < now:
                del s.records[rid]
        self._keep(s)

    def _close_ended(self, s: _Site, now: int) -> None:
        for rec in s.records.values():
            if rec["end"] <= now and not rec.get("closed"):
                rec["closed"] = True
                s.closed.append(rec["id"])

    # requests: from the API and other plugins (on this plugin's thread) ------------------------
    def _handle(self, op: str, site: str, body: dict, who: str) -> Any:
        s = self.sites[site]
        now = int(time.time())
        if op == "list":
            return [self._view(r, now) for r in sorted(s.records.values(), key=lambda r: -r["created"])]
        if op == "get":
            rec = s.records.get(str(body.get("id")))
            return None if rec is None else self._view(rec, now)
        if op == "cancel":
            rec = s.records.get(str(body.get("id")))
            if rec is None:
                return None
            if not rec.get("cancelled") and not rec.get("closed"):
                rec["cancelled"] = rec["closed"] = True
                s.closed.append(rec["id"])
                self._send(s, s.em.cancel(rec["id"], now), now)
                self._keep(s)
            return self._view(rec, now)
        if op != "add":
            raise ValueError(f"unknown operation {op!r}")
        kind, watts, start, end, prices = parse_request(body, now)
        rid = f"r-{uuid.uuid4().hex[:10]}"
        rec = {"id": rid, "site": site, "kind": "keep_under" if kind == "cap" else "reduce", "watts": watts,
               "start": start, "end": end, "by": who,
               "prices": None if prices is None else {"start": prices.start_s, "interval_s": prices.step_s,
                                                      "prices": list(prices.prices)},
               "ref": str(body.get("ref") or "")[:200] or None, "created": time.time(), "orders": [],
               "replans": []}
        s.records[rid] = rec
        self._close_ended(s, now)
        self._send(s, s.em.add_request(SiteRequest(rid, kind, watts, start, end, prices), now), now)
        self._keep(s)
        self.ctx.log.info("site %s: request %s from %s: %s %d W, %d s; %d orders", site, rid, who,
                          rec["kind"], watts, end - start, len(rec["orders"]))
        return self._view(rec, now)

    @staticmethod
    def _view(rec: dict, now: int) -> dict:
        status = ("cancelled" if rec.get("cancelled") else "ended" if rec["end"] <= now
                  else "active" if rec["start"] <= now else "scheduled")
        return dict(rec, status=status)

    # orders out ---------------------------------------------------------------------------------
    def _owners(self, s: _Site, now: int, order: Order) -> list[dict]:
        live = [r for r in s.records.values() if not r.get("closed")
                and r["start"] - self.lead_s <= now < r["end"]]
        if not live and order.command.get("kind") == "restore":
            live = [s.records[i] for i in s.closed[-3:] if i in s.records]
        return live

    def _send(self, s: _Site, orders: list[Order], now: int) -> int:
        """Each order through the cloud's tracked path; a refusal there is the device's "no"."""
        queue, sent = list(orders), 0
        while queue and sent < 100:  # the manager never asks a device that said no again
            o = queue.pop(0)
            sent += 1
            od: dict[str, Any] = {"device": f"{o.device:08x}", "command": o.command, "why": o.why, "at": now,
                                  "id": None, "state": "accepted", "reason": None, "reason_text": None}
            try:
                c = self.ctx.send_command(o.device, o.command)
                od.update(id=c["id"], state=c["state"])
                self.cids[c["id"]] = (s.name, o.device, o.command)
            except Exception as e:  # noqa: BLE001 - Refused, a bad body, an unknown device: all a "no"
                od.update(state="refused", reason_text=f"the cloud refused it: {e}"[:300])
                self.ctx.log.warning("site %s: %08x: %s not sent: %s", s.name, o.device, o.command, e)
                queue += s.em.on_ack(o.device, o.command, "refused", None, now)
            for rec in self._owners(s, now, o):
                rec["orders"].append(dict(od))
        s.closed.clear()
        return sent

    def _keep(self, s: _Site) -> None:
        self.ctx.state_put("requests", s.records, s.name)

    # what the cloud tells it ------------------------------------------------------------------
    async def on_event(self, ev: dict) -> None:
        kind, dev = ev.get("type"), ev.get("device")
        now = int(time.time())
        if kind == "command":
            self._answer(ev, now)
            return
        if kind not in ("capabilities", "state", "meter") or not isinstance(dev, int):
            return
        site = self.site_of.get(dev)
        if site is None:  # provisioned since we started
            for name, s in self.sites.items():
                for d in self.ctx.devices(name):
                    if d["address"] == dev:
                        self._adopt(s, d)
            site = self.site_of.get(dev)
            if site is None:
                return
        s = self.sites[site]
        body = ev.get("body") or {}
        if kind == "capabilities":
            s.em.on_caps(dev, body)
            return
        if kind == "meter":
            if body.get("power_w") is None:
                return
            state = dict(s.state.get(dev) or {}, power_w=body["power_w"])
        else:
            state = dict(body)
            if "power_w" not in state and "power_w" in (s.state.get(dev) or {}):
                state["power_w"] = s.state[dev]["power_w"]  # the plug's meter says what the state does not
        s.state[dev] = state
        orders = s.em.on_state(dev, state, now)
        if orders:
            self._send(s, orders, now)
            self._keep(s)

    def _answer(self, ev: dict, now: int) -> None:
        cid = ev.get("id")
        if cid not in self.cids:
            return
        site, dev, command = self.cids[cid]
        s = self.sites[site]
        state, reason = ev.get("state"), ev.get("reason")
        touched = []
        for rec in s.records.values():
            for od in rec["orders"]:
                if od.get("id") == cid:
                    od.update(state=state, reason=reason, reason_text=ev.get("reason_text"))
                    touched.append(rec)
        if state in FINAL:
            del self.cids[cid]
            if state != "cancelled":
                orders = s.em.on_ack(dev, command, state, reason, now)
                if state != "applied":
                    n = self._send(s, orders, now)
                    for rec in touched:
                        rec["replans"].append({"at": now, "device": f"{dev:08x}", "command": cid,
                                               "answer": state, "reason": reason, "orders": n})
                    self.ctx.log.info("site %s: %08x answered %s (%s): re-planned, %d new orders",
                                      site, dev, state, ev.get("reason_text") or reason, n)
                else:
                    self._send(s, orders, now)
        if touched or state in FINAL:
            self._keep(s)


def _prices(p: dict | None) -> PriceForecast | None:
    if not p:
        return None
    return PriceForecast(int(p.get("start") or 0), int(p.get("interval_s") or 3600),
                         tuple(float(x) for x in p["prices"]))
