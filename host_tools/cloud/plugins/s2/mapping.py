"""What each SPOT role is in S2, built from its capability record and reports.

One `Resource` per device: its ResourceManagerDetails, its control type's system
description and status messages, its PowerMeasurement, and the one function per
mapping that turns a CEM instruction into a SPOT command body (`command`). Those
functions translate a standard's signal straight into a device command; a later
energy manager (splitting a site's targets over its devices) can replace them one
by one. Nothing here does I/O: plugin.py and session.py do.

Every message is built as s2-python's pydantic model, so nothing that fails S2's
schema can leave the RM (the model raises while it is built).
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, fields
from typing import Any

from s2python.common import (Commodity, CommodityQuantity, ControlType, Duration, InstructionStatus,
                             NumberRange, PowerMeasurement, PowerRange, PowerValue, ResourceManagerDetails,
                             Role, RoleType, Timer, Transition)
from s2python.frbc import (FRBCActuatorDescription, FRBCActuatorStatus, FRBCInstruction, FRBCOperationMode,
                           FRBCOperationModeElement, FRBCStorageDescription, FRBCStorageStatus,
                           FRBCSystemDescription)
from s2python.ombc import OMBCInstruction, OMBCOperationMode, OMBCStatus, OMBCSystemDescription

from host_tools.cloud.uplink import R

NS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:spot:s2")
L1 = CommodityQuantity.ELECTRIC_POWER_L1
WATER_J_PER_L_K = 4186.0
SG_MODES = {1: "blocked", 2: "normal", 3: "recommended on", 4: "forced on"}
# An "adapted" ACK whose reason is a bound the device kept (a block shortened to its
# longest, a limit raised to the legal floor, a proportional request done as on/off):
# the instruction was carried out within the device's limits. Other reasons (minimum
# times, frost, store limits, demand response in force) held it back: it did not happen
# at its execution time, so REJECTED. The device may still carry it out within its hold
# when its rules allow (SPOT sends no second ACK); the ActuatorStatus then tells the CEM.
CARRIED_OUT_WITHIN_BOUNDS = {R.R_MAX_BLOCK, R.R_POWER_FLOOR, R.R_ON_OFF_ONLY}


class Invalid(ValueError):
    """An instruction outside the system description: refused with INVALID_CONTENT, never sent on."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def ident(device: int, *path: str) -> uuid.UUID:
    """Stable ids: a device's resource, actuator and modes keep their ids across restarts and
    reconnections, so an instruction accepted before a restart still names them."""
    return uuid.uuid5(NS, "/".join([f"{device:08x}", *path]))


@dataclass
class Options:
    """The plugin's options that shape the system descriptions (the rest are in plugin.py)."""
    hold_s: int = 3600  # how long an SG state or setpoint is held per instruction (the device's limit)
    hp_store_litres: float = 200.0  # not in the capability record: the fill rates need it
    hp_cop: float = 3.0
    room_heat_c_per_h: float = 1.0
    processing_delay_s: float = 900.0  # a sleepy device applies a command at its next wake

    @classmethod
    def of(cls, opts: dict) -> "Options":
        kw = {}
        for f in fields(cls):
            if f.name in opts:
                kw[f.name] = type(f.default)(opts[f.name])
        return cls(**kw)


def outcome(state: str, reason: int | None) -> InstructionStatus | None:
    """A SPOT command's final state as the S2 instruction's status (None: not final yet)."""
    if state == "applied":
        return InstructionStatus.SUCCEEDED
    if state == "adapted":
        return InstructionStatus.SUCCEEDED if reason in CARRIED_OUT_WITHIN_BOUNDS else InstructionStatus.REJECTED
    if state in ("refused", "unsupported"):
        return InstructionStatus.REJECTED
    if state in ("expired", "cancelled"):
        return InstructionStatus.ABORTED  # accepted, then given up before the device acted on it
    return None


def _timestamp(report: dict, t: float | None) -> dt.datetime:
    at = report.get("time") if isinstance(report.get("time"), (int, float)) and report["time"] > 0 else t
    return dt.datetime.fromtimestamp(at if at else dt.datetime.now().timestamp(), dt.timezone.utc)


def _check_factor(f: float) -> None:
    if not 0.0 <= f <= 1.0:
        raise Invalid(f"operation_mode_factor {f} is outside 0..1")


class Resource:
    """One device as an S2 resource (subclassed per role)."""

    control: ControlType

    def __init__(self, device: int, role: str, caps: dict, opts: Options) -> None:
        self.device = device
        self.role = role
        self.caps = caps
        self.opts = opts
        self.nominal_w = float(caps.get("nominal_w") or 0)
        self.active: uuid.UUID | None = None  # the operation mode last reported active
        self.active_since: dt.datetime | None = None
        self.previous: uuid.UUID | None = None

    def details(self) -> ResourceManagerDetails:
        return ResourceManagerDetails(
            message_id=uuid.uuid4(), resource_id=ident(self.device), name=f"{self.role} {self.device:08x}",
            roles=[Role(role=RoleType.ENERGY_CONSUMER, commodity=Commodity.ELECTRICITY)],
            manufacturer="SPOT", model=self.role, serial_number=f"{self.device:08x}",
            instruction_processing_delay=Duration.from_milliseconds(int(self.opts.processing_delay_s * 1000)),
            available_control_types=[self.control], provides_forecast=False,
            provides_power_measurement_types=[L1])

    def system_description(self) -> Any:
        raise NotImplementedError

    def statuses(self, state: dict) -> list[Any]:
        return []

    def command(self, instruction: Any) -> dict:
        """The SPOT command body for a CEM instruction; raises Invalid for one outside the description."""
        raise NotImplementedError

    def measurement(self, report: dict, t: float | None = None) -> PowerMeasurement | None:
        """A PowerMeasurement from a state or meter report that carries power_w (a plug's;
        the heat pump and thermostat have no meter and report none)."""
        w = report.get("power_w")
        if not isinstance(w, (int, float)):
            return None
        return PowerMeasurement(message_id=uuid.uuid4(), measurement_timestamp=_timestamp(report, t),
                                values=[PowerValue(commodity_quantity=L1, value=float(w))])

    # helpers --------------------------------------------------------------------------
    def _mode_changed(self, mode: uuid.UUID) -> bool:
        if mode == self.active:
            return False
        self.previous, self.active, self.active_since = self.active, mode, utcnow()
        return True

    def _min_times(self, on: uuid.UUID, off: uuid.UUID) -> tuple[list[Transition], list[Timer]]:
        """off<->on transitions, blocked by the device's minimum on/off times as S2 timers."""
        timers, t_on, t_off = [], [], []
        for name, key, into in (("minimum on time", "min_on_s", t_on), ("minimum off time", "min_off_s", t_off)):
            s = int(self.caps.get(key) or 0)
            if s > 0:
                tid = ident(self.device, "timer", key)
                timers.append(Timer(id=tid, diagnostic_label=name, duration=Duration.from_milliseconds(s * 1000)))
                into.append(tid)
        transitions = [
            Transition(id=ident(self.device, "transition", "on"), from_=off, to=on, start_timers=t_on,
                       blocking_timers=t_off, abnormal_condition_only=False),
            Transition(id=ident(self.device, "transition", "off"), from_=on, to=off, start_timers=t_off,
                       blocking_timers=t_on, abnormal_condition_only=False)]
        return transitions, timers


class Plug(Resource):
    """A smart plug as OMBC: two operation modes, on and off, and its relay's minimum times.

    The firmware's capability record names PEBC (a power envelope), but all the plug can
    do is switch its relay: OMBC's two modes say exactly that, where an envelope would
    promise a proportional control the device does not have."""

    control = ControlType.OPERATION_MODE_BASED_CONTROL

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.on = ident(self.device, "mode", "on")
        self.off = ident(self.device, "mode", "off")
        # The load it switches: what it could shed now (its load while on), else its rating.
        self.load_w = float(self.caps.get("shed_w") or self.nominal_w)

    def system_description(self) -> OMBCSystemDescription:
        transitions, timers = self._min_times(self.on, self.off)
        modes = [OMBCOperationMode(id=self.off, diagnostic_label="off", abnormal_condition_only=False,
                                   power_ranges=[PowerRange(start_of_range=0, end_of_range=0, commodity_quantity=L1)]),
                 OMBCOperationMode(id=self.on, diagnostic_label="on", abnormal_condition_only=False,
                                   power_ranges=[PowerRange(start_of_range=self.load_w, end_of_range=self.load_w,
                                                            commodity_quantity=L1)])]
        return OMBCSystemDescription(message_id=uuid.uuid4(), valid_from=utcnow(), operation_modes=modes,
                                     transitions=transitions, timers=timers)

    def statuses(self, state: dict) -> list[Any]:
        if not isinstance(state.get("outputs"), int):
            return []
        self._mode_changed(self.on if state["outputs"] & 1 else self.off)
        # s2-python 0.11.1 types these two ids as S2's ID strings (its other models take UUIDs).
        return [OMBCStatus(message_id=uuid.uuid4(), active_operation_mode_id=str(self.active),
                           operation_mode_factor=1.0,
                           previous_operation_mode_id=str(self.previous) if self.previous else None,
                           transition_timestamp=self.active_since if self.previous else None)]

    def command(self, instruction: Any) -> dict:
        return plug_instruction_to_relay(self, instruction)


def plug_instruction_to_relay(plug: Plug, ins: Any) -> dict:
    """OMBC.Instruction -> relay on/off."""
    if not isinstance(ins, OMBCInstruction):
        raise Invalid(f"a smart plug takes OMBC.Instruction, not {ins.message_type}")
    if ins.operation_mode_id not in (plug.on, plug.off):
        raise Invalid(f"no operation mode {ins.operation_mode_id} in this plug's system description")
    _check_factor(ins.operation_mode_factor)
    return {"kind": "relay", "on": ins.operation_mode_id == plug.on}


@dataclass
class _Mode:
    key: str
    label: str
    power: tuple[float, float]
    fill: tuple[float, float]  # fill level (C) per second, at factor 0 and 1


class _FillRate(Resource):
    """A device with a thermal store as FRBC: one actuator, its modes, the store's temperature as fill level."""

    control = ControlType.FILL_RATE_BASED_CONTROL
    actuator_label = ""
    store_label = ""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.actuator = ident(self.device, "actuator")
        self.modes = {ident(self.device, "mode", m.key): m for m in self.mode_list()}
        self.level: float | None = None

    def mode_list(self) -> list[_Mode]:
        raise NotImplementedError

    def store_range(self) -> tuple[float, float]:
        raise NotImplementedError

    def mode_id(self, key: str) -> uuid.UUID:
        return ident(self.device, "mode", key)

    def system_description(self) -> FRBCSystemDescription:
        lo, hi = self.store_range()
        rng = NumberRange(start_of_range=lo, end_of_range=hi)
        modes = [FRBCOperationMode(
            id=mid, diagnostic_label=m.label, abnormal_condition_only=False,
            elements=[FRBCOperationModeElement(
                fill_level_range=rng, fill_rate=NumberRange(start_of_range=m.fill[0], end_of_range=m.fill[1]),
                power_ranges=[PowerRange(start_of_range=m.power[0], end_of_range=m.power[1], commodity_quantity=L1)])])
            for mid, m in self.modes.items()]
        transitions, timers = self.transitions()
        actuator = FRBCActuatorDescription(id=self.actuator, diagnostic_label=self.actuator_label,
                                           supported_commodities=[Commodity.ELECTRICITY], operation_modes=modes,
                                           transitions=transitions, timers=timers)
        storage = FRBCStorageDescription(diagnostic_label=self.store_label, fill_level_label="degrees Celsius",
                                         provides_leakage_behaviour=False, provides_fill_level_target_profile=False,
                                         provides_usage_forecast=False, fill_level_range=rng)
        return FRBCSystemDescription(message_id=uuid.uuid4(), valid_from=utcnow(), actuators=[actuator],
                                     storage=storage)

    def transitions(self) -> tuple[list[Transition], list[Timer]]:
        ids = list(self.modes)
        return [Transition(id=ident(self.device, "transition", str(a), str(b)), from_=a, to=b, start_timers=[],
                           blocking_timers=[], abnormal_condition_only=False)
                for a in ids for b in ids if a != b], []

    def active_mode(self, state: dict) -> uuid.UUID | None:
        raise NotImplementedError

    def statuses(self, state: dict) -> list[Any]:
        out: list[Any] = []
        mode = self.active_mode(state)
        if mode is not None:
            self._mode_changed(mode)
            out.append(FRBCActuatorStatus(message_id=uuid.uuid4(), actuator_id=self.actuator,
                                          active_operation_mode_id=mode, operation_mode_factor=1.0,
                                          previous_operation_mode_id=self.previous,
                                          transition_timestamp=self.active_since if self.previous else None))
        if isinstance(state.get("temp_c"), (int, float)):
            self.level = float(state["temp_c"])
            out.append(FRBCStorageStatus(message_id=uuid.uuid4(), present_fill_level=self.level))
        return out

    def check(self, ins: Any) -> _Mode:
        """The instruction's mode, once it is shown to fit the system description."""
        if not isinstance(ins, FRBCInstruction):
            raise Invalid(f"a {self.role} takes FRBC.Instruction, not {ins.message_type}")
        if ins.actuator_id != self.actuator:
            raise Invalid(f"no actuator {ins.actuator_id} in this {self.role}'s system description")
        mode = self.modes.get(ins.operation_mode)
        if mode is None:
            raise Invalid(f"no operation mode {ins.operation_mode} for actuator {self.actuator}")
        _check_factor(ins.operation_mode_factor)
        rate = mode.fill[0] + (mode.fill[1] - mode.fill[0]) * ins.operation_mode_factor
        lo, hi = self.store_range()
        if self.level is not None and ((rate > 0 and self.level >= hi) or (rate < 0 and self.level <= lo)):
            raise Invalid(f"a fill rate of {rate:+.5f} C/s is impossible at {self.level} C "
                          f"(the store's range is {lo}..{hi} C)")
        return mode


class HeatPump(_FillRate):
    """A heat pump with its hot-water store as FRBC: the store's temperature is the fill
    level, within the capability record's store_c [now, min, max]; its actuator is the
    SG Ready interface, one operation mode per SG state the record lists (modes)."""

    actuator_label = "SG Ready"
    store_label = "hot-water store"

    def store_range(self) -> tuple[float, float]:
        store = self.caps.get("store_c") or [None, 30.0, 58.0]
        return float(store[1]), float(store[2])

    def mode_list(self) -> list[_Mode]:
        store = self.caps.get("store_c") or [None]
        if isinstance(store[0], (int, float)):
            self.level = float(store[0])
        w = self.nominal_w
        # The store's heat from the compressor's electric power (COP) over its water's heat capacity.
        rate = w * self.opts.hp_cop / (self.opts.hp_store_litres * WATER_J_PER_L_K)
        shape = {1: ((0, 0), (0, 0)),  # blocked: the compressor stays off
                 2: ((0, w), (0, rate)),  # normal: the unit's own controller runs it when it needs to
                 3: ((w, w), (rate, rate)),  # recommended on: runs to a raised setpoint
                 4: ((w, w), (rate, rate))}  # forced on: runs
        label = {1: f"blocked (at most {self.caps.get('max_block_s', 7200)} s at a time)"}
        return [_Mode(str(m), label.get(m, SG_MODES[m]), *shape[m])
                for m in (self.caps.get("modes") or [1, 2, 3, 4]) if m in shape]

    def active_mode(self, state: dict) -> uuid.UUID | None:
        sg = state.get("sg_state")
        mid = self.mode_id(str(sg))
        return mid if mid in self.modes else None

    def command(self, instruction: Any) -> dict:
        return heat_pump_instruction_to_sg_state(self, instruction)


def heat_pump_instruction_to_sg_state(hp: HeatPump, ins: Any) -> dict:
    """FRBC.Instruction -> sg_state, held for hold_s (a block for at most max_block_s)."""
    mode = hp.check(ins)
    state = int(mode.key)
    hold = hp.opts.hold_s
    if state == 1:
        hold = min(hold, int(hp.caps.get("max_block_s") or hold))
    return {"kind": "sg_state", "state": state, "duration_s": hold}


class Thermostat(_FillRate):
    """A thermostat as FRBC, not OMBC: the room is a thermal store whose fill level (its
    temperature, within the capability record's comfort_c band) the CEM must see to keep
    the room comfortable while it moves the heating in time; OMBC's modes alone would hide
    the temperature and let a CEM leave the room cold. The firmware's own capability record
    says FRBC (s2_control) for the same reason. Its actuator is the heater, with two modes:
    heat (the setpoint at the band's top) and idle (the setpoint at the band's bottom, so
    the device itself still keeps the room from falling below comfort)."""

    actuator_label = "heater"
    store_label = "room"

    def store_range(self) -> tuple[float, float]:
        lo, hi = (self.caps.get("comfort_c") or [19.0, 21.0])[:2]
        return float(lo), float(max(hi, lo + 0.5))

    def mode_list(self) -> list[_Mode]:
        rate = self.opts.room_heat_c_per_h / 3600
        return [_Mode("idle", "idle (setpoint at the comfort band's bottom)", (0, 0), (0, 0)),
                _Mode("heat", "heat (setpoint at the comfort band's top)", (self.nominal_w, self.nominal_w),
                      (rate, rate))]

    def transitions(self) -> tuple[list[Transition], list[Timer]]:
        return self._min_times(self.mode_id("heat"), self.mode_id("idle"))

    def active_mode(self, state: dict) -> uuid.UUID | None:
        if not isinstance(state.get("outputs"), int):
            return None
        return self.mode_id("heat" if state["outputs"] & 1 else "idle")

    def command(self, instruction: Any) -> dict:
        return thermostat_instruction_to_setpoint(self, instruction)


def thermostat_instruction_to_setpoint(th: Thermostat, ins: Any) -> dict:
    """FRBC.Instruction -> setpoint at the comfort band's top (heat) or bottom (idle), held hold_s."""
    mode = th.check(ins)
    lo, hi = th.store_range()
    return {"kind": "setpoint", "value_c": hi if mode.key == "heat" else lo, "duration_s": th.opts.hold_s}


ROLES: dict[str, type[Resource]] = {"smart_plug": Plug, "heat_pump": HeatPump, "thermostat": Thermostat}


def resource_for(device: int, caps: dict | None, opts: Options) -> Resource | None:
    """The device's S2 resource, once its capability record says its role (None before)."""
    role = (caps or {}).get("role")
    cls = ROLES.get(role) if isinstance(role, str) else None
    return cls(device, role, caps, opts) if cls else None
