"""The REPL a virtual board speaks at its prompt, byte for byte as MicroPython's
(shared/runtime/pyexec.c, shared/readline): the friendly REPL (line editing, history,
continuation lines, Ctrl-E paste mode), the raw REPL and raw-paste mode with its
window flow control. What runs the code it reads is the server's business."""
from __future__ import annotations

import codeop
import warnings
from typing import Callable

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
PS1, PS2 = b">>> ", b"... "
_PASTE_WINDOW = 1024  # raw-paste flow-control window (bytes); the host may send 2 at once


class Repl:
    """The prompt side of the REPL: it reads the host's bytes while no code runs.

    emit(bytes) answers on the serial line; run(kind, source, what) hands code to the
    interpreter ("S" a line, "X" a block; what: "single", "fpaste", "raw", "paste");
    soft_reboot() is Ctrl-D at an empty prompt; banner() the "MicroPython ..." lines.
    """

    def __init__(self, emit: Callable[[bytes], None], run: Callable[[str, bytes, str], None],
                 soft_reboot: Callable[[], None], banner: Callable[[], bytes]) -> None:
        self._emit, self._run, self._soft_reboot, self._banner = emit, run, soft_reboot, banner
        self.mode = "friendly"  # or "raw"
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

    def reset(self) -> None:
        """Forget any half-typed input (a boot); the mode and the history stay."""
        self._line.clear()
        self._src = b""
        self._cont = False
        self._fpaste = None
        self._esc = b""
        self._raw.clear()
        self._rp = None

    def start(self) -> None:
        """The REPL after boot.py and main.py: the raw prompt, or the banner and >>>."""
        if self.mode == "raw":
            self._emit(RAW_BANNER + b">")
        else:
            self._emit(self._banner())
            self.prompt()

    def prompt(self) -> None:
        self._line.clear()
        self._src = b""
        self._cont = False
        self._emit(PS1)

    def take(self, data: bytes, i: int) -> int:
        """Read data from i on until the end or a command starts; where it stopped."""
        if self.mode == "raw":
            return self._raw_input(data, i)
        self._friendly(data[i])
        return i + 1

    # raw REPL ----------------------------------------------------------------
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
                self._emit(RAW_BANNER + b">")
        elif c == 0x02:
            self._raw.clear()
            self.mode = "friendly"
            self._emit(b"\r\n" + self._banner())
            self.prompt()
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
                self._run("X", src, "raw")
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
            self._run("X", src, "paste")
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
            self.prompt()
        elif c == 0x04 and self._cont:  # Ctrl-D ends a compound statement
            self._emit(b"\r\n")
            self._exec_line(self._src + bytes(line))
        elif c in (0x01, 0x02, 0x04, 0x05) and not line and not self._cont:
            if c == 0x01:
                self.mode = "raw"
                self._emit(b"\r\n" + RAW_BANNER + b">")
            elif c == 0x02:
                self._emit(b"\r\n" + self._banner())
                self.prompt()
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
                self._emit(PS1)
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
            self._emit(PS2 + b" " * indent)
        else:
            self._exec_line(src)

    def _exec_line(self, src: bytes) -> None:
        self._line.clear()
        self._src = b""
        self._cont = False
        if src.strip():
            self._run("S", src, "single")
        else:
            self._emit(PS1)

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
            self.prompt()
        elif c == 0x04:
            src = bytes(self._fpaste)
            self._fpaste = None
            self._emit(b"\r\n")
            self._run("X", src, "fpaste")
        else:
            self._fpaste.append(c)
            self._emit(b"\r\n=== " if c == 0x0D else bytes([c]))


def _incomplete(src: bytes) -> bool:
    """Does this REPL input want more lines? (CPython's codeop judges the grammar,
    which MicroPython shares: an open block, bracket, string or backslash.)"""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return codeop.compile_command(src.decode("utf-8", "replace"), "<stdin>", "single") is None
    except (SyntaxError, ValueError, OverflowError):
        return False  # let MicroPython say what is wrong
