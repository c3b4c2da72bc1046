"""End-to-end demo and the private broker: what the device counts, what a restart keeps."""
from __future__ import annotations

import importlib.util
import io
import random
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from rich.console import Console

from host_tools.cloud import broker as broker_mod
from host_tools.demo import security as demo
from host_tools.cloud.broker import Broker, BrokerError
from host_tools.cloud.registry import Registry
from spot import builders, errors, frame, messages
from spot.counter import SendCounter
from spot.journal import Journal
from spot.keyring import Key, Keyring

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(120)
def test_demo_device_counts_what_was_sent() -> None:
    res = demo.run(Console(file=io.StringIO(), width=200))
    assert res.ok, res.error
    s = res.summary
    assert s["why"] == "stop"
    assert s["rx"] == 12
    assert s["kept"] == 3  # price forecast, time sync, reduce-power command
    assert s["applied"] == 3
    assert s["errors"] == 0
    assert s["dropped"] == {
        str(errors.NOT_FOR_ME): 1,
        str(errors.UNKNOWN_SERVICE): 1,
        str(errors.TRUNCATED): 1,
        str(errors.BAD_PAYLOAD): 1,
        str(errors.BAD_TAG): 1,
        str(errors.REPLAYED): 1,  # the price forecast, replayed
        str(errors.INSECURE): 1,
        str(errors.NOT_PAIRED): 1,
    }
    assert s["acks"] == 2  # the command, and the same command delivered again
    assert s["bytes_in"] == sum(len(p.data) for p in res.sent)
    shed = next(p for p in res.sent if p.acked)
    for ack in res.acks:
        assert ack["src"] == demo.DEVICE and ack["dst"] == demo.CONTROLLER
        assert ack["status"] == messages.ACK_APPLIED
        assert ack["acked"] == frame.decode(shed.data).seq


@pytest.mark.timeout(120)
def test_security_demo_command_line_returns_zero() -> None:
    proc = subprocess.run([sys.executable, "-m", "host_tools", "demo", "--security"], cwd=ROOT,
                          capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "demo passed" in proc.stdout


@pytest.mark.timeout(150)
def test_make_demo_command_line_runs_the_three_boards_through_the_cloud() -> None:
    # `make demo` as typed: the cloud service with its database in build/, its dashboard's
    # address printed, every command through the API, and nothing left behind.
    db = ROOT / "build" / "demo-cloud.sqlite"
    proc = subprocess.run([sys.executable, "-m", "host_tools", "demo"], cwd=ROOT,
                          capture_output=True, text=True, timeout=140)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "every command answered" in proc.stdout and "rp2040" in proc.stdout
    url = re.search(r"dashboard: (http://127\.0\.0\.1:(\d+)/#token=(spot_\S+))", proc.stdout)
    assert url, proc.stdout[:3000]
    # The service wrote its database where the demo said, and it holds the scenario's
    # commands at their final states and the token the dashboard's address carries.
    from host_tools.cloud.store import Store

    store = Store(str(db))
    try:
        commands = store.commands(limit=100)
        assert store.token(url[3]) == ("demo", {"read", "command"})
    finally:
        store.close()
    assert sorted(c["kind"] for c in commands) == ["reduce", "reduce", "reduce", "relay", "relay", "sg_state"]
    assert all(c["state"] in ("applied", "adapted") for c in commands), commands
    # The service and its port are gone with the demo.
    left = subprocess.run(["pgrep", "-f", f"cloud serve --db {db}"], capture_output=True, text=True)
    assert left.stdout.strip() == ""
    with pytest.raises(ConnectionRefusedError):  # nothing listens there any more
        socket.create_connection(("127.0.0.1", int(url[2])), timeout=5).close()


def _node(events: list[tuple[str, dict[str, Any]]], reg: Registry) -> Any:
    # By path: "node" alone is too common a module name to put on sys.path.
    spec = importlib.util.spec_from_file_location("spot_firmware_node", ROOT / "firmware" / "node.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ring = Keyring()
    for record in reg.device_files(demo.DEVICE)["keys.json"]:
        ring.add(Key(record["id"], record["peer"], bytes.fromhex(record["key"]), record["classes"],
                     record["group"], record["admin"]), save=False)
    return mod.Node(demo.DEVICE, lambda ev, **kw: events.append((ev, kw)), ring, SendCounter(),
                    Journal(None), [reg.site_group(demo.SITE)])


def test_node_never_raises_on_mangled_frames(tmp_path: Path) -> None:
    # The device-side node under CPython: cut, flipped and random frames all end
    # as a counted verdict, never an exception.
    events: list[tuple[str, dict[str, Any]]] = []
    reg = Registry(tmp_path / "registry.json")
    reg.provision(demo.SITE, demo.DEVICE)
    node = _node(events, reg)
    good = demo.plan(reg)[2].data  # the reduce-power command
    node.receive(good)
    assert node.kept == 1 and len(node.journal.outbox) == 1
    rnd = random.Random(7)
    n = 0
    for cut in range(len(good)):
        node.receive(good[:cut])
        n += 1
    for _ in range(2000):
        b = bytearray(good)
        for _ in range(rnd.randint(1, 4)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        node.receive(bytes(b))
        node.receive(bytes(rnd.randrange(256) for _ in range(rnd.randrange(64))))
        n += 2
    assert node.rx == n + 1
    assert node.rx == node.kept + sum(node.drops) + node.duplicates + node.errors
    assert node.errors == 0, [e for e in events if e[0] == "error"][:3]
    assert len(node.journal.outbox) <= node.journal.max_outbox


def _subscribe_and_collect(port: int, topic: str) -> list[mqtt.MQTTMessage]:
    got: list[mqtt.MQTTMessage] = []
    arrived = threading.Event()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        got.append(msg)
        arrived.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="late-subscriber")
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.subscribe(topic, qos=1)
    c.loop_start()
    try:
        arrived.wait(5)
    finally:
        c.disconnect()
        c.loop_stop()
    return got


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_broker_restart_keeps_retained(kill: bool) -> None:
    payload = builders.price_forecast(frame.BROADCAST, 1, 1, 1795651200, 3600, [8520, 8015], -2)
    with Broker() as b:
        port, data = b.port, b.dir
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="retainer")
        pub.connect("127.0.0.1", b.port)
        pub.loop_start()
        since = time.time()
        pub.publish("spot/t/ffffffff", payload, qos=1, retain=True).wait_for_publish(5)
        pub.disconnect()
        pub.loop_stop()
        if kill:  # a crash keeps only what autosave wrote
            assert b.wait_saved(since), b.log_tail()
        b.stop(kill=kill)
        assert not b.running
        b.start()
        assert (b.port, b.dir) == (port, data)
        got = _subscribe_and_collect(b.port, "spot/t/#")
    assert [(m.topic, m.payload, m.retain) for m in got] == [("spot/t/ffffffff", payload, True)]
    assert not data.exists()  # cleaned up on exit


def test_broker_missing_mosquitto_says_how_to_install(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(broker_mod, "_SEARCH", ())
    with pytest.raises(BrokerError, match="apt-get install mosquitto"):
        Broker()
