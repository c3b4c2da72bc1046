"""One device's S2 session: the RM's side of S2 over WebSocket JSON towards a CEM.

The cloud connects to the CEM (one WebSocket per device, so the CEM sees one RM per
device), says Handshake, sends ResourceManagerDetails after the CEM's
HandshakeResponse, and once the CEM selects a control type sends the system
description and the device's status and measurements. Every message received is
parsed by s2-python's models (S2Parser) before anything looks at it, and answered
with a ReceptionStatus; every message sent is one of its models. A lost connection
is tried again with a growing pause; what must outlive it is in the plugin's state.

The protocol loop is ours, not s2-python's S2AsyncConnection: a handler there cannot
answer INVALID_CONTENT without the library also answering OK after it, and an
instruction outside the system description must get S2's own refusal and nothing else.
"""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

from s2python.common import (ControlType, EnergyManagementRole, Handshake, HandshakeResponse, ReceptionStatus,
                             ReceptionStatusValues, RevokeObject, SelectControlType, SessionRequest,
                             SessionRequestType)
from s2python.frbc import FRBCInstruction
from s2python.ombc import OMBCInstruction
from s2python.s2_parser import S2Parser
from s2python.s2_validation_error import S2ValidationError
from s2python.version import S2_VERSION

if TYPE_CHECKING:
    from host_tools.cloud.plugins.s2.plugin import Plugin

NIL = uuid.UUID(int=0)
RETRY_S = (0.2, 0.5, 1, 2, 5, 10, 30)


class Session:
    def __init__(self, plugin: "Plugin", device: int, url: str) -> None:
        self.plugin = plugin
        self.device = device
        self.url = url
        self.log = logging.getLogger(f"{plugin.ctx.log.name}.{device:08x}")
        self.ws: Any = None
        self.control_type: ControlType | None = None
        self.task: asyncio.Task | None = None
        self.awaiting: dict[uuid.UUID, str] = {}  # our messages the CEM has not answered yet
        self.stats = {"sent": 0, "received": 0, "bytes_out": 0, "bytes_in": 0, "invalid_in": 0,
                      "not_ok_from_cem": 0, "refused_instructions": 0, "connects": 0}
        self._stopping = False

    @property
    def active(self) -> bool:
        return self.ws is not None and self.control_type not in (None, ControlType.NO_SELECTION)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"s2-{self.device:08x}")

    async def stop(self) -> None:
        self._stopping = True
        if self.ws is not None:
            try:
                await asyncio.wait_for(self.ws.close(), 2)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        tries = 0
        while not self._stopping:
            try:
                async with connect(self.url, open_timeout=5, ping_interval=20, max_size=2**20) as ws:
                    self.ws = ws
                    self.stats["connects"] += 1
                    tries = 0
                    self.log.info("S2 session with %s open", self.url)
                    await self.send(Handshake(message_id=uuid.uuid4(), role=EnergyManagementRole.RM,
                                              supported_protocol_versions=[S2_VERSION]))
                    async for raw in ws:
                        await self._received(raw)
            except (OSError, WebSocketException, asyncio.TimeoutError) as e:
                self.log.warning("S2 session with %s: %s", self.url, e)
            finally:
                self.ws = None
                self.control_type = None
                self.awaiting.clear()
            if self._stopping:
                return
            await asyncio.sleep(RETRY_S[min(tries, len(RETRY_S) - 1)])
            tries += 1

    async def send(self, msg: Any) -> bool:
        """One of s2-python's models to the CEM; False when there is no session to send it on."""
        if self.ws is None:
            return False
        text = msg.to_json()
        try:
            await self.ws.send(text)
        except Exception as e:  # noqa: BLE001 - the receive loop sees the close and reconnects
            self.log.warning("S2 send failed: %s", e)
            return False
        self.stats["sent"] += 1
        self.stats["bytes_out"] += len(text.encode())
        mid = getattr(msg, "message_id", None)
        if mid is not None and not isinstance(msg, ReceptionStatus):
            self.awaiting[mid] = msg.message_type
            while len(self.awaiting) > 1000:  # a CEM that never answers must not grow this
                self.awaiting.pop(next(iter(self.awaiting)))
        return True

    async def answer(self, subject: Any, status: ReceptionStatusValues, label: str | None = None) -> None:
        await self.send(ReceptionStatus(subject_message_id=subject, status=status, diagnostic_label=label))

    async def _received(self, raw: str | bytes) -> None:
        self.stats["received"] += 1
        self.stats["bytes_in"] += len(raw if isinstance(raw, bytes) else raw.encode())
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except ValueError:
            self.stats["invalid_in"] += 1
            await self.answer(NIL, ReceptionStatusValues.INVALID_DATA, "not a JSON object")
            return
        try:
            msg = S2Parser.parse_as_any_message(data)
        except S2ValidationError as e:
            self.stats["invalid_in"] += 1
            self.log.warning("invalid S2 message from the CEM: %s", str(e)[:300])
            mid = data.get("message_id")
            try:
                mid = uuid.UUID(str(mid))
            except ValueError:
                await self.answer(NIL, ReceptionStatusValues.INVALID_DATA, "no valid message_id")
                return
            await self.answer(mid, ReceptionStatusValues.INVALID_MESSAGE, str(e)[:200])
            return
        await self._handle(msg)

    async def _handle(self, msg: Any) -> None:
        ok = ReceptionStatusValues.OK
        if isinstance(msg, ReceptionStatus):
            what = self.awaiting.pop(msg.subject_message_id, None)
            if msg.status != ok:
                self.stats["not_ok_from_cem"] += 1
                self.log.warning("the CEM answered %s to our %s: %s", msg.status.value, what,
                                 msg.diagnostic_label)
        elif isinstance(msg, Handshake):
            await self.answer(msg.message_id, ok)
        elif isinstance(msg, HandshakeResponse):
            if msg.selected_protocol_version != S2_VERSION:
                await self.answer(msg.message_id, ReceptionStatusValues.INVALID_CONTENT,
                                  f"this RM speaks S2 {S2_VERSION}")
                return
            await self.answer(msg.message_id, ok)
            await self.plugin.handshaken(self, msg.selected_protocol_version)
        elif isinstance(msg, SelectControlType):
            res = self.plugin.resources.get(self.device)
            allowed = {ControlType.NO_SELECTION} | ({res.control} if res else set())
            if msg.control_type not in allowed:
                await self.answer(msg.message_id, ReceptionStatusValues.INVALID_CONTENT,
                                  f"this RM offers {res.control.value if res else 'nothing yet'}")
                return
            await self.answer(msg.message_id, ok)
            self.control_type = msg.control_type
            await self.plugin.selected(self, msg.control_type)
        elif isinstance(msg, (OMBCInstruction, FRBCInstruction)):
            status, label, after = await self.plugin.instruction(self, msg)
            if status != ok:
                self.stats["refused_instructions"] += 1
            await self.answer(msg.message_id, status, label)
            for m in after:
                await self.send(m)
        elif isinstance(msg, SessionRequest):
            await self.answer(msg.message_id, ok)
            if msg.request == SessionRequestType.TERMINATE:
                self.log.info("the CEM ended the session: %s", msg.diagnostic_label)
            if self.ws is not None:
                await self.ws.close()  # RECONNECT or TERMINATE: _run tries again after its pause
        elif isinstance(msg, RevokeObject):
            # A SPOT command already on its way to a sleeping device is tracked to its ACK
            # and cannot be taken back through a plugin's context: say so rather than pretend.
            await self.answer(msg.message_id, ReceptionStatusValues.INVALID_CONTENT,
                              "this RM cannot revoke: send a new instruction instead")
        else:
            await self.answer(msg.message_id, ReceptionStatusValues.INVALID_CONTENT,
                              f"{msg.message_type} is not a message a CEM sends to this RM")
