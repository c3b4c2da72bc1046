"""The S2 plugin against a CEM built with s2-python on loopback, the cloud as its own process
with the plugin enabled, a real Mosquitto and the real firmware under the unix port:
handshake, ResourceManagerDetails, system descriptions, statuses and measurements reach
the CEM and pass s2-python's models; OMBC and FRBC instructions become commands the
devices apply at their next wake and come back as SUCCEEDED; an instruction outside the
system description is refused with S2's INVALID_CONTENT and never stored as a command;
an instruction's outcome survives a restart of the cloud."""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from s2python.common import (ControlType, Handshake, InstructionStatus, InstructionStatusUpdate, PowerMeasurement,
                             ReceptionStatus, ReceptionStatusValues, ResourceManagerDetails)
from s2python.frbc import FRBCActuatorStatus, FRBCInstruction, FRBCStorageStatus, FRBCSystemDescription
from s2python.ombc import OMBCInstruction, OMBCStatus, OMBCSystemDescription

from host_tools.cloud.plugins.s2.cem import CEM
from host_tools.cloud.testbed import CloudTestbed, run_device

pytestmark = pytest.mark.timeout(150)
THERMO, PLUG, HP = 0x3101, 0x3102, 0x3103
ROLES = {THERMO: "thermostat", PLUG: "smart_plug", HP: "heat_pump"}
S = {d: f"{d:08x}" for d in ROLES}


def plugins_toml(tmp: Path, url: str) -> Path:
    p = tmp / "plugins.toml"
    p.write_text(f'[[plugin]]\nname = "s2"\nsites = ["home"]\n[plugin.options]\ncem_url = "{url}"\n')
    return p


def status_of(cem: CEM, serial: str, message_id: uuid.UUID) -> ReceptionStatus:
    return cem.wait(serial, ReceptionStatus, lambda m: m.subject_message_id == message_id)[0][1]


def updates(cem: CEM, serial: str, iid: uuid.UUID, st: InstructionStatus, timeout: float = 10) -> list:
    return cem.wait(serial, InstructionStatusUpdate, lambda m: m.instruction_id == iid and m.status_type == st,
                    timeout=timeout)


def frbc(sd: FRBCSystemDescription, label: str) -> FRBCInstruction:
    act = sd.actuators[0]
    mode = next(m for m in act.operation_modes if m.diagnostic_label.startswith(label))
    return FRBCInstruction(message_id=uuid.uuid4(), id=uuid.uuid4(), actuator_id=act.id, operation_mode=mode.id,
                           operation_mode_factor=1.0, execution_time=_now(), abnormal_condition=False)


def sid(v) -> str:
    """An id as text: s2-python 0.11.1 gives OMBC.Status's mode ids as its ID root model, others as UUIDs."""
    return str(getattr(v, "root", v))


def _now():
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc)


def test_s2_sessions_instructions_refusals_and_a_restart(tmp_path: Path) -> None:
    with CEM() as cem, CloudTestbed(tmp_path) as tb:
        fs = {d: tb.provision("home", d) for d in ROLES}
        conf = plugins_toml(tmp_path, cem.url)
        tb.start(plugins=conf)

        def wake(d: int, cycles: int = 1) -> None:
            run_device(tmp_path, fs[d], tb.broker.port, ROLES[d], cycles)

        for d in ROLES:
            wake(d)  # first contact: the capability record makes the device an S2 resource
        # Each device is its own RM: handshake, details, the control type the CEM selected.
        for d, ct, sd in ((PLUG, ControlType.OPERATION_MODE_BASED_CONTROL, OMBCSystemDescription),
                          (HP, ControlType.FILL_RATE_BASED_CONTROL, FRBCSystemDescription),
                          (THERMO, ControlType.FILL_RATE_BASED_CONTROL, FRBCSystemDescription)):
            assert cem.wait(S[d], Handshake)[0][1].role.value == "RM"
            det = cem.wait(S[d], ResourceManagerDetails)[0][1]
            assert det.available_control_types == [ct] and det.model == ROLES[d]
            cem.wait(S[d], sd)
        assert len({cem.peer(S[d]).details.resource_id for d in ROLES}) == 3
        plug_sd = cem.wait(S[PLUG], OMBCSystemDescription)[-1][1]
        modes = {m.diagnostic_label: m for m in plug_sd.operation_modes}
        assert modes["off"].power_ranges[0].end_of_range == 0 and modes["on"].power_ranges[0].end_of_range == 3680
        hp_sd = cem.wait(S[HP], FRBCSystemDescription)[-1][1]
        assert (hp_sd.storage.fill_level_range.start_of_range, hp_sd.storage.fill_level_range.end_of_range) == (30, 58)
        assert len(hp_sd.actuators[0].operation_modes) == 4
        assert cem.wait(S[HP], FRBCStorageStatus)[-1][1].present_fill_level == 45.0
        cem.wait(S[HP], FRBCActuatorStatus)
        cem.wait(S[THERMO], FRBCStorageStatus)
        assert sid(cem.wait(S[PLUG], OMBCStatus)[-1][1].active_operation_mode_id) == str(modes["off"].id)
        assert cem.wait(S[PLUG], PowerMeasurement)[-1][1].values[0].value == 0

        # Instructions inside the descriptions: accepted, stored as commands for the next wake.
        on = OMBCInstruction(message_id=uuid.uuid4(), id=uuid.uuid4(), execution_time=_now(),
                             operation_mode_id=modes["on"].id, operation_mode_factor=1.0, abnormal_condition=False)
        cem.send(S[PLUG], on)
        hp_ins = frbc(hp_sd, "recommended on")
        cem.send(S[HP], hp_ins)
        th_ins = frbc(cem.wait(S[THERMO], FRBCSystemDescription)[-1][1], "heat")
        cem.send(S[THERMO], th_ins)
        for d, ins in ((PLUG, on), (HP, hp_ins), (THERMO, th_ins)):
            assert status_of(cem, S[d], ins.message_id).status == ReceptionStatusValues.OK
            updates(cem, S[d], ins.id, InstructionStatus.ACCEPTED)

        # Outside the description: S2's own refusal, logged, and no command.
        bad = OMBCInstruction(message_id=uuid.uuid4(), id=uuid.uuid4(), execution_time=_now(),
                              operation_mode_id=uuid.uuid4(), operation_mode_factor=1.0, abnormal_condition=False)
        cem.send(S[PLUG], bad)
        r = status_of(cem, S[PLUG], bad.message_id)
        assert r.status == ReceptionStatusValues.INVALID_CONTENT and "no operation mode" in r.diagnostic_label
        wrong_actuator = frbc(hp_sd, "blocked").model_copy(update={"actuator_id": uuid.uuid4()})
        cem.send(S[HP], wrong_actuator)
        assert status_of(cem, S[HP], wrong_actuator.message_id).status == ReceptionStatusValues.INVALID_CONTENT
        too_much = frbc(hp_sd, "normal").model_copy(update={"operation_mode_factor": 1.5})
        cem.send(S[HP], too_much)
        assert status_of(cem, S[HP], too_much.message_id).status == ReceptionStatusValues.INVALID_CONTENT
        time.sleep(0.3)
        cmds = {d: tb.api("GET", f"/api/devices/{S[d]}/commands") for d in ROLES}
        assert [(c["kind"], c["params"]) for c in cmds[PLUG]] == [("relay", {"on": True})]
        assert [(c["kind"], c["params"]["state"]) for c in cmds[HP]] == [("sg_state", 3)]
        assert [(c["kind"], c["params"]["value_c"]) for c in cmds[THERMO]] == [("setpoint", 21.0)]
        assert all(c["requested_by"] == "plugin:s2" for cs in cmds.values() for c in cs)
        assert "refused" in tb.log.read_text()

        # The next wakes apply them: SUCCEEDED, and the new state reaches the CEM.
        wake(PLUG)
        wake(THERMO)
        updates(cem, S[PLUG], on.id, InstructionStatus.SUCCEEDED)
        updates(cem, S[THERMO], th_ins.id, InstructionStatus.SUCCEEDED)
        cem.wait(S[PLUG], OMBCStatus, lambda m: sid(m.active_operation_mode_id) == str(modes["on"].id))

        # The heat pump's instruction outlives a crash of the cloud: its outcome goes to the
        # CEM over the new session the restarted cloud opens. Its compressor stopped less than
        # its minimum off time ago, so the device holds "recommended on" back (ACK adapted,
        # minimum times): it did not happen at its execution time, so REJECTED.
        sessions = len(cem.messages(S[HP], ResourceManagerDetails))
        tb.kill()
        tb.start(plugins=conf)
        cem.wait(S[HP], ResourceManagerDetails, count=sessions + 1)
        wake(HP)
        updates(cem, S[HP], hp_ins.id, InstructionStatus.REJECTED, timeout=15)
        c = tb.api("GET", f"/api/commands/{cmds[HP][0]['id']}")
        assert (c["state"], c["reason_text"]) == ("adapted", "minimum on/off times")
        block = frbc(cem.wait(S[HP], FRBCSystemDescription)[-1][1], "blocked")
        cem.send(S[HP], block)
        updates(cem, S[HP], block.id, InstructionStatus.ACCEPTED)
        wake(HP)
        updates(cem, S[HP], block.id, InstructionStatus.SUCCEEDED)
        assert tb.api("GET", f"/api/devices/{S[HP]}")["state"]["sg_state"] == 1

        # Every message either way passed s2-python's models; the RM refused only the three.
        assert cem.invalid == []
        refusals = [m for _, m in cem.messages(None, ReceptionStatus) if m.status != ReceptionStatusValues.OK]
        assert sorted(m.subject_message_id for m in refusals) == sorted(
            [bad.message_id, wrong_actuator.message_id, too_much.message_id])
        for d in (PLUG, THERMO, HP):
            assert len(cem.messages(S[d], InstructionStatusUpdate, lambda m: m.status_type.value == "SUCCEEDED")) == 1
