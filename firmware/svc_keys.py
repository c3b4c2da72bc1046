"""Key management (service CORE, class COMMAND): keys added and retired (spot.key_admin).

Loaded by node.py only when a key command comes: most wakes never see one.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from spot import key_admin
from spot.errors import NAMES

# spot.messages' numbers this module uses: private, free at run time.
_ACK_APPLIED = const(0)
_CORE_KEY_ADD = const(1)
_K_KEY_ID = const(1)
_K_KEY_PEER = const(2)


def apply(node, f, kind, body):
    """(ack status, reason); emits what was applied or why not."""
    status, reason = key_admin.apply(node.keyring, f, body)
    if status == _ACK_APPLIED:
        node.journal.app["applied"] += 1
        node.emit("applied", what="key %d of %08x %s" % (
            body.get(_K_KEY_ID), body.get(_K_KEY_PEER),
            "added" if kind == _CORE_KEY_ADD else "retired"))
    else:
        node.emit("refused", what="key command: %s" % NAMES.get(reason, reason))
    return status, reason
