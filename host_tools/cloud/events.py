"""The live event stream: what the uplink loop saw, fanned out to API listeners (SSE).

The uplink loop runs in its own thread; listeners are asyncio queues on the
server's loop. Each listener's queue is bounded: a listener too slow to keep up
loses its oldest events (each event is numbered, so it sees the gap), never the
service's memory.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

QUEUE_MAX = 256


class EventBus:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: set[asyncio.Queue] = set()
        self._lock = threading.Lock()
        self._n = 0
        self._sinks: list[Callable[[dict[str, Any]], None]] = []

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def add_sink(self, sink: "Callable[[dict[str, Any]], None]") -> None:
        """A callable given every event on the publishing thread (it must only hand it on)."""
        self._sinks.append(sink)

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(QUEUE_MAX)
        with self._lock:
            self._listeners.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        with self._lock:
            self._listeners.discard(q)

    def publish(self, event: dict[str, Any]) -> None:
        """From any thread."""
        with self._lock:
            self._n += 1
            event = dict(event, n=self._n)
            heard = bool(self._listeners)
        for sink in self._sinks:
            sink(event)
        loop = self._loop
        if not heard or loop is None or loop.is_closed():
            return  # nobody listens: waking the server's loop per uplink cost the time answers
        try:
            loop.call_soon_threadsafe(self._deliver, event)
        except RuntimeError:  # the loop closed meanwhile (shutting down)
            pass

    def _deliver(self, event: dict[str, Any]) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for q in listeners:
            if q.full():
                q.get_nowait()  # the oldest goes; the listener sees a gap in "n"
            q.put_nowait(event)
