"""No command accepted by the cloud is lost or applied twice across SIGKILLs of the service.

The real service, a real Mosquitto and the real firmware under the unix port (see
host_tools/bench/cloud_durability.py); here with 10 kills, the bench does 50. The
judge is checked on its own first, so a run that found nothing means nothing was there.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from host_tools.bench import cloud_durability as cd
from spot import frame

pytestmark = pytest.mark.timeout(400)
PLUG = 0x5101


def _device(tmp: Path, events: list[dict], applied: int, inbox: list[int]) -> cd.Device:
    fs = tmp / "fs"
    fs.mkdir(exist_ok=True)
    (fs / "journal.json").write_text(json.dumps({"in": [[cd.CLOUD, s, 0, 0] for s in inbox],
                                                 "app": {"applied": applied}}))
    return cd.Device(PLUG, "smart_plug", 100, 1.0, fs=fs, events=events)


def _kept(seq: int) -> list[dict]:
    return [{"ev": "kept", "cls": frame.CLASS_COMMAND, "src": cd.CLOUD, "seq": seq},
            {"ev": "applied", "svc": 4, "kind": 1, "status": 0},
            {"ev": "acked", "seq": seq, "to": cd.CLOUD, "status": 0}]


def _row(cid: int, seq: int, state: str = "applied", sends: int = 1) -> dict:
    return {"id": cid, "device": PLUG, "seq": seq, "state": state, "sends": sends}


def test_the_judge_sees_a_lost_a_doubled_and_a_mislabelled_command(tmp_path: Path) -> None:
    accepted = [cd.Accepted(1, PLUG, 10, "relay"), cd.Accepted(2, PLUG, 11, "relay"),
                cd.Accepted(3, PLUG, 12, "relay"), cd.Accepted(4, PLUG, 13, "relay")]
    # 10 applied once (fine), 11 never reached the device, 12 applied twice,
    # 13 applied once but the cloud still waits for its ACK.
    events = _kept(10) + _kept(12) + _kept(12) + _kept(13)
    res = cd.Result(accepted=accepted)
    cd._judge(res, [_device(tmp_path, events, applied=4, inbox=[10, 12, 13])],
              [_row(1, 10), _row(2, 11, "published"), _row(3, 12), _row(4, 13, "delivered")])
    assert res.lost == [2, 4] and res.twice == [3]
    assert res.applied == 3 and res.acknowledged == 2
    assert res.journal_mismatch == 1  # the inbox holds 12 once, the events say twice

    clean = cd.Result(accepted=accepted[:1])
    cd._judge(clean, [_device(tmp_path, _kept(10) + [{"ev": "duplicate", "src": cd.CLOUD, "seq": 10}],
                              applied=1, inbox=[10])], [_row(1, 10, sends=3)])
    assert not clean.lost and not clean.twice and clean.figures()["cloud_commands_state_mismatch"] == 0
    assert clean.device_duplicates == 1 and clean.resent == 1

    # A stored command the client never saw answered (killed before the 202) is still judged.
    orphan = cd.Result()
    cd._judge(orphan, [_device(tmp_path, _kept(20) + _kept(20), applied=2, inbox=[20])], [_row(9, 20)])
    assert orphan.stored_unanswered == 1 and orphan.figures()["cloud_commands_applied_twice"] == 1


def test_ten_sigkills_while_commands_flow_lose_nothing_and_double_nothing(tmp_path: Path) -> None:
    res = cd.run(tmp_path, kills=10, uptime_s=(0.2, 1.2), sleepy_wake_ms=2000, settle_s=60)
    f = detail = res.figures()
    assert res.kills == 10
    assert f["cloud_commands_lost_after_sigkill"] == 0, (res.lost, detail)
    assert f["cloud_commands_applied_twice"] == 0, (res.twice, detail)
    assert len(res.accepted) >= 30, detail  # commands did flow between the kills
    assert res.acknowledged == len(res.accepted) == res.applied + res.refused_by_device
    assert f["cloud_commands_state_mismatch"] == 0, detail
    # The kills hit work in flight: open commands were handed to the broker again
    # after restarts, and the devices recognised the copies instead of acting twice.
    assert res.resent > 0, detail
    assert res.unanswered > 0  # and POSTs met a dead service, which were not counted
