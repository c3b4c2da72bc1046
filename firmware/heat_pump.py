"""Heat-pump adapter role: chooses SG Ready states, never against the compressor.

Whatever it is told, the adapter never:
  - blocks a compressor that has run less than its minimum run time (CFG_MIN_ON_S),
  - asks a compressor that has been off less than its minimum off time
    (CFG_MIN_OFF_S) to start (RECOMMENDED or FORCED),
  - blocks for more than 2 h at a stretch, or CFG_MAX_BLOCK_DAY_S in a day
    (by the corrected clock's UTC day), and after a block it releases for at
    least the minimum off time before blocking again,
  - blocks a store that is already cold (comfort) or forces a store that is hot.
Commands (DEV_SG_STATE, demand response) and price forecasts only choose among
the states these rules leave. A power limit under 4.2 kW is raised to 4.2 kW,
the floor German grid operators must leave a heat pump (EnWG 14a): a unit
smaller than that is never blocked for a limit.

Compressor state and store temperature come from the unit over Modbus RTU when
CFG_MODBUS_UNIT is set (holding registers 0: store 0.1 C, 1: running), else
from the board's input and sensor; a Modbus failure falls back to those and
says so (R_SENSOR).
"""
try:
    from micropython import const
    from time import ticks_diff
except ImportError:
    from spot._cpython import const, ticks_diff

import sg_ready
from role import Guard, Role, scaled

# The role contract's numbers this module uses (spot/role_codes.py names them all).
_APPLIED = const(0)
_ADAPTED = const(1)
_CFG_TELEMETRY_S = const(1)
_C_ROLE = const(1)
_S_ROLE = const(1)
_C_CONTROL = const(2)
_DEM_PAUSE = const(2)
_REFUSED = const(2)
_S_TEMP = const(2)
_C_NOMINAL_W = const(3)
_DEV_SG_STATE = const(3)
_ROLE_HEAT_PUMP = const(3)
_C_SHED_W = const(4)
_DEM_START_TIME = const(4)
_S2_FRBC = const(4)
_S_OUTPUTS = const(4)
_C_MAX_SHED_S = const(5)
_C_MIN_ON_S = const(6)
_C_MIN_OFF_S = const(7)
_S_SG = const(7)
_DEM_FORECAST_ADJUST = const(8)
_S_FAULT = const(8)
_CFG_MIN_ON_S = const(9)
_CFG_MIN_OFF_S = const(10)
_C_MODES = const(10)
_S_DR = const(10)
_C_MAX_BLOCK_S = const(11)
_CFG_MAX_BLOCK_DAY_S = const(12)
_C_MAX_BLOCK_DAY_S = const(12)
_S_BLOCKED_S = const(12)
_CFG_MODBUS_UNIT = const(13)
_C_FEATURES = const(13)
_C_POWER_FLOOR_W = const(14)
_C_STORE = const(15)
_R_RANGE = const(32)
_R_MIN_TIMES = const(33)
_R_MAX_BLOCK = const(35)
_R_POWER_FLOOR = const(36)
_R_SENSOR = const(38)
_R_SAFE_MODE = const(40)
_R_STORE = const(42)

_UNIT_W = const(1)
_UNIT_PERCENT = const(3)
_NOMINAL_W = const(2500)
_FLOOR_W = const(4200)
_MAX_BLOCK_MS = const(7080000)  # 2 h less two minutes: a control step may come late
_TWO_HOURS_MS = const(7200000)  # the longest block (what a reset may have hidden, at most)
_DAY_MS = const(86400000)
_MARGIN_MS = const(120000)
_AHEAD = const(3)  # forecast steps looked ahead for a peak
_PEAK = const(75)  # price rank (percent of the forecast cheaper) from which it blocks
_CHEAPEST = const(30)  # and under which it fills the store
_COLD = const(350)  # a store under 35 C is not blocked
_HOT = const(550)  # nor one over 55 C forced


class HeatPump(Role):
    ROLE = _ROLE_HEAT_PUMP
    DEFAULTS = {_CFG_TELEMETRY_S: 900, _CFG_MIN_ON_S: 600, _CFG_MIN_OFF_S: 600,
                _CFG_MAX_BLOCK_DAY_S: 21600, _CFG_MODBUS_UNIT: 0}

    def __init__(self, board, st, cfg, power_on=False):
        super().__init__(board, st, cfg)
        self.sg1 = board.relay("sg1")
        self.sg2 = board.relay("sg2")
        self.running_in = board.input("compressor")
        self.sg = sg_ready.state_of(self.sg1.on, self.sg2.on)
        # The compressor is observed, not driven: the guard tracks what it did.
        self.comp = Guard(board.ticks_ms, self.get(_CFG_MIN_ON_S) * 1000,
                          self.get(_CFG_MIN_OFF_S) * 1000, bool(self.running_in.value()))
        self.store = None
        self.why = 0
        self.blk_t0 = None  # board ticks when the current block began (this boot only)
        self.freed_t = None  # board ticks when the last block ended

    def bind(self, st, cfg, sch):
        super().bind(st, cfg, sch)
        st.setdefault("blk", [0, 0])  # [UTC day, ms blocked that day before the current block]
        st.setdefault("since", None)  # true ms the current block began
        st.setdefault("freed", None)  # true ms the last block ended

    def act(self, kind, value, dur, now_ms):
        if kind != _DEV_SG_STATE:
            return super().act(kind, value, dur, now_ms)
        if value not in (1, 2, 3, 4):
            return _REFUSED, _R_RANGE
        t1 = now_ms + (dur or 3600) * 1000
        status, reason = _APPLIED, 0
        if value == sg_ready.BLOCKED and t1 - now_ms > _MAX_BLOCK_MS:
            t1 = now_ms + _MAX_BLOCK_MS
            status, reason = _ADAPTED, _R_MAX_BLOCK
        self.st["cmd"] = [value, t1]
        self.control(now_ms)
        if self.sg != value and self.why:  # held back by a rule: say which, it may come later
            return _ADAPTED, self.why
        return status, reason

    def plan(self, kind, amount, body, t0, t1, now_ms):
        status, reason = _APPLIED, 0
        if kind == 1:
            pct = scaled(amount, _UNIT_PERCENT, 0)
            w = scaled(amount, _UNIT_W, 0)
            if (pct or w or 0) <= 0:
                return _REFUSED, _R_RANGE
        elif kind == 2:
            w = scaled(amount, _UNIT_W, 0)
            if w is None or w < 0:
                return _REFUSED, _R_RANGE
            if max(w, _FLOOR_W) >= _NOMINAL_W:  # within the floor: nothing to shed
                return (_ADAPTED, _R_POWER_FLOOR) if w < _FLOOR_W else (_APPLIED, 0)
        elif kind != 4:
            return _REFUSED, _R_RANGE
        if t1 - t0 > _MAX_BLOCK_MS:
            t1 = t0 + _MAX_BLOCK_MS
            status, reason = _ADAPTED, _R_MAX_BLOCK
        self.st["dr"] = [kind, 0, 0, t0, t1]
        if t0 <= now_ms:
            self.control(now_ms)
            if self.sg != sg_ready.BLOCKED and self.why:  # held back: say by what
                return _ADAPTED, self.why
        return status, reason

    # observation -----------------------------------------------------------------
    def observe(self):
        """(running, store 0.1 C or None); Modbus first when configured."""
        unit = self.get(_CFG_MODBUS_UNIT)
        self.fault = 0
        if unit:
            from modbus_rtu import ModbusError, read_holding

            try:
                r = read_holding(self.board.uart("modbus"), unit, 0, 2)
                return r[1] == 1, r[0] - 65536 if r[0] > 32767 else r[0]
            except ModbusError:
                self.fault = _R_SENSOR  # fall back to the contacts and the sensor
        t = self.board.temperature("store")
        if t is None or not -200 < t * 10 < 950 or t == 85.0:
            self.fault = _R_SENSOR
            t = None
        else:
            t = int(t * 10)
        return bool(self.running_in.value()), t

    # choice ------------------------------------------------------------------------
    def wanted(self, now_ms):
        """The state commands and prices ask for, before the rules."""
        if self.safe:
            return sg_ready.NORMAL  # safe mode: the unit runs on its own controller
        c = self.st.get("cmd")
        if c is not None:
            if now_ms < c[1]:
                return c[0]
            self.st["cmd"] = None
        if self.dr_active(now_ms) is not None:
            return sg_ready.BLOCKED
        r = self._rank(now_ms)
        if r is not None:
            if r >= _PEAK:
                return sg_ready.BLOCKED  # among the dearest hours: live on the store
            if r < _CHEAPEST:
                return sg_ready.FORCED  # among the cheapest: fill the store up
            step = self.st["fc"][1] * 1000
            for k in range(1, _AHEAD + 1):  # a peak ahead: fill the store before it
                q = self._rank(now_ms + k * step)
                if q is not None and q >= _PEAK:
                    return sg_ready.RECOMMENDED
        return sg_ready.NORMAL

    def _rank(self, t_ms):
        """Where the price at t ranks in its forecast, in percent (0 cheapest), or None."""
        p = self.price_at(t_ms)
        if p is None:
            return None
        vals = self.st["fc"][2]
        under = 0
        for v in vals:
            if v < p[0]:
                under += 1
        return under * 100 // len(vals)

    def allowed(self, want, now_ms, running, store):
        """The state the rules leave of `want` (self.why: the rule, when one held it back)."""
        self.why = 0
        new = self._allowed(want, now_ms, running, store)
        if new != want:
            self.why = self.why or _R_STORE
        return new

    def _allowed(self, want, now_ms, running, store):
        if want == sg_ready.BLOCKED:
            if store is None or store < _COLD:
                return sg_ready.NORMAL
            if self.sg != sg_ready.BLOCKED:
                if running and not self.comp.may(False):
                    self.why = _R_MIN_TIMES
                    return sg_ready.NORMAL  # let it finish its minimum run first
                if self._released_ms(now_ms) < self.get(_CFG_MIN_OFF_S) * 1000:
                    self.why = _R_MIN_TIMES
                    return sg_ready.NORMAL
            held = self._block_ms()  # by the board's ticks: no clock setting shortens it
            spent = self._blocked_today(now_ms) + held
            day_max = self.get(_CFG_MAX_BLOCK_DAY_S) * 1000 - _MARGIN_MS
            if held >= _MAX_BLOCK_MS or spent >= day_max:
                self.why = _R_MAX_BLOCK
                return sg_ready.NORMAL
            return want
        if want in (sg_ready.RECOMMENDED, sg_ready.FORCED):
            if store is None or store >= _HOT:
                return sg_ready.NORMAL
            if not running and not self.comp.may(True):
                self.why = _R_MIN_TIMES
                return sg_ready.NORMAL  # would start it too soon after it stopped
        return want

    def _block_ms(self):
        """How long the current block has lasted (0 when not blocking)."""
        if self.sg != sg_ready.BLOCKED or self.blk_t0 is None:
            return 0
        return max(0, ticks_diff(self.board.ticks_ms(), self.blk_t0))

    def _released_ms(self, now_ms):
        """How long since the last block ended (long ago when unknown)."""
        if self.freed_t is not None:
            return ticks_diff(self.board.ticks_ms(), self.freed_t)
        f = self.st["freed"]  # from before a reboot: the true clock, as good as it gets
        return now_ms - f if f is not None and now_ms >= f else 1 << 29

    def _book(self, now_ms, ms):
        """Blocked time onto the day's budget, and the release noted."""
        self._blocked_today(now_ms)
        self.st["blk"][1] += min(max(0, ms), _TWO_HOURS_MS)
        self.st["since"] = None
        self.st["freed"] = now_ms
        self.freed_t = self.board.ticks_ms()
        self.blk_t0 = None

    def _blocked_today(self, now_ms):
        b = self.st["blk"]
        day = now_ms // _DAY_MS
        if b[0] != day:
            b[0] = day
            b[1] = 0
        return b[1]

    def control(self, now_ms):
        c = self.comp
        c.min_on = self.get(_CFG_MIN_ON_S) * 1000  # settings may have changed since the boot
        c.min_off = self.get(_CFG_MIN_OFF_S) * 1000
        running, store = self.observe()
        self.store = store
        if running != self.comp.on:
            self.comp.switched(running)
        c.settle()
        st = self.st
        if self.sg != sg_ready.BLOCKED and st["since"] is not None:
            self._book(now_ms, now_ms - st["since"])  # a block a reset ended: booked
        new = self.allowed(self.wanted(now_ms), now_ms, running, store)
        if self.sg == sg_ready.BLOCKED and self.blk_t0 is None:
            new = sg_ready.NORMAL  # blocked since we know not when (a reset kept the contacts)
        if new == self.sg:
            return
        if self.sg == sg_ready.BLOCKED:  # a block ends: book it on its day
            since = st["since"]
            self._book(now_ms, self._block_ms() if self.blk_t0 is not None else
                       (now_ms - since if since is not None else _TWO_HOURS_MS))
        if new == sg_ready.BLOCKED:
            st["since"] = now_ms
            self.blk_t0 = self.board.ticks_ms()
        self.urgent = True  # block bookkeeping on flash before any power cut
        a, b = sg_ready.contacts(new)
        self.sg1.set(a)
        self.sg2.set(b)
        self.sg = new

    # reports -------------------------------------------------------------------------
    def outputs(self):
        return (1 if self.sg1.on else 0) | (2 if self.sg2.on else 0)

    def state(self):
        d = self.st.get("dr")
        return {_S_ROLE: _ROLE_HEAT_PUMP, _S_SG: self.sg, _S_TEMP: self.store,
                _S_OUTPUTS: self.outputs(),
                _S_FAULT: _R_SAFE_MODE if self.safe else self.fault, _S_DR: d[0] if d else 0,
                _S_BLOCKED_S: self.st["blk"][1] // 1000}

    def caps(self):
        return {_C_ROLE: _ROLE_HEAT_PUMP, _C_CONTROL: _S2_FRBC, _C_NOMINAL_W: _NOMINAL_W,
                _C_SHED_W: _NOMINAL_W if self.comp.on else 0, _C_MAX_SHED_S: 7200,
                _C_MIN_ON_S: self.get(_CFG_MIN_ON_S), _C_MIN_OFF_S: self.get(_CFG_MIN_OFF_S),
                _C_MODES: [1, 2, 3, 4], _C_MAX_BLOCK_S: 7200,
                _C_MAX_BLOCK_DAY_S: self.get(_CFG_MAX_BLOCK_DAY_S), _C_POWER_FLOOR_W: _FLOOR_W,
                _C_STORE: [self.store, 300, 580],
                _C_FEATURES: _DEM_PAUSE | _DEM_START_TIME | _DEM_FORECAST_ADJUST}
