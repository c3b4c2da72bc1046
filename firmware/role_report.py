"""A role's reports to the cloud (service DEVICE, class REPORT; SPEC.md 12.4): its state
after a command, a fault change, a boot, or when the telemetry period is up, and its
capability record on first contact and whenever it changes.

Loaded by node.py's report() on a role's device (a generic node reports its status
itself).
"""
from binascii import crc32

import role  # role.C_SHED_W and the rest: no global of this module for each (its heap)
from spot import cbor, frame, journal, messages
from spot.errors import SpotError
from spot.objects import Time


def report(node):
    """Into the outbox, committed: the wake cycle sends them."""
    r = node.role
    app = node.journal.app
    now = node.now()
    out = []
    if (node.commanded or node.reset_cause is not None or r.fault != app.get("flt")
            or now - app.get("rep", -1 << 40) >= r.get(role.CFG_TELEMETRY_S)):
        body = r.state()
        body[messages.K_KIND] = role.REPORT_STATE
        body[role.S_TIME] = Time(max(0, now))
        if node.reset_cause is not None:
            body[role.S_RESET] = node.reset_cause
        out.append(body)
    caps = r.caps()
    # What changes by the minute (power to shed now, the store) is not a change.
    sig = crc32(repr([(k, caps[k]) for k in sorted(caps)
                      if k != role.C_SHED_W and k != role.C_STORE]).encode())
    if sig != app.get("cap"):
        caps[messages.K_KIND] = role.REPORT_CAPS
        out.append(caps)
    try:
        for body in out:
            buf = node.sender.seal(messages.SVC_DEVICE, 1, frame.CLASS_REPORT, node.cloud,
                                   cbor.encode(body))
            if not node.journal.add(journal.PRIO_TELEMETRY, buf):
                node.emit("outbox_full", dropped=node.journal.dropped)
            if body[messages.K_KIND] == role.REPORT_CAPS:
                app["cap"] = sig
            else:
                app["rep"] = now
                app["flt"] = r.fault
        node.reset_cause = None
        node.commanded = False
        node.journal.commit()
    except (SpotError, OverflowError, OSError) as e:
        node.emit("refused", what="no report: %r" % (e,))
