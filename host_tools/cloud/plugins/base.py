"""What a plugin is: the interface every plugin implements, and the context it is given.

A plugin receives the cloud's events (reports, shadows' availability, command
states) for the devices of its sites, and may send commands and forecasts, only
through the cloud's tracked path (`ctx.send_command`, `ctx.send_prices`): the same
checks, the same audit, the same resend after a crash as the API. It keeps what
must outlive a restart (registrations, open events, report subscriptions) in the
cloud's database through `ctx.state`. It runs on its own thread and event loop:
blocking there stalls that plugin only, and a plugin that fails or hangs never
takes the cloud down (host.py).
"""
from __future__ import annotations

import logging
from typing import Any, Callable



class ManagerBusy(TimeoutError):
    """The site's energy manager did not answer in time (it is busy, or stuck).

    `started`: whether it had begun the call when the caller gave up. If not, it never
    will (nothing changed); if it had, the call may still take effect."""

    def __init__(self, site: str, op: str, waited_s: float, started: bool) -> None:
        self.site, self.op, self.waited_s, self.started = site, op, waited_s, started
        then = ("it had begun, so the request may still be taken: look at GET /api/sites/"
                f"{site}/requests before sending it again" if started and op in ("add", "cancel")
                else "nothing was changed")
        super().__init__(f"site {site!r}: its energy manager did not answer within {waited_s:g} s; {then}")

class PluginContext:
    """The cloud as one plugin sees it; every method is safe to call from the plugin's thread."""

    def __init__(self, name: str, sites: list[str], options: dict, store: Any, dispatcher: Any,
                 bridge: Any | None) -> None:
        self.name = name
        self.sites = list(sites)
        self.options = dict(options)
        self.log = logging.getLogger(f"spot.cloud.plugin.{name}")
        self._store = store
        self._dispatcher = dispatcher
        self._bridge = bridge
        self._post: Callable[..., Any] = lambda fn, *a: fn(*a)  # the host makes it the plugin's loop
        self._host: Any | None = None  # the PluginHost, for site requests between plugins

    @property
    def who(self) -> str:
        """How the audit log and the command history name this plugin."""
        return f"plugin:{self.name}"

    # what the cloud knows ------------------------------------------------------------
    def devices(self, site: str | None = None) -> list[dict]:
        """The devices of this plugin's sites (or of one of them), with their shadows."""
        out = []
        for s in ([site] if site else self.sites):
            if s in self.sites:
                out += [dict(d, address=d["address"]) for d in self._store.devices(s)]
        return out

    def shadow(self, device: int) -> dict:
        d = self._store.shadow(device)
        self._mine(device, d)
        return d

    def command(self, cid: int) -> dict:
        return self._store.command(cid)

    def _mine(self, device: int, d: dict | None = None) -> None:
        d = d or self._store.device(device)
        if d.get("site") not in self.sites:
            raise PermissionError(f"device {device:08x} is not in the sites of plugin {self.name!r}")

    # what a plugin may do ----------------------------------------------------------------
    def send_command(self, device: int, body: dict) -> dict:
        """A command through the tracked path; raises command_kinds.Refused with the reason
        when the device's role or capabilities rule it out."""
        self._mine(device)
        return self._dispatcher.send_command(device, body, self.who)

    def send_prices(self, site: str, body: dict) -> dict:
        if site not in self.sites:
            raise PermissionError(f"site {site!r} is not one of plugin {self.name!r}'s")
        return self._dispatcher.send_prices(site, body, self.who)

    def mqtt_publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        """For standards that speak MQTT themselves (Home Assistant's discovery and states).
        The spot/ namespace is the devices': a plugin cannot publish there."""
        if topic.startswith("spot/") or topic.startswith("$"):
            raise PermissionError(f"plugins do not publish on {topic!r}: commands go through send_command")
        if self._bridge is None:
            raise RuntimeError("no broker in this process")
        self._bridge.client.publish(topic, payload, qos=1, retain=retain)

    def mqtt_subscribe(self, topic_filter: str, handler: Callable[[str, bytes], None]) -> None:
        """Messages on topic_filter (outside spot/) go to handler(topic, payload) on the plugin's thread."""
        if topic_filter.startswith("spot/") or topic_filter.startswith("$"):
            raise PermissionError(f"plugins do not subscribe to {topic_filter!r}")
        if self._bridge is None:
            raise RuntimeError("no broker in this process")
        self._bridge.subscribe_extra(topic_filter, lambda t, p: self._post(handler, t, p))

    # site requests: a grid target for a whole site, split by its energy manager ----------------
    def site_request(self, site: str, request: dict) -> dict | None:
        """Hand a site request to the site's energy manager (the energy_manager plugin, when
        it is enabled for the site); None when the site has none, so the caller falls back
        to its own mapping. request: {"kind": "reduce" | "keep_under", "watts", "start",
        "end" (or "duration_s"), optional "prices" {"start", "interval_s", "prices"},
        optional "ref" (the caller's own name for it, e.g. its event id)}. The answer is the
        request's record: its "id", and "orders" (device, command, command id, state) the
        manager sent for it so far. Raises ValueError for a request it cannot take."""
        if site not in self.sites:
            raise PermissionError(f"site {site!r} is not one of plugin {self.name!r}'s")
        return None if self._host is None else self._host.site_call(site, "add", request, self.who)

    def site_request_get(self, site: str, request_id: str) -> dict | None:
        """The record of one site request (its orders and the devices' answers so far)."""
        if site not in self.sites:
            raise PermissionError(f"site {site!r} is not one of plugin {self.name!r}'s")
        return None if self._host is None else self._host.site_call(site, "get", {"id": request_id}, self.who)

    def site_request_cancel(self, site: str, request_id: str) -> dict | None:
        """Withdraw a site request: the manager restores the devices it asked."""
        if site not in self.sites:
            raise PermissionError(f"site {site!r} is not one of plugin {self.name!r}'s")
        return None if self._host is None else self._host.site_call(site, "cancel", {"id": request_id}, self.who)

    def serve_site_requests(self, handler: Callable[[str, str, dict, str], Any]) -> None:
        """Become the energy manager of this plugin's sites: handler(op, site, body, who) is
        called on this plugin's thread for op "add", "get", "cancel" and "list"."""
        if self._host is not None:
            self._host.serve_sites(self.sites, self.name, handler)

    # what survives a restart ------------------------------------------------------------
    def state_get(self, key: str, site: str = "") -> Any:
        return self._store.plugin_get(self.name, site, key)

    def state_put(self, key: str, value: Any, site: str = "") -> None:
        """Store a JSON value (None deletes it)."""
        self._store.plugin_put(self.name, site, key, value)

    def state_items(self, site: str = "") -> dict[str, Any]:
        return self._store.plugin_items(self.name, site)


class Plugin:
    """Subclass this in plugins/<name>/plugin.py as `Plugin`. Every hook is optional."""

    def __init__(self, ctx: PluginContext) -> None:
        self.ctx = ctx

    async def start(self) -> None:
        """Connect to the outside peer, restore what ctx.state kept."""

    async def stop(self) -> None:
        """Close connections; state is already kept."""

    async def on_event(self, event: dict) -> None:
        """A cloud event for one of this plugin's devices: {"type": "state" | "meter" |
        "capabilities" | "availability" | "command", "device": int, ...}."""
