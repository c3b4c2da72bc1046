"""Direct local control (SPEC.md 13): command to ACK over UDP with the broker stopped, and
replays carried from one transport to the other.

The device is the built firmware under the MicroPython unix port with local
control on, on this host's loopback (the benches need no root; the namespaced
network is tests/test_local_udp.py's). The controller is host_tools/local.

  local_command_to_ack_ms_p99   a relay command sealed, sent over UDP, applied and
                                committed by the device, its ACK back and verified;
                                the broker stopped the whole time (floor 20 ms)
  local_command_to_ack_ms_p50   the same, median; beside it, side by side:
  local_command_to_ack_ms_p99_back_to_back
                                commands with no pause between them (each may wait
                                for the last one's state report to be committed)
  local_discovery_rtt_ms_p50    an unsecured discovery question and its answer (no
                                journal commit): what the transport alone costs
  local_replay_cross_transport_accepted
                                commands delivered over MQTT and then replayed over
                                UDP, and the other way round, that the device applied
                                a second time (floor 0); each replay must be answered
                                again from the inbox (local_replays_answered_again)
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from host_tools.cloud.broker import Broker
from host_tools.cloud.registry import Registry, class_mask
from host_tools.cloud.testbed import free_port

DEVICE = 0x3101
CTL = 0x200
# Commands 20 ms apart, so each meets a device done with the last one's state report
# (its own journal commit, after the ACK): the latency of one command, not of a queue.
PACE_S = 0.02


def _p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def _relay(on: bool):
    from pydantic import TypeAdapter

    from host_tools.cloud import command_kinds

    cmd = TypeAdapter(command_kinds.Command).validate_python({"kind": "relay", "on": on})
    return command_kinds.sealer(cmd, int(time.time()))


def _device(tmp: Path, reg: Registry, broker_port: int, port: int, wake_ms: int = 1000,
            power: str = "connected") -> Any:
    """The plug, connected (its default: its local socket always served) or sleepy (local
    frames taken while awake, here an awake window longer than the run)."""
    from host_tools.local.netlab import LocalDevice

    fs = tmp / "fs"
    reg.write_device_files(DEVICE, fs)
    # The device's own defaults for its wake period and its backoff from a broker that is
    # down (doubling up to a minute); every wake still tries the broker, and meanwhile
    # local frames wait for the wake to end.
    conf = {"broker": {"host": "127.0.0.1", "port": broker_port}, "wake_ms": wake_ms, "run_s": 600,
            "role": "smart_plug", "control_ms": 50, "power": power,
            "board": {"chip": "esp32", "clock": "wall", "seed": 3},
            "local": {"port": port, "awake_ms": 600000, "bind": "127.0.0.1", "group": None}}
    return LocalDevice(tmp, fs, conf, name="bench-device")


def _registry(tmp: Path) -> Registry:
    reg = Registry(tmp / "registry" / "registry.json")
    reg.provision("bench", DEVICE)
    reg.pair(CTL, DEVICE, class_mask("command,discovery"))
    reg.save()
    return reg


def command_latency(commands: int) -> dict[str, float]:
    from host_tools.local.controller import LocalController

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        reg = _registry(tmp)
        broker = Broker(workdir=tmp / "broker")
        broker.start()
        broker.stop()  # stopped: the device's wakes fail at connect, local control goes on
        port = free_port()
        dev = _device(tmp, reg, broker.port, port)
        try:
            dev.wait("session_end")  # the broker is down: the plug backs off, its local socket served
            with LocalController(reg, CTL, port=port, bind="127.0.0.1") as c:
                for i in range(5):  # warm-up: modules loaded, files in the page cache
                    c.command(DEVICE, "127.0.0.1", _relay(i % 2 == 0), timeout=10)
                ms = []
                for i in range(commands):
                    time.sleep(PACE_S)
                    r = c.command(DEVICE, "127.0.0.1", _relay(i % 2 == 0), timeout=10)
                    if r.status != "applied":
                        raise RuntimeError(f"local command {i}: {r}")
                    ms.append(r.ms)
                back_to_back = []  # beside it: no pause, each meets the last one's report
                for i in range(min(commands, 100)):
                    back_to_back.append(c.command(DEVICE, "127.0.0.1", _relay(i % 2 == 0), timeout=10).ms)
                rtt = []
                for _ in range(min(commands, 50)):
                    t0 = time.perf_counter()
                    if not c.discover(2.0, host="127.0.0.1", want=1):
                        raise RuntimeError("no discovery answer")
                    rtt.append((time.perf_counter() - t0) * 1000)
                    time.sleep(0.26)  # within the device's rate limit (4 a second)
        finally:
            dev.stop()
            broker.__exit__(None, None, None)
    return {"local_command_to_ack_ms_p99": round(_p(ms, 0.99), 2),
            "local_command_to_ack_ms_p50": round(_p(ms, 0.5), 2),
            "local_command_to_ack_ms_p99_back_to_back": round(_p(back_to_back, 0.99), 2),
            "local_discovery_rtt_ms_p50": round(_p(rtt, 0.5), 2),
            "local_commands_measured": len(ms)}


def cross_transport_replays(per_side: int) -> dict[str, float]:
    """per_side commands each way; every one replayed on the other transport."""
    from host_tools.cloud import publish
    from host_tools.local.controller import LocalController

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        reg = _registry(tmp)
        with Broker(workdir=tmp / "broker") as broker:
            port = free_port()
            dev = _device(tmp, reg, broker.port, port, wake_ms=300, power="sleepy")  # MQTT frames come soon
            addr = f"127.0.0.1:{broker.port}"
            topic = publish.device_topic("bench", DEVICE)
            try:
                dev.wait("cycle", ok=True)
                with LocalController(reg, CTL, port=port, bind="127.0.0.1") as c:
                    key = reg.sender_key(CTL, DEVICE)
                    # MQTT first, then the same bytes over UDP.
                    mqtt_frames = []
                    for i in range(per_side):
                        seq = c.counter.next()
                        mqtt_frames.append((seq, _relay(i % 2 == 0)(DEVICE, CTL, seq, key)))
                        publish.publish(addr, topic, mqtt_frames[-1][1])
                    dev.wait("applied", per_side, timeout=60)
                    for seq, raw in mqtt_frames:
                        r = c.send_frame(DEVICE, "127.0.0.1", raw, seq, timeout=10)
                        if r.status is None:
                            raise RuntimeError(f"no answer to the UDP replay of {seq}")
                    # UDP first, then the same bytes over MQTT.
                    udp_frames = []
                    for i in range(per_side):
                        seq = c.counter.next()
                        raw = _relay(i % 2 == 1)(DEVICE, CTL, seq, key)
                        if c.send_frame(DEVICE, "127.0.0.1", raw, seq, timeout=10).status != "applied":
                            raise RuntimeError(f"local command {seq} not applied")
                        udp_frames.append((seq, raw))
                    for _seq, raw in udp_frames:
                        publish.publish(addr, topic, raw)
                    dev.wait("duplicate", 2 * per_side, timeout=60)
                    time.sleep(1.0)  # anything applied late would show by now
            finally:
                dev.stop()
        applied = [e for e in dev.of("applied")]
        duplicates = dev.of("duplicate")
    return {"local_replay_cross_transport_accepted": len(applied) - 2 * per_side,
            "local_replays_answered_again": len(duplicates),
            "local_replays_sent": 2 * per_side}


def figures(quick: bool = False) -> dict[str, float]:
    out = command_latency(100 if quick else 500)
    out.update(cross_transport_replays(5 if quick else 20))
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(figures(quick=True), indent=1))
