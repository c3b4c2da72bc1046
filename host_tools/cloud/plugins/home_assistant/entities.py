"""What Home Assistant sees of a SPOT device: its entities' discovery payloads and one state document.

Each device has one retained JSON state topic that all its entities read with a
value_template (the Zigbee2MQTT habit), one retained availability topic, and a
command topic per thing Home Assistant may change. Everything lives under the
plugin's own namespace (default spot-ha/<site>/<address>/...), never under spot/,
which is the devices' and which a plugin cannot publish on anyway.

    role        entities
    thermostat  climate (current and target temperature, modes off/heat)
    smart_plug  switch (relay), sensor power (W), sensor energy (Wh)
    heat_pump   select SG Ready (blocked/normal/recommended on/forced on, as its
                capability record allows), sensor store temperature (C), sensor power (W)
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from host_tools.cloud.uplink import SG_NAMES

SETPOINT_MAX_C = 30.0  # the top of command_kinds.Setpoint's range: what a thermostat takes
TEMP_STEP_C = 0.5


@dataclass(frozen=True)
class Topics:
    """Where one device's topics are."""
    base: str
    prefix: str
    site: str
    address: int

    @property
    def root(self) -> str:
        return f"{self.base}/{self.site}/{self.address:08x}"

    @property
    def state(self) -> str:
        return f"{self.root}/state"

    @property
    def availability(self) -> str:
        return f"{self.root}/availability"

    @property
    def refused(self) -> str:
        return f"{self.root}/refused"

    @property
    def outcome(self) -> str:
        return f"{self.root}/command"

    def command(self, entity: str) -> str:
        return f"{self.root}/{entity}/set"

    @property
    def node_id(self) -> str:
        return re.sub(r"[^a-zA-Z0-9_-]", "_", f"spot_{self.site}_{self.address:08x}")

    def discovery(self, component: str, object_id: str) -> str:
        return f"{self.prefix}/{component}/{self.node_id}/{object_id}/config"


# The command topics, by their entity path: what the plugin subscribes to and parses.
CMD_SWITCH = "switch"
CMD_TEMPERATURE = "climate/temperature"
CMD_MODE = "climate/mode"
CMD_SG = "sg_ready"


def role_of(d: dict) -> str | None:
    return (d.get("capabilities") or {}).get("role") or (d.get("state") or {}).get("role")


def available(d: dict) -> bool:
    """A device Home Assistant may command. Online and asleep both count: a sleepy device
    is reached through its queue at its next wake, and shows its last state meanwhile;
    lost (its last will: a wake that died) or never seen is offline."""
    return d.get("availability") in ("online", "asleep")


def frost_c(caps: dict) -> float:
    v = caps.get("frost_c")
    return float(v) if isinstance(v, (int, float)) else 5.0


def comfort_c(caps: dict) -> float:
    """The temperature "heat" asks for: the middle of the device's comfort band."""
    band = caps.get("comfort_c")
    if isinstance(band, list) and len(band) == 2 and all(isinstance(x, (int, float)) for x in band):
        return round((band[0] + band[1]) / 2 * 2) / 2
    return 20.0


def sg_options(caps: dict) -> list[str]:
    """The SG Ready states this heat pump offers (its modes; blocked only if it may be blocked)."""
    modes = caps.get("modes") if isinstance(caps.get("modes"), list) else [1, 2, 3, 4]
    return [SG_NAMES[m] for m in sorted(modes) if m in SG_NAMES
            and (m != 1 or caps.get("max_block_s", 1))]


def state_doc(d: dict) -> dict[str, Any]:
    """The state topic's document, from the device's shadow (None: not known yet, which
    Home Assistant shows as unknown)."""
    st = d.get("state") or {}
    caps = d.get("capabilities") or {}
    meter = d.get("meter") or {}
    role = role_of(d)
    out: dict[str, Any] = {"role": role, "availability": d.get("availability"),
                           "fault": st.get("fault") or 0}
    if role == "thermostat":
        target = st.get("target_c")
        heating = bool((st.get("outputs") or 0) & 1)
        mode = None if target is None else ("off" if target <= frost_c(caps) else "heat")
        out.update(temp_c=st.get("temp_c"), target_c=target, mode=mode,
                   action=("heating" if heating else "off" if mode == "off" else "idle"))
    elif role == "smart_plug":
        relay = st.get("outputs")
        if relay is None and "relay" in meter:
            relay = meter["relay"]
        out.update(switch=None if relay is None else ("ON" if relay & 1 else "OFF"),
                   power_w=_first(meter.get("power_w"), st.get("power_w")),
                   energy_wh=_first(meter.get("energy_wh"), st.get("energy_wh")))
    elif role == "heat_pump":
        sg = st.get("sg_state")
        # A heat pump reports no meter: its power is the capability record's shed_w, the
        # compressor's nominal power while it runs (0 while off), until a meter report says.
        power = _first(st.get("power_w"), meter.get("power_w"), caps.get("shed_w"))
        out.update(sg_ready=SG_NAMES.get(sg) if isinstance(sg, int) else None,
                   store_c=st.get("temp_c"), power_w=power)
    return out


def _first(*vs: Any) -> Any:
    return next((v for v in vs if v is not None), None)


def _device_block(d: dict, role: str) -> dict[str, Any]:
    addr = d["address"]
    block = {"identifiers": [f"spot_{addr:08x}"], "name": d.get("name") or f"SPOT {role} {addr:08x}",
             "model": role, "manufacturer": "SPOT"}
    if d.get("firmware"):
        block["sw_version"] = str(d["firmware"])
    return block


def discovery(d: dict, t: Topics) -> dict[str, dict]:
    """Discovery topic -> payload for every entity of this device ({} until its role is known)."""
    role = role_of(d)
    caps = d.get("capabilities") or {}
    if role is None:
        return {}
    addr = d["address"]
    dev = _device_block(d, role)

    def entity(object_id: str, name: str | None, **rest: Any) -> dict[str, Any]:
        return {"name": name, "unique_id": f"spot_{addr:08x}_{object_id}",
                "object_id": f"spot_{addr:08x}_{object_id}", "device": dev,
                "availability_topic": t.availability, "payload_available": "online",
                "payload_not_available": "offline", "qos": 1, **rest}

    def sensor(object_id: str, name: str, field: str, unit: str, device_class: str,
               state_class: str) -> tuple[str, dict]:
        return t.discovery("sensor", object_id), entity(
            object_id, name, state_topic=t.state, value_template=f"{{{{ value_json.{field} }}}}",
            unit_of_measurement=unit, device_class=device_class, state_class=state_class)

    out: dict[str, dict] = {}
    if role == "thermostat":
        lo = frost_c(caps)
        modes = ["off", "heat"] if lo < SETPOINT_MAX_C else ["heat"]
        out[t.discovery("climate", "climate")] = entity(
            "climate", None,  # the device's own name: a thermostat is its climate entity
            current_temperature_topic=t.state, current_temperature_template="{{ value_json.temp_c }}",
            temperature_state_topic=t.state, temperature_state_template="{{ value_json.target_c }}",
            temperature_command_topic=t.command(CMD_TEMPERATURE),
            mode_state_topic=t.state, mode_state_template="{{ value_json.mode }}",
            mode_command_topic=t.command(CMD_MODE), modes=modes,
            action_topic=t.state, action_template="{{ value_json.action }}",
            min_temp=lo, max_temp=SETPOINT_MAX_C, temp_step=TEMP_STEP_C, precision=0.1,
            temperature_unit="C")
    elif role == "smart_plug":
        out[t.discovery("switch", "relay")] = entity(
            "relay", "Relay", command_topic=t.command(CMD_SWITCH), state_topic=t.state,
            value_template="{{ value_json.switch }}", payload_on="ON", payload_off="OFF",
            state_on="ON", state_off="OFF", device_class="outlet")
        out.update([sensor("power", "Power", "power_w", "W", "power", "measurement"),
                    sensor("energy", "Energy", "energy_wh", "Wh", "energy", "total_increasing")])
    elif role == "heat_pump":
        out[t.discovery("select", "sg_ready")] = entity(
            "sg_ready", "SG Ready", command_topic=t.command(CMD_SG), state_topic=t.state,
            value_template="{{ value_json.sg_ready }}", options=sg_options(caps))
        out.update([sensor("store", "Store temperature", "store_c", "°C", "temperature", "measurement"),
                    sensor("power", "Power", "power_w", "W", "power", "measurement")])
    return out


def encode(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
