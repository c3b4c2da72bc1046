"""What every device role shares: the command contract, the output guard, reasons.

A role is a controller in front of its device (DESIGN.md): it takes high-level
commands and informational signals, decides how to carry them out within the
device's own limits, and may refuse or adapt a command that would break them;
its answer (status, reason) goes back in the command's ACK (SPEC.md 12).

The node (node.py) calls, on a role object:
    command(kind, body, now_ms) -> (status, reason)  SVC_DEVICE commands
    demand(kind, body, now_ms)  -> (status, reason)  SVC_DR commands
    forecast(base_s, step_s, values)                 SVC_PRICE forecasts
    control(now_ms)                                   one control step (often)
    state() -> dict                                   the state report body
    outputs() -> int                                  its relay bits alone (12.5 key 4)
    caps() -> dict                                    the capability record
Each role keeps what must survive a reboot in `self.st`, a dict inside the
journal's app state (committed with the wake), and its settings in `self.cfg`.
"""
try:
    from micropython import const
    from time import ticks_diff
except ImportError:
    from spot._cpython import const, ticks_diff

from spot.payload import is_int  # a boolean is no integer, on every interpreter (SPEC 6)

# The numbers role.py uses, private: free at run time (their names and the rest of
# the contract: spot/role_codes.py, which a board never loads).
_APPLIED = const(0)
_K_DEV_VALUE = const(1)
_REFUSED = const(2)
_K_DEV_DURATION = const(2)
_K_DEV_SETTINGS = const(3)
_EXPIRED = const(3)
_DEV_CONFIG = const(4)
_UNSUPPORTED = const(4)
_BAD_VALUE = const(9)
_R_RANGE = const(32)

RESETS = ("power_on", "hard", "watchdog", "deep_sleep", "soft")

# Role name -> (module, class): the only place that knows which roles exist.
_ROLE_MODULES = {
    "thermostat": ("thermostat", "Thermostat"),
    "smart_plug": ("smart_plug", "SmartPlug"),
    "heat_pump": ("heat_pump", "HeatPump"),
}


def make(name, board, node, power_on=False):
    """The role called `name` for this node, its state and settings in the node's journal.

    Made once per boot (kept on the board object, which lives as long as the
    boot) and bound again to each wake's state from flash, so a wake never
    restarts a minimum on or off time.
    """
    app = node.journal.app
    st = app.setdefault("role", {})
    cfg = app.setdefault("cfg", {})
    r = getattr(board, "live_role", None)
    if r is None or r.name != name:
        where = _ROLE_MODULES.get(name)
        if where is None:
            raise ValueError("no role called %r" % (name,))
        # Imported by name on first use: a board loads its own role's module
        # only, and this module imports no role (each role imports it).
        cls = getattr(__import__(where[0]), where[1])
        r = cls(board, st, cfg, power_on)
        r.name = name
        board.live_role = r
    r.bind(st, cfg, node.sch)  # None until a schedule arrives (node.schedule sets it)
    return r


class Guard:
    """Minimum on and off times of one output (a relay, a compressor), by the board's ticks.

    After a boot the output counts as just switched, so a reboot can never
    shorten a minimum off (or run) time.
    """

    def __init__(self, ticks, min_on_ms, min_off_ms, on=False):
        self.ticks = ticks
        self.min_on = min_on_ms
        self.min_off = min_off_ms
        self.on = on
        self.since = ticks()
        self.settled = False  # held longer than any minimum: ticks may wrap, it stays so

    def settle(self):
        """Call often (every control step): once an output has held its state for
        its minimum times, that is remembered, so the ticks' wrap (every 12.4 days)
        can never make a long-held state look new."""
        if not self.settled:
            d = ticks_diff(self.ticks(), self.since)
            if d < 0 or d >= max(self.min_on, self.min_off):
                self.settled = True
        return self.settled

    def held_ms(self):
        return 1 << 29 if self.settle() else ticks_diff(self.ticks(), self.since)

    def may(self, on):
        """Whether the output may be switched to `on` now."""
        if on == self.on:
            self.settle()
            return True
        return self.held_ms() >= (self.min_on if self.on else self.min_off)

    def switched(self, on):
        if on != self.on:
            self.on = on
            self.since = self.ticks()
            self.settled = False


class Role:
    """The shared part: settings, the demand-response slot, and the default answers."""

    ROLE = 0
    DEFAULTS = {}

    def __init__(self, board, st, cfg, power_on=False):
        self.board = board
        self.name = ""
        self.fault = 0
        self.safe = False  # safe mode (device.py): the device's own safe state, no commands
        self.urgent = False  # state worth a flash write now (the node commits it)
        self.sch = None
        self.bind(st, cfg, None)

    def bind(self, st, cfg, sch):
        """This wake's durable state: st survives reboots, cfg holds the settings
        (DEFAULTS for what is unset), both in the journal's app state."""
        self.st = st
        self.cfg = cfg
        self.sch = sch  # the node's scheduler (a thermostat's program lives there)

    def outputs(self):
        """The relay bits of the state report (12.5 key 4), without building the report:
        a connected device asks at every control step whether they changed. A role with
        one relay, `self.relay`, has this; the others say theirs."""
        return 1 if self.relay.on else 0

    def get(self, key):
        return self.cfg.get(str(key), self.DEFAULTS.get(key, 0))

    def configure(self, settings):
        """A DEV_CONFIG command: all of it or none of it. (status, reason). The ranges
        and the check are role_config.py's, loaded on the first such command."""
        from role_config import configure

        return configure(self, settings)

    # The demand-response slot: [kind, amount, unit, start ms, end ms] or None.
    def dr_active(self, now_ms):
        d = self.st.get("dr")
        if d is None:
            return None
        if now_ms >= d[4]:
            self.st["dr"] = None
            return None
        return d if now_ms >= d[3] else None

    def forecast(self, base_s, step_s, values):
        self.st["fc"] = [base_s, step_s, values, sum(values) // len(values)]

    def price_at(self, t_ms):
        """(price at t, mean of the forecast) or None outside it."""
        fc = self.st.get("fc")
        if not fc or not fc[1]:
            return None
        i = (t_ms // 1000 - fc[0]) // fc[1]
        if not 0 <= i < len(fc[2]):
            return None
        return fc[2][i], fc[3]

    def demand(self, kind, body, now_ms):
        """A demand-response command (SVC_DR): checked here, carried out by plan()."""
        from spot.objects import Analog, Time

        if not is_int(kind) or not 1 <= kind <= 5:  # SPEC 6: an unknown kind is unsupported
            return _UNSUPPORTED, 0
        amount = body.get(1)
        start = body.get(2)
        dur = body.get(3, 0)
        until = body.get(4)
        if (start is not None and not isinstance(start, Time)) or not is_int(dur) or (
                until is not None and not isinstance(until, Time)):
            return _REFUSED, _BAD_VALUE  # SPEC 6: a known field of the wrong type
        if dur < 0:
            return _REFUSED, _R_RANGE
        if until is not None and now_ms // 1000 > until.seconds:
            return _EXPIRED, 0
        if kind == 3:  # restore
            self.st["dr"] = None
            return _APPLIED, 0
        if amount is not None and not isinstance(amount, Analog):
            return _REFUSED, _BAD_VALUE
        t0 = start.seconds * 1000 if start else now_ms
        # Without a duration it holds until a restore, a day at most.
        return self.plan(kind, amount, body, t0, t0 + (dur or 86400) * 1000, now_ms)

    def plan(self, kind, amount, body, t0, t1, now_ms):
        return _UNSUPPORTED, 0

    def command(self, kind, body, now_ms):
        """A device command (SVC_DEVICE): settings here, the rest by act()."""
        if kind == _DEV_CONFIG:
            return self.configure(body.get(_K_DEV_SETTINGS))
        value = body.get(_K_DEV_VALUE)
        dur = body.get(_K_DEV_DURATION, 0)
        if not is_int(dur):
            return _REFUSED, _BAD_VALUE
        if dur < 0:
            return _REFUSED, _R_RANGE
        return self.act(kind, value, dur, now_ms)

    def act(self, kind, value, dur, now_ms):
        return _UNSUPPORTED, 0


def scaled(a, unit, scale):
    """An Analog's value in `unit` at 10**scale, as an int; None for another unit."""
    if a is None or a.unit != unit or not isinstance(a.value, int):
        return None
    d = a.scale - scale
    if d >= 0:
        return a.value * 10 ** d
    return a.value // 10 ** -d
