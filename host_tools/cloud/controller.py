"""The controller side: send commands and signals, track them to the device's ACK.

A command is kept (and persisted) until the device acknowledges it end to end;
resend_pending() publishes the very same frame again, which a device that
already applied it answers again without applying it twice. So a broker that
loses a queued message (a crash before its autosave) delays a command but
cannot lose it. Uplink frames are verified with the registry's keys; a frame
delivered twice is recognised by its counter and counted once.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable


from host_tools.cloud.registry import CLOUD, Registry  # noqa: E402
from spot import builders, frame, messages, secure, topics  # noqa: E402
from spot.errors import REPLAYED, SpotError  # noqa: E402
from spot.filter_table import FilterTable  # noqa: E402

STATUS_NAMES = {messages.ACK_APPLIED: "applied", messages.ACK_ADAPTED: "adapted",
                messages.ACK_REFUSED: "refused", messages.ACK_EXPIRED: "expired",
                messages.ACK_UNSUPPORTED: "unsupported"}


@dataclass
class Pending:
    device: int
    seq: int
    frame: bytes
    label: str
    sent_at: float
    sends: int = 1


@dataclass
class Uplink:
    t: float
    src: int
    seq: int
    cls: int
    body: dict[int, Any]
    size: int


@dataclass
class ControllerStats:
    acks: list[Uplink] = field(default_factory=list)
    reports: list[Uplink] = field(default_factory=list)
    duplicates: int = 0
    refused: int = 0


class Controller:
    def __init__(self, registry: Registry, site: str, broker: str = "127.0.0.1:1883",
                 address: int = CLOUD, on_uplink: Callable[[Uplink], None] | None = None,
                 auth: tuple[str, str] | None = None, tls_ca: str | None = None) -> None:
        self.reg = registry
        self.auth = auth  # (user, password) on a broker with access control (broker_config.py)
        self.tls_ca = tls_ca  # the CA's PEM file: connect with TLS, the broker verified
        self.site = site
        host, _, port = broker.partition(":")
        self.host, self.port = host or "127.0.0.1", int(port or 1883)
        self.address = address
        self.on_uplink = on_uplink
        self.ring = registry.keyring_for(address)
        self.table = FilterTable(address)
        self.table.set_service(messages.SVC_CORE, (frame.CLASS_ACK, frame.CLASS_REPORT,
                                                   frame.CLASS_TIMESYNC))
        self.table.set_service(messages.SVC_METER, (frame.CLASS_REPORT,))
        self.table.set_service(messages.SVC_DEVICE, (frame.CLASS_REPORT,))
        self.counter = registry.counter(address)
        self.state_path = registry.path.parent / f"controller-{address:08x}.json"
        self.pending: dict[tuple[int, int], Pending] = {}
        self.stats = ControllerStats()
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client: Any = None
        self._load()

    # persistence ------------------------------------------------------------------
    def _load(self) -> None:
        if self.state_path.exists():
            for r in json.loads(self.state_path.read_text()):
                p = Pending(r["device"], r["seq"], bytes.fromhex(r["frame"]), r["label"], 0.0, r["sends"])
                self.pending[(p.device, p.seq)] = p

    def _save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"device": p.device, "seq": p.seq, "frame": p.frame.hex(),
                                    "label": p.label, "sends": p.sends} for p in self.pending.values()]))
        os.replace(tmp, self.state_path)

    # the connection ------------------------------------------------------------------
    def connect(self, timeout: float = 5.0) -> None:
        import paho.mqtt.client as mqtt

        c = self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                      client_id=f"spot-ctl-{self.address:08x}",
                                      clean_session=False, protocol=mqtt.MQTTv311)
        c.reconnect_delay_set(min_delay=0.05, max_delay=1)
        c.on_message = self._on_message
        c.on_socket_open = lambda _c, _u, sock: _no_delay(sock)
        if self.auth is not None:
            c.username_pw_set(*self.auth)
        if self.tls_ca is not None:
            c.tls_set(ca_certs=self.tls_ca)

        def on_connect(client: Any, _u: Any, _flags: Any, rc: Any, _p: Any = None) -> None:
            if getattr(rc, "is_failure", False):  # refused: connect() says so by its timeout
                return
            client.subscribe(topics.uplinks("+"), qos=1)  # every site's uplinks
            self.connected.set()

        c.on_connect = on_connect
        c.on_disconnect = lambda *_a: self.connected.clear()
        try:
            c.connect(self.host, self.port, keepalive=30)
        except OSError as e:
            raise ConnectionError(f"cannot reach the MQTT broker at {self.host}:{self.port}: {e}") from None
        c.loop_start()
        if not self.connected.wait(timeout):
            self.close()
            raise ConnectionError(f"no MQTT session with {self.host}:{self.port} within {timeout:.0f} s")

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None

    # sending ----------------------------------------------------------------------
    def _topic(self, device: int) -> str:
        """A device's downlink topic, in its own site (a controller may span sites)."""
        try:
            site = self.reg.device(device)["site"]
        except KeyError:
            site = self.site
        return topics.topic(site, device)

    def _publish(self, topic: str, raw: bytes, retain: bool = False) -> None:
        self.client.publish(topic, raw, qos=1, retain=retain)  # paho resends after a reconnect

    def send_command(self, device: int, build: Callable[[int, Any], bytes], label: str) -> Pending:
        """build(seq, key) -> frame; sealed with the pairing key and tracked until ACKed."""
        seq = self.counter.next()
        raw = build(seq, self.reg.sender_key(self.address, device))
        p = Pending(device, seq, raw, label, time.monotonic())
        with self.lock:
            self.pending[(device, seq)] = p
            self._save()
        self._publish(self._topic(device), raw)
        return p

    def send_signal(self, dst: int, build: Callable[[int, Any], bytes], retain: bool = True) -> bytes:
        """An informational signal to a group (group key) or device; retained for late wakers."""
        seq = self.counter.next()
        key = self.reg.group_key(self.site) if dst & frame.GROUP_BIT else self.reg.sender_key(self.address, dst)
        raw = build(seq, key)
        self._publish(topics.topic(self.site, dst), raw, retain)
        return raw

    def resend_pending(self, older_than: float = 0.0) -> int:
        """Publish again every command still waiting for its ACK (same bytes, same counter)."""
        now = time.monotonic()
        with self.lock:
            due = [p for p in self.pending.values() if now - p.sent_at >= older_than]
            for p in due:
                p.sent_at = now
                p.sends += 1
            if due:
                self._save()
        for p in due:
            self._publish(self._topic(p.device), p.frame)
        return len(due)

    # receiving ----------------------------------------------------------------------
    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        received_ms = time.time_ns() // 1_000_000
        try:
            f = secure.open_frame(msg.payload, self.table, self.ring)
            body = messages.read_payload(f)
        except SpotError as e:
            with self.lock:
                if e.code == REPLAYED:
                    self.stats.duplicates += 1  # an uplink frame delivered twice
                else:
                    self.stats.refused += 1
            return
        if f.cls == frame.CLASS_TIMESYNC and messages.K_TS_ECHO in body:
            self._answer_time(f.src, body[messages.K_TS_ECHO], received_ms)
            return
        up = Uplink(time.monotonic(), f.src, f.seq, f.cls, body, len(msg.payload))
        with self.lock:
            if f.cls == frame.CLASS_ACK:
                self.stats.acks.append(up)
                if self.pending.pop((f.src, body.get(messages.K_ACK_SEQ)), None) is not None:
                    self._save()
            else:
                self.stats.reports.append(up)
        if self.on_uplink:
            self.on_uplink(up)

    def _answer_time(self, device: int, echo: Any, received_ms: int) -> None:
        """A device's two-way time exchange: its clock echoed, ours on receipt and on sending."""
        if not isinstance(echo, int):
            return
        try:
            key = self.reg.sender_key(self.address, device)
        except KeyError:
            return
        seq = self.counter.next()
        raw = builders.time_answer(device, self.address, seq, echo, received_ms,
                                   time.time_ns() // 1_000_000, key=key)
        self._publish(self._topic(device), raw)

    def waiting(self) -> list[Pending]:
        with self.lock:
            return list(self.pending.values())


def _no_delay(sock: Any) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass
