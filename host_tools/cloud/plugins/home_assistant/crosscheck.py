"""Checks discovery payloads with Home Assistant's own voluptuous schemas, run by a Python
that has the `homeassistant` package (it cannot share the project's environment: README.md).

    python crosscheck.py < payloads.json    # {topic: payload} -> {topic: null | "why"}

Standalone on purpose: it imports nothing of SPOT, so any interpreter with Home
Assistant (2024.3.3 was the last for Python 3.11) can run it.
"""
from __future__ import annotations

import importlib
import json
import sys


def main() -> int:
    payloads = json.load(sys.stdin)
    out = {}
    for topic, payload in payloads.items():
        component = topic.split("/")[1]
        try:
            importlib.import_module(f"homeassistant.components.mqtt.{component}").DISCOVERY_SCHEMA(payload)
            out[topic] = None
        except Exception as e:  # noqa: BLE001 - voluptuous.Invalid and friends: the reason is the result
            out[topic] = f"{type(e).__name__}: {e}"
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
