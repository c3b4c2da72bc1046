"""VirtualBoardServer: one virtual board. It owns the serial line, this boot's interpreter,
the REPL and the peripherals, runs them from one event-loop thread, and plays the chip's
life around them: boots, resets, deep sleep and its wake, the watchdog, the RTC, Ctrl-C."""
from __future__ import annotations

import calendar
import hashlib
import json
import os
import selectors
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from host_tools.paths import VIRTUAL

from .chips import (CHIPS, DEEPSLEEP_RESET, HAL_CAUSES, HARD_RESET, PWRON_RESET, ROLES,
                    SOFT_RESET, WDT_RESET, make_models)
from .interpreter import BOOT_SCRIPT, Interpreter, find_micropython, micropython_version
from .line_discipline import cook
from .peripherals import Peripherals
from .repl import Repl
from .serial_line import SerialLine

_SIGINT_GAP = 0.2  # s: Ctrl-Cs closer than this are one interrupt (one KeyboardInterrupt)
_NO_REPLY = object()  # a machine call that ended the interpreter: nobody to answer


class VirtualBoardServer:
    """One virtual board: a serial endpoint (TCP and/or pty) in front of the unix port.

    chip "esp32" | "rp2040"; role "thermostat" | "smart_plug" | "heat_pump";
    root: the board's flash (a directory, created if missing); port: TCP port
    (0: any free one; None: no TCP); pty: also serve a pseudo-terminal.
    """

    def __init__(self, chip: str = "esp32", role: str = "thermostat", root: str | Path = ".",
                 port: int | None = 0, pty: bool = False, *, host: str = "127.0.0.1",
                 seed: int = 1, micropython: str | None = None, heap: str | None = None) -> None:
        if chip not in CHIPS:
            raise ValueError(f"unknown chip {chip!r} (one of: {', '.join(CHIPS)})")
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r} (one of: {', '.join(ROLES)})")
        self.chip, self.role = chip, role
        self.root = Path(root).resolve()
        self.host, self.port, self.want_pty = host, port, pty
        self.micropython = micropython or find_micropython()
        self.heap = heap
        self.debug = bool(os.environ.get("VBOARD_DEBUG"))  # trace the line and the boots on stderr
        self.lock = threading.RLock()  # hold it to look at or change self.board from outside
        self.board = make_models(role, chip, seed)
        self.boots = 0
        self.pids: list[int] = []  # every interpreter process this board started
        self.reset_cause = PWRON_RESET
        self.rtc_memory = b""
        self.asleep = False
        self._spec = CHIPS[chip]
        self._io = Peripherals(chip, self.board, self.lock)
        uid = hashlib.sha256(str(self.root).encode()).digest()[: self._spec["uid_len"]]
        self._uid = uid.hex()
        self._rtc_offset = 0.0
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._stopping = False
        self._calls: list[Callable[[], None]] = []
        self._tmp: str | None = None
        self._sel: selectors.BaseSelector | None = None
        self._wake_r = self._wake_w = -1
        self._serial = SerialLine(self._input)
        # the interpreter of this boot
        self._interp = Interpreter(self.micropython, heap, log=self._log, on_output=self._emit,
                                   on_message=self._message, on_exit=self._died)
        self._user = False  # the board runs user code: SIGINT may be sent
        self._crashes: list[float] = []
        # the REPL, and the code it runs
        self._power = "off"  # "on" | "asleep" | "halted" | "off"
        self._repl = Repl(self._emit, self._command, self._soft_reboot, self._banner)
        self._cmd_id = 0
        self._busy: str | None = None
        # Ctrl-C while code runs
        self._interrupted = False
        self._intr_wanted = False
        self._intr_enabled = True
        self._intr_at = 0.0
        self._pending = bytearray()  # input after a Ctrl-C, kept for the REPL
        # timers
        self._wake_at: float | None = None
        self._wdt_ms = 0
        self._wdt_due: float | None = None

    # ------------------------------------------------------------------ public
    @property
    def url(self) -> str | None:
        """socket://HOST:PORT, once started with a TCP endpoint."""
        return self._serial.url

    @property
    def pty_path(self) -> str | None:
        """/dev/pts/N, once started with a pty."""
        return self._serial.pty_path

    def start(self) -> VirtualBoardServer:
        """Open the endpoints and power the board on (boot.py, main.py run)."""
        try:
            self._open()
        except BaseException:
            self._close_endpoints()
            self._remove_tmp()
            raise
        self._thread = threading.Thread(target=self._main, name=f"vboard-{self.chip}", daemon=True)
        self._thread.start()
        self._started.wait(10)
        if self._error is not None:
            self._thread.join(5)
            self._thread = None
            self._remove_tmp()
            raise RuntimeError(f"virtual board did not start: {self._error!r}") from self._error
        return self

    def _open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # the boot script runs from a directory of its own: the unix port puts a script's
        # directory first on sys.path, where this package's modules must not be
        self._tmp = tempfile.mkdtemp(prefix="vboard-")
        Path(self._tmp, BOOT_SCRIPT.name).write_text(BOOT_SCRIPT.read_text())
        # with the machine module it installs, imported from there at boot
        Path(self._tmp, "machine_board.py").write_text((VIRTUAL / "machine_board.py").read_text())
        micropython_version(self.micropython)
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        self._serial.open(self._sel, self.host, self.port, self.want_pty)

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping = True
        self._poke()
        self._thread.join(10)
        self._thread = None
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> VirtualBoardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self, power_cycle: bool = False) -> None:
        """Press the reset button (HARD_RESET), or cut the power (PWRON_RESET):
        either way RTC memory is lost; a power cycle also loses the RTC's time."""
        self._call_soon(lambda: self._hard_reset(PWRON_RESET if power_cycle else HARD_RESET))

    @property
    def running(self) -> str | None:
        """What the board is doing: "boot.py", "main.py", "repl" (code from the REPL),
        "asleep", or None (at a prompt)."""
        if self._power != "on":
            return "asleep" if self._power == "asleep" else None
        return {"boot": "boot.py", "main": "main.py", None: None}.get(self._busy, "repl")

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once the board sits at a REPL prompt (not booting, running or asleep)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._power == "on" and self._busy is None:
                return True
            time.sleep(0.02)
        return False

    def _log(self, *what: object) -> None:
        if self.debug:
            print(f"[vboard {time.monotonic():.3f}]", *what, file=sys.stderr, flush=True)

    # ------------------------------------------------------------ event loop
    def _poke(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _call_soon(self, fn: Callable[[], None]) -> None:
        self._calls.append(fn)
        self._poke()

    def _on_wake(self, _ev: int) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _main(self) -> None:
        try:
            self._boot(PWRON_RESET)
            self._started.set()
            while not self._stopping:
                for key, ev in self._sel.select(self._timeout()):
                    # a callback may have closed (and a spawn reused) another fd of this batch
                    if self._sel.get_map().get(key.fd) is key:
                        key.data(ev)
                while self._calls:
                    self._calls.pop(0)()
                self._timers()
        except BaseException as e:  # noqa: BLE001 - start() re-raises it
            self._error = e
            raise
        finally:
            self._started.set()
            self._kill()
            self._close_endpoints()

    def _close_endpoints(self) -> None:
        self._serial.close()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._wake_r = self._wake_w = -1
        if self._sel is not None:
            self._sel.close()
            self._sel = None

    def _timeout(self) -> float | None:
        due = [t for t in (self._wake_at, self._wdt_due, self._serial.stall_due) if t is not None]
        if not due:
            return None
        return max(0.0, min(due) - time.monotonic())

    def _timers(self) -> None:
        now = time.monotonic()
        if self._wake_at is not None and now >= self._wake_at:
            self._wake_at = None
            self._boot(DEEPSLEEP_RESET)
        if self._wdt_due is not None and now >= self._wdt_due and self._power == "on":
            self._hard_reset(WDT_RESET)
        self._serial.check_stall(now)

    def _emit(self, data: bytes) -> None:
        """Bytes from the board to whoever listens on its serial line."""
        self._serial.emit(data)

    # ----------------------------------------------------------- interpreter
    def _spawn(self) -> None:
        cfg = {
            "chip": self.chip,
            "cause": self.reset_cause,
            "uid": self._uid,
            "freq": self._spec["freq"],
            "uname": self._uname(),
            "flash": self._spec["flash"],
        }
        script = Path(self._tmp, BOOT_SCRIPT.name)
        self.pids.append(self._interp.start(self._sel, script, self.root, cfg))
        self._user = False

    def _uname(self) -> list[str]:
        ver, date = micropython_version(self.micropython)
        return [self._spec["sysname"], self._spec["sysname"], ver.lstrip("v"),
                f"{ver} on {date}", self._spec["machine"]]

    def _kill(self) -> int | None:
        """End this boot's interpreter (nothing it printed is lost); its exit status."""
        if not self._interp.running:
            return None
        code = self._interp.stop()
        self._busy = None
        self._user = False
        return code

    def _died(self) -> None:
        """The interpreter ended by itself: a crash, as a panic on a chip."""
        if not self._interp.running:
            return
        was = self._busy
        code = self._kill()
        self._log("died", code, was)
        msg = f"\r\n[virtual board: the interpreter ended (exit status {code})]\r\n".encode()
        self._emit(b"\x04" + msg + b"\x04" if was in ("raw", "paste") else msg)
        now = time.monotonic()
        self._crashes = [t for t in self._crashes if now - t < 10] + [now]
        if len(self._crashes) >= 3:
            self._power = "halted"
            self._emit(b"[virtual board: halted after 3 crashes; Ctrl-D or reset() starts it]\r\n")
            return
        self._boot(HARD_RESET)

    # -------------------------------------------------------------- messages
    def _message(self, kind: str, n: int, body: bytes) -> None:
        if kind in ("G", "A"):  # user code runs: a Ctrl-C may strike now
            if (kind == "A" or n == self._cmd_id) and self._busy is not None:
                self._user = True
                if self._intr_wanted:
                    self._intr_wanted = False
                    self._sigint()
        elif kind == "D":
            if n == self._cmd_id and self._busy is not None:
                self._user = False
                self._done(body)
        elif kind == "C":
            self._user = False  # until A: the board is reading the reply
            self._call(n, body)

    def _call(self, n: int, body: bytes) -> None:
        try:
            name, *args = json.loads(body)
            # the chip's own calls (resets, sleep, watchdog, RTC) here, the pads' on self._io
            fn = getattr(self, "_rpc_" + name, None) or getattr(self._io, "rpc_" + name)
            with self.lock:
                value = fn(*args)
        except Exception as e:  # noqa: BLE001 - the board sees it as its own exception
            etype = type(e).__name__ if isinstance(e, (ValueError, OSError, TypeError)) else "ValueError"
            reply = {"error": str(e), "type": etype}
        else:
            if value is _NO_REPLY:
                return
            reply = {"value": value}
        self._interp.send("R", n, json.dumps(reply).encode())

    def _command(self, kind: str, body: bytes, what: str) -> None:
        """Have the interpreter run body (see vboard_boot.py's kinds); what is running
        it: "boot", "main", "single", "fpaste", "raw", "paste"."""
        self._log("run", what, body[:40])
        self._cmd_id += 1
        self._busy = what
        self._interrupted = False
        self._intr_wanted = False
        self._user = False
        self._intr_enabled = True  # pyexec sets Ctrl-C as the interrupt for every run
        self._intr_at = 0.0
        self._interp.send(kind, self._cmd_id, body)

    def _sigint(self) -> None:
        self._log("SIGINT", self._busy)
        self._intr_at = time.monotonic()
        self._interp.interrupt()

    def _done(self, body: bytes) -> None:
        self._log("done", self._busy, body[:80])
        self._interp.flush_output()
        what = self._busy
        self._busy = None
        forced = body == b"X"
        tb = cook(body[1:]) if body[:1] == b"E" else b""
        if what in ("raw", "paste"):
            self._emit(b"\x04" + tb + b"\x04")
            if forced:
                self._soft_reboot()
                return
            self._emit(b">")
        else:
            self._emit(tb)
            if forced:
                self._soft_reboot()
                return
            if what == "boot":
                if self._repl.mode == "friendly" and not tb:
                    self._command("F", b"main.py", "main")
                    return
                self._repl.start()
            elif what == "main":
                self._repl.start()
            else:
                self._repl.prompt()
        if self._pending and self._busy is None:
            data = bytes(self._pending)
            self._pending.clear()
            self._input(data)

    # ------------------------------------------------------------- lifecycle
    def _boot(self, cause: int) -> None:
        """Start the chip after a reset of this cause: ROM line, boot.py, main.py, REPL."""
        self._log("boot", HAL_CAUSES[cause])
        self.asleep = False
        self._power = "on"
        self.reset_cause = cause
        self.boots += 1
        with self.lock:
            self.board.cause = HAL_CAUSES[cause]
        self._reset_repl()
        rom = self._spec["rom"].get(cause)
        if rom:
            self._emit(f"rst:{rom},boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n".encode())
        self._spawn()
        self._command("F", b"boot.py", "boot")

    def _reset_repl(self) -> None:
        self._pending.clear()
        self._repl.reset()

    def _soft_reboot(self) -> None:
        self._kill()
        self._emit(b"MPY: soft reboot\r\n")
        if self._spec["soft_cause"]:
            self.reset_cause = SOFT_RESET
        with self.lock:
            self.board.cause = HAL_CAUSES[self.reset_cause]
        self.boots += 1
        self._reset_repl()
        self._spawn()
        self._command("F", b"boot.py", "boot")

    def _end_exec(self) -> None:
        """The interpreter is leaving mid-exec (reset, deep sleep): close the host's exec."""
        if self._busy in ("raw", "paste"):
            self._emit(b"\x04\x04")

    def _hard_reset(self, cause: int) -> None:
        self._end_exec()
        self._kill()
        self._wake_at = None
        self._wdt_ms, self._wdt_due = 0, None
        if cause in (PWRON_RESET, HARD_RESET):
            self.rtc_memory = b""
        if cause == PWRON_RESET:
            self._rtc_offset = 0.0
        self._io.reset(keep_held=False)
        self._repl.mode = "friendly"
        self._crashes = []
        self._boot(cause)

    def _deep_sleep(self, ms: int | None) -> None:
        self._end_exec()
        self._kill()
        self._wdt_ms, self._wdt_due = 0, None  # the watchdog sleeps with the chip
        self._io.reset(keep_held=True)
        self._repl.mode = "friendly"
        self._power = "asleep"
        self.asleep = True
        self._wake_at = None if ms is None else time.monotonic() + max(0, ms) / 1000

    # ------------------------------------------------------ the host's input
    def _banner(self) -> bytes:
        ver, date = micropython_version(self.micropython)
        return (f"MicroPython {ver} on {date}; {self._spec['machine']}\r\n"
                'Type "help()" for more information.\r\n').encode()

    def _input(self, data: bytes) -> None:
        """Bytes from the host, as the chip's UART receives them."""
        self._log("in", self._power, self._busy, data[:60])
        if self._power != "on":
            if self._power == "halted" and b"\x04" in data:
                self._hard_reset(HARD_RESET)
            return  # a sleeping chip hears nothing
        i = 0
        while i < len(data):
            if self._busy is not None:
                self._input_busy(data[i:])
                return
            i = self._repl.take(data, i)

    def _input_busy(self, data: bytes) -> None:
        """Code is running: Ctrl-C interrupts it; other bytes go to its stdin, or
        after a Ctrl-C wait for the REPL (as they would in the chip's UART buffer)."""
        for chunk in _split_keep(data, 3):
            if chunk == b"\x03" and self._intr_enabled:
                self._interrupted = True
                if not self._user:
                    self._intr_wanted = True  # delivered when user code runs again
                elif time.monotonic() - self._intr_at > _SIGINT_GAP:
                    self._sigint()  # a burst of Ctrl-C is one interrupt
            elif self._interrupted:
                self._pending += chunk
            else:
                self._interp.write_stdin(chunk)

    # ------------------------------------------------------- machine's calls
    def _rpc_kbd_intr(self, c: int) -> None:
        self._intr_enabled = c == 3

    def _rpc_reset(self) -> object:
        self._hard_reset(HARD_RESET)
        return _NO_REPLY

    def _rpc_deepsleep(self, ms: int | None) -> object:
        self._deep_sleep(ms)
        return _NO_REPLY

    def _rpc_wdt(self, timeout: int) -> None:
        if timeout <= 0:
            raise ValueError("WDT timeout too short")
        if self.chip == "rp2040" and timeout > 8388:
            raise ValueError("timeout too long (max 8388 ms)")
        self._wdt_ms = int(timeout)
        self._wdt_due = time.monotonic() + self._wdt_ms / 1000

    def _rpc_wdt_feed(self) -> None:
        if self._wdt_ms:
            self._wdt_due = time.monotonic() + self._wdt_ms / 1000

    def _rpc_rtc_memory(self, hexdata: str | None) -> str | None:
        if hexdata is None:
            return self.rtc_memory.hex()
        self.rtc_memory = bytes.fromhex(hexdata)
        return None

    def _rpc_rtc_datetime(self, t: list | None) -> list | None:
        if t is None:
            now = time.time() + self._rtc_offset
            g = time.gmtime(now)
            return [g.tm_year, g.tm_mon, g.tm_mday, g.tm_wday, g.tm_hour, g.tm_min, g.tm_sec,
                    int((now % 1) * 1_000_000)]
        t = list(t) + [0] * (8 - len(t))
        want = calendar.timegm((t[0], t[1], t[2], t[4], t[5], t[6], 0, 0, 0)) + t[7] / 1_000_000
        self._rtc_offset = want - time.time()
        return None


def _split_keep(data: bytes, sep: int) -> list[bytes]:
    """data cut around every byte sep, which stands alone: b"a\\x03b" -> [b"a", b"\\x03", b"b"]."""
    out, start = [], 0
    for i, c in enumerate(data):
        if c == sep:
            if i > start:
                out.append(data[start:i])
            out.append(data[i : i + 1])
            start = i + 1
    if start < len(data):
        out.append(data[start:])
    return out
