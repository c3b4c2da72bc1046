"""Demand response (service DR) on a node without a role: what is in force, recorded.

Loaded by node.py on the first demand-response command (a role's device hands
them to its role instead: svc_role.py). A timed event becomes a schedule event,
so it fires by the corrected clock, once, even across reboots.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from spot.errors import BAD_VALUE
from spot.objects import UNIT_PERCENT, UNIT_W, Analog, Time
from spot.payload import is_int
from svc_price import scaled  # prices and amounts print alike

# spot.messages' numbers this module uses: private, free at run time.
_ACK_APPLIED = const(0)
_DR_REDUCE = const(1)
_K_DR_AMOUNT = const(1)
_ACK_REFUSED = const(2)
_DR_LIMIT = const(2)
_K_DR_START = const(2)
_ACK_EXPIRED = const(3)
_DR_RESTORE = const(3)
_K_DR_DURATION = const(3)
_ACK_UNSUPPORTED = const(4)
_DR_SHUT_DOWN = const(4)
_K_DR_VALID_UNTIL = const(4)
_DR_KEEP_BAND = const(5)

_UNITS = {UNIT_PERCENT: " %", UNIT_W: " W"}
_NAMES = {
    _DR_REDUCE: "reduce",
    _DR_LIMIT: "limit",
    _DR_RESTORE: "restore",
    _DR_SHUT_DOWN: "shut down",
    _DR_KEEP_BAND: "keep band",
}


def apply(node, f, kind, body):
    """(ack status, reason); emits what was applied or why not."""
    name = _NAMES.get(kind)
    if name is None:
        node.emit("refused", what="demand response kind %r" % (kind,))
        return _ACK_UNSUPPORTED, 0
    amount = body.get(_K_DR_AMOUNT)
    start = body.get(_K_DR_START)
    duration = body.get(_K_DR_DURATION, 0)
    until = body.get(_K_DR_VALID_UNTIL)
    if kind in (_DR_REDUCE, _DR_LIMIT) and not isinstance(amount, Analog):
        node.emit("refused", what=name + " without an amount")
        return _ACK_REFUSED, BAD_VALUE
    if (start is not None and not isinstance(start, Time)) or not is_int(duration) or (
            until is not None and not isinstance(until, Time)):
        node.emit("refused", what=name + " with a bad start, duration or validity")
        return _ACK_REFUSED, BAD_VALUE
    if until is not None and node.now() > until.seconds:
        node.emit("expired", what=name, late_s=node.now() - until.seconds)
        return _ACK_EXPIRED, 0
    app = node.journal.app
    app["dr"] = None if kind == _DR_RESTORE else [
        kind, amount.value if amount else 0, amount.unit if amount else 0,
        amount.scale if amount else 0, start.seconds if start else None, duration]
    if start is not None and duration > 0 and kind != _DR_RESTORE:
        from spot.schedule import ScheduleError

        try:  # the event fires by the corrected clock, once, even across reboots
            node.schedule.add_event(node._seq & 0xFFFF, start.seconds * 1000, duration * 1000,
                                    0, kind)
            app["sch"] = node.schedule.to_record()
        except ScheduleError as e:
            node.emit("refused", what="schedule: %s" % e)
            return _ACK_REFUSED, BAD_VALUE
    app["applied"] += 1
    text = name
    if amount is not None:
        text += " " + scaled(amount.value, amount.scale) + _UNITS.get(amount.unit, "")
    if duration:
        text += " for %d s" % duration
    node.emit("applied", what=text, start=start.seconds if start else None)
    return _ACK_APPLIED, 0
