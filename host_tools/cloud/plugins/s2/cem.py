"""A small CEM built with s2-python, for this plugin's tests and bench (not used by the cloud).

A WebSocket server on loopback, on its own thread and loop: it answers each RM's
Handshake with its own and a HandshakeResponse, selects the first control type the
RM's ResourceManagerDetails offers, and answers every message with a ReceptionStatus.
Every message either way is checked by s2-python's models: what it receives is parsed
by S2Parser, what it sends is built as a model and parsed again from its JSON; a
message that fails either is counted in `invalid` (a test wants it at 0). Received
messages are kept per RM (by the serial number its details give) with the time they
arrived, for tests to wait on.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from s2python.common import (EnergyManagementRole, Handshake, HandshakeResponse, ReceptionStatus,
                             ReceptionStatusValues, ResourceManagerDetails, SelectControlType)
from s2python.s2_parser import S2Parser
from s2python.s2_validation_error import S2ValidationError
from s2python.version import S2_VERSION


@dataclass
class Peer:
    """One RM's session as the CEM sees it."""
    ws: Any
    serial: str | None = None
    details: ResourceManagerDetails | None = None
    got: list[tuple[float, Any]] = field(default_factory=list)  # (monotonic time, message)
    sizes: dict[int, int] = field(default_factory=dict)  # id(message) -> its JSON's bytes, as it came
    bytes_in: int = 0
    bytes_out: int = 0


class CEM:
    def __init__(self, select: bool = True) -> None:
        self.select = select
        self.port = 0
        self.peers: list[Peer] = []
        self.invalid: list[str] = []  # messages either side's models rejected
        self.sent: list[tuple[float, str, Any, int]] = []  # (monotonic time, serial, message, bytes)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="s2-cem", daemon=True)
        self._server: Any = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/s2"

    def __enter__(self) -> "CEM":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the CEM did not start")
        return self

    def __exit__(self, *exc: Any) -> None:
        async def close() -> None:
            self._server.close()
            for p in self.peers:
                await p.ws.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _main(self) -> None:
        from websockets.asyncio.server import serve

        asyncio.set_event_loop(self._loop)

        async def up() -> None:
            self._server = await serve(self._session, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(up())
        self._loop.run_forever()

    # the protocol -------------------------------------------------------------------------
    async def _send(self, peer: Peer, msg: Any) -> None:
        text = msg.to_json()
        try:
            S2Parser.parse_as_any_message(text)  # what we send must pass the models too
        except (S2ValidationError, ValueError) as e:
            self.invalid.append(f"sent {msg.message_type}: {e}")
        peer.bytes_out += len(text.encode())
        with self._lock:
            self.sent.append((time.monotonic(), peer.serial or "", msg, len(text.encode())))
        await peer.ws.send(text)

    async def _session(self, ws: Any) -> None:
        peer = Peer(ws)
        with self._lock:
            self.peers.append(peer)
        await self._send(peer, Handshake(message_id=uuid.uuid4(), role=EnergyManagementRole.CEM,
                                         supported_protocol_versions=[S2_VERSION]))
        try:
            async for raw in ws:
                peer.bytes_in += len(raw if isinstance(raw, bytes) else raw.encode())
                try:
                    msg = S2Parser.parse_as_any_message(raw)
                except (S2ValidationError, ValueError) as e:
                    self.invalid.append(f"received: {e}: {str(raw)[:200]}")
                    mid = (json.loads(raw) or {}).get("message_id") if raw else None
                    if mid:
                        await self._send(peer, ReceptionStatus(subject_message_id=mid,
                                                               status=ReceptionStatusValues.INVALID_MESSAGE))
                    continue
                with self._lock:
                    peer.got.append((time.monotonic(), msg))
                    peer.sizes[id(msg)] = len(raw if isinstance(raw, bytes) else raw.encode())
                if isinstance(msg, ReceptionStatus):
                    continue
                await self._send(peer, ReceptionStatus(subject_message_id=msg.message_id,
                                                       status=ReceptionStatusValues.OK))
                if isinstance(msg, Handshake):
                    await self._send(peer, HandshakeResponse(message_id=uuid.uuid4(),
                                                             selected_protocol_version=S2_VERSION))
                elif isinstance(msg, ResourceManagerDetails):
                    peer.details, peer.serial = msg, msg.serial_number
                    if self.select:
                        await self._send(peer, SelectControlType(message_id=uuid.uuid4(),
                                                                 control_type=msg.available_control_types[0]))
        except Exception:  # noqa: BLE001 - a closed session ends here; tests look at what came
            pass

    # for tests ---------------------------------------------------------------------------------
    def peer(self, serial: str) -> Peer | None:
        """The newest session of the RM with this serial number."""
        with self._lock:
            found = [p for p in self.peers if p.serial == serial]
        return found[-1] if found else None

    def send(self, serial: str, msg: Any) -> float:
        """Send a message on the RM's newest session; the monotonic time it went."""
        peer = self.peer(serial)
        if peer is None:
            raise KeyError(f"no S2 session with {serial}")
        t = time.monotonic()
        asyncio.run_coroutine_threadsafe(self._send(peer, msg), self._loop).result(5)
        return t

    def size(self, msg: Any) -> int:
        """The bytes of a message as it crossed the link (either way)."""
        with self._lock:
            for p in self.peers:
                if id(msg) in p.sizes:
                    return p.sizes[id(msg)]
            for _t, _s, m, n in self.sent:
                if m is msg:
                    return n
        raise KeyError("not a message of this CEM's")

    def messages(self, serial: str | None = None, kind: type | None = None,
                 where: Callable[[Any], bool] | None = None, all_sessions: bool = True) -> list[Any]:
        with self._lock:
            peers = [p for p in self.peers if serial is None or p.serial == serial]
            if not all_sessions:
                peers = peers[-1:]
            out = [(t, m) for p in peers for t, m in p.got]
        return [(t, m) for t, m in out if (kind is None or isinstance(m, kind)) and (where is None or where(m))]

    def wait(self, serial: str | None, kind: type, where: Callable[[Any], bool] | None = None,
             timeout: float = 10.0, count: int = 1) -> list[tuple[float, Any]]:
        end = time.monotonic() + timeout
        while True:
            got = self.messages(serial, kind, where)
            if len(got) >= count:
                return got
            if time.monotonic() > end:
                raise TimeoutError(f"the CEM got {len(got)} {kind.__name__} from {serial}, not {count}")
            time.sleep(0.01)
