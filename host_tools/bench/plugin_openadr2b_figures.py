"""Bench figures of the OpenADR 2.0b VEN plugin, against openleadr's own VTN on loopback.

One site (thermostat, plug, heat pump under the unix port), the cloud with the plugin,
a load-shed event ("reduce 20 % for 2 h"): the time from the VTN creating the event to
the SPOT commands published, opt-ins against the devices' ACKs, reported values against
the devices' reports, and the bytes each side used for the same event.
"""
from __future__ import annotations

import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from host_tools.cloud.plugins.openadr2b.loopback_vtn import Vtn
from host_tools.cloud.plugins.openadr2b.plugin import opt_for, resource_id, sample
from host_tools.cloud.testbed import CloudTestbed, wait_for, wake_devices

ROLES = {0x3101: "thermostat", 0x3102: "smart_plug", 0x3103: "heat_pump"}
FIELDS = (("power_w", "RealPower"), ("energy_wh", "RealEnergy"), ("state", "state"))


def _wait(cond, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    return wait_for(cond, timeout, "openadr2b bench: a step", step=0.02)


def figures(quick: bool = False) -> dict:
    events = 1 if quick else 3
    vtn = Vtn()
    try:
        with tempfile.TemporaryDirectory() as d, CloudTestbed(Path(d)) as tb:
            fs = {dev: tb.provision("home", dev) for dev in ROLES}
            conf = Path(d) / "plugins.toml"
            conf.write_text(f'[[plugin]]\nname = "openadr2b"\nsites = ["home"]\n[plugin.options]\n'
                            f'vtn_url = "{vtn.url}"\npoll_s = 0.1\n')
            tb.start(plugins=conf)

            def wake() -> None:
                wake_devices(tb, fs, ROLES)
            wake()
            _wait(lambda: vtn.regs and vtn.server.registered_reports)
            (ven,) = vtn.regs.values()
            latencies, opt_mismatches, xml_bytes, spot_bytes, seen = [], 0, [], [], set()
            for _ in range(events):
                ev = vtn.event(ven, "LOAD_CONTROL", "x-loadControlPercentOffset",
                               [{"dtstart": datetime.now(timezone.utc), "duration": timedelta(hours=2),
                                 "signal_payload": 20.0}])
                created = vtn.server.events[ven][-1].event_descriptor.created_date_time.timestamp()
                cmds = _wait(lambda: (c := [x for x in tb.api("GET", "/api/commands?limit=1000")
                                            if x["requested_by"] == "plugin:openadr2b" and x["id"] not in seen])
                             and len(c) == 3 and all(x["published_at"] for x in c) and c)
                seen |= {c["id"] for c in cmds}
                latencies.append((max(c["published_at"] for c in cmds) - created) * 1000)
                xml_bytes.append(vtn.distribute_bytes(ev))
                spot_bytes.append(sum(c["frame_bytes"] for c in cmds))
                wake()
                final = [tb.wait_command(c["id"], ("applied", "adapted", "refused", "expired", "unsupported"))["state"]
                         for c in cmds]
                want = opt_for(final)
                _wait(lambda: vtn.responses(ev) and vtn.responses(ev)[-1][0] == want, timeout=5) if want else None
                opt_mismatches += int(not vtn.responses(ev) or vtn.responses(ev)[-1][0] != want)
            t0 = time.time()
            shadows = {int(s["address"], 16): s for s in tb.api("GET", "/api/devices")}
            reported = [(dev, f, m) for dev in ROLES for f, m in FIELDS if sample(shadows[dev], f) is not None]
            _wait(lambda: all(any(t.timestamp() > t0 for t, _ in vtn.values.get((resource_id(dev), m), []))
                              for dev, _, m in reported), timeout=8)
            report_mismatches = sum(1 for dev, f, m in reported for t, v in vtn.values[(resource_id(dev), m)]
                                    if t.timestamp() > t0 and v != sample(shadows[dev], f))
    finally:
        vtn.stop()
    latencies.sort()
    return {"openadr2b_event_to_command_ms": round(latencies[len(latencies) // 2], 1),
            "openadr2b_optin_mismatches": opt_mismatches,
            "openadr2b_report_mismatches": report_mismatches,
            "openadr2b_event_xml_bytes": xml_bytes[0], "openadr2b_spot_command_bytes": spot_bytes[0],
            "openadr2b_xml_over_spot_bytes": round(xml_bytes[0] / spot_bytes[0], 1)}


if __name__ == "__main__":
    print(figures(quick=True))
