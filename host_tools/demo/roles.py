"""The fleet demo (`make demo`): three virtual boards run by the cloud service, through its API.

A thermostat on a virtual ESP32, a smart plug on a virtual Pico W (RP2040) and a
heat-pump adapter on a virtual ESP32: each board is the MicroPython unix port
behind a REPL endpoint (host_tools/board/virtual_board.py), provisioned, given
the built firmware with `spot deploy` and reset, as a real board would be; the
firmware runs on the board's peripheral models (a room, a fridge behind the
plug, a heat pump with its store) and the demo reads its serial console. The
thermostat sleeps between wakes, its radio off, its role still in control; the
plug and the heat pump are mains powered and hold one session open ("power":
"connected", their default: firmware/connected.py).

The cloud is the real service (`spot cloud serve`, its database in
build/demo-cloud.sqlite, fresh each run) on a private Mosquitto, with the demo's
registry imported and a token made for it; the dashboard's address is printed.
Everything is sent through the cloud's REST API, as `spot ctl` would:
  1. a 24 h price forecast, retained under the site's group key;
  2. "reduce 20 % for 2 h" to all three: each carries it out its own way and
     says so in its ACK (the plug can only switch: adapted);
  0. the plug's relay on: a connected device switches at once (the time from
     the API's 202 to the ACK at the cloud is printed, beside the sleepy
     thermostat's wake interval);
  3. "SG Ready recommended for 1 h" to the heat pump and the plug's relay on:
     applied on arrival by the connected devices (a sleepy one's wait at the
     broker for its next wake), then reported;
  4. direct local control with the cloud down: the service and its broker are
     stopped, a home energy manager paired with the plug (`spot pair`) switches
     it off over UDP on the LAN (SPEC.md 13; `spot local command` does the same),
     then broker and cloud come back and the plug's report of it, and its ACK to
     the local controller, reach the cloud once.
The timeline shows each side: the cloud's view from its live event stream
(accepted -> published -> applied / adapted, with the device's reason) and the
boards' from their consoles. A summary from the API follows; the run returns 0
only if every command reached its ACK. About 20 s; nothing is left running
(with --stay, everything keeps running until Ctrl-C, to look around).
"""
from __future__ import annotations

import json
import queue
import signal
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.table import Table

from host_tools.board.build import BUILD, ROOT, build_all
from host_tools.cloud.api_client import (ACK_STATES, FINAL_STATES, CloudClient, CloudError, Event, describe,
                                         outcome, state_text)
from host_tools.cloud.broker import BrokerError
from host_tools.cloud.registry import Registry, class_mask
from host_tools.cloud.testbed import CloudTestbed
from host_tools.cloud.uplink import REASONS, STATUS_NAMES
from spot import frame

SITE = "demo"
DB = BUILD / "demo-cloud.sqlite"
HEMS = 0x10001  # the local controller of step 4 (a home energy manager), paired with the plug
DEVICES = (  # address, role, chip, wake every (ms)
    (0x1101, "thermostat", "esp32", 2500),
    (0x1102, "smart_plug", "rp2040", 2000),
    (0x1103, "heat_pump", "esp32", 4000),
)
PRICES = [60, 55, 55, 55, 60, 80, 120, 160, 150, 110, 90, 70,  # per MWh, the next 24 h
          65, 70, 85, 100, 130, 180, 190, 160, 120, 100, 85, 70]
KINDS = {  # (service, kind) of what a role applied, as a person would say it
    (2, 1): "demand response: reduce", (2, 2): "demand response: limit",
    (2, 3): "demand response: restore", (2, 4): "demand response: shut down",
    (2, 5): "demand response: keep a band", (3, 1): "price forecast", (6, 1): "setpoint",
    (6, 2): "relay", (6, 3): "SG Ready state", (6, 4): "settings"}
COLOURS = {"accepted": "cyan", "published": "yellow", "delivered": "white", "applied": "green",
           "adapted": "yellow", "refused": "red", "expired": "red", "unsupported": "red",
           "report": "magenta", "boot": "blue", "deployed": "blue", "cloud": "blue", "ready": "blue"}


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
    connected: bool = False  # "power": connected (the plug and the heat pump by default)
    local_port: int = 0  # its UDP port for direct local control (the plug), 0: none

    @property
    def who(self) -> str:
        return self.role.replace("_", " ")

    @property
    def hex(self) -> str:
        return f"{self.address:08x}"


@dataclass
class DemoResult:
    """What a run did, for tests: its status, the cloud it used and every process it started."""
    code: int
    url: str = ""  # the dashboard, with the demo's token after '#token='
    db: Path | None = None
    commands: list[dict] = field(default_factory=list)  # GET /api/commands at the end
    devices: list[dict] = field(default_factory=list)  # GET /api/devices at the end
    pids: list[int] = field(default_factory=list)  # the cloud, the broker, every board's interpreter


@dataclass
class Sent:
    """A command the demo sent, as the cloud's event stream follows it."""
    id: int
    device: DeviceRun
    what: str
    state: str = "accepted"


class Demo:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.t0 = time.monotonic()
        self.q: queue.Queue[tuple[float, str, str, str]] = queue.Queue()
        self.devices = [DeviceRun(*d) for d in DEVICES]
        self.by_hex = {d.hex: d for d in self.devices}
        self.lock = threading.Lock()
        self.sent: dict[int, Sent] = {}
        self.board_pids: list[int] = []  # every interpreter the boards ran, for the caller to check
        self.known: set[str] = set()  # devices whose capability record the cloud holds

    # the timeline ------------------------------------------------------------------
    def note(self, who: str, what: str, detail: str = "") -> None:
        self.q.put((time.monotonic() - self.t0, who, what, detail))

    def flush(self) -> None:
        while True:
            try:
                t, who, what, detail = self.q.get_nowait()
            except queue.Empty:
                return
            colour = COLOURS.get(what.split()[0], "white")
            self.console.print(f"{t:6.2f}s  [bold]{who:<12}[/] [{colour}]{what:<11}[/] {detail}")

    # the boards --------------------------------------------------------------------------
    def start(self, d: DeviceRun, tmp: Path, port: int) -> None:
        """A virtual board: deployed (its own flash directory), then reset to run. The plug
        also takes direct local control, on a UDP port of this host's loopback (a LAN's
        multicast needs a network of its own: tests/test_local_udp.py makes one)."""
        settings: dict[str, Any] = {"control_ms": 500, "run_s": 0}
        if d.local_port:
            settings["local"] = {"port": d.local_port, "bind": "127.0.0.1", "group": None}
        from host_tools.board import deploy
        from host_tools.board.virtual_board import VirtualBoardServer

        d.server = VirtualBoardServer(d.chip, d.role, tmp / f"flash-{d.address:08x}",
                                      seed=d.address).start()
        virtual = ROOT / "boards" / "virtual"
        d.deployed = deploy.deploy(
            d.server.url, target="unix", role=d.role, device_dir=tmp / d.hex,
            board_files=[virtual / "board.py", virtual / "models.py"],
            broker=f"127.0.0.1:{port}", wake_ms=d.wake_ms, show=False,
            board_options={"chip": d.chip, "clock": "wall", "seed": d.address},
            settings=settings)

    def boot(self, d: DeviceRun) -> None:
        """Listen on the board's serial port, then press its reset button."""
        import socket

        host, _, port = d.server.url.removeprefix("socket://").rpartition(":")
        d.console = socket.create_connection((host, int(port)), timeout=5)
        threading.Thread(target=self._read, args=(d,), daemon=True).start()
        d.server.reset()

    def _lines(self, d: DeviceRun) -> Iterator[str]:
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
        """The board's console: what the device itself says it did."""
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
                self.note(d.who, "boot", f"{e['board']}, reset cause {e['cause']}")
            elif ev == "kept" and e.get("cls") == frame.CLASS_COMMAND:
                self.note(d.who, "delivered", f"command seq {e['seq']} " + (
                    "on arrival" if d.connected else "at its wake"))
            elif ev in ("applied", "refused") and "status" in e:
                status = STATUS_NAMES.get(e["status"], str(e["status"]))
                r = e.get("reason")
                why = REASONS.get(r, f"reason {r}") if r else ""  # in the cloud's words too
                what = KINDS.get((e.get("svc"), e.get("kind")), e.get("what", ""))
                self.note(d.who, status, what + (f" ({why})" if why else ""))
            elif ev == "session":  # connected: one session held open
                d.connected = True
                d.awake_at.append(time.monotonic() - self.t0)
                d.summary["sessions"] = e.get("n", 0)
                self.note(d.who, "connected", "session held open (mains powered)")
            elif ev == "cycle":
                d.awake_at.append(time.monotonic() - self.t0)
                d.summary["cycles"] = d.summary.get("cycles", 0) + 1
                d.summary["bytes_out"] = d.summary.get("bytes_out", 0) + e.get("bytes_out", 0)

    def stop_boards(self) -> None:
        for d in self.devices:
            if d.console is not None:
                d.console.close()
                d.console = None
            if d.server is not None:
                d.server.stop()  # the board's interpreter goes with it
                self.board_pids += d.server.pids
                d.server = None

    # the cloud's view: its live event stream (what the dashboard shows) ----------------------
    def cloud_event(self, ev: Event) -> None:
        d = self.by_hex.get(str(ev.data.get("device", "")))
        if ev.type == "command":
            with self.lock:
                s = self.sent.get(ev.data.get("id"))
            state = ev.data.get("state", "?")
            if s is None or state == "accepted":
                return  # not ours, or already shown from the API's 202
            s.state = state
            why = f" ({ev.data['reason_text']})" if ev.data.get("reason_text") else ""
            where = {"published": f"into {s.device.who}'s queue at the broker",
                     "delivered": f"reached {s.device.who}"}.get(state, f"ACK from {s.device.who}")
            self.note("cloud", state, f"command {s.id} ({s.what}): {where}{why}")
        elif d is not None and ev.type == "state":
            self.note("cloud", "report", f"{d.who}: {state_text(ev.data.get('body'))}")
        elif d is not None and ev.type == "capabilities":
            b = ev.data.get("body") or {}
            with self.lock:
                self.known.add(d.hex)
            self.note("cloud", "report", f"{d.who}: capabilities, nominal {b.get('nominal_w')} W, "
                                         f"can shed {b.get('shed_w')} W now")

    def send(self, cloud: CloudClient, d: DeviceRun, body: dict[str, Any]) -> Sent:
        """A command through the API (POST /api/devices/{address}/commands): 202 and its id."""
        what = describe(body["kind"], body)
        with self.lock:  # the stream may say "published" before we hear the 202: it waits for this
            a = cloud.send(d.address, body)
            s = self.sent[a["id"]] = Sent(a["id"], d, what)
            self.note("cloud", "accepted", f"command {s.id} ({what}) -> {d.who}: 202, {a['frame_bytes']} B sealed")
        return s

    def answered(self, ids: list[int]) -> bool:
        with self.lock:
            return all(self.sent[i].state in FINAL_STATES for i in ids)


def _wait(cond: Callable[[], bool], timeout: float, demo: Demo) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        demo.flush()
        if cond():
            return True
        time.sleep(0.05)
    demo.flush()
    return cond()


def _fresh(db: Path) -> None:
    """A fresh database each run: the demo's devices get new keys every time."""
    db.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def _cloud(tb: CloudTestbed, reg: Registry, db: Path, out: dict[str, Any], plugins: Path | None = None) -> None:
    """The cloud's set-up, as `spot cloud import` and `spot cloud token` do it, then the service
    (with the plugins a TOML file enables, for `spot demo --openadr`)."""
    from host_tools.cloud.store import Store

    try:
        store = Store(str(db))
        try:
            out["imported"] = store.import_registry(reg.data)
            tb.token = store.create_token("demo", ["read", "command"])
        finally:
            store.close()
        tb.start(plugins=plugins)  # `spot cloud serve`, its own process; back when it is up and has the broker
    except Exception as e:  # noqa: BLE001 - reported by the main thread
        out["error"] = e


def _sigterm_raises(stack: ExitStack) -> None:
    """A SIGTERM unwinds the demo as Ctrl-C does, so the boards, the cloud and the broker
    are stopped on the way out, not left behind."""
    if threading.current_thread() is not threading.main_thread():
        return

    def raise_interrupt(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, raise_interrupt)
    stack.callback(signal.signal, signal.SIGTERM, old)


def run_demo(console: Console | None = None, db: Path | None = None, stay: bool = False) -> DemoResult:
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    build_all(["x64"])
    demo = Demo(console)
    db = Path(db) if db else DB
    result = DemoResult(1, db=db)
    console.rule("SPOT demo: a thermostat, a smart plug and a heat pump, run by the cloud")
    _fresh(db)
    try:
        return _run(console, demo, db, stay, result)
    except CloudError as e:  # the API refused something, or the service died: say which, in one line
        demo.flush()
        console.print(f"[red]the cloud: {e}[/]")
        return result
    finally:
        result.pids += demo.board_pids


def _run(console: Console, demo: Demo, db: Path, stay: bool, result: DemoResult) -> DemoResult:
    with ExitStack() as stack:
        _sigterm_raises(stack)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="spot-demo-")))
        try:
            (tmp / "cloud").mkdir()
            tb = stack.enter_context(CloudTestbed(tmp / "cloud", db=str(db)))  # its own Mosquitto
        except BrokerError as e:
            console.print(f"[red]{e}[/]")
            result.code = 2
            return result
        result.pids.append(tb.broker.proc.pid)
        reg = Registry(tmp / "registry.json")
        plug = demo.devices[1]
        plug.local_port = _udp_port()
        for d in demo.devices:
            reg.provision(SITE, d.address)
        reg.pair(HEMS, plug.address, class_mask("command,discovery"))  # as `spot pair` does
        for d in demo.devices:
            reg.write_device_files(d.address, tmp / d.hex)
        reg.save()
        stack.callback(demo.stop_boards)
        # The cloud comes up while the boards are deployed: neither needs the other yet.
        up: dict[str, Any] = {}
        jobs = [threading.Thread(target=_cloud, args=(tb, reg, db, up))]
        jobs += [threading.Thread(target=demo.start, args=(d, tmp, tb.broker.port)) for d in demo.devices]
        for t in jobs:
            t.start()
        for t in jobs:
            t.join()
        result.pids += [p.pid for p in tb.procs]
        if "error" in up or not tb.procs:
            console.print(f"[red]the cloud did not start: {up.get('error')}[/]")
            return result
        n = up["imported"]
        where = db.relative_to(ROOT) if db.is_relative_to(ROOT) else db
        demo.note("cloud", "ready", f"spot cloud serve, {where}: {n['sites']} site, {n['devices']} devices, "
                                    f"{n['keys']} keys imported")
        for d in demo.devices:
            if not d.deployed:
                console.print(f"[red]spot deploy to the {d.role} failed[/]")
                return result
            demo.note(d.who, "deployed", f"{d.deployed['copied']} files, {d.deployed['bytes']:,} bytes to "
                                         f"{d.server.url} in {d.deployed['seconds']:.1f} s")
        base = f"http://127.0.0.1:{tb.port}"
        result.url = f"{base}/#token={tb.token}"
        demo.flush()
        console.print(f"[bold]dashboard:[/] {result.url}  (up while the demo runs; --stay keeps it)",
                      soft_wrap=True)  # whole, to copy
        cloud = stack.enter_context(CloudClient(base, tb.token))
        stream = cloud.events()  # subscribed from here on
        stack.callback(stream.close)  # before the cloud stops: an open stream would delay it

        def follow() -> None:
            try:
                for ev in stream:
                    demo.cloud_event(ev)
            except CloudError:
                pass  # the cloud went away: the demo's own checks say what that broke

        threading.Thread(target=follow, name="demo-events", daemon=True).start()
        for d in demo.devices:
            demo.boot(d)
        if not _wait(lambda: all(d.awake_at for d in demo.devices) and len(demo.known) == 3, 20, demo):
            console.print("[red]the devices did not wake, or the cloud did not hear them[/]")
            return result
        # 0. a connected plug switches at once
        first = demo.send(cloud, plug, {"kind": "relay", "on": True})
        _wait(lambda: demo.answered([first.id]), 10, demo)
        c = cloud.command(first.id)
        if c.get("acked_at"):
            demo.note(plug.who, "switched", f"relay on, {(c['acked_at'] - c['created_at']) * 1000:.0f} ms "
                                            f"from the API's 202 to the ACK at the cloud (the sleepy "
                                            f"thermostat would take up to its {demo.devices[0].wake_ms / 1000:g} s wake)")
        # 1. the day's prices, retained for whoever wakes next
        p = cloud.send_prices(SITE, [float(x) for x in PRICES], 3600)
        demo.note("cloud", "accepted", f"24 h price forecast -> site {SITE} (group {p['group']}, "
                                       f"{p['frame_bytes']} B, retained)")
        # 2. demand response to all three: the thermostat asleep, the others connected
        ids = [first.id] + [demo.send(cloud, d, {"kind": "reduce", "percent": 20, "duration_s": 7200}).id
                            for d in demo.devices]
        _wait(lambda: demo.answered(ids), 15, demo)
        # 3. the heat pump: a new SG Ready state (once it is back asleep, if sleepy); the plug: relay on
        hp = demo.devices[2]
        last = len(hp.awake_at)
        if not hp.connected:
            _wait(lambda: len(hp.awake_at) > last, 10, demo)  # it just went back to sleep
        ids.append(demo.send(cloud, hp, {"kind": "sg_state", "state": 3, "duration_s": 3600}).id)
        ids.append(demo.send(cloud, plug, {"kind": "relay", "on": True}).id)
        _wait(lambda: demo.answered(ids), 20, demo)
        time.sleep(0.3)
        demo.flush()
        # What the API says now: the commands' final states, the devices' shadows.
        result.commands = [c for c in cloud.commands(limit=100) if c["id"] in ids]
        result.devices = cloud.devices(SITE)
        reports = {d.hex: len(cloud.reports(d.address)) for d in demo.devices}
        stream.close()  # the cloud is about to stop
        local_ok = _local_scene(demo, tb, reg, plug, base)
        if not stay:
            demo.stop_boards()
        _summary(console, demo, result, reports)
        open_ = [c for c in result.commands if c["state"] not in ACK_STATES]
        errors = [e for d in demo.devices for e in d.events if e.get("ev") == "error"]
        if not local_ok:
            console.print("[red]direct local control with the cloud down did not work[/]")
            return result
        if len(result.commands) != len(ids) or open_ or errors:
            console.print(f"[red]unanswered: {[(c['id'], c['state']) for c in open_]}; "
                          f"device errors: {errors}[/]")
            return result
        result.code = 0
        console.print(f"[green]every command answered, through the cloud's API; "
                      f"{time.monotonic() - demo.t0:.1f} s[/]")
        if stay:
            _stay(console, demo, result)
    return result


def _udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _local_scene(demo: Demo, tb: CloudTestbed, reg: Registry, plug: DeviceRun, base: str) -> bool:
    """4. The cloud and its broker stop; a paired home energy manager switches the plug off
    over UDP; they come back, and the plug's report and its ACK to the controller reach
    the cloud, once. True if all of that happened."""
    from pydantic import TypeAdapter

    from host_tools.cloud import command_kinds
    from host_tools.local.controller import LocalController

    controller_acks = CloudClient(base, tb.token).stats().get("controller_acks", 0)
    tb.stop()
    tb.broker.stop()
    demo.note("cloud", "stopped", "the service and its broker: the Internet is down")
    cmd = TypeAdapter(command_kinds.Command).validate_python({"kind": "relay", "on": False})
    with LocalController(reg, HEMS, port=plug.local_port, bind="127.0.0.1") as hems:
        r = hems.command(plug.address, "127.0.0.1", command_kinds.sealer(cmd, int(time.time())), timeout=10)
    if r.status is None:
        demo.note("local", "no answer", f"relay off over UDP to {plug.who}: no ACK in {r.ms / 1000:.0f} s")
        return False
    demo.note("local", r.status, f"relay off from a home energy manager ({HEMS:08x}) over UDP, "
                                 f"no cloud, no broker: ACK in {r.ms:.0f} ms, {r.sends} datagram(s)")
    demo.flush()
    tb.broker.start()  # the same port: the devices come back to it on their own
    tb.start()
    demo.note("cloud", "back", "the broker and the service")
    with CloudClient(base, tb.token) as cloud:
        def arrived() -> bool:
            st = (cloud.device(plug.address).get("state") or {})
            return (cloud.stats().get("controller_acks", 0) > controller_acks
                    and "outputs" in st and not st["outputs"])  # relay off, as the plug reported

        ok = _wait(arrived, 30, demo)
        acks = cloud.stats().get("controller_acks", 0) - controller_acks
        demo.note("cloud", "report", f"{plug.who}: {state_text(cloud.device(plug.address).get('state'))}; "
                                     f"its ACK to the local controller counted {acks} time(s)")
    demo.flush()
    return ok and acks == 1


def _summary(console: Console, demo: Demo, result: DemoResult, reports: dict[str, int]) -> None:
    shadows = {d["address"]: d for d in result.devices}
    table = Table(title="devices (GET /api/devices)")
    for col in ("device", "board", "wakes", "commands", "applied", "adapted", "reports",
                "bytes out", "last state"):
        table.add_column(col)
    for d in demo.devices:
        mine = [c["state"] for c in result.commands if c["device"] == d.hex]
        wakes = "connected" if d.connected else str(d.summary.get("cycles", "?"))
        table.add_row(f"{d.who} {d.hex}", d.chip, wakes, str(len(mine)),
                      str(mine.count("applied")), str(mine.count("adapted")), str(reports.get(d.hex, 0)),
                      f"{d.summary.get('bytes_out', 0):,}", state_text(shadows.get(d.hex, {}).get("state")))
    console.print(table)
    table = Table(title="commands (GET /api/commands)")
    for col in ("id", "device", "command", "state", "sends", "accepted -> ACK"):
        table.add_column(col)
    for c in sorted(result.commands, key=lambda c: c["id"]):
        dt = c["acked_at"] - c["created_at"] if c.get("acked_at") else None
        took = "-" if dt is None else f"{dt * 1000:.0f} ms" if dt < 1 else f"{dt:.1f} s"
        table.add_row(str(c["id"]), demo.by_hex[c["device"]].who, describe(c["kind"], c["params"]),
                      outcome(c), str(c["sends"]), took)
    console.print(table)


def _stay(console: Console, demo: Demo, result: DemoResult) -> None:
    base, _, token = result.url.partition("/#token=")
    console.print(f"[bold]everything keeps running until Ctrl-C:[/] the boards waking, the cloud answering.\n"
                  f"  the dashboard: {result.url}\n"
                  f"  spot ctl, in another shell:\n"
                  f"    export SPOT_CLOUD_URL={base} SPOT_CLOUD_TOKEN={token}\n"
                  f"    spot ctl devices; spot ctl setpoint 00001101 21.5 --wait 10; spot ctl watch",
                  soft_wrap=True)
    try:
        while True:
            time.sleep(0.5)
            demo.flush()
    except KeyboardInterrupt:
        console.print("stopping the boards, the cloud and the broker")


def run(console: Console | None = None) -> int:
    return run_demo(console).code


def main(stay: bool = False) -> int:
    return run_demo(stay=stay).code
