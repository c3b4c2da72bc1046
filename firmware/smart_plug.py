"""Smart plug role: a relay in front of a load, with metering and over-current cut-off.

- Power-on state (CFG_POWER_ON): off by default, on, or as before the power cut.
  Only a power-on boot applies it: a command the plug already applied is never
  applied again (the replay window and the inbox see to it), so nothing queued
  or retained switches the relay unexpectedly at boot.
- Metering: the chip's raw counts (board.meter()) times calibration constants
  stored on the device (CFG_CAL_U/I/P, set by a DEV_CONFIG command); energy is
  integrated per sample and kept in Wh.
- Over-current: a sample over CFG_LIMIT_MA opens the relay in the same control
  step, and it stays open (tripped) until a DEV_RELAY "on" command.
- Demand response: an on/off load can only shed: reduce and shut down open the
  relay (adapted: all or nothing), limit opens it while the load draws more
  than the limit; CFG_MAX_SHED_S bounds any shed (a fridge must not warm up).
- A meter that stops answering for 3 samples opens the relay: without it the
  plug cannot protect the line.
- The button toggles the relay locally.
"""
try:
    from micropython import const
    from time import ticks_diff
except ImportError:
    from spot._cpython import const, ticks_diff

from role import Guard, Role, scaled

# The role contract's numbers this module uses (spot/role_codes.py names them all).
_APPLIED = const(0)
_ADAPTED = const(1)
_CFG_TELEMETRY_S = const(1)
_C_ROLE = const(1)
_DEM_POWER_ADJUST = const(1)
_S2_PEBC = const(1)
_S_ROLE = const(1)
_CFG_POWER_ON = const(2)
_C_CONTROL = const(2)
_DEM_PAUSE = const(2)
_DEV_RELAY = const(2)
_REFUSED = const(2)
_ROLE_SMART_PLUG = const(2)
_CFG_CAL_U = const(3)
_C_NOMINAL_W = const(3)
_CFG_CAL_I = const(4)
_C_SHED_W = const(4)
_S_OUTPUTS = const(4)
_CFG_CAL_P = const(5)
_C_MAX_SHED_S = const(5)
_S_POWER_W = const(5)
_CFG_LIMIT_MA = const(6)
_C_MIN_ON_S = const(6)
_S_ENERGY_WH = const(6)
_C_MIN_OFF_S = const(7)
_S_FAULT = const(8)
_CFG_MIN_OFF_S = const(10)
_S_DR = const(10)
_CFG_MAX_SHED_S = const(11)
_S_CURRENT_MA = const(11)
_C_FEATURES = const(13)
_R_RANGE = const(32)
_R_MIN_TIMES = const(33)
_R_MAX_BLOCK = const(35)
_R_OVERCURRENT = const(37)
_R_SENSOR = const(38)
_R_ON_OFF_ONLY = const(39)
_R_SAFE_MODE = const(40)
_R_DR_IN_FORCE = const(43)


_UNIT_W = const(1)
_UNIT_PERCENT = const(3)
_METER_MISSES = const(3)
_MWS_PER_WH = const(3600000)  # mW*s in a Wh


class SmartPlug(Role):
    ROLE = _ROLE_SMART_PLUG
    DEFAULTS = {_CFG_TELEMETRY_S: 900, _CFG_POWER_ON: 0, _CFG_CAL_U: 100000, _CFG_CAL_I: 1000,
                _CFG_CAL_P: 100000, _CFG_LIMIT_MA: 16000, _CFG_MAX_SHED_S: 3600,
                _CFG_MIN_OFF_S: 0}

    def __init__(self, board, st, cfg, power_on=False):
        super().__init__(board, st, cfg)
        self.relay = board.relay("load")
        self.button = board.input("button")
        self.pressed = self.button.value()
        if power_on:  # the relay's state after a power cut is a setting, nothing else
            p = self.get(_CFG_POWER_ON)
            st["want"] = st["want"] if p == 2 else p
            self.relay.set(False)  # and a trip outlives the cut: only "on" clears it
        self.guard = Guard(board.ticks_ms, 0, self.get(_CFG_MIN_OFF_S) * 1000, self.relay.on)
        self.misses = 0
        self.sampled = None  # board ticks of the last meter sample
        self.watts = self.milliamps = 0

    def bind(self, st, cfg, sch):
        super().bind(st, cfg, sch)
        st.setdefault("want", 0)  # what the user last asked for
        st.setdefault("trip", 0)
        st.setdefault("wh", 0)
        st.setdefault("mws", 0)  # energy below a whole Wh

    def act(self, kind, value, dur, now_ms):
        if kind != _DEV_RELAY:
            return super().act(kind, value, dur, now_ms)
        if value not in (0, 1):
            return _REFUSED, _R_RANGE
        self.st["want"] = value
        if value:
            self.st["trip"] = 0  # a deliberate "on" resets an over-current trip
        self.control(now_ms, False)  # switch now: the state report shows the result
        if value and not self.relay.on:  # held back: say by what (it comes when it may)
            if not self.guard.may(True):
                return _ADAPTED, _R_MIN_TIMES
            return _ADAPTED, self.fault or _R_DR_IN_FORCE
        return _APPLIED, 0

    def plan(self, kind, amount, body, t0, t1, now_ms):
        status, reason = _APPLIED, 0
        limit = 0
        if kind == 1:  # reduce: all or nothing
            pct = scaled(amount, _UNIT_PERCENT, 0)
            w = scaled(amount, _UNIT_W, 0)
            if (pct is None and w is None) or (pct or w or 0) <= 0:
                return _REFUSED, _R_RANGE
            if pct != 100:
                status, reason = _ADAPTED, _R_ON_OFF_ONLY
        elif kind == 2:  # limit
            limit = scaled(amount, _UNIT_W, 0)
            if limit is None or limit < 0:
                return _REFUSED, _R_RANGE
        elif kind != 4:
            return _REFUSED, _R_RANGE
        cap = self.get(_CFG_MAX_SHED_S) * 1000
        if t1 - t0 > cap:
            t1 = t0 + cap
            status, reason = _ADAPTED, _R_MAX_BLOCK
        self.st["dr"] = [kind, limit, 0, t0, t1]
        return status, reason

    def control(self, now_ms, sample=True):
        st = self.st
        self.guard.min_off = self.get(_CFG_MIN_OFF_S) * 1000
        if sample:
            b = self.button.value()
            if b and not self.pressed:
                st["want"] = 0 if st["want"] else 1
                st["trip"] = 0
            self.pressed = b
            m = self.board.meter()
            if m is None:
                self.misses += 1
            else:
                self.misses = 0
                self.milliamps = m[1] * self.get(_CFG_CAL_I) // 1000
                mw = m[2] * self.get(_CFG_CAL_P) // 1000
                self.watts = mw // 1000
                # Energy by the time since the last sample (control() also runs after
                # commands and through wakes), a few sample periods at most.
                t = self.board.ticks_ms()
                dt = self.board.sample_ms if self.sampled is None else min(
                    ticks_diff(t, self.sampled), 4 * self.board.sample_ms)
                self.sampled = t
                e = st["mws"] + mw * max(0, dt) // 1000
                st["wh"] += e // _MWS_PER_WH
                st["mws"] = e % _MWS_PER_WH
                if self.milliamps > self.get(_CFG_LIMIT_MA) and self.relay.on:
                    st["trip"] = 1  # open now, within this sample period
                    self.urgent = True
        on = st["want"] == 1 and not st["trip"] and not self.safe
        self.fault = _R_OVERCURRENT if st["trip"] else 0
        if self.misses >= _METER_MISSES:
            on = False
            self.fault = _R_SENSOR
        d = self.dr_active(now_ms)
        if d is not None and (d[0] != 2 or self.watts > d[1]):
            on = False
        self.guard.settle()
        if not on:
            if self.relay.on:
                self.relay.set(False)  # opening is always allowed: it is the safe side
                self.guard.switched(False)
        elif not self.relay.on and self.guard.may(True):
            self.relay.set(True)
            self.guard.switched(True)

    def state(self):
        d = self.st.get("dr")
        return {_S_ROLE: _ROLE_SMART_PLUG, _S_OUTPUTS: self.outputs(),
                _S_POWER_W: self.watts, _S_ENERGY_WH: self.st["wh"], _S_CURRENT_MA: self.milliamps,
                _S_FAULT: _R_SAFE_MODE if self.safe else self.fault, _S_DR: d[0] if d else 0}

    def caps(self):
        return {_C_ROLE: _ROLE_SMART_PLUG, _C_CONTROL: _S2_PEBC, _C_NOMINAL_W: 3680,
                _C_SHED_W: self.watts if self.relay.on else 0,
                _C_MAX_SHED_S: self.get(_CFG_MAX_SHED_S), _C_MIN_ON_S: 0,
                _C_MIN_OFF_S: self.get(_CFG_MIN_OFF_S), _C_FEATURES: _DEM_POWER_ADJUST | _DEM_PAUSE}
