"""Thermostat role: a heating relay held around a setpoint, within the room's limits.

The setpoint in force, from the strongest to the weakest:
  frost protection  - the room never drops under CFG_FROST: no command, schedule,
                      open window or failed sensor turns it off;
  demand response   - a comfort band ("keep 19-21 C for 2 h"), a setback
                      (reduce: 1 C per 10 %, 3 C at most) or off (limit, shut down);
  price             - 0.5 C more before a price peak, 0.5 C less during it;
  user              - a manual setpoint (for its duration, else until the next
                      program step), else the weekly program's step in force
                      (spot.schedule), else CFG_SETPOINT;
  optimum start     - heating starts early enough to reach the next program step.
Hysteresis control, with minimum relay on and off times (role.Guard). A sensor
that does not answer, reads 85.0 or -127.0 (a DS18B20's non-readings), jumps
or sticks is a fault: the relay then runs a frost-safe duty cycle, three
quarters of the duty the room needed lately.
All temperatures are ints in 0.1 C.
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
_DEV_SETPOINT = const(1)
_ROLE_THERMOSTAT = const(1)
_S_ROLE = const(1)
_C_CONTROL = const(2)
_DEM_PAUSE = const(2)
_REFUSED = const(2)
_S_TEMP = const(2)
_C_NOMINAL_W = const(3)
_S_TARGET = const(3)
_C_SHED_W = const(4)
_S2_FRBC = const(4)
_S_OUTPUTS = const(4)
_C_MAX_SHED_S = const(5)
_C_MIN_ON_S = const(6)
_CFG_HYSTERESIS = const(7)
_C_MIN_OFF_S = const(7)
_CFG_FROST = const(8)
_C_COMFORT = const(8)
_DEM_FORECAST_ADJUST = const(8)
_S_FAULT = const(8)
_CFG_MIN_ON_S = const(9)
_C_FROST = const(9)
_CFG_MIN_OFF_S = const(10)
_S_DR = const(10)
_C_FEATURES = const(13)
_CFG_SETPOINT = const(14)
_R_RANGE = const(32)
_R_FROST = const(34)
_R_SENSOR = const(38)
_R_SAFE_MODE = const(40)


_UNIT_W = const(1)
_UNIT_PERCENT = const(3)
_UNIT_C = const(4)
_HEATER_W = const(2000)
_HOUR_MS = const(3600000)
_STUCK_READINGS = const(90)  # identical readings while heating: the sensor is stuck
_JUMP = const(50)  # 5 C between two readings is not a room
_PRICE_AHEAD = const(8)  # forecast steps looked ahead for a peak
_RATE_GUESS = const(10)  # heating rate (0.1 C per hour) before one is learnt
_RUN_MIN_MS = const(1200000)  # a heating run this long teaches the rate
_LEAD_MAX_MS = const(10800000)  # optimum start begins 3 h ahead at most


class Thermostat(Role):
    ROLE = _ROLE_THERMOSTAT
    DEFAULTS = {_CFG_TELEMETRY_S: 900, _CFG_HYSTERESIS: 5, _CFG_FROST: 50, _CFG_MIN_ON_S: 180,
                _CFG_MIN_OFF_S: 180, _CFG_SETPOINT: 200}

    def __init__(self, board, st, cfg, power_on=False):
        super().__init__(board, st, cfg)
        self.relay = board.relay("heat")
        self.window = board.input("window")
        self.guard = Guard(board.ticks_ms, self.get(_CFG_MIN_ON_S) * 1000,
                           self.get(_CFG_MIN_OFF_S) * 1000, self.relay.on)
        self.temp = None  # the last plausible reading
        self.raw = None
        self.same = 0
        self.target = 0
        self.run = None  # (ticks, temp) of the start of the current heating run

    # what the user wants ---------------------------------------------------------
    def base(self, now_ms):
        m = self.st.get("man")
        if m and now_ms < m[1]:
            return m[0]
        s = self.sch
        if s is not None and s.last_step is not None:
            return s.last_step[1]
        return self.get(_CFG_SETPOINT)

    def setpoint(self, now_ms):
        if self.safe:  # safe mode: frost protection and nothing else
            return self.get(_CFG_FROST) + self.get(_CFG_HYSTERESIS)
        base = t = self.base(now_ms)
        d = self.dr_active(now_ms)
        if d is not None:
            if d[0] == 1:
                t = base - d[1]
            elif d[0] == 5:
                t = min(max(base, d[1]), d[2])
            else:  # limit under the heater's power, shut down
                t = 0
        else:
            t += self._price_shift(now_ms)
            s = self.sch
            if s is not None and s.program and self.temp is not None:
                # Optimum start: reach the next step up on time, at the learnt rate.
                nxt = s.next_time(now_ms)
                i = _step_index(s, nxt) if nxt is not None else None
                if i is not None:
                    want = s.program[i][1]
                    need = want - self.temp
                    rate = self.st.get("rate", _RATE_GUESS)
                    lead = min(need * _HOUR_MS // rate * 5 // 4, _LEAD_MAX_MS)
                    if want > base and nxt - now_ms <= lead:
                        t = max(t, want)
        return max(t, self.get(_CFG_FROST) + self.get(_CFG_HYSTERESIS))

    def _price_shift(self, now_ms):
        p = self.price_at(now_ms)
        if p is None:
            return 0
        now, mean = p
        if now * 4 >= mean * 5:
            return -5  # in a peak: coast, within the comfort band
        if now <= mean:
            step = self.st["fc"][1] * 1000
            for k in range(1, _PRICE_AHEAD + 1):
                q = self.price_at(now_ms + k * step)
                if q is not None and q[0] * 4 >= mean * 5:
                    return 5  # a peak is coming: store some heat in the room now
        return 0

    def program_values(self, s):
        """A weekly program's setpoints in 0.1 C, each within 5..30 C, or ScheduleError."""
        from spot.objects import Analog
        from spot.schedule import ScheduleError

        out = []
        for v in s.values:
            d = scaled(Analog(v, s.unit, s.scale), _UNIT_C, -1)
            if d is None or not 50 <= d <= 300:
                raise ScheduleError("a setpoint that is not 5..30 C")
            out.append(d)
        return out

    # commands --------------------------------------------------------------------
    def act(self, kind, value, dur, now_ms):
        if kind != _DEV_SETPOINT:
            return super().act(kind, value, dur, now_ms)
        v = scaled(value, _UNIT_C, -1)
        if v is None or not 50 <= v <= 300:
            return _REFUSED, _R_RANGE
        until = now_ms + dur * 1000 if dur else None
        if until is None:
            nxt = self.sch.next_time(now_ms) if self.sch is not None else None
            until = nxt if nxt is not None else now_ms + 86400000
        self.st["man"] = [v, until]
        return _APPLIED, 0

    def plan(self, kind, amount, body, t0, t1, now_ms):
        frost = self.get(_CFG_FROST)
        status, reason = _APPLIED, 0
        a = b = 0
        if kind == 1:  # reduce: a setback
            pct = scaled(amount, _UNIT_PERCENT, 0)
            if pct is None or not 0 < pct <= 100:
                return _REFUSED, _R_RANGE
            a = min(pct, 30)
            if a < pct:
                status, reason = _ADAPTED, _R_RANGE
        elif kind in (2, 4):  # limit, shut down: an on/off heater can only be off
            w = scaled(amount, _UNIT_W, 0) if kind == 2 else 0
            if w is None or w < 0:
                return _REFUSED, _R_RANGE
            if w >= _HEATER_W:
                return _APPLIED, 0  # already within it
            status, reason = _ADAPTED, _R_FROST
        elif kind == 5:  # keep a comfort band
            a = scaled(body.get(5), _UNIT_C, -1)
            b = scaled(body.get(6), _UNIT_C, -1)
            if a is None or b is None or not 0 <= a < b <= 300:
                return _REFUSED, _R_RANGE
            if a < frost:
                a = frost
                status, reason = _ADAPTED, _R_FROST
        else:
            return _REFUSED, _R_RANGE
        self.st["dr"] = [kind, a, b, t0, t1]
        return status, reason

    # control ---------------------------------------------------------------------
    def read(self):
        """A plausible room temperature (0.1 C), or None: then self.fault says why."""
        raw = self.board.temperature("room")
        prev = self.raw
        ok = raw is not None and -300 < raw * 10 < 500 and raw != 85.0
        if ok:
            t = int(raw * 10 + (0.5 if raw >= 0 else -0.5))
            # A jump between two readings is not a room; the next reading that agrees
            # with this one is (a room that changed during an outage is taken as it is).
            if prev is not None and prev != 85.0 and abs(t - prev * 10) > _JUMP:
                ok = False
            elif raw == prev:
                # Heating that moves nothing: stuck. It stays so until the reading moves.
                if self.relay.on:
                    self.same += 1
                ok = self.same < _STUCK_READINGS
            else:
                self.same = 0
        self.raw = raw
        if not ok:
            self.fault = _R_SENSOR
            return None
        self.fault = 0
        self.temp = t
        return t

    def control(self, now_ms):
        g = self.guard
        g.min_on = self.get(_CFG_MIN_ON_S) * 1000  # settings may have changed since the boot
        g.min_off = self.get(_CFG_MIN_OFF_S) * 1000
        t = self.read()
        target = self.target = self.setpoint(now_ms)
        frost = self.get(_CFG_FROST)
        h = self.get(_CFG_HYSTERESIS) // 2
        on = self.relay.on
        st = self.st
        if t is None:
            # Blind: three quarters of the duty the room has needed lately (a
            # quarter at least) keeps it well above frost without knowing it.
            on = now_ms % _HOUR_MS < max(250, st.get("duty", 500000) * 3 // 4000) * _HOUR_MS // 1000
        else:
            if t < target - h:
                on = True
            elif t > target + h:
                on = False
            if self.window.value() and t >= frost + h:
                on = False  # an open window: heat nobody's garden
            if t < frost + h:
                on = True  # frost protection: nothing overrides it
        if self.guard.may(on) and on != self.relay.on:
            self.relay.set(on)
            self.guard.switched(on)
        if t is not None:  # the heater's duty (ppm), averaged over the last few hours
            d = st.get("duty", 500000)
            st["duty"] = d + ((1000000 if self.relay.on else 0) - d) // 512
        self._learn(t)

    def _learn(self, t):
        """The room's heating rate, from every heating run of 20 minutes or more."""
        if not self.relay.on or t is None or self.window.value():
            self.run = None  # an open window teaches nothing about the room
            return
        now = self.board.ticks_ms()
        if self.run is None:
            self.run = (now, t)
            return
        held = ticks_diff(now, self.run[0])
        if held >= _RUN_MIN_MS:
            rate = (t - self.run[1]) * _HOUR_MS // held
            old = self.st.get("rate", _RATE_GUESS)
            self.st["rate"] = max(2, min(50, (3 * old + rate) // 4))
            self.run = (now, t)

    # reports ---------------------------------------------------------------------
    def state(self):
        d = self.st.get("dr")
        return {_S_ROLE: _ROLE_THERMOSTAT, _S_TEMP: self.temp, _S_TARGET: self.target,
                _S_OUTPUTS: self.outputs(), _S_DR: d[0] if d else 0,
                _S_FAULT: _R_SAFE_MODE if self.safe else self.fault}

    def caps(self):
        base = self.get(_CFG_SETPOINT)
        return {_C_ROLE: _ROLE_THERMOSTAT, _C_CONTROL: _S2_FRBC, _C_NOMINAL_W: _HEATER_W,
                _C_SHED_W: _HEATER_W if self.relay.on else 0, _C_MAX_SHED_S: 7200,
                _C_MIN_ON_S: self.get(_CFG_MIN_ON_S), _C_MIN_OFF_S: self.get(_CFG_MIN_OFF_S),
                _C_COMFORT: [base - 10, base + 10], _C_FROST: self.get(_CFG_FROST),
                _C_FEATURES: _DEM_POWER_ADJUST | _DEM_PAUSE | _DEM_FORECAST_ADJUST}


def _step_index(s, t):
    """The program step that occurs at true time t (None: t is an event's)."""
    off = (t - s.week_origin) % 604800000
    for i in range(len(s.program)):
        if s.program[i][0] == off:
            return i
    return None
