"""A role's device (role.py) takes demand response, price forecasts and device commands
itself: within its device's limits, it applies, adapts or refuses, and acts at once.

Loaded by node.py on the first such frame; a wake with nothing for the role never
imports it. The state report that follows is role_report.py's.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from spot import messages
from spot.objects import Schedule

# The role contract's numbers this module uses (spot/role_codes.py names them all).
_R_SAFE_MODE = const(40)


def apply(node, f, kind, body):
    """(ack status, reason) from the role; emits what was applied or refused."""
    r = node.role
    service = f.service
    now = node.now_ms()
    if r.safe:  # repeated failed boots: outputs held safe, nothing new taken on
        node.emit("refused", what="safe mode", status=messages.ACK_REFUSED, reason=_R_SAFE_MODE)
        return messages.ACK_REFUSED, _R_SAFE_MODE
    if service == messages.SVC_PRICE:
        s = body.get(messages.K_FC_SCHEDULE)
        if kind != messages.FC_ENERGY_PRICE or not isinstance(s, Schedule) or not s.values:
            return messages.ACK_UNSUPPORTED, 0
        r.forecast(s.base, s.interval(), list(s.values))
        status, reason = messages.ACK_APPLIED, 0
    elif service == messages.SVC_DR:
        status, reason = r.demand(kind, body, now)
    else:
        status, reason = r.command(kind, body, now)
    if status <= messages.ACK_ADAPTED:
        node.journal.app["applied"] += 1
        node.commanded = True
        r.control(now)  # act at once: the state report shows the result
    node.emit("applied" if status <= messages.ACK_ADAPTED else "refused",
              what="service %d kind %r" % (service, kind), svc=service, kind=kind,
              status=status, reason=reason)
    return status, reason
