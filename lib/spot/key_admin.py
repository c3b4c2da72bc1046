"""Key management commands: add a key to a node's keyring, retire one.

Only a peer holding an admin key (the cloud that provisioned the device) may
send them, a new key only travels encrypted, and the last admin key cannot be
retired, so a device can always be reached again. Both are idempotent (the
same add or retire delivered twice changes nothing the second time), and a key
id in use is never overwritten by another key. Adding a key before
retiring the old one is how keys rotate without losing queued messages:
frames already queued under the old key still verify until it is retired.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from spot import frame, keyring
from spot.errors import BAD_VALUE, INSECURE, NOT_PERMITTED
from spot.payload import is_int

# spot.messages' numbers this module uses: private, free at run time.
_ACK_APPLIED = const(0)
_K_KIND = const(0)
_CORE_KEY_ADD = const(1)
_K_KEY_ID = const(1)
_ACK_REFUSED = const(2)
_CORE_KEY_RETIRE = const(2)
_K_KEY_PEER = const(2)
_K_KEY_SECRET = const(3)
_ACK_UNSUPPORTED = const(4)
_K_KEY_CLASSES = const(4)
_K_KEY_FLAGS = const(5)


_PEER_MAX = const(0x7FFFFFFF)  # a device or controller, never a group (SPEC 1, 7.4)
_FLAGS_KNOWN = const(0x03)  # bit 0 group, bit 1 admin


def _field(v, lo, hi):
    # SPEC 7.4: an integer in range; a boolean is no integer, on any interpreter.
    return is_int(v) and lo <= v <= hi


def apply(ring, f, body):
    """Carry out the key command in (frame f, payload body); (ack status, reason).

    Every field is checked before anything changes (SPEC 7.4): kind 1 or 2;
    key id 0..255; peer 1..2^31-1; key a 32-byte string; class mask 1..255;
    flags 0..3 (an unknown flag bit is refused, not ignored: it could restrict
    the key). A field of the wrong type or out of range: refused, bad value.
    """
    sender = ring.find(f.src, f.key_id) if f.flags & frame.FLAG_SECURED else None
    if sender is None or not sender.admin:
        return _ACK_REFUSED, NOT_PERMITTED
    kind = body.get(_K_KIND)
    if kind is not None and not is_int(kind):
        return _ACK_REFUSED, BAD_VALUE  # a missing kind is unknown: unsupported
    if kind != _CORE_KEY_ADD and kind != _CORE_KEY_RETIRE:
        return _ACK_UNSUPPORTED, 0
    key_id = body.get(_K_KEY_ID)
    peer = body.get(_K_KEY_PEER)
    if not _field(key_id, 0, 255) or not _field(peer, 1, _PEER_MAX):
        return _ACK_REFUSED, BAD_VALUE
    if kind == _CORE_KEY_ADD:
        if not f.flags & frame.FLAG_ENCRYPTED:
            return _ACK_REFUSED, INSECURE  # a key never travels in clear
        secret = body.get(_K_KEY_SECRET)
        classes = body.get(_K_KEY_CLASSES)
        flags = body.get(_K_KEY_FLAGS, 0)
        if not isinstance(secret, bytes) or len(secret) != keyring.KEY_SIZE or not _field(
                classes, 1, 255) or not _field(flags, 0, _FLAGS_KNOWN):
            return _ACK_REFUSED, BAD_VALUE
        held = ring.find(peer, key_id)
        if held is not None:
            # Delivered again (a resend, a power cut before the commit): the same
            # key is already there, window and rights included. A different key
            # under a used id is refused: retire first, or use a new id.
            same = held.to_record()["key"] == "".join("%02x" % b for b in secret)
            return (_ACK_APPLIED, 0) if same else (_ACK_REFUSED, BAD_VALUE)
        try:
            ring.add(keyring.Key(key_id, peer, secret, classes, bool(flags & 1), bool(flags & 2)))
        except ValueError:
            return _ACK_REFUSED, BAD_VALUE
        return _ACK_APPLIED, 0
    target = ring.find(peer, key_id)
    if target is None:
        return _ACK_APPLIED, 0  # already gone: a retire delivered again
    if target.admin and sum(1 for k in ring.keys if k.admin) == 1:
        return _ACK_REFUSED, NOT_PERMITTED  # never lock the device out
    ring.retire(peer, key_id)
    return _ACK_APPLIED, 0
