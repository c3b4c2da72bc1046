"""The keys a device (or controller) holds, who each belongs to, what each may do.

Each entry binds one key to one peer address and key id, with the message
classes that peer may send under it. A pairing is a pairwise key: the device
and one controller (or the cloud) share it. A group key is held by every device
of a group so one frame can reach them all; any holder could forge with it, so
it may carry informational signals only: no command, no time. Each entry keeps its
own replay window, so a forger holding a group key cannot disturb the windows
of pairwise keys. Key bytes never appear in repr() or in errors.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from binascii import hexlify

from spot import crypto, storage

MAX_KEYS = const(16)
WINDOW = const(64)  # frames a sender's counter may arrive out of order
KEY_SIZE = const(32)
GROUP_CLASSES = const(0x02)  # INFO only: what a group key may carry


class Key:
    """One key: its owner, its rights, its derived subkeys, its replay window."""

    __slots__ = ("key_id", "peer", "classes", "group", "admin", "_secret", "_mac", "_enc",
                 "highest", "seen")

    def __init__(self, key_id, peer, secret, classes, group=False, admin=False):
        if not 0 <= key_id <= 255:
            raise ValueError("key id must be 0..255")
        if len(secret) != KEY_SIZE:
            raise ValueError("a key is %d bytes" % KEY_SIZE)
        if group and classes & ~GROUP_CLASSES:
            raise ValueError("a group key may carry INFO only")
        if group and admin:
            raise ValueError("a group key cannot manage keys")
        self.key_id = key_id
        self.peer = peer
        self.classes = classes
        self.group = group
        self.admin = admin
        self._secret = bytes(secret)
        self._mac = None  # the subkeys, derived on first use: a wake that never
        self._enc = None  # sees the group key (or an encrypted frame) never pays for them
        self.highest = 0  # the highest counter accepted under this key
        self.seen = 0  # bit i: counter highest - i was accepted

    @property
    def mac(self):
        """HMAC-SHA256 under the MAC subkey (pads prepared once)."""
        m = self._mac
        if m is None:
            m = self._mac = crypto.Hmac(crypto.derive(self._secret, b"mac"))
        return m

    @property
    def enc(self):
        """The AES-128 subkey of encrypted payloads."""
        e = self._enc
        if e is None:
            e = self._enc = crypto.derive(self._secret, b"enc")[:16]
        return e

    def permits(self, cls):
        return bool(self.classes & (1 << cls))

    def check_fresh(self, seq):
        """True if seq was never accepted and is not older than the window."""
        if seq > self.highest:
            return True
        age = self.highest - seq
        return age < WINDOW and not (self.seen >> age) & 1

    def mark_seen(self, seq):
        if seq > self.highest:
            shift = seq - self.highest
            self.seen = ((self.seen << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            self.highest = seq
        else:
            self.seen |= 1 << (self.highest - seq)

    def to_record(self):
        """The entry as stored on the device (this includes the secret: flash only)."""
        return {"id": self.key_id, "peer": self.peer, "classes": self.classes,
                "group": self.group, "admin": self.admin, "key": _hex(self._secret)}

    def __repr__(self):
        return "Key(id=%d, peer=%08x, classes=%02x%s%s)" % (
            self.key_id, self.peer, self.classes, ", group" if self.group else "",
            ", admin" if self.admin else "")


def _hex(b):
    return hexlify(b).decode()  # in C, built into every port: no string per byte


class Keyring:
    """The keys of one node, with their replay windows.

    keys_path holds the entries (written only when keys change). The windows
    are either kept by the caller (the firmware commits them in its journal,
    with the effects they cover: windows() and restore_windows()) or in
    window_path, written by checkpoint().
    """

    def __init__(self, keys_path=None, window_path=None):
        self.keys_path = keys_path
        self.window_path = window_path
        self.keys = []
        self.dirty = False
        records = storage.load(keys_path) if keys_path else None
        for r in records or ():
            self.keys.append(Key(r["id"], r["peer"], bytes.fromhex(r["key"]), r["classes"],
                                 r.get("group", False), r.get("admin", False)))
        self.restore_windows(storage.load(window_path) if window_path else None)

    def find(self, peer, key_id):
        for k in self.keys:
            if k.key_id == key_id and k.peer == peer:
                return k
        return None

    def for_peer(self, peer):
        """The newest pairwise key shared with peer (the one to send with), or None."""
        best = None
        for k in self.keys:
            if k.peer == peer and not k.group:
                best = k
        return best

    def add(self, key, save=True):
        """Add or replace (same peer and key id) an entry; the old window goes with it."""
        old = self.find(key.peer, key.key_id)
        if old is not None:
            self.keys.remove(old)
        elif len(self.keys) >= MAX_KEYS:
            raise ValueError("keyring full (%d keys)" % MAX_KEYS)
        self.keys.append(key)
        if save:
            self.save()
        return key

    def retire(self, peer, key_id, save=True):
        k = self.find(peer, key_id)
        if k is None:
            return False
        self.keys.remove(k)
        if save:
            self.save()
        return True

    def save(self):
        if self.keys_path:
            storage.save(self.keys_path, [k.to_record() for k in self.keys])

    def windows(self):
        """The replay windows as records, for a caller that persists them itself."""
        return [[k.peer, k.key_id, k.highest, k.seen] for k in self.keys]

    def restore_windows(self, records):
        for w in records or ():
            k = self.find(w[0], w[1])
            if k is not None:
                k.highest, k.seen = w[2], w[3]

    def checkpoint(self):
        """Persist the replay windows (call before acting on frames whose effects persist)."""
        if self.window_path and self.dirty:
            storage.save(self.window_path, self.windows())
        self.dirty = False

    def __repr__(self):
        return "Keyring(%r)" % (self.keys,)
