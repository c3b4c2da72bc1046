"""The device's idea of true time, from its own drifting clock and sync samples.

A board keeps time on a poor oscillator (an ESP32's RTC clock in deep sleep is
off by several percent, and the error wanders with temperature). Each wake can
make one two-way exchange with the cloud: the device notes its local time l1,
the cloud its receive and send times t2, t3, the device its local time l4.
From these samples the model estimates the offset (true - local) and its rate
of change (the skew), weighting each sample by how short its round trip was,
since the round trip bounds the error of a sample. Everything is in integer
milliseconds (a board's single-precision floats cannot hold an epoch to the
millisecond).

A sample far off the model is never trusted alone: it is held as suspect, and
only a second sample that agrees with it moves the clock (a real jump: a reset
RTC, a device clock set by hand). Nonsense (a time before 2020 or after 2100, a
negative round trip, a round trip too slow to learn from) is refused with a
reason and changes nothing.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

OK = const(0)
JUMPED = const(1)  # two agreeing samples moved the clock
SUSPECT = const(2)  # held, not used: a second one must confirm it
REFUSED_TIME = const(3)  # before 2020 or after 2100
REFUSED_ORDER = const(4)  # negative round trip or t3 before t2
REFUSED_SLOW = const(5)  # round trip too long to learn anything from
REASONS = ("ok", "clock jumped", "suspect sample held", "time out of range",
           "round trip negative", "round trip too slow")

_MIN_TRUE_MS = const(1577836800000)  # 2020-01-01
_MAX_TRUE_MS = const(4102444800000)  # 2100-01-01
_MAX_RTT_MS = const(20000)
_MAX_SAMPLES = const(5)
_PPB = const(1000000000)
_MAX_SKEW_PPB = const(150000000)  # 15 %: no oscillator is that bad
_WANDER_PPB_PER_H = const(100000)  # how fast an oscillator's rate may wander: 100 ppm/h
_FRESH_DRIFT_PPB = const(60000000)  # with one sample only, any oscillator: 6 %
_BURST_MS = const(60000)  # exchanges closer than this are one sample


def _isqrt(n):
    """Integer square root (Newton): no floats on the way."""
    if n < 2:
        return n
    x = 1 << ((n.bit_length() + 1) >> 1) if hasattr(n, "bit_length") else n
    while True:
        y = (x + n // x) >> 1
        if y >= x:
            return x
        x = y


class Clock:
    def __init__(self, record=None, use_skew=True):
        self.use_skew = use_skew
        self.samples = []  # [local ms at the midpoint, offset ms, round trip ms]
        self.suspect = None
        self.skew = 0  # d(offset)/d(local), parts per billion
        self.off0 = 0  # offset at local time l0
        self.l0 = 0
        self.syncs = 0
        if record:
            self.samples = [list(s) for s in record.get("s", ())]
            self.suspect = record.get("x")
            self.syncs = record.get("n", 0)
            self._fit()

    def to_record(self):
        return {"s": self.samples, "x": self.suspect, "n": self.syncs}

    @property
    def synced(self):
        return bool(self.samples)

    # the model ------------------------------------------------------------------
    def offset(self, local_ms):
        return self.off0 + (self.skew * (local_ms - self.l0)) // _PPB

    def true_ms(self, local_ms):
        """Estimated true time (epoch ms) at a local clock reading."""
        return local_ms + self.offset(local_ms)

    def local_ms(self, true_ms):
        """The first local reading at which true time true_ms is reached."""
        # true = l + off0 + skew (l - l0) / 1e9  =>  solve for l, then settle the
        # rounding so that true_ms(l) >= true_ms > true_ms(l - 1).
        l = self.l0 + ((true_ms - self.l0 - self.off0) * _PPB) // (_PPB + self.skew)
        while self.true_ms(l) < true_ms:
            l += 1
        while self.true_ms(l - 1) >= true_ms:
            l -= 1
        return l

    def error_bound_ms(self, local_ms):
        """How far true_ms(local_ms) may be off, by the model's own account.

        The best sample's half round trip; the skew's own uncertainty (its
        endpoints' half round trips over the span between them) times the time
        since the newest sample; and the oscillator's wander (at most 100 ppm
        per hour) integrated over that time. With one sample, any oscillator
        error is possible. A clock without skew estimation trusts its
        oscillator: its bound is the sample's alone.
        """
        if not self.samples:
            return 1 << 62
        s = self.samples
        dt = abs(local_ms - s[-1][0])
        # The offset is a weighted mix of the samples: so is its error.
        sw = swe = 0
        for x in s:
            w = self._weight(x, s[-1][0])
            sw += w
            swe += w * (x[2] // 2)
        bound = swe // sw + 50
        if not self.use_skew:
            return bound
        if len(s) < 2:
            return bound + (_FRESH_DRIFT_PPB * dt) // _PPB
        span = max(s[-1][0] - s[0][0], 1)
        skew_err = ((s[0][2] + s[-1][2]) // 2 * _PPB) // span
        return bound + ((skew_err + _WANDER_PPB_PER_H * (span // 2 + dt) // 3600000) * dt) // _PPB

    def _tolerance(self, local_ms):
        """How far a sample may sit from the model before it is suspect.

        Unlike error_bound_ms, this never trusts the oscillator: without a skew
        estimate, any oscillator error is allowed for.
        """
        if self.use_skew and len(self.samples) > 1:
            return self.error_bound_ms(local_ms)
        return self.samples[-1][2] // 2 + (_FRESH_DRIFT_PPB * abs(local_ms - self.samples[-1][0])) // _PPB

    # samples -----------------------------------------------------------------------
    def add(self, l1, t2, t3, l4):
        """Learn from one exchange (local send, true receive, true send, local receive)."""
        if not (_MIN_TRUE_MS <= t2 <= _MAX_TRUE_MS and _MIN_TRUE_MS <= t3 <= _MAX_TRUE_MS):
            return REFUSED_TIME
        rtt = (l4 - l1) - (t3 - t2)
        if rtt < 0 or t3 < t2:
            return REFUSED_ORDER
        if rtt > _MAX_RTT_MS:
            return REFUSED_SLOW
        mid = (l1 + l4) // 2
        off = (t2 + t3) // 2 - mid
        sample = [mid, off, rtt]
        if self.samples:
            tol = self._tolerance(mid) + rtt // 2 + 1000
            if abs(off - self.offset(mid)) > tol:
                s = self.suspect
                if s is not None and abs((off - s[1]) - 0) <= rtt // 2 + s[2] // 2 + 1000 + (
                        _FRESH_DRIFT_PPB * abs(mid - s[0])) // _PPB:
                    self.samples = [s, sample]  # a real jump: start again from the two
                    self.suspect = None
                    self.syncs += 1
                    self._fit()
                    return JUMPED
                self.suspect = sample
                return SUSPECT
        self.suspect = None
        last = self.samples[-1] if self.samples else None
        if last is not None and mid - last[0] < _BURST_MS:
            # Exchanges of one wake make one sample: their weighted mean offset,
            # and a round trip that shrinks as they agree (1/r^2 weights add up).
            w1 = self._weight(last, last[0])
            w2 = self._weight(sample, mid)
            moved = last[1] + (self.skew * (mid - last[0])) // _PPB
            last[1] = (moved * w1 + off * w2) // (w1 + w2)
            last[0] = mid
            last[2] = max(0, 2 * (_isqrt(10 ** 15 // (w1 + w2)) - 10))
        else:
            self.samples.append(sample)
            if len(self.samples) > _MAX_SAMPLES:
                self.samples.pop(0)
            self.syncs += 1
        self._fit()
        return OK

    @staticmethod
    def _weight(sample, newest):
        # Inverse variance: a sample's error is up to half its round trip, and
        # carrying it forward in time adds what the wandering rate may have
        # changed since (taken as 100 ppm of its age).
        half = sample[2] // 2 + 10
        aged = (newest - sample[0]) // 10000  # 100 ppm of the age, in ms
        return (10 ** 15) // (half * half + aged * aged)

    def _fit(self):
        s = self.samples
        if not s:
            return
        last = s[-1]
        self.l0 = last[0]
        if len(s) < 2 or not self.use_skew:
            # One sample (or no skew estimation): the best recent offset, no slope.
            best = min(s[-3:], key=lambda x: x[2]) if self.use_skew else last
            self.off0 = best[1] + (self.skew * (last[0] - best[0])) // _PPB if self.use_skew else last[1]
            if not self.use_skew:
                self.skew = 0
            return
        # Weighted least squares of offset against local time; a sample's weight
        # falls with the square of its round trip and with its age.
        sw = swx = swy = swxx = swxy = 0
        for sample in s:
            l, off = sample[0], sample[1]
            w = self._weight(sample, last[0])
            x = l - last[0]
            sw += w
            swx += w * x
            swy += w * off
            swxx += w * x * x
            swxy += w * x * off
        den = sw * swxx - swx * swx
        if den <= 0:
            self.off0 = swy // sw
            return
        skew = ((sw * swxy - swx * swy) * _PPB) // den
        skew = max(-_MAX_SKEW_PPB, min(_MAX_SKEW_PPB, skew))
        self.skew = skew
        # Intercept at x = 0 (the newest sample's time), with the slope fixed.
        self.off0 = (swy - (skew * swx) // _PPB) // sw
