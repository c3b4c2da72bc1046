"""End-to-end demo: a controller, a private Mosquitto and one emulated device.

The device is the built firmware (main.py) on the real MicroPython unix port, loading the
compiled library (build/mpy/x64), provisioned by a throw-away registry with its
own keys. The controller (the cloud, paho-mqtt here) sends a retained price
forecast under the site's group key, a time sync, a "reduce power 20 % for
2 h" command under the device's key, frames the filter must drop (for another
device, unknown service, truncated, garbage payload) and frames an attacker
could send (forged tag, replay, unsecured, from an unpaired controller), one
at a time, and waits for the device's verdict on each and for its sealed ACK.
Prints a timeline and a summary table; returns 0 only if the device counted
exactly what was sent.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from host_tools.paths import ROOT

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from rich.text import Text  # noqa: E402

from host_tools.cloud.broker import Broker, BrokerError  # noqa: E402
from host_tools.cloud.controller import STATUS_NAMES, _no_delay  # noqa: E402
from host_tools.cloud.registry import Registry  # noqa: E402
from host_tools.bench.wire_compare import PRICE24, SHED  # noqa: E402
from spot import builders, cbor, errors, frame, messages, secure, topics  # noqa: E402
from spot.keyring import Key  # noqa: E402

FIRMWARE = ROOT / "build" / "mpy" / "x64" / "main.py"  # the built image, as on a board
MPY = ROOT / "build" / "mpy" / "x64"
DEPS = ROOT / "build" / "deps"
SITE = "demo"
DEVICE = 0x00001001
OTHER_DEVICE = 0x00001002
CONTROLLER = 0x00000001  # the cloud: the registry's own address
ROGUE = 0x00000009  # a controller nobody paired with the device
UNKNOWN_SERVICE = 0x7E
VERDICT_TIMEOUT = 5.0  # per frame: delivered and kept or dropped
ACK_TIMEOUT = 10.0
READY_TIMEOUT = 10.0
RUN_LIMIT_S = 45  # the device's own time limit, in case we never say stop
WAKE_MS = 250  # the device sleeps this long between wakes


topic: Callable[..., str] = topics.topic  # the device's own map: the two cannot drift


DUPLICATE = -2  # a command the device already applied: answered again, not applied


class DemoError(Exception):
    """A step of the demo failed; the message is the one line shown."""


@dataclass
class Planned:
    label: str
    topic: str
    data: bytes
    expect: int  # errors.OK if the device should keep it, else the drop code
    retain: bool = False
    acked: bool = False  # a command: the device answers with an ACK


@dataclass
class Result:
    ok: bool = False
    error: str | None = None
    sent: list[Planned] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    acks: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def expected(self) -> dict[str, Any]:
        """The counters the device's summary must show for what was sent."""
        dropped: dict[str, int] = {}
        for p in self.sent:
            if p.expect > 0:
                dropped[str(p.expect)] = dropped.get(str(p.expect), 0) + 1
        kept = sum(1 for p in self.sent if p.expect == errors.OK)
        return {"rx": len(self.sent), "kept": kept, "applied": kept, "refused": 0, "errors": 0,
                "dropped": dropped, "acks": sum(1 for p in self.sent if p.acked)}


def plan(reg: Registry) -> list[Planned]:
    """The frames the controller sends, in order, with what the device must do."""
    down = topic(SITE, DEVICE)
    bcast = topic(SITE, frame.BROADCAST)
    group = reg.site_group(SITE)
    gtopic = topic(SITE, group)
    key = reg.sender_key(CONTROLLER, DEVICE)
    gkey = reg.group_key(SITE)
    seq = reg.counter(CONTROLLER).next
    prices = [round(p * 100) for p in PRICE24["prices"]]
    forecast = builders.price_forecast(group, CONTROLLER, seq(), PRICE24["start"],
                                       PRICE24["interval_s"], prices, -2, key=gkey)
    sync = builders.time_sync(DEVICE, CONTROLLER, seq(), int(time.time()), 0, key=key)
    shed = builders.reduce_power(DEVICE, CONTROLLER, seq(), SHED["reduce_pct"], SHED["start"],
                                 SHED["duration_s"], key=key)
    other = builders.reduce_power(OTHER_DEVICE, CONTROLLER, seq(), SHED["reduce_pct"],
                                  SHED["start"], SHED["duration_s"], key=key)
    unknown = secure.seal(key, UNKNOWN_SERVICE, 1, frame.CLASS_INFO, DEVICE, CONTROLLER, seq(),
                          cbor.encode({0: 1}))
    truncated = builders.reduce_power(DEVICE, CONTROLLER, seq(), 50, SHED["start"], 600,
                                      key=key)[:-5]
    # A well-formed, sealed frame around bytes that are no CBOR map (0xff: a
    # "break" outside any indefinite item): only the payload codec can refuse it.
    garbage = secure.seal(gkey, messages.SVC_PRICE, 1, frame.CLASS_INFO, group, CONTROLLER,
                          seq(), b"\xff\x00garbage")
    forged = bytearray(builders.reduce_power(DEVICE, CONTROLLER, seq(), 100, SHED["start"],
                                             7200, key=key))
    forged[-1] ^= 0x55
    unsecured = builders.reduce_power(DEVICE, CONTROLLER, seq(), 100, SHED["start"], 7200)
    rogue = builders.reduce_power(DEVICE, ROGUE, 1, 100, SHED["start"], 7200,
                                  key=Key(2, DEVICE, os.urandom(32), 0xFF))
    return [
        Planned("24 h price forecast (retained, group key)", gtopic, forecast, errors.OK,
                retain=True),
        Planned("time sync (device key)", down, sync, errors.OK),
        Planned("reduce power 20 % for 2 h", down, shed, errors.OK, acked=True),
        Planned(f"command for device {OTHER_DEVICE:08x}", bcast, other, errors.NOT_FOR_ME),
        Planned(f"frame of unknown service 0x{UNKNOWN_SERVICE:02x}", down, unknown,
                errors.UNKNOWN_SERVICE),
        Planned("truncated command (5 bytes cut)", down, truncated, errors.TRUNCATED),
        Planned("price frame with garbage payload", gtopic, garbage, errors.BAD_PAYLOAD),
        Planned("attacker: command with a forged tag", down, bytes(forged), errors.BAD_TAG),
        Planned("attacker: the price forecast replayed", gtopic, forecast, errors.REPLAYED),
        Planned("the 20 % command delivered again", down, shed, DUPLICATE, acked=True),
        Planned("attacker: unsecured command", down, unsecured, errors.INSECURE),
        Planned(f"attacker: command from unpaired {ROGUE:08x}", down, rogue, errors.NOT_PAIRED),
    ]


def micropython() -> Path:
    exe = Path(sys.executable).parent / "micropython"
    if exe.exists():
        return exe
    found = shutil.which("micropython")
    if not found:
        raise DemoError("the `micropython` command is missing: pip install -r requirements.txt")
    return Path(found)


def _prepare() -> None:
    """Fresh x64 library (incremental) and umqtt present, or a clear error."""
    if not (DEPS / "umqtt" / "simple.py").exists():
        raise DemoError("umqtt.simple is missing: run `make setup` "
                        "(or python -m host_tools.board.fetch_umqtt)")
    from host_tools.board import build

    build.build_arch("x64")


# --- the timeline -------------------------------------------------------------

_STYLE = {"sent": "bold", "delivered": "dim", "kept": "green", "dropped": "yellow",
          "applied": "cyan", "acked": "magenta", "ack received": "bold magenta",
          "error": "bold red", "refused": "red", "started": "blue",
          "stopped": "blue", "link": "red", "said": "dim", "provisioned": "blue",
          "woke": "blue", "asleep": "blue", "wake failed": "red", "duplicate": "yellow"}


_WHAT_WIDTH = 30  # fits "dropped(authentication failed)"


class Timeline:
    def __init__(self, console: Console, t0: float) -> None:
        self.console = console
        self.t0 = t0

    def show(self, t: float, who: str, what: str, detail: str = "", size: int | None = None) -> None:
        line = Text()
        line.append(f"{t - self.t0:7.3f}s  ", style="dim")
        line.append(f"{who:<10} ")
        line.append(f"{what:<{_WHAT_WIDTH}} ", style=_STYLE.get(what.split("(")[0].strip(), ""))
        line.append(f"{size:>4} B  " if size is not None else "        ")
        line.append(detail)
        self.console.print(line, highlight=False, soft_wrap=True)


# --- the device process -------------------------------------------------------

class Device:
    """The built firmware (main.py) under the MicroPython unix port; its JSON lines go to `events`."""

    def __init__(self, port: int, events: queue.Queue[tuple[float, str, Any]], workdir: Path) -> None:
        cfg = {"dir": str(workdir / "device-fs"), "broker": {"host": "127.0.0.1", "port": port},
               "run_s": RUN_LIMIT_S, "wake_ms": WAKE_MS, "budget_ms": 3000, "stdin_stop": True}
        path = workdir / "device.json"
        path.write_text(json.dumps(cfg))
        env = dict(os.environ, MICROPYPATH=os.pathsep.join([".frozen", str(MPY)]))
        self.proc = subprocess.Popen(
            [str(micropython()), str(FIRMWARE), str(path)], env=env, cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1, start_new_session=True)
        self.events = events
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            now = time.monotonic()
            try:
                self.events.put((now, "device", json.loads(line)))
            except ValueError:  # a traceback or a stray print
                self.events.put((now, "device-text", line.rstrip()))
        self.events.put((time.monotonic(), "device-exit", self.proc.wait()))

    def ask_stop(self) -> None:
        try:
            assert self.proc.stdin
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        """Stop for sure: ask, then SIGTERM, then SIGKILL."""
        if self.proc.poll() is None:
            self.ask_stop()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(2)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                if f:
                    f.close()
            except OSError:
                pass
        self.reader.join(1)


# --- the run ------------------------------------------------------------------

class _Run:
    """State of one demo run: the event queue, what was seen, the timeline."""

    def __init__(self, console: Console) -> None:
        self.t0 = time.monotonic()
        self.timeline = Timeline(console, self.t0)
        self.events: queue.Queue[tuple[float, str, Any]] = queue.Queue()
        self.device_events: list[dict[str, Any]] = []
        self.acks: list[dict[str, Any]] = []
        self.reports: list[dict[str, Any]] = []
        self.clock_shown = False
        self.cycles: list[dict[str, Any]] = []
        self.summary: dict[str, Any] | None = None
        self.exit_code: int | None = None
        self.last_said = ""

    def wait(self, done: Callable[[], bool], timeout: float, what: str,
             exit_ok: bool = False) -> None:
        """Show events as they come until done(); DemoError on timeout or device exit."""
        deadline = time.monotonic() + timeout
        while not done():
            if self.exit_code is not None and not exit_ok:
                raise DemoError(f"{what}: it exited (status {self.exit_code}): "
                                f"{self.last_said or 'no output'}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise DemoError(f"{what} within {timeout:.0f} s")
            try:
                t, source, item = self.events.get(timeout=min(left, 0.2))
            except queue.Empty:
                continue
            self._handle(t, source, item)

    def _handle(self, t: float, source: str, item: Any) -> None:
        show = self.timeline.show
        if source == "device":
            self.device_events.append(item)
            self._device_event(t, item)
        elif source == "device-text":
            self.last_said = item
            show(t, "device", "said", item)
        elif source == "device-exit":
            self.exit_code = item
            show(t, "device", "stopped", f"exit status {item}")
        elif source == "report":
            self.reports.append(item)
        elif source == "ack":
            self.acks.append(item)
            show(t, "controller", "ack received",
                 f"from {item['src']:08x}: seq {item['acked']} {item['status_name']}", item["n"])

    def _device_event(self, t: float, e: dict[str, Any]) -> None:
        show = self.timeline.show
        ev = e.get("ev")
        if ev == "cycle":
            if e.get("received", 0) > (1 if e.get("time_answered") else 0) or not e.get("ok"):
                what = "woke" if e.get("ok") else "wake failed"
                detail = (f"{e['ms']} ms awake, {e['received']} received, {e['published']} "
                          f"published, {e['round_trips']} round trips, "
                          f"{e['bytes_in'] + e['bytes_out']} B on the wire")
                show(t, "device", what, detail + (f"  {e['error']}" if e.get("error") else ""))
            self.cycles.append(e)
        elif ev == "rx":
            show(t, "device", "delivered", e["where"], e["n"])
        elif ev == "kept":
            show(t, "device", "kept", f"service {e['svc']} class {e['cls']} "
                 f"from {e['src']:08x} to {e['dst']:08x} seq {e['seq']}", e["n"])
        elif ev == "dropped":
            show(t, "device", f"dropped({e['reason']})", f"code {e['code']}", e["n"])
        elif ev == "applied":
            show(t, "device", "applied", e["what"])
        elif ev == "acked":
            show(t, "device", "acked", f"seq {e['seq']} to {e['to']:08x} (outbox)", e["n"])
        elif ev == "clock":
            if not self.clock_shown:  # the first exchange; later ones look the same
                show(t, "device", "clock", f"two-way time exchange: {e['result']}, "
                     f"error bound {e['bound_ms']} ms (one every wake from now on)")
                self.clock_shown = True
        elif ev == "summary":
            self.summary = e
        else:
            show(t, "device", str(ev), " ".join(f"{k}={v}" for k, v in e.items()
                                               if k not in ("ev", "t")))

    def drain(self) -> None:
        """Show whatever already arrived, so the timeline stays in order."""
        while True:
            try:
                self._handle(*self.events.get_nowait())
            except queue.Empty:
                return

    def count(self, ev: str) -> int:
        return sum(1 for e in self.device_events if e.get("ev") == ev)

    def outcomes(self) -> int:
        return sum(1 for e in self.device_events if e.get("ev") in ("applied", "refused", "error"))

    def verdicts(self) -> list[dict[str, Any]]:
        return [e for e in self.device_events if e.get("ev") in ("kept", "dropped", "error", "duplicate")]


def _controller(port: int, events: queue.Queue[tuple[float, str, Any]], reg: Registry) -> Any:
    import paho.mqtt.client as mqtt
    from spot.filter_table import FilterTable

    subscribed = threading.Event()
    ring = reg.keyring_for(CONTROLLER)  # verifies what the devices send back
    table = FilterTable(CONTROLLER)
    table.set_service(messages.SVC_CORE, (frame.CLASS_ACK, frame.CLASS_REPORT, frame.CLASS_TIMESYNC))
    counter = reg.counter(CONTROLLER)

    def on_message(client: Any, _u: Any, msg: Any) -> None:
        now = time.monotonic()
        received_ms = time.time_ns() // 1_000_000
        try:
            f = secure.open_frame(msg.payload, table, ring)
            body = messages.read_payload(f)
            if f.cls == frame.CLASS_TIMESYNC:  # a wake's time request: answer at once
                answer = builders.time_answer(f.src, CONTROLLER, counter.next(),
                                              body.get(messages.K_TS_ECHO), received_ms,
                                              time.time_ns() // 1_000_000,
                                              key=reg.sender_key(CONTROLLER, f.src))
                client.publish(topic(SITE, f.src), answer, qos=1)
                return
            if f.cls == frame.CLASS_REPORT:
                events.put((now, "report", {"src": f.src, "seq": f.seq, "body": body}))
                return
            status = body.get(messages.K_ACK_STATUS)
            events.put((now, "ack", {
                "src": f.src, "dst": f.dst, "acked": body.get(messages.K_ACK_SEQ),
                "status": status, "n": len(msg.payload),
                "status_name": STATUS_NAMES.get(status, str(status))}))
        except errors.SpotError as e:
            events.put((now, "device-text", f"unreadable uplink frame: {e}"))

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="spot-demo-controller",
                    protocol=mqtt.MQTTv311)
    c.on_message = on_message
    # paho leaves Nagle on; without this a publish can sit ~40 ms behind a
    # delayed TCP ACK and the timeline shows the stack, not the protocol.
    c.on_socket_open = lambda _c, _u, sock: _no_delay(sock)
    c.on_subscribe = lambda *_a: subscribed.set()
    c.connect("127.0.0.1", port, keepalive=30)
    c.subscribe(topic(SITE, 0, up=True).rsplit("/", 1)[0] + "/+", qos=1)
    c.loop_start()
    if not subscribed.wait(5):
        c.loop_stop()
        raise DemoError("the controller could not subscribe to the uplink")
    return c


def run(console: Console | None = None) -> Result:
    """One demo run; never leaves a process behind. Result.ok says if all matched."""
    console = console or Console()
    res = Result()
    r = _Run(console)
    try:
        _prepare()
        with ExitStack() as stack:
            # Unwound last-in first-out: device and controller go before the broker.
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="spot-demo-")))
            broker = stack.enter_context(Broker())
            _scenario(r, res, stack, broker, tmp)
        res.ok = True
    except (DemoError, BrokerError) as e:
        res.error = str(e)
    except Exception as e:  # anything else still ends as one line, not a traceback
        res.error = f"{type(e).__name__}: {e}"
    finally:
        res.seconds = time.monotonic() - r.t0
    if res.summary:
        _summary_table(console, res)
    return res


def _scenario(r: _Run, res: Result, stack: ExitStack, broker: Broker, tmp: Path) -> None:
    show = r.timeline.show
    reg = Registry(tmp / "registry" / "registry.json")
    reg.provision(SITE, DEVICE)
    reg.save()
    files = reg.write_device_files(DEVICE, tmp / "device-fs")
    show(time.monotonic(), "registry", "provisioned",
         f"device {DEVICE:08x}: device key, site group key -> {', '.join(p.name for p in files)}")
    show(time.monotonic(), "broker", "started", f"mosquitto on 127.0.0.1:{broker.port}")
    ctl = _controller(broker.port, r.events, reg)
    # disconnect() first: it wakes paho's network thread, so loop_stop() is quick.
    stack.callback(ctl.loop_stop)
    stack.callback(ctl.disconnect)
    device = Device(broker.port, r.events, tmp)
    stack.callback(device.close)
    show(time.monotonic(), "device", "started",
         f"micropython build/mpy/x64/main.py, address {DEVICE:08x}")
    r.wait(lambda: any(c.get("ok") for c in r.cycles), READY_TIMEOUT,
           "the device's first wake did not reach the broker")
    show(time.monotonic(), "device", "asleep", f"subscribed; wakes every {WAKE_MS} ms, "
         "drains its queue up to its end-of-queue marker, reports, sleeps")
    for p in plan(reg):
        r.drain()
        before = len(r.verdicts())
        outcomes = r.outcomes()
        # Counted before sending: the controller may see the ACK before the
        # device's own report of the frame reaches us.
        acks_before, acked_before = len(r.acks), r.count("acked")
        info = ctl.publish(p.topic, p.data, qos=1, retain=p.retain)
        res.sent.append(p)
        show(time.monotonic(), "controller", "sent", f"{p.label} -> {p.topic}", len(p.data))
        info.wait_for_publish(5)
        # Its verdict and, for a kept frame, what became of it.
        r.wait(lambda: len(r.verdicts()) > before and (
            r.verdicts()[-1]["ev"] != "kept" or r.outcomes() > outcomes),
            VERDICT_TIMEOUT, f"the device gave no verdict on '{p.label}'")
        got = r.verdicts()[-1]
        verdict = {"error": -1, "duplicate": DUPLICATE}.get(got["ev"], got.get("code", errors.OK))
        if verdict != p.expect:
            raise DemoError(f"'{p.label}': expected {errors.NAMES.get(p.expect, p.expect)}, "
                            f"device said {got}")
        if p.acked:
            r.wait(lambda: len(r.acks) > acks_before and r.count("acked") > acked_before, ACK_TIMEOUT,
                   f"no ACK for '{p.label}'")
    device.ask_stop()
    r.wait(lambda: r.summary is not None and r.exit_code is not None, 5.0,
           "the device did not stop with a summary", exit_ok=True)
    res.summary = r.summary or {}
    res.acks = r.acks
    mismatch = _compare(res)
    if mismatch:
        raise DemoError("device counters differ from what was sent: " + mismatch)
    if r.exit_code:
        raise DemoError(f"the device exited with status {r.exit_code}")


def _compare(res: Result) -> str:
    s, want = res.summary, res.expected()
    got = {k: s.get(k) for k in want}
    bad = [f"{k}: {got[k]} (expected {want[k]})" for k in want if got[k] != want[k]]
    if len(res.acks) != want["acks"]:
        bad.append(f"ACKs received by the controller: {len(res.acks)} (expected {want['acks']})")
    return "; ".join(bad)


def _summary_table(console: Console, res: Result) -> None:
    s, want = res.summary, res.expected()
    t = Table(title=f"SPOT demo: device {DEVICE:08x}, {res.seconds:.1f} s")
    t.add_column("")
    t.add_column("expected", justify="right")
    t.add_column("device counted", justify="right")
    t.add_column("bytes", justify="right")
    t.add_row("frames sent", str(len(res.sent)), str(s.get("rx")),
              str(sum(len(p.data) for p in res.sent)))
    t.add_row("kept", str(want["kept"]), str(s.get("kept")),
              str(sum(len(p.data) for p in res.sent if p.expect == errors.OK)))
    codes = sorted({*want["dropped"], *s.get("dropped", {})}, key=int)
    for code in codes:
        t.add_row(f"dropped: {frame.reason(int(code))}", str(want["dropped"].get(code, 0)),
                  str(s.get("dropped", {}).get(code, 0)),
                  str(sum(len(p.data) for p in res.sent if str(p.expect) == code)))
    t.add_row("delivered again: answered, not applied",
              str(sum(1 for p in res.sent if p.expect == DUPLICATE)), "", "")
    t.add_row("applied", str(want["applied"]), str(s.get("applied")), "")
    t.add_row("errors", "0", str(s.get("errors")), "")
    t.add_row("ACKs (device sent / controller got)", str(want["acks"]),
              f"{s.get('acks')} / {len(res.acks)}", "")
    t.add_row("wakes (uplink bytes, all wakes)", "", str(s.get("cycles")), str(s.get("bytes_out")))
    t.add_row("time exchanges answered", "", str(s.get("time_answers")), "")
    console.print(t)


def main() -> int:
    console = Console()
    try:
        res = run(console)
    except KeyboardInterrupt:
        console.print("[red]demo interrupted[/red]")
        return 130
    if not res.ok:
        console.print(f"[bold red]demo failed:[/bold red] {res.error}", highlight=False,
                      soft_wrap=True)
        return 1
    console.print(f"[green]demo passed[/green] in {res.seconds:.1f} s", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
