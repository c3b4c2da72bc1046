"""Node, journal and host-side faults found in review: each once a defect (CPython)."""
from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import provision

from host_tools.sim import fleet_host
from host_tools.cloud.registry import CLOUD, Registry
from spot import builders, frame, messages, storage
from spot.keyring import Key, Keyring

SITE = "test"
DEV = 0x00003001
HEMS = 0x00010002


@pytest.fixture
def dev(tmp_path: Path):
    reg = provision(tmp_path, SITE, DEV)
    fw = fleet_host.firmware()
    return reg, fw, {"dir": str(tmp_path / "fs")}


def _last_status(node: Any) -> int:
    return node.journal.inbox[-1][2]


def test_a_site_mate_with_the_group_key_cannot_make_every_command_expire(dev) -> None:
    """SPEC 7.2: a group-key holder "cannot command them" and "time samples are
    checked for outliers". Node._time_sync takes any time under the group key,
    so one device of the site moves its neighbours' clocks and decides whether
    their commands are applied (here: every command refused as expired; a time
    in the past makes stale commands apply instead)."""
    reg, fw, cfg = dev
    node = fw.make_node(cfg)
    insider = reg.group_key(SITE)  # in every site device's keys.json
    group = reg.site_group(SITE)
    forged = builders.time_sync(group, CLOUD, 0xFFFFFF00, int(time.time()) + 10 * 365 * 86400, 0,
                                key=insider)
    node.receive(forged)
    now = int(time.time())
    cmd = builders.reduce_power(DEV, CLOUD, reg.counter(CLOUD).next(), 20, now, 60,
                                key=reg.sender_key(CLOUD, DEV), valid_until=now + 3600)
    node.receive(cmd)
    assert _last_status(node) == messages.ACK_APPLIED


def test_two_processes_sending_as_the_cloud_never_share_a_counter(dev, tmp_path: Path) -> None:
    """registry.counter() hands each process its own SendCounter over the same
    counter-00000001.json; a reservation never re-reads the file. A controller
    service plus `spot pair` (or two `spot ctl command`s) then seal different
    frames with the same (key, source, counter): AES-CTR keystream reuse for
    key_add, and the device refuses the second as a replay and answers it with
    the first one's ACK."""
    reg, fw, cfg = dev
    path = tmp_path / "registry" / "registry.json"
    service = Registry(path).counter(CLOUD)
    first = service.next()  # the long-running controller reserved a block
    cli = Registry(path)  # `spot pair ...` in another shell
    entry = cli.pair(HEMS, DEV, 1 << frame.CLASS_COMMAND)
    add = cli.key_add_frame(entry)
    cli_seq = frame.decode(add).seq
    service_seqs = [first] + [service.next() for _ in range(2 * 64)]
    assert cli_seq not in service_seqs, "counter %d used by both processes" % cli_seq


def test_an_over_the_air_key_change_keeps_keys_json_private(dev, tmp_path: Path) -> None:
    reg, fw, cfg = dev
    keys = tmp_path / "fs" / "keys.json"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600  # as provisioned
    ring = Keyring(str(keys))
    ring.add(Key(5, HEMS, os.urandom(32), 1))  # what key_admin does for a key add
    mode = stat.S_IMODE(keys.stat().st_mode)
    assert not mode & 0o077, "keys.json is now %o: every secret readable by other users" % mode


def test_a_retire_redelivered_after_a_cut_before_the_commit_is_answered_as_applied(dev) -> None:
    """key_admin writes keys.json at once, outside the journal's single commit:
    a cut between the two leaves the key retired, the window and inbox without
    the frame; the redelivered frame is applied again and answered 'refused'."""
    reg, fw, cfg = dev
    entry = reg.pair(HEMS, DEV, 1 << frame.CLASS_COMMAND)
    node = fw.make_node(cfg)
    node.receive(reg.key_add_frame(entry))
    assert _last_status(node) == messages.ACK_APPLIED
    retire = reg.key_retire_frame(DEV, entry.key_id, HEMS)

    class PowerCut(BaseException):
        pass

    real = storage.save

    def cut_at_journal(path: str, value: Any) -> None:
        if path.endswith("journal.json"):
            raise PowerCut()
        real(path, value)

    storage.save = cut_at_journal
    try:
        with pytest.raises(PowerCut):
            fw.make_node(cfg).receive(retire)
    finally:
        storage.save = real
    node = fw.make_node(cfg)  # reboot; the broker delivers the frame again
    node.receive(retire)
    assert _last_status(node) == messages.ACK_APPLIED


def test_an_authenticated_command_the_device_cannot_read_still_gets_an_ack(dev) -> None:
    """A secured command whose payload fails read_payload (an unknown
    must-understand key from a newer controller) has its counter consumed and
    is dropped without an ACK: the controller keeps it pending and resends it
    for ever, each resend dropped again."""
    reg, fw, cfg = dev
    node = fw.make_node(cfg)
    raw = builders.build(messages.SVC_DR, frame.CLASS_COMMAND, DEV, CLOUD, reg.counter(CLOUD).next(),
                         {0: messages.DR_REDUCE, -9: 1}, frame.FLAG_ACK_WANTED,
                         key=reg.sender_key(CLOUD, DEV))
    node.receive(raw)
    assert node.journal.outbox, "no ACK: the command stays pending at the controller for ever"


def test_a_full_flash_is_a_failed_wake_not_an_exception_out_of_the_loop(dev) -> None:
    """wake.run catches OSError, then calls node.report(), whose commit raises
    the same OSError again from inside the handler: out of wake_once and
    device.main(). (Counter exhaustion does the same with OverflowError from
    Sender.seal in report() and _queue_ack(), at every wake.)"""
    reg, fw, cfg = dev
    from host_tools.cloud.broker import Broker

    with Broker() as broker:
        conf = fleet_host.device_config(Path(cfg["dir"]), broker.port, budget_ms=1500)
        fw.wake_once(conf)
        real = storage.save

        def enospc(path: str, value: Any) -> None:
            if path.endswith("journal.json"):
                raise OSError(28, "No space left on device")
            real(path, value)

        storage.save = enospc
        try:
            node, res = fw.wake_once(conf)
        finally:
            storage.save = real
        assert not res.ok


def test_an_exhausted_counter_does_not_crash_every_wake(dev) -> None:
    reg, fw, cfg = dev
    from host_tools.cloud.broker import Broker

    (Path(cfg["dir"]) / "counter.json").write_text(json.dumps(0xFFFFFFFF))
    with Broker() as broker:
        conf = fleet_host.device_config(Path(cfg["dir"]), broker.port, budget_ms=1500)
        node, res = fw.wake_once(conf)  # raises OverflowError now
        assert res.error is not None or res.ok


def test_unauthenticated_frames_cause_no_flash_writes(dev) -> None:
    """Unsecured DISCOVERY is let through (read-only), but every kept frame ends
    in journal.commit(): anyone who can publish to the broadcast topic makes the
    device rewrite journal.json once per frame (flash wear, wake time)."""
    reg, fw, cfg = dev
    node = fw.make_node(cfg)
    before = node.journal.commits
    for i in range(50):
        node.receive(builders.discovery(frame.BROADCAST, 0x00000666, i))
    assert node.journal.commits == before


def test_spot_retire_of_the_last_admin_key_does_not_lock_the_registry_out(dev, tmp_path: Path) -> None:
    """cli._retire drops the key from the registry as soon as the frame is made.
    The device refuses to retire its last admin key (key_admin), so afterwards
    the device holds key 1 and the registry holds no admin key for it."""
    from host_tools import cli

    reg, fw, cfg = dev
    path = tmp_path / "registry" / "registry.json"
    cli.main(["retire", f"{DEV:#x}", "1", "--registry", str(path)])
    assert any(e.admin for e in Registry(path).entries(DEV)), "no admin key left for the device"

