"""A role's reports to the cloud (service DEVICE, class REPORT; SPEC.md 12.4): its state
after a command, a fault change, a boot, or when the telemetry period is up, and its
capability record on first contact and whenever it changes.

Loaded by node.py's report() on a role's device (a generic node reports its status
itself).
"""
from binascii import crc32

try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from spot import cbor, frame, journal
from spot.errors import SpotError
from spot.objects import Time

# spot.messages' numbers this module uses: private, free at run time.
_K_KIND = const(0)
_SVC_DEVICE = const(6)

# The role contract's numbers this module uses (spot/role_codes.py names them all).
_CFG_TELEMETRY_S = const(1)
_REPORT_STATE = const(1)
_REPORT_CAPS = const(2)
_C_SHED_W = const(4)
_S_RESET = const(9)
_S_TIME = const(13)
_C_STORE = const(15)


def _local(r):
    """What the device itself may change and the cloud should hear of: the outputs
    (relay bits) and what the user asked for locally (a plug's button: "want")."""
    return r.outputs() | (r.st.get("want", 0) or 0) << 8


def due(node, now):
    """Whether the role's state is worth a report: after a command, a boot, a fault or an
    output (or local request) change, or when the telemetry period is up. The one
    predicate of a sleepy wake's report and a connected device's report on change."""
    r = node.role
    app = node.journal.app
    return (node.commanded or node.reset_cause is not None or r.fault != app.get("flt")
            or _local(r) != app.get("out")
            or now - app.get("rep", -1 << 40) >= r.get(_CFG_TELEMETRY_S))


def report(node):
    """Into the outbox, committed: the wake cycle sends them."""
    r = node.role
    app = node.journal.app
    now = node.now()
    out = []
    if due(node, now):
        body = r.state()
        body[_K_KIND] = _REPORT_STATE
        body[_S_TIME] = Time(max(0, now))
        if node.reset_cause is not None:
            body[_S_RESET] = node.reset_cause
        out.append(body)
    caps = r.caps()
    # What changes by the minute (power to shed now, the store) is not a change.
    sig = crc32(repr([(k, caps[k]) for k in sorted(caps)
                      if k != _C_SHED_W and k != _C_STORE]).encode())
    if sig != app.get("cap"):
        caps[_K_KIND] = _REPORT_CAPS
        out.append(caps)
    try:
        for body in out:
            buf = node.sender.seal(_SVC_DEVICE, 1, frame.CLASS_REPORT, node.cloud,
                                   cbor.encode(body))
            if not node.journal.add(journal.PRIO_TELEMETRY, buf):
                node.emit("outbox_full", dropped=node.journal.dropped)
            if body[_K_KIND] == _REPORT_CAPS:
                app["cap"] = sig
            else:
                app["rep"] = now
                app["flt"] = r.fault
                app["out"] = _local(r)
        node.reset_cause = None
        node.commanded = False
        node.journal.commit()
    except (SpotError, OverflowError, OSError) as e:
        node.emit("refused", what="no report: %r" % (e,))
