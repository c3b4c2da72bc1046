"""The device's side of direct local control (SPEC 13) found in review: each once a
defect (CPython, the firmware in-process)."""
from __future__ import annotations

import json
import socket as real_socket
import time
import types
from pathlib import Path
from typing import Any

import pytest

from conftest import provision

import local_control  # firmware/, on the path (conftest)

from host_tools.cloud.testbed import free_port
from host_tools.sim import fleet_host
from spot import builders, frame

SITE = "test"
DEV = 0x00003001
CTL = 0x00000200


@pytest.fixture
def dev(tmp_path: Path):
    reg = provision(tmp_path, SITE, DEV)
    reg.pair(CTL, DEV, 1 << frame.CLASS_COMMAND)
    reg.save()
    reg.write_device_files(DEV, tmp_path / "fs")
    fw = fleet_host.firmware()
    events: list[tuple[str, dict]] = []
    fw.emit = lambda ev, **kw: events.append((ev, kw))
    yield reg, fw, {"dir": str(tmp_path / "fs")}, events
    local_control.close(fw.emit)


def _command(reg: Any) -> bytes:
    now = int(time.time())
    return builders.reduce_power(DEV, CTL, reg.counter(CTL).next(), 20, now, 60,
                                 key=reg.sender_key(CTL, DEV), valid_until=now + 3600)


def test_a_failed_commit_of_a_local_frame_is_counted_not_raised(dev) -> None:
    """An OSError from the commit (flash full) escaped local_control.frame_in: it crashed the
    wake's first local_poll or _listen, or tore down a connected MQTT session."""
    reg, fw, cfg, events = dev
    node = fw.make_node(cfg)

    def full(*a: Any) -> None:
        raise OSError(28, "no space left")

    node.journal.commit = full
    replies: list[bytes] = []
    local_control.frame_in(node, _command(reg), replies.append, fw.emit)  # raised OSError before
    assert node.errors == 1
    assert [kw["stage"] for ev, kw in events if ev == "error"] == ["local"]
    assert replies == []  # nothing committed: no ACK


class _NoGroupSocket:
    """A socket as on an lwIP port that wants another size for IP_ADD_MEMBERSHIP."""

    def __init__(self, *a: Any) -> None:
        self.s = real_socket.socket(*a)

    def setsockopt(self, level: int, opt: int, value: Any) -> None:
        if level == real_socket.IPPROTO_IP:
            raise ValueError("invalid option size")
        self.s.setsockopt(level, opt, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.s, name)


def test_a_group_join_refused_with_valueerror_leaves_unicast_up_and_says_so(dev, monkeypatch) -> None:
    reg, fw, cfg, events = dev
    from spot import udp_link

    fake = types.SimpleNamespace(**{k: getattr(real_socket, k) for k in dir(real_socket)
                                    if not k.startswith("__")})
    fake.socket = _NoGroupSocket
    monkeypatch.setattr(udp_link, "socket", fake)
    cfg["local"] = {"port": free_port(), "bind": "127.0.0.1", "group": udp_link.GROUP}
    node = fw.make_node(cfg)
    link = local_control.open(cfg, node, fw.emit)  # raised ValueError before: a crash at every boot
    assert link is not None and link.sock is not None and link.group is None
    said = [kw for ev, kw in events if ev == "local"]
    assert said and said[-1]["group"] is False and "ValueError" in said[-1]["why"], said


def test_a_socket_error_of_any_kind_at_open_is_no_local_control_not_a_crash(dev, monkeypatch) -> None:
    reg, fw, cfg, events = dev
    from spot import udp_link

    def broken(*a: Any) -> None:
        raise TypeError("this port's socket() takes other arguments")

    fake = types.SimpleNamespace(**{k: getattr(real_socket, k) for k in dir(real_socket)
                                    if not k.startswith("__")})
    fake.socket = broken
    monkeypatch.setattr(udp_link, "socket", fake)
    cfg["local"] = {"port": free_port(), "bind": "127.0.0.1", "group": None}
    assert local_control.open(cfg, fw.make_node(cfg), fw.emit) is None
    assert [kw["up"] for ev, kw in events if ev == "local"] == [False]


class _Done(Exception):
    pass


def test_a_quiet_wake_rebinds_the_open_local_link_to_its_new_node(dev, monkeypatch) -> None:
    """main()'s quiet wake (no radio) made a new Node but left the UDP link, still
    open, handing frames to the old one: commands applied to a stale node whose
    journal then overwrote the new one's."""
    reg, fw, cfg, events = dev
    cfg.update(wake_ms=30, run_s=10, power="sleepy",
               local={"port": free_port(), "bind": "127.0.0.1", "group": None, "awake_ms": 60000})
    made: list[Any] = []
    real_make = fw.make_node

    def make_node(c: Any, power_on: bool = False) -> Any:
        n = real_make(c, power_on)
        made.append(n)
        return n

    calls = []

    def wake_once(c: Any, fault: Any = None, setup: Any = None, boot: Any = None) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise _Done
        node = make_node(c)
        node.plan_wake = lambda ms, exchange_ms=2000: (20, False)  # next wake: quiet
        local_control.open(c, node, fw.emit)
        return node, types.SimpleNamespace(ok=True, bytes_out=0)

    targets: list[Any] = []
    monkeypatch.setattr(fw, "make_node", make_node)
    monkeypatch.setattr(fw, "wake_once", wake_once)
    monkeypatch.setattr(local_control, "frame_in", lambda node, buf, reply, emit: targets.append(node))
    real_tick = fw._stdin_says_stop

    def says_stop(poller: Any, ms: int, node: Any = None, step_ms: int = 0) -> bool:
        if len(made) >= 2 and local_control.LINK[0] is not None:  # after the quiet wake
            local_control.LINK[0].on_frame(b"", None)
            raise _Done
        return real_tick(poller, ms, node, step_ms)

    monkeypatch.setattr(fw, "_stdin_says_stop", says_stop)
    path = Path(cfg["dir"]).parent / "device.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(_Done):
        fw.main(str(path))
    assert len(made) == 2 and targets, (len(made), targets)
    assert targets[-1] is made[1], "the local link still hands frames to the old node"
