"""`spot demo --openadr`: an OpenADR 2.0b load-shed event reaching three virtual boards through
the cloud's energy manager, and their answers going back to the VTN as the opt-in.

The same three virtual boards and the same real cloud service on its own Mosquitto as
`make demo` (host_tools/demo/roles.py: its boards, timeline and cloud set-up are reused
here), with two plugins enabled for the demo site: openadr2b (the site as a VEN) and
energy_manager (the site's energy manager). openleadr's own VTN runs in this process on
loopback (host_tools/cloud/plugins/openadr2b/loopback_vtn.py). The scenario:
  1. the boards wake and report their capability records; the plug's relay goes on (a
     plug whose relay is off has nothing to shed) and reports every 10 s;
  2. the VEN registers with the VTN, which then issues "reduce 30 % for 1 h"
     (LOAD_CONTROL x-loadControlPercentOffset);
  3. openadr2b hands it to the energy manager as "reduce the site by W" (30 % of the
     devices' nominal power), the manager splits it by capability record and live state:
     one command per device (the heat pump's SG Ready block, the plug's relay, the room's
     setback), sent through the cloud's tracked path;
  4. the devices carry them out at their next wake and ACK (applied, or adapted with the
     reason), and the VTN gets the opt-in.
The timeline shows each step; the run returns 0 only if every device answered a command of
the manager's and the VTN got optIn. About 35 s; nothing is left running.
"""
from __future__ import annotations

import logging
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from host_tools.board.build import BUILD, ROOT, build_all
from host_tools.cloud.api_client import ACK_STATES, CloudClient, CloudError, describe, outcome
from host_tools.cloud.broker import BrokerError
from host_tools.cloud.registry import Registry
from host_tools.cloud.testbed import CloudTestbed
from host_tools.demo.roles import SITE, Demo, DemoResult, Sent, _cloud, _fresh, _sigterm_raises, _wait

DB = BUILD / "demo-openadr-cloud.sqlite"
EM = "plugin:energy_manager"
PERCENT, HOURS = 30, 1


@dataclass
class OpenadrResult(DemoResult):
    event_id: str = ""
    opts: list[tuple[str, int]] = field(default_factory=list)  # (opt, code) the VTN got for the event
    requests: list[dict] = field(default_factory=list)  # GET /api/sites/demo/requests at the end


def _plugins(path: Path, vtn_url: str) -> Path:
    path.write_text(f'[[plugin]]\nname = "openadr2b"\nsites = ["{SITE}"]\n[plugin.options]\n'
                    f'vtn_url = "{vtn_url}"\nven_name = "spot"\npoll_s = 0.2\n\n'
                    f'[[plugin]]\nname = "energy_manager"\nsites = ["{SITE}"]\n[plugin.options]\ntick_s = 5\n')
    return path


def run_demo(console: Console | None = None, db: Path | None = None) -> OpenadrResult:
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    # openleadr's VTN logs a traceback for a telemetry report with no values yet (a device
    # that has not measured anything): the VEN's own behaviour, noise in a demo's timeline.
    logging.getLogger("openleadr").setLevel(logging.CRITICAL)
    build_all(["x64"])
    demo = Demo(console)
    db = Path(db) if db else DB
    result = OpenadrResult(1, db=db)
    console.rule("SPOT demo: an OpenADR 2.0b event, the site's energy manager, three devices")
    _fresh(db)
    try:
        return _run(console, demo, db, result)
    except CloudError as e:
        demo.flush()
        console.print(f"[red]the cloud: {e}[/]")
        return result
    finally:
        result.pids += demo.board_pids


def _run(console: Console, demo: Demo, db: Path, result: OpenadrResult) -> OpenadrResult:  # noqa: PLR0915
    from host_tools.cloud.plugins.openadr2b.loopback_vtn import Vtn

    with ExitStack() as stack:
        _sigterm_raises(stack)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="spot-demo-openadr-")))
        vtn = Vtn()  # openleadr's OpenADRServer, on loopback, on its own thread
        stack.callback(vtn.stop)
        demo.note("VTN", "ready", f"openleadr's VTN at {vtn.url}")
        try:
            (tmp / "cloud").mkdir()
            tb = stack.enter_context(CloudTestbed(tmp / "cloud", db=str(db)))
        except BrokerError as e:
            console.print(f"[red]{e}[/]")
            result.code = 2
            return result
        result.pids.append(tb.broker.proc.pid)
        reg = Registry(tmp / "registry.json")
        for d in demo.devices:
            reg.provision(SITE, d.address)
            reg.write_device_files(d.address, tmp / d.hex)
        reg.save()
        stack.callback(demo.stop_boards)
        up: dict[str, Any] = {}
        conf = _plugins(tmp / "plugins.toml", vtn.url)
        jobs = [threading.Thread(target=_cloud, args=(tb, reg, db, up, conf))]
        jobs += [threading.Thread(target=demo.start, args=(d, tmp, tb.broker.port)) for d in demo.devices]
        for t in jobs:
            t.start()
        for t in jobs:
            t.join()
        result.pids += [p.pid for p in tb.procs]
        if "error" in up or not tb.procs or not all(d.deployed for d in demo.devices):
            console.print(f"[red]the cloud or a board did not start: {up.get('error')}[/]")
            return result
        demo.note("cloud", "ready", f"spot cloud serve --plugins: openadr2b and energy_manager for site {SITE}")
        base = f"http://127.0.0.1:{tb.port}"
        result.url = f"{base}/#token={tb.token}"
        cloud = stack.enter_context(CloudClient(base, tb.token))
        stream = cloud.events()
        stack.callback(stream.close)
        by_id: dict[int, Any] = {}

        def follow() -> None:
            try:
                for ev in stream:
                    if ev.type == "command" and ev.data.get("by") == EM:
                        with demo.lock:  # a command of the manager's: followed like the demo's own
                            d = demo.by_hex.get(str(ev.data.get("device")))
                            if d is not None and ev.data["id"] not in demo.sent:
                                demo.sent[ev.data["id"]] = Sent(ev.data["id"], d, ev.data.get("kind", "?"))
                                by_id[ev.data["id"]] = d
                    demo.cloud_event(ev)
            except CloudError:
                pass

        threading.Thread(target=follow, name="demo-events", daemon=True).start()
        for d in demo.devices:
            demo.boot(d)
        if not _wait(lambda: all(d.awake_at for d in demo.devices) and len(demo.known) == 3, 20, demo):
            console.print("[red]the devices did not wake, or the cloud did not hear them[/]")
            return result
        # 1. the plug's relay on, and its reports every 10 s: its load is what it can shed
        plug = demo.devices[1]
        ids = [demo.send(cloud, plug, {"kind": "config", "settings": {"telemetry_s": 10}}).id,
               demo.send(cloud, plug, {"kind": "relay", "on": True}).id]
        _wait(lambda: demo.answered(ids), 15, demo)
        _wait(lambda: (cloud.device(plug.address).get("state") or {}).get("power_w"), 15, demo)
        # 2. the VEN registered; the VTN issues the event
        if not _wait(lambda: bool(vtn.regs) and bool(vtn.server.registered_reports), 15, demo):
            console.print("[red]the VEN did not register with the VTN[/]")
            return result
        (ven_id,) = vtn.regs.values()
        demo.note("VTN", "registered", f"VEN spot-{SITE} as {ven_id}, its telemetry reports registered")
        eid = vtn.event(ven_id, "LOAD_CONTROL", "x-loadControlPercentOffset",
                        [{"dtstart": datetime.now(timezone.utc), "duration": timedelta(hours=HOURS),
                          "signal_payload": float(PERCENT)}])
        result.event_id = eid
        demo.note("VTN", "event", f"{eid}: load shed, reduce {PERCENT} % for {HOURS} h (oadrDistributeEvent)")
        # 3. the event reaches the manager: its request, and what it asked each device
        req = _wait_value(lambda: next((r for r in cloud.request("GET", f"/api/sites/{SITE}/requests")
                                        if r.get("ref") == f"openadr2b:{eid}"), None), 10, demo)
        if req is None:
            console.print("[red]the event did not reach the energy manager[/]")
            return result
        demo.note("manager", "request", f"{req['id']} from {req['by']}: reduce the site by {req['watts']} W "
                                        f"({PERCENT} % of its nominal power) for {HOURS} h")
        for o in req["orders"]:
            d = demo.by_hex[o["device"]]
            demo.note("manager", "order", f"-> {d.who}: {describe(o['command']['kind'], o['command'])} ({o['why']})")
        mine = [o["id"] for o in req["orders"] if o.get("id")]
        with demo.lock:
            for o in req["orders"]:
                if o.get("id") and o["id"] in demo.sent:
                    demo.sent[o["id"]].what = describe(o["command"]["kind"], o["command"])
        _wait(lambda: bool(vtn.responses(eid)), 10, demo)
        for opt, code in vtn.responses(eid):
            demo.note("VTN", "opt", f"{eid}: {opt} ({code}) from the VEN, at acceptance")
        # 4. the devices answer at their next wake; the opt the VTN holds follows their answers
        _wait(lambda: demo.answered(mine), 20, demo)
        time.sleep(0.5)
        result.opts = vtn.responses(eid)
        answers = [c for c in cloud.commands(limit=100) if c["id"] in mine]
        demo.note("VTN", "opt", f"{eid}: holds {result.opts[-1][0] if result.opts else 'nothing'} "
                                f"(devices: {', '.join(sorted(outcome(c) for c in answers))})")
        demo.flush()
        result.requests = cloud.request("GET", f"/api/sites/{SITE}/requests")
        result.commands = [c for c in cloud.commands(limit=200) if c["requested_by"] == EM]
        result.devices = cloud.devices(SITE)
        demo.stop_boards()
        _summary(console, demo, result)
        asked = {c["device"] for c in result.commands if c["state"] in ACK_STATES}
        ok = asked == {d.hex for d in demo.devices} and bool(result.opts) and result.opts[-1][0] == "optIn"
        if not ok:
            console.print(f"[red]devices that answered the manager: {sorted(asked)}; the VTN's opts: "
                          f"{result.opts}[/]")
            return result
        result.code = 0
        console.print(f"[green]the VTN's event reached all three devices through the energy manager, "
                      f"their answers went back as {result.opts[-1][0]}; {time.monotonic() - demo.t0:.1f} s[/]")
    return result


def _wait_value(fn: Any, timeout: float, demo: Demo) -> Any:
    out: list[Any] = []

    def got() -> bool:
        v = fn()
        if v:
            out.append(v)
        return bool(v)
    _wait(got, timeout, demo)
    return out[0] if out else None


def _summary(console: Console, demo: Demo, result: OpenadrResult) -> None:
    table = Table(title=f"the energy manager's commands (requested_by {EM})")
    for col in ("id", "device", "command", "answer", "accepted -> ACK"):
        table.add_column(col)
    for c in sorted(result.commands, key=lambda c: c["id"]):
        took = f"{c['acked_at'] - c['created_at']:.1f} s" if c.get("acked_at") else "-"
        table.add_row(str(c["id"]), demo.by_hex[c["device"]].who, describe(c["kind"], c["params"]),
                      outcome(c), took)
    console.print(table)


def main() -> int:
    where = DB.relative_to(ROOT) if DB.is_relative_to(ROOT) else DB
    code = run_demo().code
    print(f"(the cloud's database stays in {where})")
    return code
