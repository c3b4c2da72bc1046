"""Price forecasts (service PRICE) on a node without a role: recorded, and under a
price rule (svc_schedule.py) each cheap window becomes a schedule event.

Loaded by node.py on the first forecast (a role's device hands forecasts to its
role instead: svc_role.py).
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from spot.objects import Schedule

# spot.messages' numbers this module uses: private, free at run time.
_ACK_APPLIED = const(0)
_FC_ENERGY_PRICE = const(1)
_K_FC_SCHEDULE = const(1)
_K_FC_CURRENCY = const(2)
_ACK_UNSUPPORTED = const(4)


def scaled(v, scale):
    """v * 10**scale as text, without floats (a board may have none)."""
    if scale >= 0:
        return str(v * 10 ** scale)
    d = 10 ** -scale
    sign = "-" if v < 0 else ""
    v = abs(v)
    frac = str(v % d)
    return "%s%d.%s%s" % (sign, v // d, "0" * (-scale - len(frac)), frac)


def apply(node, f, kind, body):
    """(ack status, reason); emits what was applied or why not."""
    s = body.get(_K_FC_SCHEDULE)
    if kind != _FC_ENERGY_PRICE or not isinstance(s, Schedule) or not s.values:
        node.emit("refused", what="forecast kind %r" % (kind,))
        return _ACK_UNSUPPORTED, 0
    app = node.journal.app
    app["forecast"] = [s.base, s.interval(), list(s.values), s.scale]
    rule = app.get("rule")
    if rule and s.interval():
        from spot.schedule import ScheduleError, price_windows

        # Each cheap window of the forecast becomes an event (ids from 0x8000).
        for k, (start, dur) in enumerate(price_windows(s.base * 1000, s.interval() * 1000,
                                                       list(s.values), rule[0], rule[1])[:4]):
            try:
                node.schedule.add_event(0x8000 + (s.base // 3600 + k) % 0x7FFF, start, dur)
            except ScheduleError:
                break
        app["sch"] = node.schedule.to_record()
    app["applied"] += 1
    node.emit("applied", what="price forecast: %d steps, %s..%s per MWh" % (
        len(s.values), scaled(min(s.values), s.scale), scaled(max(s.values), s.scale)),
        start=s.base, step=s.interval(),
        currency=body.get(_K_FC_CURRENCY))
    return _ACK_APPLIED, 0
