"""The status report of a node without a role (service CORE, class REPORT): its
time, its wakes, the outbox entries it had to drop, the commands it applied.

Loaded by node.py's report() on a generic node (a role's device sends its state
and capability record instead: role_report.py).
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from spot import cbor, frame, journal
from spot.errors import SpotError
from spot.objects import Time

# spot.messages' numbers this module uses: private, free at run time.
_SVC_CORE = const(1)

_K_ST_TIME = const(1)
_K_ST_WAKES = const(2)
_K_ST_DROPPED = const(3)  # outbox entries dropped because the journal was full
_K_ST_APPLIED = const(4)


def report(node):
    """Into the outbox, committed: the wake cycle sends it."""
    app = node.journal.app
    body = {_K_ST_TIME: Time(max(0, node.now())), _K_ST_WAKES: app["wakes"],
            _K_ST_DROPPED: node.journal.dropped, _K_ST_APPLIED: app["applied"]}
    try:
        buf = node.sender.seal(_SVC_CORE, 1, frame.CLASS_REPORT, node.cloud,
                               cbor.encode(body))
        if not node.journal.add(journal.PRIO_TELEMETRY, buf):
            node.emit("outbox_full", dropped=node.journal.dropped)
        node.journal.commit()
    except (SpotError, OverflowError, OSError) as e:  # no key, counter spent, flash full
        node.emit("refused", what="no report: %r" % (e,))
