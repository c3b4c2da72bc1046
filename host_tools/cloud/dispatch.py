"""The one tracked path out of the cloud: commands and price forecasts, from the API or a plugin.

Check against the device's role and capability record, seal, store durably, then
hand to the broker; the command's state then follows the device's ACK. Nothing
reaches a device any other way, so every command is audited, resent after a
crash and counted once, whoever asked for it.
"""
from __future__ import annotations

import time
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy.exc import OperationalError

from host_tools.cloud import command_kinds
from host_tools.cloud.command_kinds import Command, PriceForecast, Refused
from host_tools.cloud.store import CLOUD, Store

_COMMAND = TypeAdapter(Command)


class BrokerDown(RuntimeError):
    """The broker is unreachable and the message cannot wait (a forecast is not tracked)."""


class Dispatcher:
    def __init__(self, store: Store, bridge: Any | None, bus: Any | None) -> None:
        self.store = store
        self.bridge = bridge
        self.bus = bus

    @staticmethod
    def parse(body: dict) -> Any:
        """A command from its JSON body (as the API takes it); pydantic's error names the field."""
        return _COMMAND.validate_python(body)

    def send_command(self, device: int, cmd: Any, who: str) -> dict:
        """Accept a command for a device; the stored command (with its frame) is returned."""
        if isinstance(cmd, dict):
            cmd = self.parse(cmd)
        d = self.store.shadow(device)
        caps = d.get("capabilities") or None
        role = (caps or {}).get("role") or (d.get("state") or {}).get("role")
        command_kinds.check(cmd, role, caps)
        seal = command_kinds.sealer(cmd, int(time.time()))
        params = cmd.model_dump(exclude={"kind"})
        c = self.store.create_command(device, cmd.kind, params, who,
                                      lambda seq, key: seal(device, CLOUD, seq, device_key(key)))
        if self.bridge is not None and self.bridge.connected.is_set():
            try:
                self.bridge.publish_command(c)
            except (KeyError, OperationalError):
                pass  # stored: the resend sweep publishes it (a 5xx now would invite a duplicate)
        if self.bus is not None:
            self.bus.publish({"type": "command", "id": c["id"], "device": device, "kind": c["kind"],
                              "state": "accepted", "by": who})
        return c

    def send_prices(self, site: str, fc: PriceForecast | dict, who: str) -> dict:
        """A price forecast to every device of a site (group key, retained for sleepers)."""
        from spot import builders
        from spot.errors import SpotError

        if isinstance(fc, dict):
            fc = PriceForecast.model_validate(fc)
        start = fc.start if fc.start is not None else int(time.time()) // 3600 * 3600
        cents = [round(x * 100) for x in fc.prices]
        if self.bridge is None or not self.bridge.connected.is_set():
            raise BrokerDown("the broker is unreachable: the forecast was not sent")
        try:
            group, raw = self.store.signal_frame(
                site, who, "prices", fc.model_dump(),
                lambda seq, key, g: builders.price_forecast(g, CLOUD, seq, start, fc.interval_s, cents, -2,
                                                            key=group_key(key)))
        except SpotError as e:  # the builder refuses what a default receiver would (SPEC 1.1)
            raise Refused(f"this forecast would not fit a device's limits: {e.detail}") from None
        self.bridge.publish_signal(site, group, raw)
        return {"site": site, "group": f"{group:08x}", "steps": len(cents), "frame_bytes": len(raw)}


def device_key(row: Any) -> Any:
    from spot.keyring import Key

    return Key(row.key_id, row.device, row.secret, 0xFF)


def group_key(row: Any) -> Any:
    from spot.keyring import GROUP_CLASSES, Key

    return Key(row.key_id, row.device, row.secret, GROUP_CLASSES, group=True)
