"""Key management commands: add a key to a node's keyring, retire one.

Only a peer holding an admin key (the cloud that provisioned the device) may
send them, a new key only travels encrypted, and the last admin key cannot be
retired, so a device can always be reached again. Both are idempotent (the
same add or retire delivered twice changes nothing the second time), and a key
id in use is never overwritten by another key. Adding a key before
retiring the old one is how keys rotate without losing queued messages:
frames already queued under the old key still verify until it is retired.
"""
from spot import frame, keyring, messages
from spot.errors import BAD_VALUE, INSECURE, NOT_PERMITTED


def apply(ring, f, body):
    """Carry out the key command in (frame f, payload body); (ack status, reason)."""
    sender = ring.find(f.src, f.key_id) if f.flags & frame.FLAG_SECURED else None
    if sender is None or not sender.admin:
        return messages.ACK_REFUSED, NOT_PERMITTED
    kind = body.get(messages.K_KIND)
    key_id = body.get(messages.K_KEY_ID)
    peer = body.get(messages.K_KEY_PEER)
    if not isinstance(key_id, int) or not isinstance(peer, int):
        return messages.ACK_REFUSED, BAD_VALUE
    if kind == messages.CORE_KEY_ADD:
        if not f.flags & frame.FLAG_ENCRYPTED:
            return messages.ACK_REFUSED, INSECURE  # a key never travels in clear
        secret = body.get(messages.K_KEY_SECRET)
        classes = body.get(messages.K_KEY_CLASSES)
        flags = body.get(messages.K_KEY_FLAGS, 0)
        if not isinstance(secret, bytes) or not isinstance(classes, int) or not isinstance(flags, int):
            return messages.ACK_REFUSED, BAD_VALUE
        held = ring.find(peer, key_id)
        if held is not None:
            # Delivered again (a resend, a power cut before the commit): the same
            # key is already there, window and rights included. A different key
            # under a used id is refused: retire first, or use a new id.
            same = held.to_record()["key"] == "".join("%02x" % b for b in secret)
            return (messages.ACK_APPLIED, 0) if same else (messages.ACK_REFUSED, BAD_VALUE)
        try:
            ring.add(keyring.Key(key_id, peer, secret, classes, bool(flags & 1), bool(flags & 2)))
        except ValueError:
            return messages.ACK_REFUSED, BAD_VALUE
        return messages.ACK_APPLIED, 0
    if kind == messages.CORE_KEY_RETIRE:
        target = ring.find(peer, key_id)
        if target is None:
            return messages.ACK_APPLIED, 0  # already gone: a retire delivered again
        if target.admin and sum(1 for k in ring.keys if k.admin) == 1:
            return messages.ACK_REFUSED, NOT_PERMITTED  # never lock the device out
        ring.retire(peer, key_id)
        return messages.ACK_APPLIED, 0
    return messages.ACK_UNSUPPORTED, 0
