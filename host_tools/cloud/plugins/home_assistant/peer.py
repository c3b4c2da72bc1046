"""Home Assistant's side of the link, for the tests and the bench: a paho client that does
what Home Assistant's MQTT integration does with this plugin's topics.

It subscribes to the discovery prefix and the plugin's namespace, keeps every
retained discovery payload, state document and availability it sees, checks each
discovery payload against the documented schema (schema.py), and publishes
commands as Home Assistant would (QoS 0, not retained, the payload alone).
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

from host_tools.cloud.plugins.home_assistant import schema


class HomeAssistantPeer:
    def __init__(self, port: int, prefix: str = "homeassistant", base: str = "spot-ha") -> None:
        import paho.mqtt.client as mqtt

        self.prefix, self.base = prefix, base
        self.lock = threading.RLock()  # wait() holds it while a check reads json()
        self.discovery: dict[str, dict] = {}  # topic -> payload
        self.raw: dict[str, bytes] = {}  # every topic -> its last payload
        self.seen: list[tuple[str, bytes]] = []  # everything, in order
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ha-peer-{time.monotonic_ns()}",
                             protocol=mqtt.MQTTv311)
        self.c.on_connect = lambda cl, *_a: cl.subscribe([(f"{prefix}/#", 1), (f"{base}/#", 1)])
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        payload = bytes(msg.payload)
        with self.lock:
            self.raw[msg.topic] = payload
            self.seen.append((msg.topic, payload))
            if msg.topic.endswith("/config") and msg.topic.startswith(self.prefix + "/"):
                try:
                    self.discovery[msg.topic] = json.loads(payload) if payload else {}
                except ValueError:
                    self.discovery[msg.topic] = {"unparsable": payload.decode("utf-8", "replace")}

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()

    def wait(self, what: Callable[[], Any], timeout: float = 10.0, step: float = 0.05) -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                v = what()
            if v:
                return v
            time.sleep(step)
        raise TimeoutError(f"Home Assistant peer: waited {timeout:g} s in vain")

    def json(self, topic: str) -> Any:
        with self.lock:
            raw = self.raw.get(topic)
        return json.loads(raw) if raw else None

    def invalid(self) -> dict[str, list[str]]:
        """Discovery topic -> why the schema rejects its payload (only the rejected ones).
        Templates are also checked against the state document their entity reads."""
        out = {}
        with self.lock:
            items = list(self.discovery.items())
            raw = dict(self.raw)
        for topic, payload in items:
            component = schema.component_of(topic, self.prefix)
            state = None
            st = payload.get("state_topic") or payload.get("current_temperature_topic")
            if isinstance(st, str) and raw.get(st):
                state = json.loads(raw[st])
            why = schema.problems(component or "?", payload, state)
            if why:
                out[topic] = why
        return out

    def command(self, topic: str, payload: bytes | str) -> int:
        """As Home Assistant sends a command: the bytes of the MQTT PUBLISH packet it made."""
        data = payload.encode() if isinstance(payload, str) else payload
        self.c.publish(topic, data, qos=0, retain=False).wait_for_publish(5)
        return publish_packet_bytes(topic, data, qos=0)


def publish_packet_bytes(topic: str, payload: bytes, qos: int) -> int:
    """The size of an MQTT 3.1.1 PUBLISH packet: fixed header (1 byte + remaining length),
    topic (2 + its UTF-8), a packet id at QoS 1/2, and the payload."""
    rest = 2 + len(topic.encode()) + (2 if qos else 0) + len(payload)
    n, length = rest, 1
    while n >= 128:
        n //= 128
        length += 1
    return 1 + length + rest
