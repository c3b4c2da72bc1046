"""The OpenADR 3 VEN plugin: each site is a VEN polling a VTN's REST API.

Per site: the VEN is found by name (GET /vens?venName=) or created (POST /vens, a
VEN_VEN_REQUEST), its devices are registered as resources (resourceName dev-XXXXXXXX), the
programs it follows are found (options.programs by name, or every program it may read), and
GET /events?programID=... is polled. Each event (new, or with a new modificationDateTime)
is parsed and checked (mapping.py) and becomes SPOT commands through the cloud's tracked path
(reduce for SIMPLE levels, limit for IMPORT_CAPACITY_LIMIT, sent when the interval begins)
and, for PRICE, a site forecast. A shed or limit for the whole site goes to the site's energy
manager instead when one is enabled (../site_requests.py, as the 2.0b plugin does): "reduce
the site by W" (the level's percentage of the site's nominal power) or "keep the site under
W"; the manager's orders are then the event's commands. When the event asks for reports (reportDescriptors), one
REPORT goes back (POST /reports) once the devices have answered its commands (at once for an
event without commands), with the devices' own values from their shadows. An event that
disappears from the VTN while its commands still run is taken as cancelled: restore.

Bad input never reaches a device: an answer that is not JSON, an event that fails toadr3's
models, an event of a program this VEN does not follow, for resources it does not hold, or
with impossible intervals is refused, logged and counted (OpenADR 3 has no VEN-to-VTN error
message: the VEN just does not act). Polling only: no webhook subscription, so the cloud
needs no address the VTN can reach.

What outlives a restart (ctx.state, per site): the VEN's id and name, its resources, the
programs it follows, the events seen with their commands, pending limits and report state.

Options: vtn_url (required); token, or client_id + client_secret (+ token_url); ven_name
(default spot; the site is appended); programs (names; default all); poll_s (default 5);
report_delay_s (default 1). See manifest.json.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from pydantic import ValidationError

from host_tools.cloud.command_kinds import Refused
from host_tools.cloud.plugins import site_requests
from host_tools.cloud.plugins.base import Plugin as Base
from host_tools.cloud.plugins.openadr3 import mapping
from host_tools.cloud.plugins.openadr3.client import Malformed, VtnClient, VtnError

FINAL = {"applied", "adapted", "refused", "expired", "unsupported", "cancelled"}
RUNNING = {"accepted", "published", "delivered", "applied", "adapted"}
PAGE = 50


def _iso_epoch(s: Any) -> float | None:
    from datetime import datetime, timezone

    if not isinstance(s, str):
        return None
    try:
        t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


class Plugin(Base):
    async def start(self) -> None:
        o = self.ctx.options
        if not o.get("vtn_url"):
            raise ValueError("openadr3 needs options.vtn_url")
        self.poll_s = float(o.get("poll_s", 5))
        self.report_delay_s = float(o.get("report_delay_s", 1))
        self.stats: dict[str, int] = {"events": 0, "refused": 0, "malformed": 0, "commands": 0,
                                      "forecasts": 0, "reports": 0, "restores": 0,
                                      **(self.ctx.state_get("stats") or {})}
        self.client = VtnClient(o["vtn_url"], token=o.get("token"), client_id=o.get("client_id"),
                                client_secret=o.get("client_secret"), token_url=o.get("token_url"))
        self.sites: dict[str, dict] = {}
        self.by_command: dict[int, tuple[str, str]] = {}  # command id -> (site, event id)
        for site in self.ctx.sites:
            s = {"site": site, "ven": self.ctx.state_get("ven", site) or {},
                 "programs": self.ctx.state_get("programs", site) or {},
                 "events": self.ctx.state_get("events", site) or {},
                 "resources": {mapping.resource_name(d["address"]): d["address"] for d in self.ctx.devices(site)}}
            for eid, rec in s["events"].items():
                for cid in rec.get("commands", {}):
                    self.by_command[int(cid)] = (site, eid)
            self.sites[site] = s
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._run(s)) for s in self.sites.values()]

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.close()

    def _count(self, what: str, n: int = 1) -> None:
        self.stats[what] = self.stats.get(what, 0) + n
        self.ctx.state_put("stats", self.stats)

    def _ven_name(self, site: str) -> str:
        return f"{self.ctx.options.get('ven_name', 'spot')}-{site}"

    # registration ------------------------------------------------------------------------
    async def _register(self, s: dict) -> None:
        name = self._ven_name(s["site"])
        found = await self.client.request("GET", "/vens", params={"venName": name})
        ven = next((v for v in found or [] if isinstance(v, dict) and v.get("venName") == name), None)
        if ven is None:
            ven = await self.client.request("POST", "/vens", body={"objectType": "VEN_VEN_REQUEST", "venName": name})
        if not isinstance(ven, dict) or not ven.get("id"):
            raise Malformed(f"the VTN's VEN is {str(ven)[:200]}")
        s["ven"] = {"id": ven["id"], "name": name}
        self.ctx.state_put("ven", s["ven"], s["site"])
        self.ctx.log.info("site %s is VEN %s (venID %s)", s["site"], name, ven["id"])
        try:  # the devices as the VEN's resources, so the VTN may target them by name
            have = {r.get("resourceName") for r in await self.client.request(
                "GET", "/resources", params={"venID": ven["id"]}) or [] if isinstance(r, dict)}
            for rname in sorted(set(s["resources"]) - have):
                await self.client.request("POST", "/resources", body={
                    "objectType": "VEN_RESOURCE_REQUEST", "resourceName": rname, "venID": ven["id"]})
        except (VtnError, Malformed) as e:  # resources are optional for a VTN: events still work
            self.ctx.log.warning("site %s: resources not registered: %s", s["site"], e)

    async def _programs(self, s: dict) -> None:
        wanted = self.ctx.options.get("programs")
        got = await self.client.request("GET", "/programs")
        progs = {p["id"]: p.get("programName", "") for p in got or []
                 if isinstance(p, dict) and isinstance(p.get("id"), str)
                 and (not wanted or p.get("programName") in wanted)}
        if progs != s["programs"]:
            s["programs"] = progs
            self.ctx.state_put("programs", progs, s["site"])
            self.ctx.log.info("site %s follows programs %s", s["site"], sorted(progs.values()))

    # the poll loop --------------------------------------------------------------------------
    async def _run(self, s: dict) -> None:
        delay = self.poll_s
        while True:
            try:
                if not s["ven"].get("id"):
                    await self._register(s)
                await self._programs(s)
                await self._poll(s)
                self._due(s)
                delay = self.poll_s
            except asyncio.CancelledError:
                raise
            except Malformed as e:
                self._count("malformed")
                self.ctx.log.warning("site %s: %s; nothing is sent to a device", s["site"], e)
            except Exception as e:  # noqa: BLE001 - the VTN may be down or odd: try again later
                self.ctx.log.error("site %s: %s: %s", s["site"], type(e).__name__, e)
                delay = min(max(delay * 2, 1.0), 60.0)
            await asyncio.sleep(delay)

    async def _poll(self, s: dict) -> None:
        seen: set[str] = set()
        clean = True  # a poll that brought refusals is not trusted to say what was cancelled
        for pid in list(s["programs"]):
            skip = 0
            while True:
                page = await self.client.request("GET", "/events", params={"programID": pid, "skip": skip,
                                                                          "limit": PAGE})
                if not isinstance(page, list):
                    raise Malformed(f"GET /events answered {type(page).__name__}, not a list of events")
                for raw in page:
                    eid = raw.get("id") if isinstance(raw, dict) else None
                    if isinstance(eid, str):
                        seen.add(eid)
                    clean &= await self._event(s, raw)
                if len(page) < PAGE:
                    break
                skip += PAGE
        if clean:
            self._gone(s, seen)

    # events -----------------------------------------------------------------------------------
    async def _event(self, s: dict, raw: Any) -> bool:
        """Act on one event; False if it was refused now."""
        eid = raw.get("id") if isinstance(raw, dict) else None
        key = raw.get("modificationDateTime") or raw.get("createdDateTime") if isinstance(raw, dict) else None
        known = s["events"].get(eid) if isinstance(eid, str) else None
        if known is not None and known.get("mod") == key:
            return True  # polled again: its commands exist already
        now = time.time()
        size = len(json.dumps(raw, separators=(",", ":")))
        if not isinstance(eid, str) or not eid:
            self._count("malformed")
            return self._refuse(s, f"?{size}", None, now, size, "an event without an id")
        rec: dict[str, Any] = {"mod": key, "received": now, "created": _iso_epoch(raw.get("createdDateTime")),
                               "json_bytes": size, "commands": {}, "refused_devices": {}, "frame_bytes": 0,
                               "program": raw.get("programID"), "pending": [], "report": None}
        self._count("events")
        try:
            ev, targets = mapping.parse_event(raw)
        except ValueError as e:
            self._count("malformed")
            return self._refuse(s, eid, rec, now, size, f"malformed: {e}")
        plan = mapping.check_event(ev, targets, s["resources"], s["ven"].get("name", ""), s["programs"], now)
        if isinstance(plan, mapping.Refusal):
            return self._refuse(s, eid, rec, now, size, plan.reason)
        earlier = site_requests.requests_of(known or {})
        if known is not None and not earlier:  # a modification replaces what the earlier version started
            for cid, state in known.get("commands", {}).items():
                if state in RUNNING and not plan.shed and not plan.cap:
                    self._send(s, eid, rec, self.ctx.command(int(cid))["device"], {"kind": "restore"})
        for rid in earlier:  # ... and the earlier version's site requests give way (the manager restores)
            self.ctx.site_request_cancel(s["site"], rid)
        rec["notes"] = plan.notes
        for body in plan.prices:
            try:
                out = self.ctx.send_prices(s["site"], body)
                rec["frame_bytes"] += out["frame_bytes"]
                rec["forecast"] = {"steps": out["steps"], "interval_s": body["interval_s"], "start": body["start"]}
                self._count("forecasts")
            except (Refused, ValidationError, PermissionError, RuntimeError) as e:
                rec["forecast_refused"] = str(e)[:300]
                self.ctx.log.warning("event %s: forecast for %s not sent: %s", eid, s["site"], e)
        for item in (plan.shed, plan.cap):
            if item is None or self._via_manager(s, eid, rec, item, plan.devices, now):
                continue
            if isinstance(item, mapping.Cap) and item.start > now + 1:
                rec["pending"].append({"watts": item.watts, "start": item.start, "end": item.end,
                                       "devices": plan.devices})
                continue
            self._dispatch(s, eid, rec, item, plan.devices, now)
        if plan.reports:
            rec["report"] = {"descriptors": plan.reports, "sent": False}
        s["events"][eid] = rec
        self._keep(s)
        self.ctx.log.info("event %s (%s): %d commands, forecast %s, notes %s", eid, ev.event_name,
                          len(rec["commands"]), rec.get("forecast", {}).get("steps"), plan.notes)
        if rec["report"] and not rec["commands"] and not rec["pending"] and not rec.get("scheduled"):
            await self._report(s, eid)
        return True

    def _refuse(self, s: dict, eid: str, rec: dict | None, now: float, size: int, reason: str) -> bool:
        self._count("refused")
        self.ctx.log.warning("site %s refuses event %s: %s; nothing is sent to a device", s["site"], eid, reason)
        rec = rec or {"received": now, "json_bytes": size, "commands": {}}
        rec["refusal"] = reason[:300]
        s["events"][eid] = rec
        self._keep(s)
        return False

    def _via_manager(self, s: dict, eid: str, rec: dict, item: mapping.Shed | mapping.Cap,
                     devices: list[int], now: float) -> bool:
        """A site-wide shed or import limit to the site's energy manager, when it has one
        (site_requests.py): "reduce the site by W" (the shed's percentage of the site's
        nominal power) or "keep the site under W", which the manager splits over the devices
        by their records (a limit that starts later is the manager's to start). False (the
        plugin's own mapping then) when the site has no manager, the event targets only
        some of the site's devices, or a shed restores (0 %)."""
        if set(devices) != set(s["resources"].values()):
            return False
        if isinstance(item, mapping.Cap):
            kind, watts = "keep_under", item.watts
        elif item.percent > 0:
            kind = "reduce"
            watts = site_requests.site_watts([self.ctx.shadow(d) for d in devices], item.percent)
        else:
            return False
        out = site_requests.to_manager(self.ctx, s["site"], kind, watts, item.start, item.end,
                                       f"openadr3:{eid}", now)
        if out is None:
            return False
        rec.setdefault("requests", []).append(out["id"])
        rec["end"] = max(rec.get("end", 0), item.end)
        rec["scheduled"] = rec.get("scheduled") or out.get("status") == "scheduled"
        self._count("commands", site_requests.adopt(self.ctx, rec, out, self.by_command, (s["site"], eid)))
        self.ctx.log.info("event %s: %s %d W at %s to the energy manager (request %s): %d orders", eid, kind,
                          watts, s["site"], out["id"], len(rec["commands"]))
        return True

    def _dispatch(self, s: dict, eid: str, rec: dict, item: Any, devices: list[int], now: float) -> None:
        for dev in devices:
            sh = self.ctx.shadow(dev)
            caps = sh.get("capabilities") or {}
            body = mapping.device_command(caps.get("role") or (sh.get("state") or {}).get("role"), caps, item,
                                          len(devices), now)
            if body is not None:
                self._send(s, eid, rec, dev, body)

    def _send(self, s: dict, eid: str, rec: dict, dev: int, body: dict) -> None:
        try:
            c = self.ctx.send_command(dev, body)
        except (Refused, ValidationError, PermissionError) as e:
            rec["refused_devices"][f"{dev:08x}"] = str(e)[:300]
            self.ctx.log.warning("event %s: %08x refused by the cloud: %s", eid, dev, e)
            return
        rec["commands"][str(c["id"])] = c["state"]
        rec["frame_bytes"] += c.get("frame_bytes") or len(c.get("frame") or b"")
        self.by_command[c["id"]] = (s["site"], eid)
        self._count("commands")

    def _due(self, s: dict) -> None:
        """Import limits whose interval has begun (SPOT's limit has no start time)."""
        now = time.time()
        for eid, rec in list(s["events"].items()):
            due = [p for p in rec.get("pending") or [] if p["start"] <= now + 1]
            for p in due:
                rec["pending"].remove(p)
                self._dispatch(s, eid, rec, mapping.Cap(p["watts"], p["start"], p["end"]), p["devices"], now)
            if due:
                self._keep(s)

    def _gone(self, s: dict, seen: set[str]) -> None:
        """Events the VTN no longer lists while their commands still run: cancelled."""
        now = time.time()
        for eid, rec in s["events"].items():
            if eid in seen or rec.get("gone") or "refusal" in rec or rec.get("program") not in s["programs"]:
                continue
            rec["gone"] = now
            rec["pending"] = []
            for rid in site_requests.requests_of(rec):  # the manager restores what it asked
                self.ctx.site_request_cancel(s["site"], rid)
                self._count("restores")
            for cid, state in [] if rec.get("requests") else list(rec.get("commands", {}).items()):
                if state in RUNNING:
                    dev = self.ctx.command(int(cid))["device"]
                    self._send(s, eid, rec, dev, {"kind": "restore"})
                    self._count("restores")
            self._keep(s)

    def _keep(self, s: dict) -> None:
        self.ctx.state_put("events", s["events"], s["site"])

    # what the devices answered, and the report the VTN asked for ---------------------------------
    async def on_event(self, event: dict) -> None:
        whose = site_requests.owner(event, self.by_command, self._adopt_later)
        if whose is None:
            return
        site, eid = whose
        s = self.sites[site]
        rec = s["events"].get(eid)
        if rec is None:
            return
        rec["commands"][str(event["id"])] = event["state"]
        self._keep(s)
        rep = rec.get("report")
        if rep and not rep["sent"] and not rec.get("pending") and all(v in FINAL for v in rec["commands"].values()):
            # the same wake's state report follows its ACK: wait a moment so the values are the new ones
            asyncio.get_running_loop().call_later(
                self.report_delay_s, lambda: asyncio.ensure_future(self._report(s, eid)))

    def _adopt_later(self, cid: int) -> None:
        """A command this plugin does not know: maybe the energy manager's re-plan for one of
        its events (site_requests.adopt_later)."""
        events = [(s["site"], eid, rec, (s["site"], eid)) for s in self.sites.values()
                  for eid, rec in s["events"].items()]
        for _eid, _rec, n in site_requests.adopt_later(self.ctx, cid, events, self.by_command, time.time()):
            self._count("commands", n)
        if cid in self.by_command:
            self._keep(self.sites[self.by_command[cid][0]])

    async def _report(self, s: dict, eid: str) -> None:
        rec = s["events"].get(eid) or {}
        rep = rec.get("report")
        if not rep or rep["sent"]:
            return
        rep["sent"] = True  # one report per event, even if the VTN refuses it (logged)
        shadows = {name: self.ctx.shadow(dev) for name, dev in s["resources"].items()}
        try:
            body, notes = mapping.report(rec["program"], eid, s["ven"]["name"], rep["descriptors"], shadows,
                                         time.time())
        except ValidationError as e:
            rep["error"] = str(e)[:300]
            self.ctx.log.error("event %s: report not built: %s", eid, e)
            return self._keep(s)
        rep["notes"] = notes
        if body is not None:
            try:
                out = await self.client.request("POST", "/reports", body=body)
                rep["id"] = (out or {}).get("id") if isinstance(out, dict) else None
                self._count("reports")
            except (VtnError, Malformed, httpx.HTTPError) as e:
                rep["error"] = str(e)[:300]
                self.ctx.log.error("event %s: report refused by the VTN: %s", eid, e)
        self._keep(s)
