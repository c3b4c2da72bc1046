"""Peripheral models behind the virtual board: a heated room, a plug load, a heat pump.

Each model integrates its physics in step(dt_s) (step_ms(ms) underneath), reads
its actuators from attributes the board sets (the relay contacts), and keeps its
own honest record of limit violations in violations(): the world judges the
device, a role is never trusted to count its own faults.

Deterministic under a seed: a tiny xorshift32 replaces `random` (CPython's and
MicroPython's differ). Time is integer epoch milliseconds, so the judges count
exactly and no float drift creeps into a simulated week.
"""
import math

try:
    from micropython import const
except ImportError:
    from spot._cpython import const

START_MS = 1767225600000  # 2026-01-01T00:00Z, a Thursday
_DAY_MS = const(86400000)
_MAINS_MS = const(60000)  # how often the mains voltage wanders
_INRUSH_MS = const(300)
_KNEE_MS = const(60000)  # a plug load off longer than this restarts its cycle

# Metering chip constants (what the device must calibrate to): units per count.
KU_TRUE = 0.1  # V
KI_TRUE = 0.001  # A
KP_TRUE = 0.1  # W

# SG Ready: contacts (sg1, sg2) -> state. 1 BLOCKED, 2 NORMAL, 3 RECOMMENDED ON, 4 FORCED ON.
BLOCKED, NORMAL, RECOMMENDED, FORCED = 1, 2, 3, 4
_SG = (NORMAL, RECOMMENDED, BLOCKED, FORCED)  # index sg1 * 2 + sg2: "00" "01" "10" "11"
# The unit's own store band (start below lo, stop at hi) in states 2, 3, 4.
_BAND = {NORMAL: (40.0, 45.0), RECOMMENDED: (45.0, 50.0), FORCED: (53.0, 58.0)}

# Plug loads: (cycles, power factor, inrush factor, standby W, duration jitter, uses a day,
# phases). A phase is (lo W, hi W, seconds, pieces): `pieces` spans of `seconds`, each at a
# level drawn in lo..hi. Cycling loads loop; the others run once per use, then stand by.
_LOADS = {
    "fridge": (True, 0.8, 6.0, 0.0, 0.1, 0, ((90, 90, 1200, 1), (0, 0, 2400, 1))),
    "heater": (True, 1.0, 1.0, 0.0, 0.2, 0, ((1500, 1500, 720, 1), (0, 0, 480, 1))),
    "kettle": (False, 1.0, 1.0, 0.0, 0.05, 4, ((2000, 2000, 180, 1),)),
    "washer": (False, 0.9, 1.0, 1.0, 0.0, 1,
               ((2000, 2000, 900, 1), (150, 400, 60, 45), (500, 500, 600, 1))),
}


def sg_state(sg1, sg2):
    """The SG Ready state the two contacts signal."""
    return _SG[(2 if sg1 else 0) + (1 if sg2 else 0)]


def crc16(data):
    """CRC-16/MODBUS, the responder's own (the client under test has its own too)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _mix(x):
    """A 32-bit hash: noise indexed by sample number, so reading it never moves the rng."""
    x &= 0xFFFFFFFF
    x = (x ^ (x >> 16)) * 0x45D9F3B & 0xFFFFFFFF
    x = (x ^ (x >> 16)) * 0x45D9F3B & 0xFFFFFFFF
    return x ^ (x >> 16)


class Energy:
    """An energy meter in integers: whole Wh and the mJ (W x ms) below one.

    A float accumulator near 2,000 Wh loses every increment below about 1e-4 Wh
    on a board with single-precision floats (rp2); integers lose none. Each step
    adds round(W x ms) mJ, below 2**30 for any step the models take.
    """

    def __init__(self):
        self.wh = 0
        self.mj = 0

    def add(self, watts, ms):
        e = self.mj + int(watts * ms + 0.5)
        self.wh += e // 3600000
        self.mj = e % 3600000

    def value(self):
        """In Wh, as a float (exact for whole Wh whatever the float width)."""
        return self.wh + self.mj / 3600000.0


class _Model:
    """Shared: the seeded rng, the clock, outdoor weather and a DS18B20-like sensor."""

    def __init__(self, seed, start_ms):
        self.seed = seed
        self._s = _mix(seed * 2654435761 + 12345) or 1  # small seeds spread apart
        self.now_ms = start_ms

    @property
    def energy_wh(self):
        """Electrical energy so far (Wh); the count itself is self.energy (integers)."""
        return self.energy.value()

    def _u(self):
        s = self._s  # xorshift32
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        self._s = s
        return s / 4294967296.0

    def _g(self):
        # Four uniforms summed: close enough to normal (sd 1), and never wild.
        return (self._u() + self._u() + self._u() + self._u() - 2.0) * 1.7320508

    def step(self, dt_s):
        self.step_ms(int(dt_s * 1000 + 0.5))

    # Weather: a daily sinusoid coldest at 05:00 UTC plus slow noise (6 h correlation).
    def _init_weather(self, out_mean, out_amp, out_noise):
        self.out_mean = out_mean
        self.out_amp = out_amp
        self.out_noise = out_noise
        self._on = out_noise * self._g()
        self.t_out = out_mean

    def _weather(self, h):
        if self.out_noise:
            a = math.exp(-h / 21600000.0)
            self._on = self._on * a + self.out_noise * math.sqrt(1.0 - a * a) * self._g()
        hour = (self.now_ms % _DAY_MS) / 3600000.0
        self.t_out = self.out_mean - self.out_amp * math.cos((hour - 5.0) * 0.2617994) + self._on

    # The sensor: first-order lag, small noise, 1/16 C steps, injectable faults.
    def _init_sensor(self, temp_c, lag_s, noise_c):
        self.fault = None  # None | "dead" | "85" | "stuck" | "nonsense"
        self._ts = temp_c
        self._lag_ms = lag_s * 1000.0
        self._noise_c = noise_c
        self._sn = 0.0
        self._last = None
        self._stuck = None

    def _sense(self, true_c, h):
        self._ts += (true_c - self._ts) * (1.0 - math.exp(-h / self._lag_ms))
        self._sn = self._noise_c * self._g()

    def temperature(self):
        f = self.fault
        if f == "dead":
            return None
        if f == "85":
            return 85.0  # the DS18B20's power-on value: a conversion never ran
        if f == "nonsense":
            return -127.0
        v = round((self._ts + self._sn) * 16) / 16
        if f == "stuck":
            if self._stuck is None:
                self._stuck = v if self._last is None else self._last
            return self._stuck
        self._stuck = None
        self._last = v
        return v


class Room(_Model):
    """1R1C room: C dT/dt = P_heater*heat + gains - UA*(T - T_out); relay `heat`, input `window`."""

    def __init__(self, seed=1, start_ms=START_MS, heater_w=2000.0, ua=120.0, c=6e6,
                 gains_w=100.0, temp_c=18.0, out_mean=3.0, out_amp=4.0, out_noise=1.0,
                 window_factor=4.0, windows_per_day=0.2, frost_c=5.0, lag_s=60.0,
                 noise_c=0.02):
        _Model.__init__(self, seed, start_ms)
        self.heater_w = heater_w
        self.ua = ua
        self.c = c
        self.gains_w = gains_w
        self.window_factor = window_factor
        self.windows_per_day = windows_per_day
        self.frost_c = frost_c
        self.heat = False  # the relay, set by the board
        self.window = False
        self._close_ms = 0
        self.temp = temp_c  # the true temperature
        self.energy = Energy()
        self.frost_ms = 0
        self._init_weather(out_mean, out_amp, out_noise)
        self._init_sensor(temp_c, lag_s, noise_c)

    def open_window(self, s):
        """Open the window now for s seconds (tests; random openings do the same)."""
        self.window = True
        self._close_ms = self.now_ms + int(s * 1000)

    def step_ms(self, ms):
        while ms > 0:
            h = ms if ms < 60000 else 60000
            ms -= h
            self._weather(h)
            if self.window:
                if self.now_ms >= self._close_ms:
                    self.window = False
            elif self.windows_per_day and self._u() < self.windows_per_day * h / _DAY_MS:
                self.open_window(300 + 1500 * self._u())  # airing: 5 to 30 min
            ua = self.ua * self.window_factor if self.window else self.ua
            p = self.gains_w + (self.heater_w if self.heat else 0.0)
            eq = self.t_out + p / ua
            # Exact for constant inputs over the step: stable at any step size.
            self.temp = eq + (self.temp - eq) * math.exp(-h * 0.001 * ua / self.c)
            if self.heat:
                self.energy.add(self.heater_w, h)
            self.now_ms += h
            if self.temp < self.frost_c:
                self.frost_ms += h
            self._sense(self.temp, h)

    def violations(self):
        return {"frost_min": self.frost_ms // 60000}


class PlugLoad(_Model):
    """A load behind relay `load` and its metering chip; judges late over-current trips."""

    def __init__(self, kind="fridge", seed=1, start_ms=START_MS, power_w=None, volts=230.0,
                 volts_sd=2.0, limit_a=16.0, short_a=40.0, sample_ms=1000, uses_per_day=None):
        _Model.__init__(self, seed, start_ms)
        if kind not in _LOADS:
            raise ValueError("unknown load " + kind)
        self.kind = kind
        self._loops, self.pf, self.inrush, self.standby_w, self._jit, uses, self._phases = _LOADS[kind]
        self._scale = power_w / self._phases[0][1] if power_w else 1.0
        self.uses_per_day = uses if uses_per_day is None else uses_per_day
        self.limit_a = limit_a
        self.short_a = short_a
        self.sample_ms = sample_ms
        self.load = False  # the relay, set by the board
        self.button = 0
        self.short = False
        self.fault = None  # "dead": the chip does not answer
        self._v0 = volts
        self._vsd = volts_sd
        self._vn = self._g()
        self.volts = volts + volts_sd * self._vn
        self._mains_due = start_ms + _MAINS_MS
        self._was = False
        self._off_ms = start_ms - 2 * _KNEE_MS
        self._inrush = 0  # ms of inrush left
        self.watts = 0.0
        self._start(0)  # a cycling load is mid-demand; a one-shot one was just switched on
        self._use_due = self._next_use()
        # The sample in progress and the last one finished (what meter() reports).
        self._in = 0
        self._su = self._si = self._sp = 0.0
        self._late = False
        self._lu, self._li, self._lp, self._ln = self.volts, 0.0, 0.0, 0
        self._over_ms = None  # end of the first over-limit sample of this episode
        self.overcurrent_late = 0
        self.energy = Energy()
        self.max_a = 0.0

    def _next_use(self):
        if not self.uses_per_day:
            return None
        return self.now_ms + int(-math.log(1.0 - self._u()) * _DAY_MS / self.uses_per_day)

    def _start(self, phase, piece=0):
        """Enter a piece of a phase (phase -1: idle, standing by)."""
        was = self.watts
        self._phase = phase
        self._piece = piece
        if phase < 0:
            self.watts = self.standby_w
            self._left = 0
            return
        lo, hi, sec, _ = self._phases[phase]
        self.watts = (lo + (hi - lo) * self._u()) * self._scale
        self._left = int(sec * 1000 * (1.0 + self._jit * (2.0 * self._u() - 1.0)))
        if self.watts and not was and self.load and self.inrush > 1.0:
            self._inrush = _INRUSH_MS  # a motor starting

    def _advance_phase(self):
        ph = self._phases[self._phase]
        if self._piece + 1 < ph[3]:
            self._start(self._phase, self._piece + 1)
        elif self._phase + 1 < len(self._phases):
            self._start(self._phase + 1)
        elif self._loops:
            self._start(0)
        else:
            self._start(-1)

    def use(self):
        """Someone starts the appliance (the kettle's switch, the washer's program)."""
        if self._phase < 0:
            self._start(0)

    def _edge(self):
        on = bool(self.load)
        if on == self._was:
            return
        self._was = on
        if not on:
            self._off_ms = self.now_ms
            self._inrush = 0
        elif self._loops and self.now_ms - self._off_ms > _KNEE_MS:
            self.watts = 0.0  # the motor stood still: it starts afresh, with inrush
            self._start(0)  # unpowered for a while: the thermostat calls for cold/heat
        elif self.watts and self.inrush > 1.0:
            self._inrush = _INRUSH_MS

    def current(self):
        """(watts, amps) flowing right now."""
        if not self.load:
            return 0.0, 0.0
        if self.short:
            return self.volts * self.short_a, self.short_a
        p = self.watts * self.inrush if self._inrush > 0 else self.watts
        return p, p / (self.volts * self.pf)

    def step_ms(self, ms):
        self._edge()
        while ms > 0:
            # Constant power over h: split at samples, phase ends, inrush, mains, uses.
            h = min(ms, self.sample_ms - self._in, self._mains_due - self.now_ms)
            powered = self.load and self._phase >= 0
            if powered and self._left < h:
                h = max(self._left, 1)
            if self._inrush and self.load and self._inrush < h:
                h = self._inrush
            if self._use_due is not None and self._use_due - self.now_ms < h:
                h = max(self._use_due - self.now_ms, 1)
            p, i = self.current()
            self._su += self.volts * h
            self._si += i * h
            self._sp += p * h
            if i > self.limit_a:
                if i > self.max_a:
                    self.max_a = i
                if self._over_ms is not None and self.now_ms + h > self._over_ms + self.sample_ms:
                    self._late = True  # still closed a full sample after the first over-limit one
            self.energy.add(p, h)
            self.now_ms += h
            ms -= h
            self._in += h
            if self.load:
                if self._inrush:
                    self._inrush = max(0, self._inrush - h)
                if powered:
                    self._left -= h
                    if self._left <= 0:
                        self._advance_phase()
            if self._in >= self.sample_ms:
                self._latch()
            if self.now_ms >= self._mains_due:
                self._vn = self._vn * 0.9 + 0.4359 * self._g()  # ~10 min correlation
                self.volts = self._v0 + self._vsd * self._vn
                self._mains_due += _MAINS_MS
            if self._use_due is not None and self.now_ms >= self._use_due:
                self.use()
                self._use_due = self._next_use()

    def _latch(self):
        """A sample period ends: it becomes the chip's reading, and the judge looks at it."""
        n = self.sample_ms
        self._lu, self._li, self._lp = self._su / n, self._si / n, self._sp / n
        self._ln += 1
        if self._late:
            self.overcurrent_late += 1
        if self._li > self.limit_a:
            if self._over_ms is None:
                self._over_ms = self.now_ms  # the first over-limit reading: one sample's grace
        else:
            self._over_ms = None
        self._in = 0
        self._su = self._si = self._sp = 0.0
        self._late = False

    def _raw(self, x, k, salt):
        e = (_mix(self.seed * 1000003 + self._ln * 3 + salt) / 4294967296.0 - 0.5) * 0.01
        return int(x * (1.0 + e) / k + 0.5)  # +-0.5 % noise, then counts

    def meter(self):
        """(u_raw, i_raw, p_raw) for the last finished sample period, or None."""
        if self.fault == "dead":
            return None
        return (self._raw(self._lu, KU_TRUE, 0), self._raw(self._li, KI_TRUE, 1),
                self._raw(self._lp, KP_TRUE, 2))

    def violations(self):
        return {"overcurrent_late": self.overcurrent_late}


class HeatPump(_Model):
    """Air-to-water heat pump heating a house from a buffer store; SG Ready contacts sg1, sg2."""

    def __init__(self, seed=1, start_ms=START_MS, store_c=45.0, c_store=1.25e6,
                 ua_house=250.0, house_c=20.0, p_el=2500.0, cop35=3.5, cop_slope=0.04,
                 min_run_s=600, min_off_s=600, max_block_s=7200, max_block_day_s=21600,
                 hot_c=60.0, cold_c=30.0, out_mean=3.0, out_amp=4.0, out_noise=1.0,
                 lag_s=60.0, noise_c=0.02, unit=1, uart_fault=None):
        _Model.__init__(self, seed, start_ms)
        self.c_store = c_store
        self.ua_house = ua_house
        self.house_c = house_c
        self.p_el = p_el
        self.cop35 = cop35
        self.cop_slope = cop_slope
        self.min_run_ms = int(min_run_s * 1000)
        self.min_off_ms = int(min_off_s * 1000)
        self.max_block_ms = int(max_block_s * 1000)
        self.max_block_day_ms = int(max_block_day_s * 1000)
        self.hot_c = hot_c
        self.cold_c = cold_c
        self.unit = unit
        self.uart_fault = uart_fault  # None | "silent" | "garbage" | "badcrc"
        self.sg1 = self.sg2 = False  # the relays, set by the board
        self.state = NORMAL
        self.running = False
        self.power_w = 0.0
        self.store = store_c  # true store temperature
        self._since = start_ms - self.min_off_ms  # off "for ever" at power-on
        self.energy = Energy()  # electrical
        self.heat_out = Energy()  # heat delivered
        self.starts = 0
        self.min_run = self.min_off = self.blocked_too_long = self.store_overheat = 0
        self.cold_ms = 0
        self._hot = False
        self._eager = False  # a raised target just arrived: heat unless nearly there
        self._block_ms = None  # when the current block began
        self._block_hit = False
        self._day = -1
        self._day_block = 0
        self._day_hit = False
        self._init_weather(out_mean, out_amp, out_noise)
        self._init_sensor(store_c, lag_s, noise_c)
        self._bus = 0
        self.port = ModbusPort(self)

    def _switch(self, on):
        d = self.now_ms - self._since
        if on:
            self.starts += 1
            if d < self.min_off_ms:
                self.min_off += 1
        elif d < self.min_run_ms:
            self.min_run += 1
        self.running = on
        self._eager = False
        self.power_w = self.p_el if on else 0.0
        self._since = self.now_ms

    def _control(self):
        """The unit's own controller: only NORMAL and RECOMMENDED honour its min run/off times."""
        st = sg_state(self.sg1, self.sg2)
        entered = st != self.state
        if entered:
            self.state = st
            self._eager = st == RECOMMENDED or st == FORCED
            if st == BLOCKED:
                self._block_ms = self.now_ms
                self._block_hit = False
        if st == BLOCKED:
            if self.running:
                self._switch(False)  # a blocking command acts at once
            return
        lo, hi = _BAND[st]
        if self._eager:
            lo = hi - 1.0
        patient = st != FORCED
        d = self.now_ms - self._since
        if self.running:
            if self.store >= hi and (d >= self.min_run_ms or not patient):
                self._switch(False)
        elif self.store < lo and (d >= self.min_off_ms or not patient):
            self._switch(True)

    def step_ms(self, ms):
        self._control()  # contacts changed since the last step act now
        while ms > 0:
            h = ms if ms < 10000 else 10000
            ms -= h
            self._weather(h)
            # The house takes what it needs while the store is warm enough, less below 30 C.
            q = self.ua_house * (self.house_c - self.t_out)
            q = 0.0 if q < 0 else q * min(1.0, max(0.0, (self.store - 20.0) / 10.0))
            if self.running:
                cop = max(1.0, self.cop35 - self.cop_slope * (self.store - 35.0))
                q_hp = self.p_el * cop
                self.energy.add(self.p_el, h)
                self.heat_out.add(q_hp, h)
                q = q_hp - q
            else:
                q = -q
            self.store += q * h * 0.001 / self.c_store
            self.now_ms += h
            self._judge(h)
            self._control()
            self._sense(self.store, h)

    def _judge(self, h):
        t = self.store
        if t < self.cold_c:
            self.cold_ms += h
        if t > self.hot_c:
            if not self._hot:
                self.store_overheat += 1
            self._hot = True
        elif t < self.hot_c - 0.5:
            self._hot = False
        if self.state != BLOCKED:
            return
        if not self._block_hit and self.now_ms - self._block_ms > self.max_block_ms:
            self._block_hit = True
            self.blocked_too_long += 1
        t0 = self.now_ms - h
        while t0 < self.now_ms:  # blocked time per calendar day (UTC), split at midnight
            day = t0 // _DAY_MS
            end = min(self.now_ms, (day + 1) * _DAY_MS)
            if day != self._day:
                self._day, self._day_block, self._day_hit = day, 0, False
            self._day_block += end - t0
            if not self._day_hit and self._day_block > self.max_block_day_ms:
                self._day_hit = True
                self.blocked_too_long += 1
            t0 = end

    def holding(self):
        """Holding registers 0..4: store 0.1 C (signed), running, W, SG state, kWh*10."""
        return (int(round(self.store * 10)) & 0xFFFF, 1 if self.running else 0,
                int(self.power_w), self.state, (self.energy.wh // 100) & 0xFFFF)

    def violations(self):
        return {"min_run": self.min_run, "min_off": self.min_off,
                "blocked_too_long": self.blocked_too_long,
                "store_overheat": self.store_overheat, "store_cold": self.cold_ms // 60000}


class ModbusPort:
    """The heat pump's RS-485 side as a UART: each write() is one request frame.

    Answers function 3 from HeatPump.holding(), exception 1 (function), 2 (address)
    or 3 (count); stays silent on a broken frame or another unit's, as a slave does.
    hp.uart_fault: "silent" never answers, "garbage" answers noise, "badcrc" spoils the CRC.
    """

    def __init__(self, hp):
        self.hp = hp
        self._tx = b""
        self.requests = 0

    def write(self, buf):
        f = bytes(buf)
        self.requests += 1
        reply = self._answer(f)
        if reply:
            self._tx += reply
        return len(f)

    def any(self):
        return len(self._tx)

    def read(self, n=-1):
        if not self._tx:
            return None
        if n is None or n < 0:
            n = len(self._tx)
        out = self._tx[:n]
        self._tx = self._tx[n:]
        return out

    def _answer(self, f):
        hp = self.hp
        if len(f) < 4 or crc16(f[:-2]) != f[-2] | f[-1] << 8 or f[0] != hp.unit:
            return None
        fault = hp.uart_fault
        if fault == "silent":
            return None
        u = hp.unit
        if f[1] != 3:
            body = bytes((u, f[1] | 0x80, 1))
        elif len(f) != 8:
            return None
        else:
            addr = f[2] << 8 | f[3]
            n = f[4] << 8 | f[5]
            if n < 1 or n > 125:
                body = bytes((u, 0x83, 3))
            elif addr + n > 5:
                body = bytes((u, 0x83, 2))
            else:
                regs = hp.holding()[addr:addr + n]
                body = bytearray((u, 3, 2 * n))
                for r in regs:
                    body.append(r >> 8)
                    body.append(r & 0xFF)
        crc = crc16(body)
        frame = bytearray(body)
        frame.append(crc & 0xFF)
        frame.append(crc >> 8)
        if fault == "badcrc":
            frame[-1] ^= 0x5A
        elif fault == "garbage":
            hp._bus += 1  # noise of its own: bus traffic must not move the physics
            k = hp.seed * 7919 + hp._bus * 104729
            frame = bytes(_mix(k + i) & 0xFF for i in range(len(frame)))
        return bytes(frame)
