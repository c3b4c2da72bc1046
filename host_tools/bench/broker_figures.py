"""The broker's access control, attacked; and what TLS adds to a wake.

attack_suite() runs access attempts that must fail against a real Mosquitto
configured by `spot broker-config` (host_tools/cloud/broker_config.py), each
judged by what the broker does:
  * CONNACK refused (a wrong password, another device's name, no name at all);
  * a publish the ACL forbids: Mosquitto drops it silently (MQTT 3.1.1 cannot
    refuse a PUBLISH), so a subscriber entitled to the topic must not get it.
    The attacker's publish is QoS 1 and its PUBACK awaited, so the broker has
    routed (or dropped) it before an entitled sender publishes a canary on the
    same topic; the observer gets the canary, and had it been routed, the attack
    before it;
  * a subscription the ACL does not cover: Mosquitto 2.0.11's acl_file grants
    every SUBSCRIBE and checks each message at delivery against the read ACL,
    so a secret is published where the attacker subscribed, then a canary it
    is entitled to, on the same connection: it gets the canary, not the secret.
    (A SUBACK 0x80 would count as refused too.)
Positive controls run beside them (a device gets its own downlink, the cloud
its uplinks through a shared subscription, a paired controller reaches its
device): if one fails the suite raises, so a broker that delivers nothing
cannot pass as a broker that refuses everything.

tls_wake_figures() times the device's wake (firmware under the unix port) over
the plain and the TLS listener of the same broker, alternating, and counts the
bytes and round trips on the wire through a relay (the link's own counters see
MQTT bytes only, not TLS records and handshake).
"""
from __future__ import annotations

import json
import os
import queue
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from host_tools.cloud import broker_config
from host_tools.cloud.broker import Broker
from host_tools.cloud.registry import Registry
from host_tools.paths import BUILD, ROOT
from spot import topics

SITE, OTHER_SITE = "acl", "acl2"
DEV_A, DEV_B, DEV_C = 0x00005101, 0x00005102, 0x00005201  # A, B in SITE; C in OTHER_SITE
CTL = 0x00002101  # a controller paired with A only
STRANGER = 0x00005199  # provisioned nowhere
WAIT_S = 3.0


class SuiteError(RuntimeError):
    """A positive control failed: the suite cannot tell refusals from a dead broker."""


@dataclass
class Attempt:
    name: str
    refused: bool
    how: str  # what the broker did


class Probe:
    """A synchronous MQTT 3.1.1 client for the suite (paho underneath)."""

    def __init__(self, port: int, user: str | None, password: str | None,
                 tls_ca: str | None = None, client_id: str | None = None,
                 will: tuple[str, bytes] | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311,
                             client_id=client_id or "probe-" + secrets.token_hex(4))
        if user is not None:
            self.c.username_pw_set(user, password)
        if tls_ca:
            self.c.tls_set(ca_certs=tls_ca)
        if will:
            self.c.will_set(will[0], will[1], qos=1, retain=True)
        self.port = port
        self.rc: int | None = None
        self.got: list[bytes] = []
        self.cv = threading.Condition()
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda _c, _u, mid, rcs, _p=None: self.events.put(
            ("suback", [r.value for r in rcs]))
        self.c.on_publish = lambda _c, _u, mid, *_a: self.events.put(("puback", mid))

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        self.events.put(("connack", rc.value))

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self.cv:
            self.got.append(msg.payload)
            self.cv.notify_all()

    def _event(self, kind: str) -> Any:
        deadline = time.monotonic() + WAIT_S
        while True:
            k, v = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if k == kind:
                return v

    def connect(self) -> int:
        """The CONNACK's code: 0 accepted, 5 not authorised, ..."""
        self.c.connect("127.0.0.1", self.port, keepalive=30)
        self.c.loop_start()
        try:
            self.rc = int(self._event("connack"))
        except queue.Empty:
            self.rc = -1
        if self.rc:
            self.close()
        return self.rc

    def sub(self, topic: str) -> list[int]:
        self.c.subscribe(topic, qos=1)
        return self._event("suback")

    def pub(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """QoS 1, PUBACK awaited: the broker has routed (or dropped) it on return."""
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(WAIT_S)
        if not info.is_published():
            raise SuiteError(f"no PUBACK for a publish on {topic}")

    def wait_for(self, payload: bytes, timeout: float = WAIT_S) -> bool:
        with self.cv:
            return self.cv.wait_for(lambda: payload in self.got, timeout)

    def close(self) -> None:
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()


def _mqtt_str(b: bytes) -> bytes:
    return len(b).to_bytes(2, "big") + b


def raw_connect(port: int, user: str | None, password: str | None,
                will: tuple[str, bytes] | None = None) -> tuple[int, socket.socket]:
    """A bare MQTT 3.1.1 CONNECT: (the CONNACK's return code, the open socket).
    Bare, so a refused or abandoned session costs no client library's reconnect loop."""
    flags = 0x02  # clean session
    payload = _mqtt_str(b"raw-" + secrets.token_hex(4).encode())
    if will:
        flags |= 0x04 | 0x08 | 0x20  # will, QoS 1, retained
        payload += _mqtt_str(will[0].encode()) + _mqtt_str(will[1])
    if user is not None:
        flags |= 0x80
        payload += _mqtt_str(user.encode())
        if password is not None:
            flags |= 0x40
            payload += _mqtt_str(password.encode())
    body = _mqtt_str(b"MQTT") + bytes((4, flags, 0, 30)) + payload
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    s.sendall(bytes((0x10, len(body))) + body if len(body) < 128 else
              bytes((0x10, (len(body) & 0x7F) | 0x80, len(body) >> 7)) + body)
    ack = b""
    while len(ack) < 4:
        chunk = s.recv(4 - len(ack))
        if not chunk:
            break
        ack += chunk
    if len(ack) < 4 or ack[0] != 0x20:
        return -1, s
    return ack[3], s


def world(tmp: Path, tls: bool = False) -> tuple[Registry, Path]:
    """A registry (devices A, B in one site, C in another, a controller paired with A)
    and the broker folder broker-config wrote for it."""
    reg = Registry(tmp / "registry" / "registry.json")
    for site, dev in ((SITE, DEV_A), (SITE, DEV_B), (OTHER_SITE, DEV_C)):
        reg.provision(site, dev)
    reg.pair(CTL, DEV_A, 1 << 0)  # commands
    reg.save()
    broker_config.write(reg, tmp / "broker", tls=tls)
    return reg, tmp / "broker"


def attack_suite(reg: Registry, broker: Broker) -> list[Attempt]:
    """Every attempt that must fail, with whether the broker refused it."""
    port = broker.port
    pw = reg.broker_password
    a_user, b_user, c_user, k_user = (f"{x:08x}" for x in (DEV_A, DEV_B, DEV_C, CTL))
    down_a, down_b = topics.topic(SITE, DEV_A), topics.topic(SITE, DEV_B)
    up_a, up_b = topics.topic(SITE, DEV_A, up=True), topics.topic(SITE, DEV_B, up=True)
    group = topics.topic(SITE, reg.site_group(SITE))
    bcast = topics.topic(SITE, 0xFFFFFFFF)
    status_b = topics.status(SITE, DEV_B)
    out: list[Attempt] = []
    probes: list[Probe] = []

    def probe(user: str | None, password: str | None, **kw: Any) -> Probe:
        p = Probe(port, user, password, **kw)
        probes.append(p)
        return p

    def session(user: str, **kw: Any) -> Probe:
        p = probe(user, pw(user), **kw)
        if p.connect():
            raise SuiteError(f"the legitimate account {user} was refused ({p.rc})")
        return p

    def refused_connect(name: str, user: str | None, password: str | None) -> None:
        rc, s = raw_connect(port, user, password)
        s.close()
        out.append(Attempt(name, rc != 0, f"CONNACK {rc}" + (" (not authorised)" if rc == 5 else "")))

    def token(what: str) -> bytes:
        return f"{what}-{secrets.token_hex(6)}".encode()

    # Who watches and who legitimately speaks.
    cloud = session(broker_config.CLOUD_USER)
    for t in (f"$share/workers/{topics.uplinks('+')}", "spot/+/status/+"):
        cloud.sub(t)
    dev_a, dev_b = session(a_user), session(b_user)
    for d, dev in ((dev_a, DEV_A), (dev_b, DEV_B)):
        for t in (topics.topic(SITE, dev), group, bcast):
            d.sub(t)
    ctl = session(k_user)
    ctl.sub(up_a)
    try:
        # positive controls: each must arrive
        for sender, topic, receiver in ((dev_a, up_a, cloud), (ctl, down_a, dev_a),
                                        (cloud, group, dev_b), (dev_a, up_a, ctl),
                                        (dev_a, down_a, dev_a)):
            m = token("control")
            sender.pub(topic, m)
            if not receiver.wait_for(m):
                raise SuiteError(f"a legitimate message on {topic} never arrived")

        # 1-5: the door
        refused_connect("anonymous client", None, None)
        refused_connect("device with a wrong password", a_user, "not-" + pw(a_user))
        refused_connect("device A's password under device B's name", b_user, pw(a_user))
        refused_connect("an address never provisioned", f"{STRANGER:08x}", pw(a_user))
        refused_connect("controller with the cloud's name and its own password",
                        broker_config.CLOUD_USER, pw(k_user))
        # A will is checked against the ACL when the broker publishes it: a rude
        # disconnect, then one with a will of its own, which must arrive.
        evil_will, own_will = token("will"), token("will")
        for topic, payload in ((status_b, evil_will), (topics.status(SITE, DEV_A), own_will)):
            rc, s = raw_connect(port, a_user, pw(a_user), will=(topic, payload))
            s.close()  # no DISCONNECT: the broker publishes the will
            if rc:
                raise SuiteError(f"device A was refused with a will on {topic} ({rc})")
        if not cloud.wait_for(own_will):
            raise SuiteError("a legitimate will never reached the cloud")
        out.append(Attempt("device's will on another device's availability topic",
                           evil_will not in cloud.got,
                           "will dropped" if evil_will not in cloud.got else "will delivered"))

        # 6-12: publishing where one may not (a canary from an entitled sender follows)
        def dropped(name: str, attacker: Probe, topic: str, observer: Probe, entitled: Probe,
                    retain: bool = False) -> None:
            bad, canary = token("attack"), token("canary")
            attacker.pub(topic, bad, retain)
            entitled.pub(topic, canary)
            if not observer.wait_for(canary):
                raise SuiteError(f"the canary on {topic} never arrived")
            out.append(Attempt(name, bad not in observer.got,
                               "dropped" if bad not in observer.got else "delivered"))

        dropped("device A publishes on device B's uplink", dev_a, up_b, cloud, dev_b)
        dropped("device A publishes to device B's downlink", dev_a, down_b, dev_b, cloud)
        dropped("device A publishes on B's availability (retained)", dev_a, status_b, cloud, dev_b,
                retain=True)
        dropped("device A publishes to its site group", dev_a, group, dev_b, cloud)
        dropped("device A publishes to broadcast", dev_a, bcast, dev_b, cloud)
        dropped("controller publishes to a device it is not paired with", ctl, down_b, dev_b, cloud)
        dropped("controller publishes to the site group", ctl, group, dev_b, cloud)
        dev_c = session(c_user)
        dev_c.sub(topics.topic(OTHER_SITE, DEV_C))
        dropped("a device of another site publishes to device A", dev_c, down_a, dev_a, cloud)

        # 13-17: reading where one may not (the secret first, then a canary, one sender)
        def unread(name: str, reader: Probe, filt: str, sender: Probe, secret_topic: str,
                   canary_topic: str, canary_sender: Probe | None = None) -> None:
            granted = reader.sub(filt)
            if granted and granted[0] >= 0x80:
                out.append(Attempt(name, True, "SUBACK 0x80"))
                return
            secret, canary = token("secret"), token("canary")
            sender.pub(secret_topic, secret)
            (canary_sender or sender).pub(canary_topic, canary)
            if not reader.wait_for(canary):
                raise SuiteError(f"the canary on {canary_topic} never reached the reader")
            out.append(Attempt(name, secret not in reader.got,
                               "granted, nothing delivered" if secret not in reader.got
                               else "delivered"))

        unread("device A subscribes to device B's downlink", dev_a, down_b, cloud, down_b, down_a)
        unread("device A subscribes to spot/#", dev_a, "spot/#", cloud, down_b, down_a)
        unread("device A reads B's uplinks through spot/#", dev_a, "spot/#", dev_b, up_b, down_a,
               cloud)
        unread("device A subscribes to B's downlink as a shared subscription", dev_a,
               f"$share/x/{down_b}", cloud, down_b, down_a)
        unread("controller subscribes to every uplink", ctl, topics.uplinks("+"), dev_b, up_b, up_a,
               dev_a)
        unread("device C subscribes to another site's traffic", dev_c, f"spot/{SITE}/#", cloud,
               down_a, topics.topic(OTHER_SITE, DEV_C))
    finally:
        for p in probes:
            try:
                p.close()
            except Exception:
                pass
    return out


def violations(attempts: list[Attempt]) -> int:
    return sum(1 for a in attempts if not a.refused)


# TLS and the wake ------------------------------------------------------------------------
class Relay:
    """A TCP relay that counts the bytes each way of one connection at a time, and the
    round trips of its set-up: the TCP handshake and each client send answered by the
    server, until the server's first application data (the CONNACK; with tls, the
    first TLS record of type 23). After that both sides talk at once, and the link
    counts its own round trips (CycleResult.round_trips)."""

    def __init__(self, target_port: int, tls: bool = False) -> None:
        self.target = target_port
        self.tls = tls
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.up = self.down = self.round_trips = 0
        self._last = ""
        self._down = b""  # the server's bytes until the CONNACK (TLS records parsed)
        self.setup_done = False
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.up = self.down = self.round_trips = 0
            self._last = ""
            self._down = b""
            self.setup_done = False

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            s = socket.create_connection(("127.0.0.1", self.target))
            for x in (c, s):
                x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.round_trips += 1  # the TCP handshake
            threading.Thread(target=self._pipe, args=(c, s, "up"), daemon=True).start()
            threading.Thread(target=self._pipe, args=(s, c, "down"), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, way: str) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    if way == "up":
                        self.up += len(data)
                    elif not self.setup_done:
                        self.down += len(data)
                        if self._last == "up":  # the server answers what the client sent
                            self.round_trips += 1
                        self.setup_done = self._connack(data)
                    else:
                        self.down += len(data)
                    self._last = way
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for x in (src, dst):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _connack(self, data: bytes) -> bool:
        """True once the server's first application data went by."""
        if not self.tls:
            return True
        self._down += data
        i = 0
        while i + 5 <= len(self._down):
            if self._down[i] == 23:  # TLS application_data
                return True
            i += 5 + int.from_bytes(self._down[i + 3:i + 5], "big")
        return False

    def close(self) -> None:
        self.sock.close()


@contextmanager
def auth_device_world(tmp: Path, tls: bool = True) -> Iterator[tuple[Registry, Broker, Any, Path]]:
    """A broker with access control (and TLS), a device provisioned for it (its files
    in tmp/fs, ca.der included), a controller logged in as the cloud."""
    from host_tools.cloud.controller import Controller

    reg = Registry(tmp / "registry" / "registry.json")
    reg.provision(SITE, DEV_A)
    reg.save()
    reg.write_device_files(DEV_A, tmp / "fs")
    (tmp / "fs" / "ca.der").write_bytes(broker_config.device_ca(reg))
    broker_config.write(reg, tmp / "broker", tls=tls)
    with Broker(access=tmp / "broker") as broker:
        ctl = Controller(reg, SITE, f"127.0.0.1:{broker.port}", auth=reg.broker_account(reg.cloud))
        ctl.connect()
        try:
            yield reg, broker, ctl, tmp / "fs"
        finally:
            ctl.close()


def run_device(tmp: Path, fs: Path, port: int, tls: bool, cycles: int = 1,
               **extra: Any) -> list[dict[str, Any]]:
    """The firmware under the unix port, `cycles` wakes; its events."""
    micropython = Path(sys.executable).parent / "micropython"
    broker: dict[str, Any] = {"host": "127.0.0.1", "port": port}
    if tls:
        broker["tls"] = True
    conf = {"dir": str(fs), "broker": broker, "cycles": cycles, "wake_ms": 50, "run_s": 30,
            "budget_ms": 3000, **extra}
    path = tmp / "device.json"
    path.write_text(json.dumps(conf))
    image = BUILD / "mpy" / "x64"
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([".frozen", str(image)]))
    p = subprocess.run([str(micropython), str(image / "main.py"), str(path)], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=60)
    if p.returncode:
        raise RuntimeError(f"the device failed:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


def tls_wake_figures(rounds: int) -> dict[str, float]:
    """The wake (one queued command, its ACK, a report, a time exchange) over the plain
    and the TLS listener of one broker with access control, alternating."""
    from host_tools.board import build
    from spot import builders

    build.build_arch("x64")
    ms: dict[bool, list[float]] = {False: [], True: []}
    wire: dict[bool, list[tuple[int, int]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="spot-tls-bench-") as t, \
            auth_device_world(Path(t)) as (_reg, broker, ctl, fs):
        tmp = Path(t)
        relays = {False: Relay(broker.port), True: Relay(broker.tls_port or 0, tls=True)}
        try:
            run_device(tmp, fs, broker.port, False)  # the session, subscriptions made

            def wake(tls: bool, relay: bool) -> dict[str, Any]:
                ctl.send_command(DEV_A, lambda seq, key: builders.reduce_power(
                    DEV_A, ctl.address, seq, 20, 0, 7200, key=key), "bench")
                time.sleep(0.05)
                port = relays[tls].port if relay else (broker.tls_port if tls else broker.port)
                relays[tls].reset()
                ev = run_device(tmp, fs, port, tls, tls_name="127.0.0.1")
                c = [e for e in ev if e["ev"] == "cycle"][0]
                if not c["ok"] or c["received"] < 1:
                    raise SystemExit(f"TLS wake benchmark: a wake failed: {c}")
                return c

            for _ in range(rounds):
                for tls in (False, True):
                    ms[tls].append(wake(tls, relay=False)["ms"])
                    c = wake(tls, relay=True)
                    time.sleep(0.05)  # the last bytes of the DISCONNECT counted
                    r = relays[tls]
                    wire[tls].append((r.up + r.down, r.round_trips + c["round_trips"]))
        finally:
            for r in relays.values():
                r.close()

    def med(xs: list) -> float:
        xs = sorted(xs)
        return xs[len(xs) // 2]

    return {
        "wake_cycle_ms_tls": med(ms[True]),
        "wake_cycle_ms_plain_auth": med(ms[False]),
        "wake_cycle_bytes_tls": med([b for b, _ in wire[True]]),
        "wake_cycle_bytes_plain_auth": med([b for b, _ in wire[False]]),
        "wake_cycle_round_trips_tls": med([n for _, n in wire[True]]),
        "wake_cycle_round_trips_plain_auth": med([n for _, n in wire[False]]),
    }


def acl_figures() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="spot-acl-bench-") as t:
        reg, folder = world(Path(t))
        with Broker(access=folder) as broker:
            attempts = attack_suite(reg, broker)
    for a in attempts:
        if not a.refused:
            print(f"broker ACL: ACCEPTED {a.name} ({a.how})")
    return {"broker_acl_violations_accepted": violations(attempts),
            "broker_acl_attempts": len(attempts)}


def figures(quick: bool = False) -> dict[str, float]:
    """For `make bench` (suite.py)."""
    out = acl_figures()
    out.update(tls_wake_figures(rounds=3 if quick else 7))
    return out


if __name__ == "__main__":
    print(json.dumps(figures(quick="--quick" in sys.argv), indent=1))
