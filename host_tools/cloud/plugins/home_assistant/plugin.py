"""Home Assistant plugin: SPOT devices as Home Assistant entities over its MQTT integration.

On start, and whenever a device's capability record arrives, each device of the
plugin's sites is announced by MQTT discovery (retained, under the discovery
prefix); its state document and availability are published retained under the
plugin's own namespace and kept current from the cloud's events. Home Assistant's
commands (climate temperature and mode, switch, SG Ready select) are mapped to
SPOT commands (commands.py) and sent through ctx.send_command, the cloud's tracked
and sealed path. A command for a device that is offline (lost, never seen), that
its role rules out or whose payload is malformed is refused: logged with the
reason, published on <root>/refused, never forwarded. See README.md.
"""
from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from host_tools.cloud.command_kinds import Refused
from host_tools.cloud.plugins.base import Plugin as Base
from host_tools.cloud.plugins.home_assistant import entities as E
from host_tools.cloud.plugins.home_assistant.commands import MAPPINGS, Unfit

_MQTT_WILD = set("+#/")


class Plugin(Base):
    async def start(self) -> None:
        o = self.ctx.options
        self.prefix = str(o.get("discovery_prefix", "homeassistant")).strip("/")
        self.base = str(o.get("base_topic", "spot-ha")).strip("/")
        for name, value in (("discovery_prefix", self.prefix), ("base_topic", self.base)):
            if not value or value.split("/")[0] == "spot" or value.startswith("$") \
                    or set(value) & {"+", "#"}:
                raise ValueError(f"option {name} = {value!r}: give a topic of this plugin's own "
                                 "(not under spot/, no wildcards)")
        self.sites = [s for s in self.ctx.sites if not set(s) & _MQTT_WILD]
        for s in set(self.ctx.sites) - set(self.sites):
            self.ctx.log.error("site %r has MQTT wildcards or slashes in its name: not offered to "
                               "Home Assistant", s)
        self.last: dict[str, bytes] = {}  # topic -> what we last published there (retained)
        self.sent: dict[int, tuple[int, str]] = {}  # command id -> (device, site), ours
        self.stats = {"discovery": 0, "states": 0, "commands": 0, "refused": 0}
        for site in self.sites:
            self.ctx.mqtt_subscribe(f"{self.base}/{site}/+/+/set", self._command)
            self.ctx.mqtt_subscribe(f"{self.base}/{site}/+/+/+/set", self._command)
        # Home Assistant's birth message: it restarted, so announce everything again
        # (retained messages already cover it; this covers a broker that lost them).
        self.ctx.mqtt_subscribe(f"{self.prefix}/status", self._birth)
        self._announce_all()

    # publishing --------------------------------------------------------------------------
    def _topics(self, d: dict) -> E.Topics:
        return E.Topics(self.base, self.prefix, d["site"], d["address"])

    def _publish(self, topic: str, payload: bytes, retain: bool = True) -> None:
        if retain and self.last.get(topic) == payload:
            return  # unchanged: Home Assistant has it (retained)
        self.ctx.mqtt_publish(topic, payload, retain=retain)
        if retain:
            self.last[topic] = payload

    def _announce_all(self) -> None:
        for d in self.ctx.devices():
            if d.get("site") in self.sites and d.get("capabilities"):
                self._announce(d)

    def _announce(self, d: dict) -> None:
        """Discovery for every entity of the device, then its availability and state."""
        t = self._topics(d)
        for topic, payload in E.discovery(d, t).items():
            before = self.last.get(topic)
            self._publish(topic, E.encode(payload))
            self.stats["discovery"] += before != self.last.get(topic)
        self._refresh(d)

    def _refresh(self, d: dict) -> None:
        t = self._topics(d)
        self._publish(t.availability, b"online" if E.available(d) else b"offline")
        if E.role_of(d) is not None:
            self._publish(t.state, E.encode(E.state_doc(d)))
            self.stats["states"] += 1

    def _birth(self, _topic: str, payload: bytes) -> None:
        if payload.strip() == b"online":
            self.last.clear()
            self._announce_all()

    # the cloud's events ------------------------------------------------------------------
    async def on_event(self, ev: dict) -> None:
        kind, device = ev.get("type"), ev.get("device")
        if kind == "command":
            self._outcome(ev)
            return
        if not isinstance(device, int):
            return
        d = self.ctx.shadow(device)
        if d.get("site") not in self.sites:
            return
        if kind == "capabilities":
            self._announce(d)
        elif kind in ("state", "meter", "availability"):
            if kind == "meter":  # the newest reading: overlay it on what the shadow holds
                d["meter"] = dict(d.get("meter") or {}, **(ev.get("body") or {}))
            if not any(self._topics(d).discovery(c, o) in self.last
                       for c, o in (("climate", "climate"), ("switch", "relay"), ("select", "sg_ready"))):
                self._announce(d)  # its capability record came before we were running
            else:
                self._refresh(d)

    def _outcome(self, ev: dict) -> None:
        """A command of ours changed state: told to Home Assistant (the device's next state
        report then updates the entity itself)."""
        mine = self.sent.get(ev.get("id"))  # type: ignore[arg-type]
        if mine is None:
            return
        device, site = mine
        state = ev.get("state")
        body = {"id": ev["id"], "state": state, "reason": ev.get("reason_text")}
        self.ctx.mqtt_publish(E.Topics(self.base, self.prefix, site, device).outcome,
                              json.dumps(body).encode(), retain=False)
        if state in ("refused", "adapted", "expired", "unsupported"):
            self.ctx.log.info("command %s to %08x: %s (%s)", ev["id"], device, state, ev.get("reason_text"))
        if state in ("applied", "adapted", "refused", "expired", "unsupported"):
            self.sent.pop(ev["id"], None)

    # Home Assistant's commands -----------------------------------------------------------------
    def _command(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        base_n = len(self.base.split("/"))
        site, rest = parts[base_n], parts[base_n + 1:]
        try:
            device = int(rest[0], 16)
        except ValueError:
            self.ctx.log.warning("Home Assistant command on %s: no device address there", topic)
            return
        path = "/".join(rest[1:-1])
        t = E.Topics(self.base, self.prefix, site, device)
        try:
            body = self._check(site, device, path, payload)
            c = self.ctx.send_command(device, body)
        except (Unfit, Refused, PermissionError, LookupError) as e:
            self._refuse(t, topic, payload, str(e))
            return
        except ValidationError as e:  # a mapping produced what the cloud's model refuses
            self._refuse(t, topic, payload, e.errors()[0].get("msg", str(e)))
            return
        self.sent[c["id"]] = (device, site)
        self.stats["commands"] += 1
        self.ctx.log.info("Home Assistant %s %r -> command %d (%s) to %08x", path, payload[:40],
                          c["id"], c["kind"], device)

    def _check(self, site: str, device: int, path: str, payload: bytes) -> dict[str, Any]:
        if path not in MAPPINGS:
            raise Unfit(f"no command topic {path!r} here")
        if len(payload) > 64:
            raise Unfit(f"a {len(payload)}-byte payload is no Home Assistant command here")
        d = self.ctx.shadow(device)  # PermissionError outside our sites, LookupError if unknown
        if d.get("site") != site:
            raise Unfit(f"device {device:08x} is not in site {site!r}")
        role, mapping = MAPPINGS[path]
        have = E.role_of(d)
        if have != role:
            raise Unfit(f"{path} is for a {role}; device {device:08x} is "
                        f"{'a ' + have if have else 'not known yet (no capability record)'}")
        if not E.available(d):
            raise Unfit(f"device {device:08x} is offline ({d.get('availability') or 'never seen'}): "
                        "not forwarded")
        return mapping(payload, d)

    def _refuse(self, t: E.Topics, topic: str, payload: bytes, reason: str) -> None:
        self.stats["refused"] += 1
        self.ctx.log.warning("refused Home Assistant command on %s (%r): %s", topic, payload[:40], reason)
        self.ctx.mqtt_publish(t.refused, json.dumps(
            {"topic": topic, "payload": payload[:64].decode("utf-8", "replace"), "reason": reason}).encode(),
            retain=False)
