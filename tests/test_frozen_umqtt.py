"""The link works with the umqtt.simple a vendor freezes, not only the one we fetch.

Once a defect (issue 15): firmware/manifest.py's require("umqtt.simple") freezes
micropython-lib's current umqtt.simple (1.7.0), whose connect() calls
sock.settimeout(timeout) on the socket spot.mqtt_link hands it. BoundedSocket had
no settimeout, so every wake of a frozen build failed with LinkError 71.

UMQTT_17 below is our own stand-in (no third-party code): an MQTT client that
makes the socket calls 1.7.0 makes, in its order (socket(), settimeout(None),
getaddrinfo(), connect(), write(buf, n), write(), read(4)), and whose wait_msg()
toggles setblocking(). It is put first on the import path, as a frozen module is
found before the filesystem's.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MICROPYTHON, ROOT, provision
from host_tools.cloud.broker import Broker
from host_tools.cloud.controller import Controller
from spot import builders

SITE = "test"
DEV = 0x00003051
pytestmark = pytest.mark.timeout(120)

UMQTT_17 = '''
import socket
import struct


class MQTTException(Exception):
    pass


class MQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0,
                 ssl=None):
        self.client_id = client_id
        self.server = server
        self.port = port or 1883
        self.keepalive = keepalive
        self.sock = None
        self.pid = 0
        self.lw = None
        self.calls = []

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.lw = (topic, msg, retain, qos)

    def _str(self, s):
        self.sock.write(struct.pack("!H", len(s)))
        self.sock.write(s)

    def connect(self, clean_session=True, timeout=None):
        self.sock = socket.socket()
        self.sock.settimeout(timeout)  # what 1.3.4 never did
        addr = socket.getaddrinfo(self.server, self.port)[0][-1]
        self.sock.connect(addr)
        flags = clean_session << 1
        size = 10 + 2 + len(self.client_id)
        if self.lw:
            flags |= 0x4 | (self.lw[3] & 3) << 3 | self.lw[2] << 5
            size += 2 + len(self.lw[0]) + 2 + len(self.lw[1])
        head = bytearray(b"\\x10\\0\\0\\0\\0")
        i = 1
        while size > 0x7F:
            head[i] = (size & 0x7F) | 0x80
            size >>= 7
            i += 1
        head[i] = size
        self.sock.write(head, i + 1)  # the two-argument write
        self.sock.write(bytearray(b"\\x00\\x04MQTT\\x04") + bytes((flags, self.keepalive >> 8,
                                                                   self.keepalive & 0xFF)))
        self._str(self.client_id)
        if self.lw:
            self._str(self.lw[0])
            self._str(self.lw[1])
        resp = self.sock.read(4)
        if resp[0] != 0x20 or resp[1] != 2:
            raise MQTTException("bad CONNACK")
        if resp[3]:
            raise MQTTException(resp[3])
        return resp[2] & 1

    def wait_msg(self):
        self.sock.setblocking(True)

    def check_msg(self):
        self.sock.setblocking(False)
'''


@pytest.fixture
def frozen_umqtt(tmp_path: Path) -> Path:
    d = tmp_path / "frozen"
    (d / "umqtt").mkdir(parents=True)
    (d / "umqtt" / "simple.py").write_text(UMQTT_17)
    # The entry point beside it: a script's own folder comes first on MicroPython's
    # path, and the built image's folder holds the umqtt we fetch.
    (d / "main.py").write_text((ROOT / "firmware" / "main.py").read_text())
    return d


def _wake(tmp: Path, port: int, frozen: Path) -> list[dict]:
    conf = {"dir": str(tmp / "fs"), "broker": {"host": "127.0.0.1", "port": port},
            "cycles": 1, "wake_ms": 50, "run_s": 30}
    path = tmp / "device.json"
    path.write_text(json.dumps(conf))
    image = ROOT / "build" / "mpy" / "x64"
    # The stand-in first, as a frozen module is found before the filesystem's.
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([str(frozen), ".frozen", str(image)]))
    p = subprocess.run([str(MICROPYTHON), str(frozen / "main.py"), str(path)],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return [json.loads(line) for line in p.stdout.splitlines()]


def test_a_wake_succeeds_with_a_umqtt_that_calls_settimeout(tmp_path: Path, frozen_umqtt: Path) -> None:
    reg = provision(tmp_path, SITE, DEV)
    with Broker() as broker:
        # The module really is the stand-in: MicroPython finds it first.
        (frozen_umqtt / "probe.py").write_text("from umqtt import simple\nprint(simple.__file__)\n")
        probe = subprocess.run([str(MICROPYTHON), str(frozen_umqtt / "probe.py")],
                               capture_output=True, text=True, timeout=30,
                               env=dict(os.environ, MICROPYPATH=os.pathsep.join(
                                   [".frozen", str(ROOT / "build" / "mpy" / "x64")])))
        assert str(frozen_umqtt) in probe.stdout, probe.stdout + probe.stderr
        first = [e for e in _wake(tmp_path, broker.port, frozen_umqtt) if e["ev"] == "cycle"]
        assert first and first[0]["ok"], first
        ctl = Controller(reg, SITE, f"127.0.0.1:{broker.port}")
        ctl.connect()
        try:
            ctl.send_command(DEV, lambda seq, key: builders.reduce_power(
                DEV, ctl.address, seq, 20, 0, 60, key=key), "reduce")
            import time

            time.sleep(0.2)
            ev = _wake(tmp_path, broker.port, frozen_umqtt)
            [c] = [e for e in ev if e["ev"] == "cycle"]
            assert c["ok"] and c["received"] >= 1, c
            assert any(e["ev"] == "applied" for e in ev), ev
            end = time.monotonic() + 5
            while ctl.waiting() and time.monotonic() < end:
                time.sleep(0.02)
            assert not ctl.waiting(), "the command was not acknowledged"
        finally:
            ctl.close()


def test_umqtt_timeouts_only_shorten_the_links_bounds(frozen_umqtt: Path) -> None:
    """Under CPython too: settimeout(None) keeps the link's bounds, a number caps
    them, setblocking(False) polls; none outlives the link's op_timeout_ms."""
    sys.path.insert(0, str(frozen_umqtt))
    saved = {k: sys.modules.pop(k) for k in ("umqtt", "umqtt.simple") if k in sys.modules}
    try:
        from spot import mqtt_link

        class Link:
            raw = None
            idle = fault = None
            op_timeout_ms = 2000

            def remaining_ms(self):
                return 5000

        s = mqtt_link.BoundedSocket(Link())
        try:
            s.settimeout(None)
            s._arm()
            assert s.raw.gettimeout() == 2.0
            s.settimeout(0.5)
            s._arm()
            assert s.raw.gettimeout() == 0.5
            s.settimeout(60)
            s._arm()
            assert s.raw.gettimeout() == 2.0
            s.setblocking(False)
            s._arm()
            assert s.raw.gettimeout() == 0.0
            s.setblocking(True)
            s._arm()
            assert s.raw.gettimeout() == 2.0
        finally:
            s.close()
    finally:
        sys.path.remove(str(frozen_umqtt))
        for k in ("umqtt", "umqtt.simple"):
            sys.modules.pop(k, None)
        sys.modules.update(saved)
