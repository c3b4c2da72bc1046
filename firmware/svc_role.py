"""A role's device (role.py) takes demand response, price forecasts and device commands
itself: within its device's limits, it applies, adapts or refuses, and acts at once.

Loaded by node.py on the first such frame; a wake with nothing for the role never
imports it. The state report that follows is role_report.py's.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from spot.objects import Schedule

# spot.messages' numbers this module uses: private, free at run time.
_ACK_APPLIED = const(0)
_ACK_ADAPTED = const(1)
_FC_ENERGY_PRICE = const(1)
_K_FC_SCHEDULE = const(1)
_ACK_REFUSED = const(2)
_SVC_DR = const(2)
_SVC_PRICE = const(3)
_ACK_UNSUPPORTED = const(4)

# The role contract's numbers this module uses (spot/role_codes.py names them all).
_R_SAFE_MODE = const(40)


def apply(node, f, kind, body):
    """(ack status, reason) from the role; emits what was applied or refused."""
    r = node.role
    service = f.service
    now = node.now_ms()
    if r.safe:  # repeated failed boots: outputs held safe, nothing new taken on
        node.emit("refused", what="safe mode", status=_ACK_REFUSED, reason=_R_SAFE_MODE)
        return _ACK_REFUSED, _R_SAFE_MODE
    if service == _SVC_PRICE:
        s = body.get(_K_FC_SCHEDULE)
        if kind != _FC_ENERGY_PRICE or not isinstance(s, Schedule) or not s.values:
            return _ACK_UNSUPPORTED, 0
        r.forecast(s.base, s.interval(), list(s.values))
        status, reason = _ACK_APPLIED, 0
    elif service == _SVC_DR:
        status, reason = r.demand(kind, body, now)
    else:
        status, reason = r.command(kind, body, now)
    if status <= _ACK_ADAPTED:
        node.journal.app["applied"] += 1
        node.commanded = True
        r.control(now)  # act at once: the state report shows the result
    node.emit("applied" if status <= _ACK_ADAPTED else "refused",
              what="service %d kind %r" % (service, kind), svc=service, kind=kind,
              status=status, reason=reason)
    return status, reason
