"""The Home Assistant plugin's figures (issue 14): discovery payloads the schema rejects, and
the bytes each side of the plugin uses for one command.

    ha_discovery_invalid        discovery payloads the documented schema rejects, over every
                                device of a site with a thermostat, a smart plug and a heat
                                pump (real firmware, first wakes, real Mosquitto). Floor 0.
    ha_discovery_payloads       how many there were (7: climate; switch + power + energy;
                                select + store + power), and ha_discovery_bytes their size
    ha_switch_on_publish_bytes  Home Assistant's MQTT PUBLISH for "switch on" (QoS 0)
    spot_switch_on_frame_bytes  the sealed SPOT frame the cloud queued for the plug, and
    spot_switch_on_publish_bytes  its MQTT PUBLISH to the device's topic (QoS 1)
    ha_command_to_device_topic_ms  Home Assistant's publish until the sealed frame is on
                                the device's topic (the plugin, the cloud's checks, the
                                durable store and the publish, side by side in one run)

    python -m host_tools.bench.plugin_home_assistant_figures [--quick]
"""
from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from host_tools.cloud.plugins.home_assistant.peer import HomeAssistantPeer, publish_packet_bytes

SITE = "home"
DEVICES = {0x3101: "thermostat", 0x3102: "smart_plug", 0x3103: "heat_pump"}


def figures(quick: bool = False) -> dict[str, float]:
    """One run is already short (about 10 s); quick changes nothing but is accepted."""
    import paho.mqtt.client as mqtt

    from host_tools.cloud.testbed import CloudTestbed, run_device

    with tempfile.TemporaryDirectory() as d, CloudTestbed(Path(d)) as tb:
        tmp = Path(d)
        fss = {dev: tb.provision(SITE, dev) for dev in DEVICES}
        conf = tmp / "plugins.toml"
        conf.write_text(f'[[plugin]]\nname = "home_assistant"\nsites = ["{SITE}"]\n')
        ha = HomeAssistantPeer(tb.broker.port)
        # Watches the plug's own topic, as the broker would deliver to it.
        plug = 0x3102
        spot_topic = f"spot/{SITE}/{plug:08x}"
        frames: list[tuple[float, bytes]] = []
        got = threading.Event()
        watch = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        watch.on_connect = lambda cl, *_a: cl.subscribe(spot_topic, qos=1)
        watch.on_message = lambda _c, _u, m: (frames.append((time.perf_counter(), bytes(m.payload))), got.set())
        watch.connect("127.0.0.1", tb.broker.port)
        watch.loop_start()
        try:
            tb.start(plugins=conf)
            for dev, role in DEVICES.items():
                run_device(tmp, fss[dev], tb.broker.port, role, 1)
            ha.wait(lambda: len(ha.discovery) >= 7 and all(
                ha.raw.get(f"spot-ha/{SITE}/{dev:08x}/state") for dev in DEVICES), 20)
            invalid = ha.invalid()
            with ha.lock:
                n = len(ha.discovery)
                size = sum(len(ha.raw[t]) for t in ha.discovery)
            time.sleep(0.3)
            frames.clear()  # the time answers of the first wakes
            got.clear()
            t0 = time.perf_counter()
            ha_bytes = ha.command(f"spot-ha/{SITE}/{plug:08x}/switch/set", "ON")
            if not got.wait(10):
                raise TimeoutError("the switch command never reached the plug's topic")
            t1, frame = frames[0]
            cmd = ha.wait(lambda: tb.api("GET", f"/api/devices/{plug:08x}/commands"), 10)[0]
            assert cmd["frame_bytes"] == len(frame) and cmd["requested_by"] == "plugin:home_assistant"
        finally:
            watch.loop_stop()
            watch.disconnect()
            ha.close()
    for topic, why in invalid.items():
        print(f"ha discovery rejected: {topic}: {'; '.join(why)}")
    return {"ha_discovery_invalid": len(invalid), "ha_discovery_payloads": n, "ha_discovery_bytes": size,
            "ha_switch_on_publish_bytes": ha_bytes, "spot_switch_on_frame_bytes": len(frame),
            "spot_switch_on_publish_bytes": publish_packet_bytes(spot_topic, frame, qos=1),
            "ha_command_to_device_topic_ms": round((t1 - t0) * 1000, 1)}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    f = figures(ap.parse_args(argv).quick)
    print(json.dumps(f, indent=1))
    print(f"switch on: Home Assistant sent {f['ha_switch_on_publish_bytes']} B on its link (payload \"ON\"); "
          f"SPOT sent the plug a {f['spot_switch_on_frame_bytes']} B sealed frame "
          f"({f['spot_switch_on_publish_bytes']} B as an MQTT PUBLISH)")
    return 0 if f["ha_discovery_invalid"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
