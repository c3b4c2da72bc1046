"""Home Assistant's commands as SPOT commands: one small function per mapping.

Each takes the payload Home Assistant published and the device's shadow and returns
the body of a SPOT command (command_kinds), or raises Unfit with the reason. They
translate directly; a site energy manager, when there is one, can take their place
(a Home Assistant target becoming a site request) without touching the rest of the
plugin. Whatever they return still goes through the cloud's own checks
(ctx.send_command), and the device keeps the last word in its ACK.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from host_tools.cloud.plugins.home_assistant import entities as E
from host_tools.cloud.uplink import SG_NAMES


class Unfit(ValueError):
    """A payload that is malformed or that this device's role rules out; the text says why."""


def _text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise Unfit("the payload is not UTF-8 text") from None


def switch(payload: bytes, d: dict) -> dict[str, Any]:
    """Switch ON/OFF -> relay (payload_on / payload_off of the discovery)."""
    text = _text(payload)
    if text not in ("ON", "OFF"):
        raise Unfit(f"a switch command is ON or OFF, not {text[:40]!r}")
    return {"kind": "relay", "on": text == "ON"}


def temperature(payload: bytes, d: dict) -> dict[str, Any]:
    """Climate target temperature -> setpoint, held until the thermostat's program moves on."""
    text = _text(payload)
    try:
        v = float(text)
    except ValueError:
        raise Unfit(f"a temperature is a number, not {text[:40]!r}") from None
    lo, hi = E.frost_c(d.get("capabilities") or {}), E.SETPOINT_MAX_C
    if not math.isfinite(v) or not lo <= v <= hi:
        raise Unfit(f"{text[:40]} C is outside this thermostat's {lo:g}..{hi:g} C")
    return {"kind": "setpoint", "value_c": round(v, 1), "duration_s": 0}


def mode(payload: bytes, d: dict) -> dict[str, Any]:
    """Climate mode -> setpoint: "off" holds the frost limit (a thermostat never leaves frost
    protection), "heat" the middle of its comfort band."""
    text = _text(payload)
    caps = d.get("capabilities") or {}
    if text == "off":
        return {"kind": "setpoint", "value_c": E.frost_c(caps), "duration_s": 0}
    if text == "heat":
        return {"kind": "setpoint", "value_c": E.comfort_c(caps), "duration_s": 0}
    raise Unfit(f"this thermostat's modes are off and heat, not {text[:40]!r}")


def sg_ready(payload: bytes, d: dict) -> dict[str, Any]:
    """Select option -> SG Ready state (held until the next command; a block is cut short by
    the heat pump at its longest block)."""
    text = _text(payload)
    options = E.sg_options(d.get("capabilities") or {})
    if text not in options:
        raise Unfit(f"SG Ready options here are {', '.join(options)}; not {text[:40]!r}")
    state = next(k for k, v in SG_NAMES.items() if v == text)
    return {"kind": "sg_state", "state": state, "duration_s": 0}


# command topic's entity path -> (the role it belongs to, its mapping)
MAPPINGS: dict[str, tuple[str, Callable[[bytes, dict], dict[str, Any]]]] = {
    E.CMD_SWITCH: ("smart_plug", switch),
    E.CMD_TEMPERATURE: ("thermostat", temperature),
    E.CMD_MODE: ("thermostat", mode),
    E.CMD_SG: ("heat_pump", sg_ready),
}
