"""A local controller: SPOT frames over UDP to devices on the same network (SPEC.md 13).

Discovery goes to the multicast group unsecured (DISCOVERY is read-only); commands
go to one device's address, sealed under the controller's pairwise key from the
cloud registry (`spot pair`), and are sent again, byte for byte, until the device's
ACK comes back over UDP (a device that already applied one answers again without
applying it twice). ACKs and answers are verified with the registry's keys, each
sender's replay window refusing what it has seen.
"""
from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from host_tools.cloud.registry import Registry
from host_tools.cloud.uplink import DECI, ROLE_NAMES, STATE_FIELDS, STATUS_NAMES, _named
from spot import builders, frame, messages, secure
from spot.discover import K_STATE
from spot.errors import NAMES, REPLAYED, SpotError
from spot.filter_table import FilterTable
from spot.udp_link import GROUP, MAX_DATAGRAM, PORT

QUESTION_PAD = 28  # bytes of padding in an unsecured discovery question (51 bytes in all)

Seal = Callable[[int, int, int, Any], bytes]  # (dst, src, seq, key) -> frame


@dataclass
class Found:
    """A device that answered discovery."""
    address: int
    host: str
    port: int
    role: str | None
    services: list[list[int]]
    secured: bool
    state: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"address": f"{self.address:08x}", "host": self.host, "port": self.port,
                "role": self.role, "services": self.services, "secured": self.secured,
                **({"state": self.state} if self.state is not None else {})}


@dataclass
class Result:
    """What became of one local command."""
    device: int
    seq: int
    status: str | None  # None: no ACK within the timeout
    reason: int | None
    ms: float
    sends: int
    label: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"device": f"{self.device:08x}", "seq": self.seq, "status": self.status or "no answer",
                "reason": self.reason, "ms": round(self.ms, 2), "sends": self.sends,
                "label": self.label}


@dataclass
class Stats:
    refused: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0


class LocalController:
    def __init__(self, registry: Registry, address: int, port: int = PORT, group: str = GROUP,
                 bind: str = "0.0.0.0", interface: str | None = None) -> None:
        self.reg = registry
        self.address = address
        self.port = port
        self.group = group
        self.ring = registry.keyring_for(address)
        self.counter = registry.counter(address)
        t = self.table = FilterTable(address)
        t.set_service(messages.SVC_CORE, (frame.CLASS_ACK, frame.CLASS_DISCOVERY, frame.CLASS_REPORT))
        t.allow_unsecured((frame.CLASS_DISCOVERY,))  # a device not paired with us answers so
        self.stats = Stats()
        s = self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((bind, 0))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)  # the LAN, never further
        if interface:  # which interface multicast leaves by (several networks on one host)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "LocalController":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # receiving ------------------------------------------------------------------
    def _recv(self, deadline: float) -> tuple[Any, dict, tuple[str, int]] | None:
        """The next verified frame before the deadline: (frame, body, (host, port)), or None."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data, peer = self.sock.recvfrom(MAX_DATAGRAM + 1)
            except (socket.timeout, BlockingIOError):
                return None
            try:
                f = secure.open_frame(data, self.table, self.ring)
                body = messages.read_payload(f)
            except SpotError as e:
                if e.code == REPLAYED:
                    self.stats.duplicates += 1
                else:
                    why = NAMES.get(e.code, str(e.code))
                    self.stats.refused[why] = self.stats.refused.get(why, 0) + 1
                continue
            return f, body, peer

    # discovery --------------------------------------------------------------------
    def discover(self, timeout: float = 1.0, host: str | None = None,
                 device: int | None = None, want: int = 0) -> list[Found]:
        """Ask the group (or one host) who is there; every answer within the timeout.
        Asking one paired device (host and device given) is secured, and its answer
        carries the device's state. want > 0: stop at that many answers."""
        seq = self.counter.next()
        if device is not None:
            raw = builders.discovery(device, self.address, seq, key=self.reg.sender_key(self.address, device))
        else:
            # Padded: a device sends an unsecured answer of at most 3 times the question
            # (SPEC 13.3); 51 bytes make room for 153, a device keeping every service.
            raw = builders.discovery(0xFFFFFFFF, self.address, seq, pad=QUESTION_PAD)
        self.sock.sendto(raw, (host or self.group, self.port))
        out: dict[int, Found] = {}
        deadline = time.monotonic() + timeout
        while (got := self._recv(deadline)) is not None:
            f, body, peer = got
            if f.cls != frame.CLASS_DISCOVERY or messages.K_DISC_SERVICES not in body:
                continue
            role = body.get(messages.K_DISC_ROLE)
            state = body.get(K_STATE) if f.secured else None
            out[f.src] = Found(f.src, peer[0], peer[1], ROLE_NAMES.get(role, role),
                               [list(s) for s in body[messages.K_DISC_SERVICES]], f.secured,
                               _named(state, STATE_FIELDS, DECI) if isinstance(state, dict) else None)
            if (device is not None and f.src == device) or (want and len(out) >= want):
                break
        return sorted(out.values(), key=lambda d: d.address)

    def state(self, device: int, host: str, timeout: float = 2.0) -> Found | None:
        """A paired device's role, services and state, asked directly and secured
        (the pairing must allow DISCOVERY: spot pair --classes command,discovery)."""
        for d in self.discover(timeout, host=host, device=device):
            if d.address == device:
                return d
        return None

    # commands ---------------------------------------------------------------------
    def command(self, device: int, host: str, seal: Seal, label: str = "", timeout: float = 5.0,
                retry: float = 0.25) -> Result:
        """Seal a command under our pairing key, send it until the device's ACK comes
        (the same bytes every time), or until the timeout."""
        seq = self.counter.next()
        raw = seal(device, self.address, seq, self.reg.sender_key(self.address, device))
        return self.send_frame(device, host, raw, seq, label, timeout, retry)

    def send_frame(self, device: int, host: str, raw: bytes, seq: int, label: str = "",
                   timeout: float = 5.0, retry: float = 0.25) -> Result:
        t0 = time.monotonic()
        deadline = t0 + timeout
        sends = 0
        while time.monotonic() < deadline:
            self.sock.sendto(raw, (host, self.port))
            sends += 1
            until = min(deadline, time.monotonic() + retry)
            while (got := self._recv(until)) is not None:
                f, body, _peer = got
                if (f.src == device and f.cls == frame.CLASS_ACK
                        and body.get(messages.K_ACK_SEQ) == seq):
                    status = STATUS_NAMES.get(body.get(messages.K_ACK_STATUS), "?")
                    reason = body.get(messages.K_ACK_REASON)
                    return Result(device, seq, status, reason if isinstance(reason, int) else None,
                                  (time.monotonic() - t0) * 1000, sends, label)
        return Result(device, seq, None, None, (time.monotonic() - t0) * 1000, sends, label)


def join_group(sock: socket.socket, group: str = GROUP, interface: str = "0.0.0.0") -> None:
    """Join the discovery group on a socket (a listener for tests and tools)."""
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                    struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(interface)))
