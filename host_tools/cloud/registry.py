"""The cloud's pairing registry: device identities, keys, and who may send what to whom.

It lives outside the repository (default ~/.config/spot/registry.json, or
$SPOT_REGISTRY), readable by its owner only: it holds every key. From it come
the files a device is deployed with (its keyring and identity), the keyrings
controllers send and verify with, and the key-management frames that pair,
rotate and retire keys over the air.
"""
from __future__ import annotations

import json
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator


from spot import builders, frame, messages, storage  # noqa: E402
from spot.counter import SendCounter  # noqa: E402
from spot.keyring import GROUP_CLASSES, Key, Keyring  # noqa: E402

CLOUD = 0x00000001  # the registry's own logical address
DEVICE_KEY_ID = 1
PAIR_IDS = range(2, 128)
GROUP_IDS = range(128, 256)
# What a device may send back under a pairwise key.
UPLINK_CLASSES = ((1 << frame.CLASS_REPORT) | (1 << frame.CLASS_ACK) | (1 << frame.CLASS_DISCOVERY)
                  | (1 << frame.CLASS_TIMESYNC))  # a device asks the time
CLASS_NAMES = {"command": frame.CLASS_COMMAND, "info": frame.CLASS_INFO,
               "report": frame.CLASS_REPORT, "ack": frame.CLASS_ACK,
               "timesync": frame.CLASS_TIMESYNC, "discovery": frame.CLASS_DISCOVERY}


def default_path() -> Path:
    env = os.environ.get("SPOT_REGISTRY")
    return Path(env) if env else Path.home() / ".config" / "spot" / "registry.json"


def class_mask(names: str | list[str]) -> int:
    if isinstance(names, str):
        names = [n for n in names.replace(",", " ").split() if n]
    mask = 0
    for n in names:
        if n not in CLASS_NAMES:
            raise ValueError(f"unknown message class {n!r}; choose from {', '.join(CLASS_NAMES)}")
        mask |= 1 << CLASS_NAMES[n]
    return mask


def parse_address(text: str | int) -> int:
    value = text if isinstance(text, int) else int(text, 0)
    if not 0 < value < 0xFFFFFFFF:
        raise ValueError(f"address {text} is not a logical address (1..0xfffffffe)")
    return value


class HostCounter(SendCounter):
    """A sender's counter shared by several host processes (a controller service,
    `spot pair` in a shell) and threads (a controller answers time requests on
    its network thread while its caller sends commands): each reservation is made
    under a file lock and starts above whatever any process reserved, and every
    counter is handed out under a thread lock, so no two frames share one."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._lock = threading.Lock()

    def next(self) -> int:
        import fcntl

        with self._lock:
            if self._next < self._reserved:
                n = self._next
                self._next = n + 1
                return n
            with open(self.path + ".lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                stored = storage.load(self.path)
                if isinstance(stored, int) and stored > self._next:
                    self._next = stored  # another process reserved up to here
                return super().next()


@dataclass
class Entry:
    """One key as the registry records it (both ends of it)."""

    device: int
    peer: int  # the controller (or the cloud) on the other end; a group's sender for groups
    key_id: int
    secret: bytes
    classes: int  # what the peer may send the device under it
    group: bool = False
    admin: bool = False
    state: str = "active"  # active | retiring

    def device_key(self) -> Key:
        """The device's side: frames from peer, verified with it."""
        return Key(self.key_id, self.peer, self.secret, self.classes, self.group, self.admin)

    def peer_key(self) -> Key:
        """The peer's side: frames to and from the device."""
        if self.group:
            return Key(self.key_id, self.device, self.secret, GROUP_CLASSES, group=True)
        return Key(self.key_id, self.device, self.secret, UPLINK_CLASSES)


class Registry:
    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else default_path()
        self.data: dict[str, Any] = {"devices": {}, "sites": {}, "keys": [], "cloud": CLOUD}
        self._counters: dict[int, SendCounter] = {}
        if self.path.exists():
            self.data = json.loads(self.path.read_text())

    # persistence ------------------------------------------------------------
    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.data, f, indent=1)
        os.replace(tmp, self.path)

    def counter(self, address: int) -> SendCounter:
        """The persistent frame counter of a sender that this registry speaks for."""
        if address not in self._counters:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._counters[address] = HostCounter(str(self.path.parent / f"counter-{address:08x}.json"))
        return self._counters[address]

    # queries ------------------------------------------------------------------
    @property
    def cloud(self) -> int:
        return int(self.data["cloud"])

    def entries(self, device: int | None = None) -> Iterator[Entry]:
        for r in self.data["keys"]:
            if device is None or r["device"] == device:
                yield Entry(r["device"], r["peer"], r["key_id"], bytes.fromhex(r["secret"]),
                            r["classes"], r["group"], r["admin"], r["state"])

    def device(self, address: int) -> dict[str, Any]:
        try:
            return self.data["devices"][f"{address:08x}"]
        except KeyError:
            raise KeyError(f"device {address:08x} is not in the registry {self.path}") from None

    def site_group(self, site: str) -> int:
        return int(self.data["sites"][site]["group"])

    def sender_key(self, sender: int, device: int) -> Key:
        """The key `sender` seals frames to `device` with: its newest active pairwise key."""
        best = None
        for e in self.entries(device):
            if e.peer == sender and not e.group and e.state == "active":
                best = e
        if best is None:
            raise KeyError(f"{sender:08x} is not paired with device {device:08x}")
        return best.device_key()

    def group_key(self, site: str) -> Key:
        s = self.data["sites"][site]
        return Key(s["key_id"], self.cloud, bytes.fromhex(s["secret"]), GROUP_CLASSES, group=True)

    def keyring_for(self, address: int) -> Keyring:
        """A peer's in-memory keyring: every device key it shares, to verify their frames."""
        ring = Keyring()
        for e in self.entries():
            if e.peer == address and not e.group:
                ring.keys.append(e.peer_key())
        return ring

    # broker accounts (broker_config.py writes Mosquitto's files from these) -------
    def broker_password(self, user: str) -> str:
        """The broker password of an account (a device's or controller's address as 8 hex
        digits, or "cloud"), made on first use. Kept here only, like the keys."""
        from host_tools.cloud import broker_config

        accounts = self.data.setdefault("broker", {})
        if user not in accounts:
            accounts[user] = broker_config.new_password()
        return str(accounts[user])

    def broker_users(self) -> list[str]:
        return sorted(self.data.get("broker", {}))

    def broker_account(self, address: int) -> tuple[str, str]:
        """(user, password) for a device, a controller or (its address) the cloud."""
        from host_tools.cloud.broker_config import CLOUD_USER

        user = CLOUD_USER if address == self.cloud else f"{address:08x}"
        return user, self.broker_password(user)

    def ensure_broker_accounts(self) -> None:
        """Accounts for everyone: the cloud, every device, every paired controller."""
        self.broker_account(self.cloud)
        for name in self.data["devices"]:
            self.broker_password(name)
        for e in self.entries():
            if not e.group and e.peer != self.cloud:
                self.broker_password(f"{e.peer:08x}")

    # changes ------------------------------------------------------------------
    def _add(self, e: Entry) -> Entry:
        self.data["keys"].append({
            "device": e.device, "peer": e.peer, "key_id": e.key_id, "secret": e.secret.hex(),
            "classes": e.classes, "group": e.group, "admin": e.admin, "state": e.state})
        return e

    def _free_id(self, device: int, ids: range) -> int:
        used = {e.key_id for e in self.entries(device)}
        for i in ids:
            if i not in used:
                return i
        raise ValueError(f"device {device:08x} has no free key id left")

    def provision(self, site: str, address: int | None = None) -> int:
        """Register a device: its id, its device key (shared with the cloud) and its site's group key."""
        devices = self.data["devices"]
        if address is None:
            address = 0x100 + len(devices)
            while f"{address:08x}" in devices:
                address += 1
        address = parse_address(address)
        if address & frame.GROUP_BIT or address == self.cloud:
            raise ValueError(f"{address:08x} is a group or the cloud, not a device address")
        if f"{address:08x}" in devices:
            raise ValueError(f"device {address:08x} is already provisioned")
        sites = self.data["sites"]
        if site not in sites:
            sites[site] = {"group": 0x80000001 + len(sites), "key_id": GROUP_IDS[0],
                           "secret": secrets.token_bytes(32).hex()}
        devices[f"{address:08x}"] = {"site": site}
        self._add(Entry(address, self.cloud, DEVICE_KEY_ID, secrets.token_bytes(32), 0xFF, admin=True))
        s = sites[site]
        self._add(Entry(address, self.cloud, s["key_id"], bytes.fromhex(s["secret"]), GROUP_CLASSES,
                        group=True))
        self.broker_password(f"{address:08x}")  # its broker account (broker_config.py)
        return address

    def pair(self, controller: int, device: int, classes: int) -> Entry:
        """Allow `controller` to send `device` these classes, under a new pairwise key."""
        self.device(device)
        if classes & ~0xFF or not classes:
            raise ValueError("choose at least one message class")
        controller = parse_address(controller)
        if controller != self.cloud:
            self.broker_password(f"{controller:08x}")  # its broker account (broker_config.py)
        return self._add(Entry(device, controller, self._free_id(device, PAIR_IDS),
                               secrets.token_bytes(32), classes))

    def rotate(self, device: int, peer: int | None = None) -> tuple[Entry, Entry]:
        """A new key for (device, peer); the old one is kept, marked retiring, until retire()."""
        peer = self.cloud if peer is None else peer
        old = [e for e in self.entries(device) if e.peer == peer and not e.group and e.state == "active"]
        if not old:
            raise KeyError(f"no active key between {device:08x} and {peer:08x}")
        o = old[-1]
        for r in self.data["keys"]:
            if r["device"] == device and r["key_id"] == o.key_id:
                r["state"] = "retiring"
        new = self._add(Entry(device, peer, self._free_id(device, PAIR_IDS), secrets.token_bytes(32),
                              o.classes, admin=o.admin))
        return o, new

    def retire(self, device: int, key_id: int) -> None:
        """Forget a key. The last admin key stays: the device refuses to drop it."""
        target = [e for e in self.entries(device) if e.key_id == key_id]
        if target and target[0].admin and sum(1 for e in self.entries(device) if e.admin) == 1:
            raise ValueError(f"key {key_id} is device {device:08x}'s last admin key: rotate it "
                             "first (spot rotate), then retire the old one")
        self.data["keys"] = [r for r in self.data["keys"]
                             if not (r["device"] == device and r["key_id"] == key_id)]

    # what travels ---------------------------------------------------------------
    def device_files(self, address: int) -> dict[str, Any]:
        """The files a device is deployed with: identity.json and keys.json."""
        d = self.device(address)
        keys = [e.device_key().to_record() for e in self.entries(address)]
        identity = {"address": address, "site": d["site"], "groups": [self.site_group(d["site"])],
                    "cloud": self.cloud,
                    # what the firmware logs in to the broker with (broker_config.py)
                    "broker": {"user": f"{address:08x}", "password": self.broker_password(f"{address:08x}")}}
        return {"identity.json": identity, "keys.json": keys}

    def write_device_files(self, address: int, out: Path) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        accounts = len(self.data.get("broker", {}))
        files = self.device_files(address)
        if len(self.data.get("broker", {})) != accounts and self.path.exists():
            self.save()  # a device provisioned before broker accounts: its password is kept
        for name, value in files.items():
            p = out / name
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(value, f)
            written.append(p)
        return written

    def key_add_frame(self, entry: Entry) -> bytes:
        """The encrypted frame that gives a deployed device this key, sealed by the cloud."""
        admin = next(e for e in self.entries(entry.device)
                     if e.admin and e.peer == self.cloud and e.key_id != entry.key_id)
        return builders.key_add(entry.device, self.cloud, self.counter(self.cloud).next(),
                                admin.device_key(), entry.key_id, entry.peer, entry.secret,
                                entry.classes, entry.group, entry.admin)

    def key_retire_frame(self, device: int, key_id: int, peer: int) -> bytes:
        """The frame that retires a key, sealed with the newest cloud admin key."""
        return builders.key_retire(device, self.cloud, self.counter(self.cloud).next(),
                                   self.sender_key(self.cloud, device), key_id, peer)
