"""Checks a discovery payload against Home Assistant's documented MQTT schema.

Home Assistant's own voluptuous schemas live in the `homeassistant` package, whose
hard pins (aiohttp, cryptography, httpx, urllib3 < 2, ...) cannot sit beside the
project's (README.md), so the schema of the four platforms the plugin uses is
written down from Home Assistant's documentation in ha_mqtt_discovery.schema.json
and checked with jsonschema_rs. What JSON Schema cannot say across fields (a
climate's min_temp under its max_temp, a template naming a field the state topic
carries) is checked here in Python. Used by the tests and the bench, not by the
plugin at run time: a check that ran inside the plugin would only agree with itself.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).with_name("ha_mqtt_discovery.schema.json")
PLATFORMS = ("climate", "switch", "sensor", "select")
_DISCOVERY_TOPIC = re.compile(r"^[^/+#]+/(?P<component>[a-z_]+)/(?:[a-zA-Z0-9_-]+/)?[a-zA-Z0-9_-]+/config$")


@lru_cache(maxsize=None)
def _validator(component: str) -> Any:
    import jsonschema_rs

    schema = json.loads(SCHEMA_PATH.read_text())
    schema = dict(schema, **{"$ref": f"#/$defs/{component}"})
    return jsonschema_rs.Draft202012Validator(schema)


def component_of(topic: str, prefix: str) -> str | None:
    """The platform a discovery topic names (<prefix>/<component>/[<node_id>/]<object_id>/config)."""
    m = _DISCOVERY_TOPIC.match(topic)
    if not m or not topic.startswith(prefix + "/"):
        return None
    return m.group("component")


def problems(component: str, payload: Any, state: dict | None = None) -> list[str]:
    """Why Home Assistant would not take this payload ([] when it would). state: a state
    document the payload's templates read, to check they name fields it carries."""
    if component not in PLATFORMS:
        return [f"platform {component!r} is not one of {', '.join(PLATFORMS)}"]
    if not isinstance(payload, dict):
        return ["a discovery payload is a JSON object"]
    out = [f"{'/'.join(map(str, e.instance_path)) or '(payload)'}: {e.message}"
           for e in _validator(component).iter_errors(payload)]
    if component == "climate":
        lo, hi = payload.get("min_temp", 7), payload.get("max_temp", 35)  # HA's defaults in C
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo >= hi:
            out.append(f"min_temp {lo} is not under max_temp {hi}")
    if state is not None:
        for key, value in payload.items():
            if key.endswith("template") and isinstance(value, str):
                for name in re.findall(r"value_json\.([a-z_]+)", value):
                    if name not in state:
                        out.append(f"{key} reads value_json.{name}, which the state topic does not carry")
    return out
