"""The OpenADR 2.0b VEN plugin: the cloud as a VEN (per site, or per device) towards a VTN.

Each VEN is an openleadr client (ven.py) polling the VTN. An event is checked and
mapped (mapping.py) and becomes SPOT commands through the cloud's tracked path and, for
price signals, a site forecast. A site-wide load shed goes to the site's energy manager
first when one is enabled (../site_requests.py: the event's percentage of the site's nominal
power, in W; the manager's orders, listed in its request's record, are then the event's
commands), and to mapping.device_command (every device the same percentage) otherwise; the VTN gets optIn once the commands are accepted, and
optOut later when every device's ACK comes back refused, expired or unsupported (an
oadrCreatedEvent for the same event and modification number: openleadr's VTN, like the
profile, takes the latest). Refused events are answered optOut with the OpenADR status
code and never reach a device. Telemetry: one TELEMETRY_USAGE report per VEN offering,
for every device, its power (W), energy (Wh) and state (its outputs), sampled from the
device's shadow at the rate the VTN asks for.

What outlives a restart, in the cloud's database (ctx.state, keyed by the VEN): the
registration (venID, registrationID: the same VEN re-registers), and the events seen
with their commands and the opt given (an event the VTN sends again is not sent to the
devices twice, and an ACK after a restart still leads to its opt-out).

Options: vtn_url, ven_name, per ("site" | "device"), cert, key, ca_file,
vtn_fingerprint, poll_s. See manifest.json.
"""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from openleadr import objects, utils
from pydantic import ValidationError

from host_tools.cloud.command_kinds import Refused
from host_tools.cloud.plugins import site_requests
from host_tools.cloud.plugins.base import Plugin as Base
from host_tools.cloud.plugins.openadr2b import mapping
from host_tools.cloud.plugins.openadr2b.ven import Ven

FINAL = {"applied", "adapted", "refused", "expired", "unsupported", "cancelled"}
TAKING_PART = {"applied", "adapted"}


def opt_for(states: list[str]) -> str | None:
    """What the devices' answers say: optIn while any device takes part (applied or
    adapted), optOut once every command ended without (refused, expired, unsupported);
    None while some are still on their way (the opt-in given at acceptance stands)."""
    if any(s in TAKING_PART for s in states):
        return "optIn"
    if states and all(s in FINAL for s in states):
        return "optOut"
    return None


class Plugin(Base):
    async def start(self) -> None:
        o = self.ctx.options
        if not o.get("vtn_url"):
            raise ValueError("openadr2b needs options.vtn_url")
        self.per = o.get("per", "site")
        if self.per not in ("site", "device"):
            raise ValueError(f"openadr2b: per = {self.per!r}; use \"site\" or \"device\"")
        self.stats: dict[str, Any] = {"events": 0, "refused": 0, "commands": 0, "forecasts": 0,
                                      "opt_outs_after_acks": 0, "optin_mismatches": 0, "malformed": 0,
                                      **(self.ctx.state_get("stats") or {})}
        self.vens: dict[str, dict] = {}
        self.by_command: dict[int, tuple[str, str]] = {}  # command id -> (VEN key, event id)
        for site in self.ctx.sites:
            devs = self.ctx.devices(site)
            groups = ([(site, devs)] if self.per == "site"
                      else [(f"{site}/{d['address']:08x}", [d]) for d in devs])
            for key, members in groups:
                v = {"key": key, "site": site, "resources": {resource_id(d["address"]): d["address"] for d in members},
                     "events": self.ctx.state_get("events", key) or {}, "ven": None}
                for eid, e in v["events"].items():
                    for cid in e.get("commands", {}):
                        self.by_command[int(cid)] = (key, eid)
                self.vens[key] = v
        self.tasks = [asyncio.get_running_loop().create_task(self._run(v)) for v in self.vens.values()]

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for v in self.vens.values():
            ven = v["ven"]
            if ven is not None and ven.client_session is not None:
                await ven.stop()

    # the VEN's life -----------------------------------------------------------------------
    def _make_ven(self, v: dict) -> Ven:
        o, key = self.ctx.options, v["key"]
        reg = self.ctx.state_get("registration", key) or {}
        name = f"{o.get('ven_name', 'spot')}-{key.replace('/', '-')}"
        ven = Ven(ven_name=name, vtn_url=o["vtn_url"], ven_id=reg.get("ven_id"),
                  registration_id=reg.get("registration_id"), poll_s=o.get("poll_s"),
                  cert=o.get("cert"), key=o.get("key"), ca_file=o.get("ca_file"),
                  vtn_fingerprint=o.get("vtn_fingerprint"),
                  on_distribute=lambda n: v.__setitem__("last_xml_bytes", n),
                  on_malformed=self._malformed)
        ven.add_handler("on_event", lambda ev: self._oadr_event(v, ev))
        ven.add_handler("on_update_event", lambda ev: self._oadr_event(v, ev))
        for rid, dev in v["resources"].items():
            for field, measurement, unit in (("power_w", "REAL_POWER", "W"), ("energy_wh", "REAL_ENERGY", "Wh"),
                                             ("state", "state", None)):
                ven.add_report(callback=lambda dev=dev, field=field: self._sample(dev, field),
                               resource_id=rid, measurement=measurement, unit=unit,
                               report_specifier_id=f"spot-{key}", r_id=f"{rid}.{field}",
                               report_duration=timedelta(hours=1),
                               sampling_rate=objects.SamplingRate(min_period=timedelta(seconds=1),
                                                                  max_period=timedelta(hours=1)))
        return ven

    async def _run(self, v: dict) -> None:
        delay = 1.0
        while True:
            ven = v["ven"] = self._make_ven(v)
            try:
                await ven.run()
            except Exception as e:  # noqa: BLE001 - the VTN may be down or odd: try again later
                self.ctx.log.error("VEN %s: %s: %s", ven.ven_name, type(e).__name__, e)
            if ven.registration_id:
                self.ctx.state_put("registration", {"ven_id": ven.ven_id, "registration_id": ven.registration_id,
                                                    "ven_name": ven.ven_name}, v["key"])
                self.ctx.log.info("VEN %s registered: venID %s, registrationID %s", ven.ven_name,
                                  ven.ven_id, ven.registration_id)
                return
            if ven.client_session is not None and not ven.client_session.closed:
                await ven.client_session.close()
            self.ctx.log.warning("VEN %s not registered with %s; retrying in %.0f s", ven.ven_name,
                                 ven.vtn_url, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    def _malformed(self) -> None:
        self.stats["malformed"] += 1
        self.ctx.state_put("stats", self.stats)

    # events from the VTN ---------------------------------------------------------------------
    async def _oadr_event(self, v: dict, event: dict) -> str:
        d = event.get("event_descriptor") or {}
        eid, mod = str(d.get("event_id")), d.get("modification_number", 0)
        known = v["events"].get(eid)
        if known is not None and known.get("mod") == mod:
            return known["opt"]  # sent again (a restart, a re-poll): its commands exist already
        now = time.time()
        created = d.get("created_date_time")
        rec: dict[str, Any] = {"mod": mod, "received": now, "xml_bytes": v.get("last_xml_bytes"),
                               "created": created.timestamp() if isinstance(created, datetime) else None,
                               "commands": {}, "refused_devices": {}, "frame_bytes": 0}
        self.stats["events"] += 1
        if d.get("event_status") == "cancelled":
            rec["opt"] = "optIn"
            if (known or {}).get("request"):  # the site's energy manager restores what it asked
                self.ctx.site_request_cancel(v["site"], known["request"])
                return self._keep(v, eid, rec)
            for cid, state in (known or {}).get("commands", {}).items():
                if state in TAKING_PART | {"accepted", "published", "delivered"}:
                    dev = self.ctx.command(int(cid))["device"]
                    self._send(v, eid, rec, dev, {"kind": "restore"})
            return self._keep(v, eid, rec)
        plan = mapping.check_event(event, v["resources"], now)
        if isinstance(plan, mapping.Refusal):
            v["ven"].refusals[eid] = (plan.code, plan.reason)
            self.stats["refused"] += 1
            self.ctx.log.warning("VEN %s refuses event %s (%d): %s; nothing is sent to a device",
                                 v["ven"].ven_name, eid, plan.code, plan.reason)
            rec.update(opt="optOut", refusal=[plan.code, plan.reason])
            return self._keep(v, eid, rec)
        v["ven"].refusals.pop(eid, None)
        for body in plan.prices:
            try:
                out = self.ctx.send_prices(v["site"], body)
                rec["frame_bytes"] += out["frame_bytes"]
                rec["forecast"] = {"steps": out["steps"], "interval_s": body["interval_s"]}
                self.stats["forecasts"] += 1
            except (Refused, ValidationError, PermissionError, RuntimeError) as e:
                rec["forecast_refused"] = str(e)[:300]
                self.ctx.log.warning("event %s: forecast for %s not sent: %s", eid, v["site"], e)
        if plan.shed is not None and not self._via_manager(v, eid, rec, plan, known, now):
            for dev in plan.devices:
                sh = self.ctx.shadow(dev)
                caps = sh.get("capabilities") or {}
                body = mapping.device_command(caps.get("role") or (sh.get("state") or {}).get("role"),
                                              caps, plan.shed, now)
                if body is not None:
                    self._send(v, eid, rec, dev, body)
        took = bool(rec["commands"]) or "forecast" in rec or bool(rec.get("scheduled"))
        rec["opt"] = "optIn" if took else "optOut"
        rec["sent_opt"] = rec["opt"]
        return self._keep(v, eid, rec)

    def _via_manager(self, v: dict, eid: str, rec: dict, plan: mapping.Plan, known: dict | None,
                     now: float) -> bool:
        """A site-wide shed to the site's energy manager, when it has one (site_requests.py):
        the event's percentage of the site's nominal power becomes "reduce the site by W",
        which the manager splits over the devices by their records. False (the plugin's own
        mapping then) when the site has no manager, the event targets only some of the VEN's
        resources, or it restores (0 %)."""
        shed = plan.shed
        assert shed is not None
        if shed.percent <= 0 or set(plan.devices) != set(v["resources"].values()):
            return False
        watts = site_requests.site_watts([self.ctx.shadow(dev) for dev in plan.devices], shed.percent)
        # A modification: the old request gives way to the new.
        out = site_requests.to_manager(self.ctx, v["site"], "reduce", watts, shed.start, shed.end,
                                       f"openadr2b:{eid}", now, site_requests.requests_of(known or {}))
        if out is None:
            return False
        # Taken for later: the manager sends its orders when the request starts (optIn now).
        rec.update(request=out["id"], watts=watts, end=shed.end, scheduled=out.get("status") == "scheduled")
        self._adopt(v, eid, rec, out)
        self.ctx.log.info("event %s: %d %% of %s = %d W to the energy manager (request %s): %d orders",
                          eid, shed.percent, v["site"], watts, out["id"], len(rec["commands"]))
        return True

    def _adopt(self, v: dict, eid: str, rec: dict, out: dict) -> int:
        n = site_requests.adopt(self.ctx, rec, out, self.by_command, (v["key"], eid))
        self.stats["commands"] += n
        return n

    def _adopt_later(self, cid: int) -> None:
        """A command this plugin does not know: maybe the energy manager's re-plan for one of
        its events; adopted if its request lists it."""
        events = [(v["site"], eid, rec, (v["key"], eid)) for v in self.vens.values()
                  for eid, rec in v["events"].items()]
        for eid, rec, n in site_requests.adopt_later(self.ctx, cid, events, self.by_command, time.time()):
            self.stats["commands"] += n
            for v in self.vens.values():
                if v["events"].get(eid) is rec:
                    self._keep(v, eid, rec)

    def _send(self, v: dict, eid: str, rec: dict, dev: int, body: dict) -> None:
        try:
            c = self.ctx.send_command(dev, body)
        except (Refused, ValidationError, PermissionError) as e:
            rec["refused_devices"][f"{dev:08x}"] = str(e)[:300]
            self.ctx.log.warning("event %s: %08x refused by the cloud: %s", eid, dev, e)
            return
        rec["commands"][str(c["id"])] = c["state"]
        rec["frame_bytes"] += c.get("frame_bytes") or len(c.get("frame") or b"")
        self.by_command[c["id"]] = (v["key"], eid)
        self.stats["commands"] += 1

    def _keep(self, v: dict, eid: str, rec: dict) -> str:
        rec.setdefault("sent_opt", rec["opt"])
        v["events"][eid] = rec
        self.ctx.state_put("events", v["events"], v["key"])
        self.ctx.state_put("stats", self.stats)
        return rec["opt"]

    # what the devices answered ---------------------------------------------------------------
    async def on_event(self, event: dict) -> None:
        whose = site_requests.owner(event, self.by_command, self._adopt_later)
        if whose is None:
            return
        key, eid = whose
        v = self.vens[key]
        rec = v["events"].get(eid)
        if rec is None:
            return
        rec["commands"][str(event["id"])] = event["state"]
        want = opt_for(list(rec["commands"].values()))
        if want is not None and want != rec["sent_opt"]:
            ok = await self._send_opt(v, eid, rec, want)
            if ok:
                rec["sent_opt"] = want
                self.stats["opt_outs_after_acks"] += want == "optOut"
                self.ctx.log.info("event %s: devices answered %s: %s sent to the VTN", eid,
                                  sorted(set(rec["commands"].values())), want)
        if all(s in FINAL for s in rec["commands"].values()) and not rec.get("settled"):
            rec["settled"] = True
            final = opt_for(list(rec["commands"].values()))
            if final is not None and final != rec["sent_opt"]:
                self.stats["optin_mismatches"] += 1  # the VTN holds an opt the devices contradict
        rec["opt"] = rec["sent_opt"]
        self._keep(v, eid, rec)

    async def _send_opt(self, v: dict, eid: str, rec: dict, opt: str) -> bool:
        """oadrCreatedEvent again for this event, with the opt the devices' answers call for."""
        ven: Ven = v["ven"]
        if ven is None or not ven.registration_id:
            return False
        rid = utils.generate_id()
        msg = ven._create_message("oadrCreatedEvent", ven_id=ven.ven_id,
                                  response={"response_code": 200, "response_description": "OK", "request_id": rid},
                                  event_responses=[{"response_code": 200, "response_description": "OK",
                                                    "request_id": rid, "event_id": eid,
                                                    "modification_number": rec["mod"], "opt_type": opt}])
        kind, _payload = await ven._perform_request("EiEvent", msg)
        if kind is None:
            self.ctx.log.error("event %s: the VTN did not take the %s", eid, opt)
            return False
        ven.responded_events[eid] = opt  # openleadr repeats this opt if the VTN sends the event again
        return True

    # telemetry --------------------------------------------------------------------------------
    def _sample(self, dev: int, field: str) -> Any:
        """A device's latest reported value, as the VTN's report asks for it ([] if none yet:
        nothing is reported rather than a made-up zero)."""
        v = sample(self.ctx.shadow(dev), field)
        return [] if v is None else [(datetime.now(timezone.utc), v)]


def resource_id(device: int) -> str:
    """A device's OpenADR resource id. Not the bare hex address: openleadr's parser turns
    numeric-looking strings ("00003101") into numbers on the way in."""
    return f"dev-{device:08x}"


def sample(shadow: dict, field: str) -> float | None:
    """The value reported for a device: power and energy from its meter report if it sends
    one (the plug), otherwise from its state report; state: its outputs."""
    meter, state = shadow.get("meter") or {}, shadow.get("state") or {}
    if field == "state":
        v = state.get("outputs")
    else:
        v = meter.get(field, state.get(field))
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
