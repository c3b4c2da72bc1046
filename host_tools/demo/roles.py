"""The fleet demo (`make demo`): three virtual boards, a controller, a private broker.

A thermostat on a virtual ESP32, a smart plug on a virtual Pico W (RP2040) and a
heat-pump adapter on a virtual ESP32: each board is the MicroPython unix port
behind a REPL endpoint (host_tools/virtual_board.py), provisioned, given the
built firmware with `spot deploy` and reset, as a real board would be; the
firmware runs from its main.py on the board's peripheral models (a room, a
fridge behind the plug, a heat pump with its store) and the demo reads its serial console. The
boards sleep between wakes, their radios off, their roles still in control.
The controller (paho-mqtt, the cloud):
  1. a 24 h price forecast, retained under the site's group key;
  2. "reduce 20 % for 2 h" to all three: each carries it out its own way and
     says so in its ACK (the plug can only switch: adapted);
  3. while the heat pump sleeps, "SG Ready recommended for 1 h", and the plug's
     relay on: queued at the broker, applied at the next wake, then reported.
Prints the timeline (sent, queued, delivered, applied, acknowledged, reported)
and a summary table; returns 0 only if every command got its answer. Takes
about 20 s and leaves nothing running.
"""
from __future__ import annotations

import json
import os
import queue
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from host_tools.board.build import BUILD, ROOT, build_all

from host_tools.cloud.broker import Broker, BrokerError  # noqa: E402
from host_tools.cloud.controller import STATUS_NAMES, Controller, Uplink  # noqa: E402
from host_tools.cloud.registry import Registry  # noqa: E402
from spot import builders, frame, messages  # noqa: E402
from spot.objects import Analog  # noqa: E402

SITE = "demo"
RUN_S = 50  # each device's own limit, should we never say stop
DEVICES = (  # address, role, chip, wake every (ms)
    (0x1101, "thermostat", "esp32", 2500),
    (0x1102, "smart_plug", "rp2040", 2000),
    (0x1103, "heat_pump", "esp32", 4000),
)
KINDS = {  # (service, kind) of what a role applied, as a person would say it
    (2, 1): "demand response: reduce", (2, 2): "demand response: limit",
    (2, 3): "demand response: restore", (2, 4): "demand response: shut down",
    (2, 5): "demand response: keep a band", (3, 1): "price forecast", (6, 1): "setpoint",
    (6, 2): "relay", (6, 3): "SG Ready state", (6, 4): "settings"}
ROLE_NAMES = {1: "thermostat", 2: "smart plug", 3: "heat pump"}
SG_NAMES = {1: "blocked", 2: "normal", 3: "recommended", 4: "forced"}
REASONS = {0: "", 32: "out of range", 33: "minimum times", 34: "frost protection",
           35: "longest shed", 36: "4.2 kW floor", 37: "over-current", 38: "sensor",
           39: "on/off only", 40: "safe mode", 41: "unknown setting", 42: "store temperature",
           43: "demand response in force"}


def _state_text(b: dict[int, Any]) -> str:
    role = b.get(1)
    if role == 1:
        t = b.get(2)
        return (f"room {t / 10:.1f} C, target {b.get(3, 0) / 10:.1f} C, heater "
                f"{'on' if b.get(4) else 'off'}" if t is not None else "sensor fault")
    if role == 2:
        shed = " (shedding: demand response)" if b.get(10) and not b.get(4) else ""
        return f"relay {'on' if b.get(4) else 'off'}{shed}, {b.get(5, 0)} W, {b.get(6, 0)} Wh"
    if role == 3:
        t = b.get(2)
        return (f"SG Ready {SG_NAMES.get(b.get(7), '?')}, store "
                f"{t / 10:.1f} C" if t is not None else "store sensor fault")
    return str(b)


@dataclass
class DeviceRun:
    address: int
    role: str
    chip: str
    wake_ms: int
    server: Any = None  # the VirtualBoardServer
    console: Any = None  # our connection to its serial port
    deployed: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    awake_at: list[float] = field(default_factory=list)


class Demo:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.t0 = time.monotonic()
        self.q: queue.Queue[tuple[float, str, str, str]] = queue.Queue()
        self.devices = [DeviceRun(*d) for d in DEVICES]
        self.lock = threading.Lock()

    # the timeline ------------------------------------------------------------------
    def note(self, who: str, what: str, detail: str = "") -> None:
        self.q.put((time.monotonic() - self.t0, who, what, detail))

    def flush(self) -> None:
        while True:
            try:
                t, who, what, detail = self.q.get_nowait()
            except queue.Empty:
                return
            colour = {"sent": "cyan", "queued": "yellow", "delivered": "white", "applied": "green",
                      "adapted": "yellow", "refused": "red", "ack": "green",
                      "report": "magenta", "boot": "blue", "deployed": "blue"}.get(what.split()[0], "white")
            self.console.print(f"{t:6.2f}s  [bold]{who:<12}[/] [{colour}]{what:<14}[/] {detail}")

    # devices ---------------------------------------------------------------------------
    def start(self, d: DeviceRun, tmp: Path, port: int) -> None:
        """A virtual board: deployed (its own flash directory), then reset to run."""
        from host_tools.board import deploy
        from host_tools.board.virtual_board import VirtualBoardServer

        d.server = VirtualBoardServer(d.chip, d.role, tmp / f"flash-{d.address:08x}",
                                      seed=d.address).start()
        virtual = ROOT / "boards" / "virtual"
        d.deployed = deploy.deploy(
            d.server.url, target="unix", role=d.role, device_dir=tmp / f"{d.address:08x}",
            board_files=[virtual / "board.py", virtual / "models.py"],
            broker=f"127.0.0.1:{port}", wake_ms=d.wake_ms, show=False,
            board_options={"chip": d.chip, "clock": "wall", "seed": d.address},
            settings={"control_ms": 500, "run_s": 0})

    def boot(self, d: DeviceRun) -> None:
        """Listen on the board's serial port, then press its reset button."""
        import socket

        host, _, port = d.server.url.removeprefix("socket://").rpartition(":")
        d.console = socket.create_connection((host, int(port)), timeout=5)
        threading.Thread(target=self._read, args=(d,), daemon=True).start()
        d.server.reset()

    def _lines(self, d: DeviceRun):
        buf = b""
        while True:
            try:
                chunk = d.console.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                yield line.decode(errors="replace").strip()

    def _read(self, d: DeviceRun) -> None:
        who = d.role.replace("_", " ")
        for line in self._lines(d):
            if not line.startswith("{"):
                continue  # the board's banner, its prompt
            try:
                e = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                d.events.append(e)
            ev = e.get("ev")
            if ev == "boot":
                self.note(who, "boot", f"{e['board']}, reset cause {e['cause']}")
            elif ev == "kept" and e.get("cls") == frame.CLASS_COMMAND:
                self.note(who, "delivered", f"command seq {e['seq']} at its wake")
            elif ev in ("applied", "refused") and "status" in e:
                status = STATUS_NAMES.get(e["status"], str(e["status"]))
                why = REASONS.get(e.get("reason", 0), str(e.get("reason")))
                what = KINDS.get((e.get("svc"), e.get("kind")), e.get("what", ""))
                self.note(who, status, what + (f" ({why})" if why else ""))
            elif ev == "cycle":
                d.awake_at.append(time.monotonic() - self.t0)
                d.summary["cycles"] = d.summary.get("cycles", 0) + 1
                d.summary["bytes_out"] = d.summary.get("bytes_out", 0) + e.get("bytes_out", 0)

    def stop(self) -> None:
        for d in self.devices:
            if d.console is not None:
                d.console.close()
            if d.server is not None:
                d.server.stop()  # the board's interpreter goes with it

    # the controller ----------------------------------------------------------------
    def uplink(self, up: Uplink) -> None:
        d = next((x for x in self.devices if x.address == up.src), None)
        who = d.role.replace("_", " ") if d else f"{up.src:08x}"
        if up.cls == frame.CLASS_ACK:
            status = STATUS_NAMES.get(up.body.get(messages.K_ACK_STATUS), "?")
            why = REASONS.get(up.body.get(messages.K_ACK_REASON, 0), "")
            self.note("controller", "ack", f"from {who}: seq {up.body.get(messages.K_ACK_SEQ)} "
                                            f"{status}{' (' + why + ')' if why else ''}")
        elif up.body.get(0) == 1 and up.body.get(1) in ROLE_NAMES:
            self.note("controller", "report", f"{who}: {_state_text(up.body)}")
        elif up.body.get(0) == 2 and up.body.get(1) in ROLE_NAMES:
            self.note("controller", "report", f"{who}: capabilities, nominal {up.body.get(3)} W, "
                                               f"can shed {up.body.get(4)} W now")


def _wait(cond, timeout: float, demo: Demo) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        demo.flush()
        if cond():
            return True
        time.sleep(0.05)
    demo.flush()
    return cond()


def run(console: Console | None = None) -> int:
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    build_all(["x64"])
    demo = Demo(console)
    console.rule("SPOT demo: a thermostat, a smart plug and a heat pump on virtual boards")
    with ExitStack() as stack:
        try:
            broker = stack.enter_context(Broker())
        except BrokerError as e:
            console.print(f"[red]{e}[/]")
            return 2
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="spot-demo-")))
        reg = Registry(tmp / "registry.json")
        for d in demo.devices:
            reg.provision(SITE, d.address)
            reg.write_device_files(d.address, tmp / f"{d.address:08x}")
        reg.save()
        ctl = Controller(reg, SITE, f"127.0.0.1:{broker.port}")
        ctl.on_uplink = demo.uplink
        ctl.connect()
        stack.callback(ctl.close)
        stack.callback(demo.stop)
        starts = [threading.Thread(target=demo.start, args=(d, tmp, broker.port))
                  for d in demo.devices]
        for t in starts:
            t.start()
        for t in starts:
            t.join()
        for d in demo.devices:
            if not d.deployed:
                console.print(f"[red]spot deploy to the {d.role} failed[/]")
                return 1
            demo.note(d.role.replace("_", " "), "deployed",
                      f"{d.deployed['copied']} files, {d.deployed['bytes']:,} bytes to "
                      f"{d.server.url} in {d.deployed['seconds']:.1f} s")
            demo.boot(d)
        if not _wait(lambda: all(d.awake_at for d in demo.devices), 20, demo):
            console.print("[red]the devices did not wake[/]")
            return 1
        # 1. the day's prices, retained for whoever wakes next
        group = reg.site_group(SITE)
        hour = int(time.time()) // 3600 * 3600
        prices = [60, 55, 55, 55, 60, 80, 120, 160, 150, 110, 90, 70,
                  65, 70, 85, 100, 130, 180, 190, 160, 120, 100, 85, 70]
        ctl.send_signal(group, lambda seq, key: builders.price_forecast(
            group, ctl.address, seq, hour, 3600, prices, 0, key=key))
        demo.note("controller", "sent", "24 h price forecast to the site (retained, group key)")
        # 2. demand response to all three, each asleep
        pending = []
        for d in demo.devices:
            a = d.address
            pending.append(ctl.send_command(a, lambda seq, key, a=a: builders.demand(
                a, ctl.address, seq, messages.DR_REDUCE, Analog(20, 3), None, 7200,
                key=key), "reduce 20 % for 2 h"))
            demo.note("controller", "sent", f"reduce 20 % for 2 h -> {d.role.replace('_', ' ')}")
            demo.note("broker", "queued", f"for {d.role.replace('_', ' ')} (asleep, radio off)")
        _wait(lambda: not ctl.pending, 15, demo)
        # 3. while the heat pump sleeps: a new SG Ready state; the plug: relay on
        hp, plug = demo.devices[2], demo.devices[1]
        last = len(hp.awake_at)
        _wait(lambda: len(hp.awake_at) > last, 10, demo)  # it just went back to sleep
        ctl.send_command(hp.address, lambda seq, key: builders.device_command(
            hp.address, ctl.address, seq, 3, 3, 3600, key=key), "SG Ready recommended")
        demo.note("controller", "sent", "SG Ready 'recommended' for 1 h -> heat pump (asleep)")
        ctl.send_command(plug.address, lambda seq, key: builders.device_command(
            plug.address, ctl.address, seq, 2, 1, key=key), "relay on")
        demo.note("controller", "sent", "relay on -> smart plug (asleep)")
        ok = _wait(lambda: not ctl.pending, 20, demo)
        time.sleep(0.5)
        demo.flush()
        demo.stop()
        table = Table(title="summary")
        for col in ("device", "board", "wakes", "commands", "applied", "adapted", "reports",
                    "bytes out", "last state"):
            table.add_column(col)
        with ctl.lock:
            acks = list(ctl.stats.acks)
            reports = list(ctl.stats.reports)
        for d in demo.devices:
            mine = [a.body.get(messages.K_ACK_STATUS) for a in acks if a.src == d.address]
            states = [r.body for r in reports if r.src == d.address and r.body.get(0) == 1
                      and r.body.get(1) in ROLE_NAMES]
            table.add_row(d.role.replace("_", " "), d.chip,
                          str(d.summary.get("cycles", "?")), str(len(mine)),
                          str(mine.count(messages.ACK_APPLIED)), str(mine.count(messages.ACK_ADAPTED)),
                          str(sum(1 for r in reports if r.src == d.address)),
                          f"{d.summary.get('bytes_out', 0):,}",
                          _state_text(states[-1]) if states else "-")
        console.print(table)
        left = [p.label for p in ctl.pending.values()]
        errors = [e for d in demo.devices for e in d.events if e.get("ev") == "error"]
        if not ok or left or errors:
            console.print(f"[red]unanswered: {left}; device errors: {errors}[/]")
            return 1
        console.print(f"[green]every command answered; {time.monotonic() - demo.t0:.1f} s[/]")
        return 0


def main() -> int:
    return run()
