"""Direct local control (SPEC.md 13) across real network stacks.

Devices run the built firmware under the MicroPython unix port, each in its own
network namespace joined to a bridge by a veth pair (this test process is the
local controller, on the bridge's own address), so discovery crosses real
multicast between hosts. Where namespaces cannot be made (not root, no
iproute2, or SPOT_TEST_NO_NETNS=1) the multicast test is skipped with the
reason and the others run on this host's loopback.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from host_tools.cloud import command_kinds, publish
from host_tools.cloud.broker import Broker
from host_tools.cloud.registry import Registry, class_mask
import local_control  # firmware/, on the path (conftest)

from host_tools.cloud.testbed import CloudTestbed, free_port
from host_tools.local.controller import LocalController
from host_tools.local.netlab import Lan, LocalDevice
from spot import builders, messages
from spot.errors import NOT_PAIRED, REPLAYED
from spot.keyring import Key

CTL = 0x200  # the local controller
# SPOT_TEST_NO_NETNS=1 runs the loopback fallback where namespaces would work.
NO_NETNS = ("SPOT_TEST_NO_NETNS is set" if os.environ.get("SPOT_TEST_NO_NETNS")
            else Lan.available())


def _cmd(body: dict) -> Any:
    return command_kinds.sealer(TypeAdapter(command_kinds.Command).validate_python(body), int(time.time()))


def _conf(broker_host: str, broker_port: int, port: int, bind: str = "0.0.0.0",
          group: str | None = "239.255.83.80", **extra: Any) -> dict:
    return {"broker": {"host": broker_host, "port": broker_port}, "wake_ms": 300, "run_s": 120,
            "role": "smart_plug", "control_ms": 50,
            "board": {"chip": "esp32", "clock": "wall", "seed": 3},
            "local": {"port": port, "awake_ms": 60000, "bind": bind, "group": group},
            "backoff_max_ms": 1500, "power": "sleepy", **extra}


class Net:
    """Where the devices are: namespaced hosts on a bridge, or this host's loopback."""

    def __init__(self, lan: Lan | None) -> None:
        self.lan = lan
        self.ports: list[int] = []

    @property
    def controller_address(self) -> str:
        return self.lan.address if self.lan else "127.0.0.1"

    def device_host(self, i: int) -> str:
        return self.lan.addresses[i] if self.lan else "127.0.0.1"

    def device_port(self, i: int) -> int:
        if self.lan:
            return 17883
        while len(self.ports) <= i:
            self.ports.append(free_port())
        return self.ports[i]

    def prefix(self, i: int) -> list[str] | None:
        return self.lan.prefix(i) if self.lan else None

    def conf(self, i: int, broker_port: int, **extra: Any) -> dict:
        if self.lan:
            return _conf(self.lan.address, broker_port, 17883, **extra)
        return _conf("127.0.0.1", broker_port, self.device_port(i), bind="127.0.0.1", group=None, **extra)


@pytest.fixture
def net():
    if NO_NETNS:
        yield Net(None)
        return
    with Lan(2) as lan:
        yield Net(lan)


def _setup(tmp: Path, devices: tuple[int, ...], classes: str = "command,discovery") -> Registry:
    reg = Registry(tmp / "registry" / "registry.json")
    for d in devices:
        reg.provision("home", d)
        reg.pair(CTL, d, class_mask(classes))
    reg.save()
    for d in devices:
        reg.write_device_files(d, tmp / f"fs-{d:08x}")
    return reg


def _ctl(reg: Registry, net: Net, i: int = 0) -> LocalController:
    return LocalController(reg, CTL, port=net.device_port(i), bind=net.controller_address,
                           interface=net.controller_address if net.lan else None)


@pytest.mark.skipif(bool(NO_NETNS), reason=f"no network namespaces here: {NO_NETNS}")
def test_discovery_by_multicast_between_namespaces(tmp_path: Path, net: Net) -> None:
    reg = _setup(tmp_path, (0x3101, 0x3102))
    devs = [LocalDevice(tmp_path, tmp_path / f"fs-{d:08x}", net.conf(i, 1), net.prefix(i), f"d{i}")
            for i, d in enumerate((0x3101, 0x3102))]
    try:
        for d in devs:
            d.wait("cycle")
        with LocalController(reg, 0x100, bind=net.controller_address,
                             interface=net.controller_address) as c:
            found = {}
            for _ in range(5):  # a wake's broker attempt may hold one back a moment
                found.update({f.address: f for f in c.discover(1.0)})
                if len(found) == 2:
                    break
        assert sorted(found) == [0x3101, 0x3102]
        for i, d in enumerate((0x3101, 0x3102)):
            f = found[d]
            assert f.host == net.lan.addresses[i]  # each answers from its own stack
            assert f.role == "smart_plug" and not f.secured and f.state is None  # nothing secret
            assert [6, 1, 1, 1] in f.services  # device commands kept
            assert not any(s[0] == 1 and s[1] & 0x02 for s in f.services)  # INFO on core: no
        # A paired controller's secured question gets the state, from that device only.
        with _ctl(reg, net) as c:
            st = c.state(0x3101, net.lan.addresses[0])
        assert st is not None and st.secured and st.state["role"] == "smart_plug"
        # The command line, for scripts and for people.
        import subprocess
        import sys

        from host_tools.paths import ROOT

        base = [sys.executable, "-m", "host_tools", "local", "discover", "--registry", str(reg.path),
                "--interface", net.lan.address, "--timeout", "1.5"]
        p = subprocess.run([*base, "--json"], capture_output=True, text=True, cwd=ROOT, timeout=30)
        assert p.returncode == 0, p.stderr
        assert {d["address"] for d in json.loads(p.stdout)} == {"00003101", "00003102"}
        p = subprocess.run(base, capture_output=True, text=True, cwd=ROOT, timeout=30)
        assert p.returncode == 0 and "00003101" in p.stdout and "smart_plug" in p.stdout, p.stdout
    finally:
        for d in devs:
            d.stop()


@pytest.mark.parametrize("power", ["sleepy", "connected"])
def test_local_command_unpaired_replayed_bad_datagrams_and_floods(tmp_path: Path, net: Net,
                                                                 power: str) -> None:
    reg = _setup(tmp_path, (0x3101,))
    host, port = net.device_host(0), net.device_port(0)
    dev = LocalDevice(tmp_path, tmp_path / "fs-00003101", net.conf(0, 1, power=power), net.prefix(0))
    try:
        # The broker is nowhere: a sleepy wake fails and the device listens locally while
        # awake; a connected one backs off between sessions, its local socket served meanwhile.
        dev.wait("cycle" if power == "sleepy" else "session_end")
        with _ctl(reg, net) as c:
            r = c.command(0x3101, host, _cmd({"kind": "relay", "on": True}), timeout=10)
            assert r.status == "applied", r
            applied = len(dev.wait("applied", 1))  # its event may trail the ACK on the pipe

            # The same bytes again: answered again from the inbox, not applied twice.
            raw = _cmd({"kind": "relay", "on": False})(0x3101, CTL, c.counter.next(),
                                                       reg.sender_key(CTL, 0x3101))
            seq = int.from_bytes(raw[13:17], "big")
            assert c.send_frame(0x3101, host, raw, seq).status == "applied"
            assert c.send_frame(0x3101, host, raw, seq).status == "applied"
            dev.wait("duplicate", src=CTL, seq=seq)
            assert len(dev.of("applied")) == applied + 1

            # An unpaired sender (a key the device never got) is refused, counted, unanswered.
            stranger = Key(9, 0x3101, bytes(range(32)), 0xFF)
            bad = builders.device_command(0x3101, 0x300, 1, 1, 1, key=stranger)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((net.controller_address, 0))
            s.settimeout(0.5)
            s.sendto(bad, (host, port))
            with pytest.raises(socket.timeout):
                s.recvfrom(2048)
            dev.wait("dropped", code=NOT_PAIRED)

            # Truncated, runt, oversized, garbage datagrams, and a flood of discovery requests.
            s.sendto(raw[:-3], (host, port))  # truncated: the frame's length rule refuses it
            s.sendto(b"\x01\x02\x03", (host, port))  # shorter than a header
            s.sendto(b"\x01" * 1300, (host, port))  # over the datagram limit
            ask = builders.discovery(0xFFFFFFFF, 0x300, 1)
            t0 = time.monotonic()
            for _ in range(200):
                s.sendto(ask, (host, port))
            # ...and the control loop is not stalled: a command right after is answered at once.
            r = c.command(0x3101, host, _cmd({"kind": "relay", "on": True}), timeout=10)
            assert r.status == "applied" and time.monotonic() - t0 < 5 and r.ms < 1000, r
            answers = 0
            try:
                while True:
                    s.recvfrom(2048)
                    answers += 1
            except socket.timeout:
                pass
            s.close()
        summary = dev.stop()
        local: dict = {"dropped": {}}  # one event per awake window: summed
        for e in dev.of("local"):
            for k, v in e.get("dropped", {}).items():
                local["dropped"][k] = local["dropped"].get(k, 0) + v
        assert local["dropped"].get("runt") == 1 and local["dropped"].get("oversized") == 1, local
        assert local["dropped"].get("flood", 0) >= 150, local  # a bucket of 4 a second
        assert 1 <= answers <= 50, answers
        codes = {e["code"] for e in dev.of("dropped")}
        assert NOT_PAIRED in codes and REPLAYED not in codes  # the replay was answered again
        assert any(e["code"] in (1, 3) for e in dev.of("dropped")), codes  # truncated / length
        assert summary.get("errors", 0) == 0
    finally:
        dev.stop()


def _uplinks(broker_port: int, site: str, out: list[bytes]) -> Any:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="i13b-listener", clean_session=False,
                    protocol=mqtt.MQTTv311)
    c.on_message = lambda _c, _u, m: out.append(bytes(m.payload))
    c.on_connect = lambda cl, *_a: cl.subscribe(f"spot/{site}/up/#", qos=1)
    c.reconnect_delay_set(0.05, 0.5)
    c.connect("127.0.0.1", broker_port)
    c.loop_start()
    return c


def test_cloud_down_local_control_then_reports_reach_the_cloud_once(tmp_path: Path, net: Net) -> None:
    """Broker and cloud stopped: local commands work; their state reports and ACKs wait in the
    outbox and reach the cloud when it returns, each once; replays across MQTT and UDP refused."""
    broker = Broker(bind="0.0.0.0", workdir=tmp_path / "broker")
    broker.start()
    tb = CloudTestbed(tmp_path / "cloud", broker=broker)
    tb.__enter__()
    (tmp_path / "cloud").mkdir(exist_ok=True)
    reg = tb.reg
    reg.provision("home", 0x3101)
    reg.pair(CTL, 0x3101, class_mask("command,discovery"))
    reg.save()
    fs = tmp_path / "fs"
    reg.write_device_files(0x3101, fs)
    tb.start()
    seen: list[bytes] = []
    listener = _uplinks(broker.port, "home", seen)
    host = net.device_host(0)
    dev = LocalDevice(tmp_path, fs, net.conf(0, broker.port), net.prefix(0))
    c = _ctl(reg, net)
    try:
        dev.wait("cycle", ok=True)
        ring = reg.keyring_for(CTL)

        # MQTT -> UDP: a command delivered over MQTT, then the same bytes over UDP.
        raw = _cmd({"kind": "relay", "on": True})(0x3101, CTL, c.counter.next(), reg.sender_key(CTL, 0x3101))
        seq_m = int.from_bytes(raw[13:17], "big")
        publish.publish(f"127.0.0.1:{broker.port}", publish.device_topic("home", 0x3101), raw)
        dev.wait("applied", 1, timeout=20)
        r = c.send_frame(0x3101, host, raw, seq_m, timeout=10)
        assert r.status == "applied"  # answered again from the inbox...
        dev.wait("duplicate", seq=seq_m)
        assert len(dev.of("applied")) == 1  # ...not applied twice

        # UDP -> MQTT: a command over UDP, then the same bytes over MQTT.
        raw2 = _cmd({"kind": "relay", "on": False})(0x3101, CTL, c.counter.next(), reg.sender_key(CTL, 0x3101))
        seq_u = int.from_bytes(raw2[13:17], "big")
        assert c.send_frame(0x3101, host, raw2, seq_u, timeout=10).status == "applied"
        publish.publish(f"127.0.0.1:{broker.port}", publish.device_topic("home", 0x3101), raw2)
        dev.wait("duplicate", seq=seq_u, timeout=20)
        assert len(dev.of("applied")) == 2

        # The cloud and the broker go away.
        time.sleep(1.0)  # the reports of the commands above reach the cloud first
        before = tb.api("GET", "/api/devices/00003101/reports?kind=state")
        tb.stop()
        broker.stop()
        t_down = time.time()
        acks_before = len([e for e in dev.of("acked") if e["to"] == CTL])
        offline_cycles = len(dev.of("cycle"))
        outputs = []
        for on in (True, False, True):
            r = c.command(0x3101, host, _cmd({"kind": "relay", "on": on}), timeout=10)
            assert r.status == "applied", r
            outputs.append(1 if on else 0)
        dev.wait("cycle", offline_cycles + 1)  # it did try the broker meanwhile...
        assert not any(e["ok"] for e in dev.of("cycle")[offline_cycles:])  # ...in vain

        # Back: everything the device reported meanwhile arrives, once, in order. With
        # namespaces the device is cut off until broker and cloud are both up, as when a
        # site's uplink returns.
        if net.lan:
            net.lan.link(0, False)
        broker.start()
        tb.start()
        if net.lan:
            net.lan.link(0, True)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            after = tb.api("GET", "/api/devices/00003101/reports?kind=state")
            new = [x for x in after if x["seq"] not in {b["seq"] for b in before}]
            if len([x for x in new if x["t"] >= t_down]) >= 3:
                break
            time.sleep(0.2)
        new = [x for x in after if x["seq"] not in {b["seq"] for b in before}]
        assert len({x["seq"] for x in new}) == len(new)  # nothing twice
        cloud_got = [x["body"]["outputs"] for x in new]
        time.sleep(1.0)
        acks_made = len([e for e in dev.of("acked") if e["to"] == CTL]) - acks_before
        stats = tb.api("GET", "/api/stats")  # the cloud process that came back
        assert acks_made >= 3 and stats["controller_acks"] == acks_made, (acks_made, stats)
        summary = dev.stop()
        # Nothing lost by the device: every frame it journalled went to the broker and was
        # acknowledged (PUBACK) before it left its outbox, and none was dropped.
        assert summary.get("outbox_dropped", 0) == 0 and summary.get("outbox") == 0, summary
        # The local ACKs were journalled and published on the device's uplink too.
        from spot import secure
        from spot.filter_table import FilterTable

        t = FilterTable(CTL)
        t.set_service(messages.SVC_CORE, (3,))
        acked = []
        for m in seen:
            try:
                f = secure.open_frame(m, t, ring)
            except Exception:
                continue
            acked.append(messages.read_payload(f)[messages.K_ACK_SEQ])
        local_seqs = [seq_m, seq_u]
        assert set(local_seqs) <= set(acked)
        assert len([a for a in acked if a > seq_u]) == 3  # the three made while the cloud was down
        # Each command its own state report, each stored once. (This was an xfail, seen in
        # about 1 run in 4 under load: two commands read in one local poll burst got one
        # report of the final state; see
        # test_commands_read_in_one_local_burst_each_get_their_own_state_report.)
        assert cloud_got == outputs, (cloud_got, outputs, stats,
                                      [int.from_bytes(m[13:17], "big") for m in seen])
    finally:
        c.close()
        dev.stop()
        listener.disconnect()
        listener.loop_stop()
        tb.stop()
        broker.stop()
        broker.__exit__(None, None, None)


def test_cli_discover_and_command_json(tmp_path: Path, net: Net) -> None:
    """`spot local command ... --json` and `spot local state` against a device."""
    import subprocess
    import sys

    from host_tools.paths import ROOT

    reg = _setup(tmp_path, (0x3101,))
    dev = LocalDevice(tmp_path, tmp_path / "fs-00003101", net.conf(0, 1), net.prefix(0))
    try:
        dev.wait("cycle")
        common = ["--registry", str(reg.path), "--as", hex(CTL), "--port", str(net.device_port(0)),
                  "--host", net.device_host(0), "--json"]
        p = subprocess.run([sys.executable, "-m", "host_tools", "local", "command", "0x3101", "relay",
                            "on=true", *common], capture_output=True, text=True, cwd=ROOT, timeout=30)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["status"] == "applied"
        p = subprocess.run([sys.executable, "-m", "host_tools", "local", "state", "0x3101", *common],
                           capture_output=True, text=True, cwd=ROOT, timeout=30)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["state"]["outputs"] == 1
        p = subprocess.run([sys.executable, "-m", "host_tools", "local", "command", "0x3101", "relay",
                            "on=maybe", *common], capture_output=True, text=True, cwd=ROOT, timeout=30)
        assert p.returncode == 2 and "on" in p.stderr  # refused before anything is sent
    finally:
        dev.stop()


def test_commands_read_in_one_local_burst_each_get_their_own_state_report(tmp_path: Path) -> None:
    """The root cause of the end-to-end test's lost report, deterministically: two local
    commands waiting on the socket are handled in one poll burst; each applied command
    journals its own state report (on, then off), not one report of the final state."""
    from host_tools.cloud import uplink
    from host_tools.cloud.registry import CLOUD
    from host_tools.sim import fleet_host, role_sim  # noqa: F401
    from spot import frame, secure
    from spot.errors import SpotError
    from spot.filter_table import FilterTable

    import board as vboard

    reg = Registry(tmp_path / "registry" / "registry.json")
    reg.provision("home", 0x3101)
    reg.pair(CTL, 0x3101, class_mask("command,discovery"))
    reg.save()
    reg.write_device_files(0x3101, tmp_path / "fs")
    fw = fleet_host.firmware()
    port = free_port()
    cfg = {"dir": str(tmp_path / "fs"), "role": "smart_plug", "control_ms": 50,
           "board_obj": vboard.make("smart_plug", seed=3, clock="wall"),
           "local": {"port": port, "bind": "127.0.0.1", "group": None}}
    node = fw.make_node(cfg)
    link = local_control.open(cfg, node, fw.emit)
    assert link is not None
    ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        key = reg.sender_key(CTL, 0x3101)
        before = len(node.journal.outbox)
        for i, on in enumerate((True, False)):
            ctl.sendto(_cmd({"kind": "relay", "on": on})(0x3101, CTL, 100 + i, key), ("127.0.0.1", port))
        time.sleep(0.2)  # both datagrams wait on the socket: one burst reads them
        assert local_control.poll() == 2
        table = FilterTable(CLOUD)
        table.set_service(messages.SVC_DEVICE, (frame.CLASS_REPORT,))
        ring = reg.keyring_for(CLOUD)
        states = []
        for _id, raw in node.journal.pending()[before:]:
            try:
                f = secure.open_frame(raw, table, ring)
            except SpotError:  # the ACKs, to the controller
                continue
            what, value = uplink.classify(f, messages.read_payload(f))
            if what == "state":
                states.append(value["outputs"])
        assert states == [1, 0], states  # one report per command: the "on" is not lost
    finally:
        ctl.close()
        local_control.close(fw.emit)
