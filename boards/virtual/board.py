"""The virtual board: the board interface of boards/HAL.md on top of one peripheral model.

Time is simulated (board.now_ms, epoch ms): advance(ms) and sleep(ms) step the
model, or, given a clock callable, every HAL call first catches the model up to
clock(). The board never judges the role: the model's violations() does, and
the board only adds what a board sees (relay switch counts, watchdog expiries).

`chip` says which board it stands in for, with that board's limits:
  "esp32"  (ESP32-DevKitC): deep sleep of any length, RTC memory kept across it,
           a watchdog of any timeout;
  "rp2040" (Pico W): lightsleep chained in steps of at most 71 minutes (counted
           in `sleeps`), RTC memory only in RAM, a watchdog of 8388 ms at most.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from models import START_MS, HeatPump, PlugLoad, Room

_CHUNK_MS = const(10000)  # the longest model step; the plug's is one meter sample
_RTC_MAX = const(2048)
_RP2_SLEEP_MAX_MS = const(4260000)  # lightsleep caps near 72 min on rp2: chain 71-min steps
_RP2_WDT_MAX_MS = const(8388)


class _Pin:
    """A relay (set, on, switches) or an input (value) by its logical name."""

    def __init__(self, board, attr):
        self._board = board
        self._attr = attr
        self.on = False
        self.switches = 0
        self.changed_ms = None

    def set(self, on):
        b = self._board
        b._sync()
        on = bool(on)
        if on != self.on:
            self.on = on
            self.switches += 1
            self.changed_ms = b.now_ms
            setattr(b.model, self._attr, on)  # the model sees it from its next step

    def value(self):
        self._board._sync()
        return 1 if getattr(self._board.model, self._attr) else 0


class VirtualBoard:
    def __init__(self, role, model, relays, inputs, sensor=None, uart=None, clock=None,
                 chip="esp32"):
        if chip not in ("esp32", "rp2040"):
            raise ValueError("no virtual board for chip " + chip)
        self.name = "virtual:" + chip
        self.chip = chip
        self.sleeps = 0
        self.role = role
        self.model = model
        self.clock = clock
        self.cause = "power_on"
        self.sample_ms = getattr(model, "sample_ms", 1000)
        self._chunk = min(_CHUNK_MS, self.sample_ms) if role == "smart_plug" else _CHUNK_MS
        self._relays = {}
        for name in relays:
            self._relays[name] = _Pin(self, name)
        self._inputs = {}
        for name in inputs:
            self._inputs[name] = _Pin(self, inputs[name])
        self._sensor = sensor
        self._uart = uart
        self._rtc = b""
        self._wdt = 0  # timeout ms; 0: no watchdog started
        self._due = 0
        self.fed_ms = None
        self.watchdog_resets = 0

    @property
    def now_ms(self):
        return self.model.now_ms

    def advance(self, ms):
        """Step the model ms milliseconds on; a starved watchdog is counted, not raised."""
        end = self.model.now_ms + int(ms)
        while self.model.now_ms < end:
            self.model.step_ms(min(self._chunk, end - self.model.now_ms))
            while self._wdt and self.model.now_ms > self._due:
                self.watchdog_resets += 1  # a real board would reset here and start again
                self._due += self._wdt

    def _sync(self):
        if self.clock is not None:
            t = self.clock()
            if t > self.model.now_ms:
                self.advance(t - self.model.now_ms)

    def relay(self, name):
        if name not in self._relays:
            raise ValueError("no relay " + name)
        return self._relays[name]

    def input(self, name):
        if name not in self._inputs:
            raise ValueError("no input " + name)
        return self._inputs[name]

    def temperature(self, name):
        if name != self._sensor:
            raise ValueError("no sensor " + name)
        self._sync()
        return self.model.temperature()

    def meter(self):
        if self.role != "smart_plug":
            raise ValueError("no meter")
        self._sync()
        return self.model.meter()

    def uart(self, name):
        if name != self._uart:
            raise ValueError("no uart " + name)
        self._sync()
        return self.model.port  # answers at once: the bus has no latency here

    def rtc_memory(self):
        return self._rtc

    def set_rtc_memory(self, b):
        if len(b) > _RTC_MAX:
            raise ValueError("rtc memory holds at most 2 KB")
        self._rtc = bytes(b)

    def watchdog(self, timeout_ms):
        """Start (or re-time) the watchdog; the board is its own watchdog object."""
        self._sync()
        if self.chip == "rp2040":
            timeout_ms = min(int(timeout_ms), _RP2_WDT_MAX_MS)
        self._wdt = int(timeout_ms)
        self._due = self.model.now_ms + self._wdt
        return self

    def feed(self):
        self._sync()
        self.fed_ms = self.model.now_ms
        self._due = self.fed_ms + self._wdt

    def reset_cause(self):
        return self.cause

    def ticks_ms(self):
        self._sync()
        return self.model.now_ms & 0x3FFFFFFF

    def sleep(self, ms):
        # A sleeping board's watchdog does not run (ESP32 deep sleep powers it down),
        # so the deadline moves with the sleep; the models step on as in advance().
        self._due += int(ms)
        if self.chip == "rp2040":
            while ms > 0:  # chained lightsleeps, as boards/rp2040_picow does
                step = min(ms, _RP2_SLEEP_MAX_MS)
                self.sleeps += 1
                self.advance(step)
                ms -= step
            return
        self.sleeps += 1
        self.advance(ms)

    def switches(self):
        """{relay name: how many times it switched}."""
        out = {}
        for name in self._relays:
            out[name] = self._relays[name].switches
        return out

    def violations(self):
        return self.model.violations()


def make(role, seed=1, clock=None, start_ms=None, chip="esp32", **params):
    """A virtual board (chip "esp32" or "rp2040") for role "thermostat", "smart_plug"
    (load="fridge" | "kettle" | "heater" | "washer") or "heat_pump"; other params go
    to the model. clock="wall" runs the models on the wall clock (a device under the
    unix port: firmware/device.py passes its config's "board" map here)."""
    if clock == "wall":  # a board under the unix port: its models keep the wall's time
        import time

        try:
            from time import ticks_diff, ticks_ms
        except ImportError:
            from spot._cpython import ticks_diff, ticks_ms

        # The start from the wall (the models' time of day and season), the time since
        # by ticks: time.time() counts whole seconds on some ports (rp2).
        t0 = time.time_ns() // 1000000 if hasattr(time, "time_ns") else int(time.time() * 1000)
        if start_ms is None:
            start_ms = t0
        ticks = [ticks_ms(), start_ms]

        def clock():
            t = ticks_ms()
            ticks[1] += ticks_diff(t, ticks[0])  # called far more often than ticks wrap
            ticks[0] = t
            return ticks[1]

    if start_ms is None:
        start_ms = clock() if clock is not None else START_MS
    if role == "thermostat":
        model = Room(seed, start_ms, **params)
        return VirtualBoard(role, model, ("heat",), {"window": "window"}, "room", None, clock, chip)
    if role == "smart_plug":
        kind = params.pop("load", "fridge")
        model = PlugLoad(kind, seed, start_ms, **params)
        return VirtualBoard(role, model, ("load",), {"button": "button"}, None, None, clock, chip)
    if role == "heat_pump":
        model = HeatPump(seed, start_ms, **params)
        return VirtualBoard(role, model, ("sg1", "sg2"), {"compressor": "running"}, "store",
                            "modbus", clock, chip)
    raise ValueError("unknown role " + role)
