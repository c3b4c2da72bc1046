"""The board's output as its UART carries it: text "cooked" ("\\n" leaves as "\\r\\n"),
sys.stdout.buffer's bytes passed through untouched."""
from __future__ import annotations

RAW_MARK = b"\x1b_VBRAW"  # an APC escape (terminals ignore it), then a 4-byte length


def cook(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


class Output:
    """The interpreter's stdout as a board's UART carries it: text with every "\n"
    sent as "\r\n" (print, sys.stdout), and sys.stdout.buffer's bytes untouched
    (they come framed by RAW_MARK: mpremote mount's protocol, binary streams)."""

    def __init__(self) -> None:
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        data = self._held + data
        self._held = b""
        out = bytearray()
        while data:
            i = data.find(RAW_MARK)
            if i < 0:
                keep = _partial_suffix(data, RAW_MARK)  # a mark cut by the pipe: wait
                out += cook(data[: len(data) - keep])
                self._held = data[len(data) - keep :]
                break
            out += cook(data[:i])
            head = i + len(RAW_MARK)
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
        return cook(held)


def _partial_suffix(data: bytes, mark: bytes) -> int:
    """How many bytes at the end of data could start mark."""
    for k in range(min(len(mark) - 1, len(data)), 0, -1):
        if mark.startswith(data[-k:]):
            return k
    return 0
