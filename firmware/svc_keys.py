"""Key management (service CORE, class COMMAND): keys added and retired (spot.key_admin).

Loaded by node.py only when a key command comes: most wakes never see one.
"""
from spot import key_admin, messages
from spot.errors import NAMES


def apply(node, f, kind, body):
    """(ack status, reason); emits what was applied or why not."""
    status, reason = key_admin.apply(node.keyring, f, body)
    if status == messages.ACK_APPLIED:
        node.journal.app["applied"] += 1
        node.emit("applied", what="key %d of %08x %s" % (
            body.get(messages.K_KEY_ID), body.get(messages.K_KEY_PEER),
            "added" if kind == messages.CORE_KEY_ADD else "retired"))
    else:
        node.emit("refused", what="key command: %s" % NAMES.get(reason, reason))
    return status, reason
