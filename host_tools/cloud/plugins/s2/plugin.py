"""S2 (EN 50491-12-2) resource manager: the cloud is the S2 RM of each device of its sites.

Towards a CEM (option cem_url, a WebSocket URL) it holds one S2 session per device
(session.py), describing the device from its capability record (mapping.py):

- the smart plug as OMBC: operation modes on and off with their power, its relay's
  minimum on/off times as timers;
- the heat pump with its store as FRBC: the store's temperature is the fill level
  within store_c's min..max, its SG Ready states are the actuator's operation modes
  with their power and fill rates (from nominal_w, the options hp_cop and
  hp_store_litres, which the capability record does not carry);
- the thermostat as FRBC too, not OMBC: the room is a store whose temperature the CEM
  must see to keep comfort while it moves heating in time (mapping.Thermostat says more).

State reports become ActuatorStatus/StorageStatus (FRBC) or OMBC.Status, and a report
with power_w a PowerMeasurement. A CEM instruction inside the system description
becomes a tracked SPOT command through ctx.send_command (relay, sg_state, setpoint),
answered ReceptionStatus OK and InstructionStatusUpdate ACCEPTED; the command's
outcome (applied, adapted, refused, expired, ...) becomes the final status update
(mapping.outcome). One outside it (an unknown operation mode or actuator, a factor
outside 0..1, an impossible fill rate, a control type not selected, or a command the
cloud's own checks rule out) is answered INVALID_CONTENT, logged, and never sent on.

Our devices sleep: a command applies at the device's next wake, so an instruction's
final status comes a wake interval later (ResourceManagerDetails says so in
instruction_processing_delay). An instruction whose execution_time is in the future is
held here until then.

Kept in ctx.state (so a restart resumes): per device, the CEM and the control type it
selected ("session/<addr>"); per open instruction, its device, CEM, command and
status ("instruction/<id>"). After a restart the final status of an instruction whose
command finished meanwhile is sent once the same CEM has selected a control type again.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from s2python.common import ControlType, InstructionStatus, InstructionStatusUpdate, ReceptionStatusValues

from host_tools.cloud.command_kinds import Refused
from host_tools.cloud.plugins.base import Plugin as Base
from host_tools.cloud.plugins.s2.mapping import Invalid, Options, Resource, outcome, resource_for, utcnow
from host_tools.cloud.plugins.s2.session import Session

FINAL = ("applied", "adapted", "refused", "expired", "unsupported", "cancelled")


class Plugin(Base):
    async def start(self) -> None:
        url = self.ctx.options.get("cem_url")
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise ValueError("the s2 plugin needs options.cem_url, the CEM's WebSocket URL (ws:// or wss://)")
        self.url = url
        self.opts = Options.of(self.ctx.options)
        self.resources: dict[int, Resource] = {}
        self.sessions: dict[int, Session] = {}
        self.states: dict[int, dict] = {}
        self.open: dict[str, dict] = {}  # instruction id -> its record (also in ctx.state)
        self.by_command: dict[int, str] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}
        for key, rec in self.ctx.state_items().items():
            if key.startswith("instruction/"):
                self._restore(key.split("/", 1)[1], rec)
        for d in self.ctx.devices():
            self.states[d["address"]] = d.get("state") or {}
            self._describe(d["address"], d.get("capabilities"))

    async def stop(self) -> None:
        for t in self.timers.values():
            t.cancel()
        await asyncio.gather(*(s.stop() for s in self.sessions.values()), return_exceptions=True)

    def status(self) -> dict:
        """Counters of every session (for tests and the bench)."""
        return {f"{d:08x}": dict(s.stats, active=s.active, control_type=s.control_type and s.control_type.value)
                for d, s in self.sessions.items()}

    # the devices ----------------------------------------------------------------------
    def _describe(self, device: int, caps: dict | None) -> Resource | None:
        res = resource_for(device, caps, self.opts)
        if res is None:
            return None
        old = self.resources.get(device)
        if old is not None:
            res.active, res.previous, res.active_since = old.active, old.previous, old.active_since
        self.resources[device] = res
        res.statuses(self.states.get(device) or {})  # the mode in force before the first report
        if device not in self.sessions:
            s = Session(self, device, self.url)
            self.sessions[device] = s
            s.start()
        return res

    async def on_event(self, ev: dict) -> None:
        kind, device = ev.get("type"), ev.get("device")
        if kind == "command":
            await self._command_event(ev)
            return
        if not isinstance(device, int):
            return
        if kind == "capabilities":
            had = self.resources.get(device)
            res = self._describe(device, ev.get("body"))
            s = self.sessions.get(device)
            if res is not None and s is not None and s.active:
                if had is not None and had.control != res.control:
                    await s.ws.close()  # a different role: a new session, a new ResourceManagerDetails
                else:
                    await s.send(res.system_description())
        elif kind in ("state", "meter"):
            body = ev.get("body") or {}
            if kind == "state":
                self.states[device] = body
            res, s = self.resources.get(device), self.sessions.get(device)
            if res is None or s is None or not s.active:
                return
            msgs = res.statuses(body) if kind == "state" else []
            m = res.measurement(body, ev.get("t"))
            for msg in msgs + ([m] if m else []):
                await s.send(msg)

    # the session's steps (called by session.py) -------------------------------------------
    async def handshaken(self, s: Session, version: str) -> None:
        res = self.resources.get(s.device)
        if res is not None:
            await s.send(res.details())
        self.ctx.state_put(f"session/{s.device:08x}", {"cem": self.url, "version": version,
                                                       "control_type": None, "at": time.time()})

    async def selected(self, s: Session, ct: ControlType) -> None:
        self.ctx.state_put(f"session/{s.device:08x}", {"cem": self.url, "control_type": ct.value,
                                                       "at": time.time()})
        self.ctx.log.info("CEM selected %s for %08x", ct.value, s.device)
        res = self.resources.get(s.device)
        if res is None or ct == ControlType.NO_SELECTION:
            return
        await s.send(res.system_description())
        state = self.states.get(s.device) or {}
        for msg in res.statuses(state):
            await s.send(msg)
        m = res.measurement(state)
        if m is not None:
            await s.send(m)
        for iid, rec in list(self.open.items()):  # outcomes that came while there was no session
            if rec["device"] == s.device and rec.get("final"):
                await self._report(iid, rec, InstructionStatus(rec["final"]))

    async def instruction(self, s: Session, ins: Any) -> tuple[ReceptionStatusValues, str | None, list]:
        """(reception status, its label, messages to send after it) for a CEM instruction."""
        bad = ReceptionStatusValues.INVALID_CONTENT
        res = self.resources.get(s.device)
        iid = str(ins.id)
        try:
            if res is None or s.control_type != res.control:
                raise Invalid(f"{ins.message_type} needs {res.control.value if res else 'a control type'} "
                              f"selected, not {s.control_type.value if s.control_type else 'none'}")
            if iid in self.open:
                raise Invalid(f"instruction {iid} was already received")
            body = res.command(ins)
        except Invalid as e:
            self.ctx.log.warning("S2 instruction %s for %08x refused: %s", iid, s.device, e)
            return bad, str(e), []
        rec: dict[str, Any] = {"device": s.device, "cem": self.url, "body": body, "status": "ACCEPTED",
                               "received": time.time()}
        delay = (ins.execution_time - utcnow()).total_seconds()
        if delay > 1.0:  # held here until its execution time, across restarts too
            rec["at"] = ins.execution_time.timestamp()
            self._keep(iid, rec)
            self._arm(iid, delay)
            return ReceptionStatusValues.OK, None, [self._update(iid, InstructionStatus.ACCEPTED)]
        try:
            c = self.ctx.send_command(s.device, body)
        except Refused as e:  # the cloud's own checks: plainly impossible for this device
            self.ctx.log.warning("S2 instruction %s for %08x refused by the cloud: %s", iid, s.device, e)
            return bad, f"refused: {e}", []
        rec["command"] = c["id"]
        self._keep(iid, rec)
        return ReceptionStatusValues.OK, None, [self._update(iid, InstructionStatus.ACCEPTED)]

    # instructions' life -----------------------------------------------------------------------
    def _keep(self, iid: str, rec: dict) -> None:
        self.open[iid] = rec
        if "command" in rec:
            self.by_command[rec["command"]] = iid
        self.ctx.state_put(f"instruction/{iid}", rec)

    def _drop(self, iid: str) -> None:
        rec = self.open.pop(iid, None)
        if rec and "command" in rec:
            self.by_command.pop(rec["command"], None)
        t = self.timers.pop(iid, None)
        if t is not None:
            t.cancel()
        self.ctx.state_put(f"instruction/{iid}", None)

    def _restore(self, iid: str, rec: dict) -> None:
        if rec.get("cem") != self.url:  # a CEM we no longer speak to cannot hear its outcome
            self.ctx.log.info("dropping instruction %s of the former CEM %s", iid, rec.get("cem"))
            self.ctx.state_put(f"instruction/{iid}", None)
            return
        if "command" in rec and not rec.get("final"):
            try:
                c = self.ctx.command(rec["command"])
            except Exception:  # noqa: BLE001 - gone from the store: nothing will come
                c = {"state": "cancelled", "reason": None}
            st = outcome(c["state"], c.get("reason")) if c["state"] in FINAL else None
            if st is not None:
                rec["final"] = st.value
        self._keep(iid, rec)
        if "at" in rec and "command" not in rec:
            self._arm(iid, rec["at"] - time.time())

    def _arm(self, iid: str, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self.timers[iid] = loop.call_later(max(0.0, delay), lambda: loop.create_task(self._execute(iid)))

    async def _execute(self, iid: str) -> None:
        """A held instruction's execution time has come: its command now."""
        self.timers.pop(iid, None)
        rec = self.open.get(iid)
        if rec is None or "command" in rec:
            return
        try:
            c = self.ctx.send_command(rec["device"], rec["body"])
        except (Refused, PermissionError) as e:
            self.ctx.log.warning("held S2 instruction %s refused by the cloud: %s", iid, e)
            await self._report(iid, rec, InstructionStatus.REJECTED)
            return
        rec["command"] = c["id"]
        self._keep(iid, rec)

    async def _command_event(self, ev: dict) -> None:
        iid = self.by_command.get(ev.get("id"))  # type: ignore[arg-type]
        if iid is None or ev.get("state") not in FINAL:
            return
        rec = self.open[iid]
        st = outcome(ev["state"], ev.get("reason"))
        if st is None:
            return
        await self._report(iid, rec, st)

    async def _report(self, iid: str, rec: dict, st: InstructionStatus) -> None:
        """The final status to the CEM; kept for the next session when there is none now."""
        s = self.sessions.get(rec["device"])
        if s is not None and s.active and await s.send(self._update(iid, st)):
            self._drop(iid)
            return
        rec["final"] = st.value
        self._keep(iid, rec)

    @staticmethod
    def _update(iid: str, st: InstructionStatus) -> InstructionStatusUpdate:
        return InstructionStatusUpdate(message_id=uuid.uuid4(), instruction_id=uuid.UUID(iid), status_type=st,
                                       timestamp=utcnow())
