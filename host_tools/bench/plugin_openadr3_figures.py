"""Bench figures of the OpenADR 3 VEN plugin, against the loopback VTN (openadr3's models
check every object it serves and accepts).

One site (thermostat, plug, heat pump under the unix port), the cloud with the plugin
polling every 0.1 s, an import-limit event ("at most 3 kW for 2 h"): the time from the
VTN creating the event (its createdDateTime) to the SPOT commands published, and the
bytes each side used for the same event: the event's JSON on the OpenADR 3 link against
SPOT's sealed command frames (and the same for 96 quarter-hour prices).
"""
from __future__ import annotations

import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from host_tools.cloud.plugins.openadr3.loopback_vtn import Vtn
from host_tools.cloud.store import Store
from host_tools.cloud.testbed import CloudTestbed, wait_for, wake_devices

ROLES = {0x3101: "thermostat", 0x3102: "smart_plug", 0x3103: "heat_pump"}


def _wait(cond, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    return wait_for(cond, timeout, "openadr3 bench: a step", step=0.02)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def figures(quick: bool = False) -> dict:
    events = 1 if quick else 3
    vtn = Vtn({"ven-client": "ven-secret"})
    pid = vtn.program("spot-dr")
    try:
        with tempfile.TemporaryDirectory() as d, CloudTestbed(Path(d)) as tb:
            fs = {dev: tb.provision("home", dev) for dev in ROLES}
            conf = Path(d) / "plugins.toml"
            conf.write_text(f'[[plugin]]\nname = "openadr3"\nsites = ["home"]\n[plugin.options]\n'
                            f'vtn_url = "{vtn.url}"\nclient_id = "ven-client"\nclient_secret = "ven-secret"\n'
                            f'poll_s = 0.1\n')
            tb.start(plugins=conf)
            wake_devices(tb, fs, ROLES)  # first wakes: the devices' capability records
            _wait(lambda: len(vtn.resources) == 3)
            latencies, json_bytes, spot_bytes, seen = [], [], [], set()
            for _ in range(events):
                eid = vtn.event(pid, [{"id": 0, "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [3.0]}]}],
                                intervalPeriod={"start": _iso(datetime.now(timezone.utc)), "duration": "PT2H"},
                                payloadDescriptors=[{"objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                                                     "payloadType": "IMPORT_CAPACITY_LIMIT", "units": "KW"}])
                created = datetime.fromisoformat(vtn.events[eid]["createdDateTime"].replace("Z", "+00:00")).timestamp()
                cmds = _wait(lambda: (c := [x for x in tb.api("GET", "/api/commands?limit=1000")
                                            if x["requested_by"] == "plugin:openadr3" and x["kind"] == "limit"
                                            and x["id"] not in seen])
                             and len(c) == 3 and all(x["published_at"] for x in c) and c)
                seen |= {c["id"] for c in cmds}
                latencies.append((max(c["published_at"] for c in cmds) - created) * 1000)
                json_bytes.append(vtn.event_bytes(eid))
                spot_bytes.append(sum(c["frame_bytes"] for c in cmds))
            start = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            price = vtn.event(pid, [{"id": i, "payloads": [{"type": "PRICE", "values": [round(0.1 + 0.002 * i, 3)]}]}
                                    for i in range(96)],
                              intervalPeriod={"start": _iso(start), "duration": "PT15M"})
            rec = _wait(lambda: (Store(tb.db).plugin_get("openadr3", "home", "events") or {}).get(price, {})
                        .get("forecast") and Store(tb.db).plugin_get("openadr3", "home", "events")[price])
    finally:
        vtn.stop()
    latencies.sort()
    return {"openadr3_event_to_command_ms": round(latencies[len(latencies) // 2], 1),
            "openadr3_event_json_bytes": json_bytes[0], "openadr3_spot_command_bytes": spot_bytes[0],
            "openadr3_json_over_spot_bytes": round(json_bytes[0] / spot_bytes[0], 1),
            "openadr3_price96_json_bytes": vtn.event_bytes(price),
            "openadr3_price96_spot_bytes": rec["frame_bytes"]}


if __name__ == "__main__":
    print(figures(quick=True))
