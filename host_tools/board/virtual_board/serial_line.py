"""The board's serial line: a raw TCP socket (pyserial's socket://) and/or a pty, one
client at a time on each, both seeing the same board. Output nobody reads on the pty
is dropped as a board's is on a USB port nobody has open."""
from __future__ import annotations

import os
import selectors
import socket
import time
import tty
from typing import Callable

_PTY_QUEUE_MAX = 1 << 18  # output held for a pty reader that lags behind; the oldest goes first
# s: a pty that takes no output for this long has no reader; what it was owed is lost, and so is
# what follows until someone reads again (a board's USB CDC TX timeout, 500 ms in MicroPython)
PTY_STALL = 0.5


class SerialLine:
    """The endpoints in front of one board. on_input gets the bytes any client sends;
    emit() sends the board's bytes to every client. Its file descriptors live in the
    board's selector (open()), whose loop calls back here."""

    def __init__(self, on_input: Callable[[bytes], None]) -> None:
        self._on_input = on_input
        self.url: str | None = None
        self.pty_path: str | None = None
        self._sel: selectors.BaseSelector | None = None
        self._lsock: socket.socket | None = None
        self._client: socket.socket | None = None
        self._pty_master: int | None = None
        self._pty_slave: int | None = None
        self._pty_q = bytearray()
        self._pty_events = selectors.EVENT_READ
        self._pty_stall_at: float | None = None  # output waits for the pty: no reader if still at
        self._pty_deaf = False  # the pty has no reader: what the kernel does not take is dropped

    def open(self, sel: selectors.BaseSelector, host: str, port: int | None, pty: bool) -> None:
        """Listen on host:port (None: no TCP) and open a pty if asked."""
        self._sel = sel
        if port is not None:
            ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind((host, port))
            ls.listen(4)
            ls.setblocking(False)
            self._lsock = ls
            self.url = f"socket://{host}:{ls.getsockname()[1]}"
            sel.register(ls, selectors.EVENT_READ, self._on_accept)
        if pty:
            master, slave = os.openpty()
            tty.setraw(slave)  # no echo, no line discipline: bytes pass as they are
            os.set_blocking(master, False)
            self._pty_master, self._pty_slave = master, slave
            self.pty_path = os.ttyname(slave)
            sel.register(master, selectors.EVENT_READ, self._on_pty)

    def close(self) -> None:
        self._drop_client()
        if self._lsock is not None:
            self._lsock.close()
            self._lsock = None
        for fd in (self._pty_master, self._pty_slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._pty_master = self._pty_slave = None

    def emit(self, data: bytes) -> None:
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

    @property
    def stall_due(self) -> float | None:
        """When (time.monotonic) the pty counts as unread if it still takes nothing."""
        return self._pty_stall_at

    def check_stall(self, now: float) -> None:
        if self._pty_stall_at is not None and now >= self._pty_stall_at:
            self._pty_stall_at = None
            if self._pty_master is not None:
                self._pty_deaf = True  # nobody took any output for PTY_STALL
                self._flush_pty()

    # TCP ---------------------------------------------------------------------
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
        self._on_input(data)

    def _quickack(self) -> None:
        # pyserial's socket keeps Nagle on: its small writes (Ctrl-E "A" Ctrl-A, the
        # code, Ctrl-D) would each wait for our delayed ACK (up to 40 ms). ACK at once;
        # Linux forgets TCP_QUICKACK after a while, so it is set again after every read.
        if self._client is not None and hasattr(socket, "TCP_QUICKACK"):
            try:
                self._client.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            except OSError:
                pass

    # pty ---------------------------------------------------------------------
    def _on_pty(self, ev: int) -> None:
        if ev & selectors.EVENT_WRITE:
            self._flush_pty()
        if ev & selectors.EVENT_READ:
            try:
                data = os.read(self._pty_master, 65536)
            except (BlockingIOError, OSError):
                return
            if data:
                self._on_input(data)

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
            self._pty_stall_at = time.monotonic() + PTY_STALL
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if q else 0)
        if events != self._pty_events:
            self._pty_events = events
            self._sel.modify(self._pty_master, events, self._on_pty)
