"""Figures of the S2 plugin, measured end to end: a CEM built with s2-python on loopback,
the cloud as its own process with the plugin enabled, a real Mosquitto and a smart plug's
real firmware under the unix port.

- s2_invalid_messages: messages either side's s2-python models rejected over the whole run
  (the CEM parses all it receives and re-parses all it sends; the RM answers
  INVALID_MESSAGE/INVALID_DATA to anything its models reject, which the CEM counts).
- s2_instruction_to_status_ms: for a connected plug (mains powered, one MQTT session held
  open: firmware/connected.py, the plug's default), from the CEM sending an
  OMBC.Instruction until it receives the SUCCEEDED InstructionStatusUpdate (median of
  several, alternating on/off): the cloud's and the plugin's share and one round trip.
- s2_sleepy_instruction_to_status_ms beside it: the same with a longer wake interval,
  instructions sent at random moments between wakes: bounded by the wake interval (a
  real sleepy device's is minutes, and so is its latency).
- Bytes for the same instruction: on the S2 link (the instruction, the RM's
  ReceptionStatus, its ACCEPTED and SUCCEEDED updates and the CEM's ReceptionStatus for
  each) and on SPOT's link to the device (the sealed command frame, and what the device's
  wake received more than an idle wake, MQTT included).
"""
from __future__ import annotations

import random
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

SITE = "home"
PLUG = 0x3102


def _instruction(mode: Any) -> Any:
    import datetime as dt

    from s2python.ombc import OMBCInstruction

    return OMBCInstruction(message_id=uuid.uuid4(), id=uuid.uuid4(), execution_time=dt.datetime.now(dt.timezone.utc),
                           operation_mode_id=mode, operation_mode_factor=1.0, abnormal_condition=False)


def _measure(cem: Any, serial: str, modes: dict, count: int, spread_s: float, rng: random.Random) -> tuple[list, list]:
    """(latencies in ms, the instructions) for count instructions alternating on/off."""
    from s2python.common import InstructionStatus, InstructionStatusUpdate

    lat, sent = [], []
    for i in range(count):
        if spread_s:
            time.sleep(rng.uniform(0, spread_s))  # a random moment between the device's wakes
        ins = _instruction(modes["on" if i % 2 == 0 else "off"])
        t0 = cem.send(serial, ins)
        got = cem.wait(serial, InstructionStatusUpdate,
                       lambda m: m.instruction_id == ins.id and m.status_type == InstructionStatus.SUCCEEDED,
                       timeout=30)
        lat.append((got[0][0] - t0) * 1000)
        sent.append(ins)
    return lat, sent


def _run_device_bg(tmp: Path, fs: Path, port: int, cycles: int, wake_ms: int) -> tuple[threading.Thread, dict]:
    from host_tools.cloud.testbed import run_device

    out: dict = {}

    def go() -> None:
        try:
            out["events"] = run_device(tmp, fs, port, "smart_plug", cycles, wake_ms=wake_ms, timeout=120)
        except Exception as e:  # noqa: BLE001 - reported by the caller
            out["error"] = e

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t, out


def figures(quick: bool = False) -> dict[str, float]:
    from s2python.common import InstructionStatusUpdate, ReceptionStatus, ReceptionStatusValues
    from s2python.ombc import OMBCSystemDescription

    from host_tools.cloud.plugins.s2.cem import CEM
    from host_tools.cloud.testbed import CloudTestbed, DeviceProcess, run_device

    n_fast = 6 if quick else 20
    sleepy_ms, n_sleepy, sleepy_cycles = (1000, 3, 7) if quick else (2000, 5, 10)
    rng = random.Random(7)
    serial = f"{PLUG:08x}"
    with tempfile.TemporaryDirectory() as d, CEM() as cem, CloudTestbed(Path(d)) as tb:
        tmp = Path(d)
        fs = tb.provision(SITE, PLUG)
        conf = tmp / "plugins.toml"
        conf.write_text(f'[[plugin]]\nname = "s2"\nsites = ["{SITE}"]\n[plugin.options]\ncem_url = "{cem.url}"\n')
        tb.start(plugins=conf)
        run_device(tmp, fs, tb.broker.port, "smart_plug", 1)  # first wake: its capability record
        sd = cem.wait(serial, OMBCSystemDescription, timeout=15)[-1][1]
        modes = {m.diagnostic_label: m.id for m in sd.operation_modes}

        # A connected plug: one session held open, instructions applied on arrival.
        with DeviceProcess(tmp, fs, tb.broker.port, "smart_plug", power="connected") as dev:
            opened = dev.wait_for(lambda e: e.get("ev") == "session", 20)
            fast, sent = _measure(cem, serial, modes, n_fast, 0.0, rng)
            time.sleep(0.3)  # the last reports' PUBACKs
            summary = dev.stop()
        if summary.get("sessions") != 1:
            raise RuntimeError(f"the connected plug reconnected during the measurement: {summary}")
        extra_in = (summary["link_bytes_in"] - opened["bytes_in"]) / n_fast

        # A sleepier device: instructions land at random moments between its wakes.
        th, out = _run_device_bg(tmp, fs, tb.broker.port, sleepy_cycles, sleepy_ms)
        time.sleep(0.5)
        sleepy, _ = _measure(cem, serial, modes, n_sleepy, sleepy_ms / 1000, rng)
        th.join(120)
        if "error" in out:
            raise out["error"]

        # The bytes of one instruction, both links.
        ins = sent[-1]
        got = cem.messages(serial)
        reception = [m for _, m in got if isinstance(m, ReceptionStatus) and m.subject_message_id == ins.message_id]
        upd = [m for _, m in got if isinstance(m, InstructionStatusUpdate) and m.instruction_id == ins.id]
        acks = [(m, n) for _, _, m, n in cem.sent if isinstance(m, ReceptionStatus)
                and m.subject_message_id in {u.message_id for u in upd}]
        s2_bytes = (cem.size(ins) + sum(cem.size(m) for m in reception + upd) + sum(n for _, n in acks))
        cid = tb.api("GET", f"/api/devices/{serial}/commands")[0]["id"]
        frame = tb.api("GET", f"/api/commands/{cid}")["frame_bytes"]

        invalid = len(cem.invalid) + len(
            [m for _, m in cem.messages(None, ReceptionStatus)
             if m.status in (ReceptionStatusValues.INVALID_MESSAGE, ReceptionStatusValues.INVALID_DATA)])
    return {
        "s2_invalid_messages": invalid,
        "s2_instruction_to_status_ms": round(statistics.median(fast), 1),
        "s2_instruction_to_status_ms_max": round(max(fast), 1),
        "s2_sleepy_instruction_to_status_ms": round(statistics.median(sleepy), 1),
        "s2_sleepy_instruction_to_status_ms_max": round(max(sleepy), 1),
        "s2_sleepy_wake_ms": sleepy_ms,
        "s2_link_bytes_per_instruction": s2_bytes,
        "s2_instruction_bytes": cem.size(ins),
        "spot_command_frame_bytes": frame,
        "spot_device_link_bytes_per_command": round(extra_in, 1),
        "s2_vs_spot_bytes_ratio": round(s2_bytes / frame, 1),
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(figures(quick="--quick" in sys.argv), indent=1))
