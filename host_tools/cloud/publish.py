"""Put one frame on a device's MQTT topic (QoS 1, so a sleeping device gets it on waking)."""
from __future__ import annotations

import socket



def device_topic(site: str, address: int) -> str:
    from spot import topics  # the device's own map, so host and firmware cannot drift

    return topics.topic(site, address)


def publish(broker: str, topic: str, payload: bytes, timeout: float = 10.0) -> None:
    """Publish and wait for the broker's PUBACK; SystemExit with one line if it fails."""
    import paho.mqtt.client as mqtt

    host, _, port = broker.partition(":")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    try:
        c.connect(host or "127.0.0.1", int(port or 1883), keepalive=30)
    except (OSError, socket.error) as e:
        raise SystemExit(f"cannot reach the MQTT broker at {broker}: {e}; is it running?") from None
    c.loop_start()
    try:
        info = c.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise SystemExit(f"the broker at {broker} did not acknowledge the frame on {topic}")
    finally:
        c.disconnect()
        c.loop_stop()
