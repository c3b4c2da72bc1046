"""Board drivers on real hardware: boards/HAL.md implemented with `machine` (MIT licence).

The ESP32 and RP2040 boards share these drivers; a board's board.py only names
its pins (PINS) and options and calls `Board(name, port, PINS, role, OPTIONS)`.
`machine`, `onewire`, `ds18x20` and `esp32` are imported where they are used,
never at module level, so `import hal` works on the unix port and under CPython
(the tests hand it a fake `machine`).

Options, per logical name (all optional):
    relay:   {"active_low": bool}
    input:   {"pull": "up" | "down" | None, "inverted": bool}   value() 1 = active
    sensor:  {"parasite": bool}       DS18B20 on two wires: wait the full 750 ms
    "meter": {"sample_ms": int, "current_level": 0 | 1}   SEL level selecting current
             (BL0937: 0, HLW8012: 1)
    "modbus": {"uart": int, "baudrate": int}     pins: modbus_tx, modbus_rx, modbus_de
"""
try:
    from micropython import const
    from time import sleep_ms, ticks_diff, ticks_ms
except ImportError:  # CPython
    from spot._cpython import const, sleep_ms, ticks_diff, ticks_ms

_RTC_MEM_MAX = const(2048)
_LIGHTSLEEP_MAX_MS = const(4260000)  # 71 min: rp2's lightsleep timer tops out near 72
_WDT_MARGIN_MS = const(500)  # a sleep chunk ends this long before the watchdog would bite
_RP2_WDT_MAX_MS = const(8388)  # RP2040 watchdog counter limit
_DS_CONVERT_MAX_MS = const(800)  # 12-bit conversion is 750 ms at most
_DS_POLL_MS = const(10)
_OW_READ_ROM = const(0x33)
_DS_FAMILIES = (0x10, 0x22, 0x28)  # DS18S20, DS1822, DS18B20: what ds18x20 reads
_SEL_SETTLE_MS = const(100)  # CF1 is not valid right after SEL changes
_SAMPLE_MS = const(2000)
_BAUD = const(9600)

# What each role is handed (boards/HAL.md): relays, inputs, sensors, meter, uarts.
ROLES = {
    "thermostat": (("heat",), ("window",), ("room",), False, ()),
    "smart_plug": (("load",), ("button",), (), True, ()),
    "heat_pump": (("sg1", "sg2"), ("compressor",), ("store",), False, ("modbus",)),
}
# Pins a role needs besides its relays, inputs and sensors.
METER_PINS = ("cf", "cf1", "sel")
UART_PINS = ("_tx", "_rx")  # appended to the uart's name; "<name>_de" is optional

# The rp2 port keeps "RTC memory" in RAM: it survives lightsleep (which returns),
# not a reset. See Board.rtc_memory.
_ram = bytearray(0)


def role_parts(role):
    """(relays, inputs, sensors, has_meter, uarts) for a role name."""
    key = role.replace("-", "_").replace(" ", "_")
    try:
        return ROLES[key]
    except KeyError:
        raise ValueError("unknown role %r (one of: %s)" % (role, ", ".join(sorted(ROLES))))


class Relay:
    """A relay on an output pin. Off at boot, except after an ESP32 deep-sleep wake
    with `keep`: the pad was held through the sleep and is adopted, not switched."""

    def __init__(self, pin, active_low=False, hold=False, keep=False):
        from machine import Pin

        self._inv = 1 if active_low else 0
        self._hold = hold
        self._out = Pin.OUT
        if keep:
            p = Pin(pin)  # no reconfiguration: the held pad keeps driving the relay
            self.on = bool(p.value() ^ self._inv)
        elif hold:
            p = Pin(pin, Pin.OUT, value=self._inv, hold=True)
            self.on = False
        else:
            p = Pin(pin, Pin.OUT, value=self._inv)
            self.on = False
        self._pin = p

    def set(self, on):
        on = bool(on)
        level = (1 if on else 0) ^ self._inv
        if self._hold:
            # value is latched first, then the hold is released and re-taken: no glitch
            self._pin.init(self._out, value=level, hold=True)
        else:
            self._pin.value(level)
        self.on = on


class Input:
    """A digital input with an optional pull; `inverted` makes 1 mean active-low."""

    def __init__(self, pin, pull="up", inverted=False):
        from machine import Pin

        pulls = {"up": Pin.PULL_UP, "down": Pin.PULL_DOWN, None: None}
        self._pin = Pin(pin, Pin.IN, pulls[pull])
        self._inv = 1 if inverted else 0

    def value(self):
        return (1 if self._pin.value() else 0) ^ self._inv


class DS18B20:
    """One DS18B20 on its own 1-Wire pin. read() -> float degrees C, or None when
    the bus or the sensor fails in any way (no device, CRC error, timeout).

    One read is one bounded attempt, never retried within a control step: READ ROM
    (a few ms) rather than onewire's scan(), which on a floating or shorted line
    (no sensor fitted) searches up to 255 passes, seconds on rp2; then one
    conversion of at most _DS_CONVERT_MAX_MS. A failed sensor costs a step about
    that much, far below any watchdog (rp2's caps at 8.4 s).
    """

    def __init__(self, pin, parasite=False):
        self._pin = pin
        self._parasite = parasite
        self._ow = None
        self._ds = None
        self._rom = None

    def _find(self):
        """The sensor's ROM code by READ ROM (one device per pin), or None."""
        ow = self._ow
        if not ow.reset():
            return None  # no presence pulse
        ow.writebyte(_OW_READ_ROM)
        rom = bytearray(8)
        ow.readinto(rom)
        # A floating line reads as zeros (whose CRC is 0 too): the family code decides.
        if rom[0] not in _DS_FAMILIES or ow.crc8(rom):
            return None
        return rom

    def read(self):
        try:
            ds = self._ds
            if ds is None:
                import ds18x20
                import onewire
                from machine import Pin

                self._ow = onewire.OneWire(Pin(self._pin))
                ds = self._ds = ds18x20.DS18X20(self._ow)
            if self._rom is None:
                self._rom = self._find()
                if self._rom is None:
                    return None
            ds.convert_temp()
            if self._parasite:
                # on two wires the line is held up for the conversion: nothing to poll
                sleep_ms(_DS_CONVERT_MAX_MS)
            else:
                t0 = ticks_ms()
                # a powered DS18B20 answers read slots with 0 until the conversion is done
                while not self._ow.readbit():
                    if ticks_diff(ticks_ms(), t0) >= _DS_CONVERT_MAX_MS:
                        self._rom = None
                        return None
                    sleep_ms(_DS_POLL_MS)
            return ds.read_temp(self._rom)
        except Exception:  # OneWireError, OSError, ds18x20's CRC Exception: all mean "no answer"
            self._rom = None
            return None


def _bump(counts, i):
    """An IRQ handler adding one to counts[i]: a closure over a preallocated array,
    so a pulse allocates nothing (safe as a hard IRQ)."""

    def irq(_pin):
        counts[i] += 1

    return irq


class PulseMeter:
    """A BL0937 / HLW8012 metering chip: CF pulses at a rate proportional to active
    power, CF1 at a rate proportional to current or voltage, chosen by SEL.

    meter() samples for sample_ms: the first half with CF1 on current, the second on
    voltage, after a settling pause at each switch. It returns (u_raw, i_raw, p_raw):
    CF1 pulses in the voltage half, CF1 pulses in the current half, CF pulses over
    both halves. None when CF1 gave no voltage pulses: the chip is not answering.
    """

    def __init__(self, cf, cf1, sel, sample_ms=_SAMPLE_MS, current_level=0, hard=False):
        from array import array

        import machine
        from machine import Pin

        self.counts = array("I", (0, 0))  # [CF, CF1] pulses, bumped by the IRQs
        self.sample_ms = sample_ms
        self._half = sample_ms // 2
        self._cur = 1 if current_level else 0
        self._off = machine.disable_irq
        self._on = machine.enable_irq
        self._sel = Pin(sel, Pin.OUT, value=self._cur)
        self._cf = Pin(cf, Pin.IN)
        self._cf1 = Pin(cf1, Pin.IN)
        for p, i in ((self._cf, 0), (self._cf1, 1)):
            if hard:  # rp2: counted in the interrupt itself, no scheduler queue to overflow
                p.irq(_bump(self.counts, i), Pin.IRQ_RISING, hard=True)
            else:  # esp32 has no hard pin IRQs; its handlers are scheduled
                p.irq(_bump(self.counts, i), Pin.IRQ_RISING)

    def _take(self):
        """(CF, CF1) pulses since the last take, and start counting afresh."""
        c = self.counts
        s = self._off()
        cf, cf1 = c[0], c[1]
        c[0] = 0
        c[1] = 0
        self._on(s)
        return cf, cf1

    def _phase(self, level):
        self._sel.value(level)
        sleep_ms(_SEL_SETTLE_MS)
        self._take()  # pulses while settling are dropped
        sleep_ms(self._half)
        return self._take()

    def meter(self):
        p1, i_raw = self._phase(self._cur)
        p2, u_raw = self._phase(1 - self._cur)
        self._sel.value(self._cur)
        if not u_raw:
            return None
        return (u_raw, i_raw, p1 + p2)


class ModbusUart:
    """machine.UART for Modbus RTU (9600 8N1 by default). With a `de` pin (RS-485
    driver enable) the driver is switched on for each write and off once the last
    byte has left the shift register."""

    def __init__(self, uart_id, tx, rx, de=None, baudrate=_BAUD):
        from machine import UART, Pin

        self._uart = UART(uart_id, baudrate=baudrate, bits=8, parity=None, stop=1,
                          tx=Pin(tx), rx=Pin(rx), timeout=0)
        self._de = Pin(de, Pin.OUT, value=0) if de is not None else None
        self._baud = baudrate

    def write(self, buf):
        de = self._de
        if de is None:
            return self._uart.write(buf)
        de.value(1)
        try:
            u = self._uart
            n = u.write(buf)
            if hasattr(u, "flush"):
                u.flush()  # returns when the last stop bit is out
            else:  # older ports: wait out 10 bit times a byte
                sleep_ms(len(buf) * 10000 // self._baud + 1)
        finally:
            de.value(0)
        return n

    def read(self, n):
        return self._uart.read(n)

    def any(self):
        return self._uart.any()


def reset_cause():
    """machine.reset_cause() as a boards/HAL.md string. Constants a port lacks are
    skipped (rp2 has no DEEPSLEEP_RESET); anything unnamed counts as "hard"."""
    import machine

    c = machine.reset_cause()
    for attr, name in (("DEEPSLEEP_RESET", "deep_sleep"), ("WDT_RESET", "watchdog"),
                       ("SOFT_RESET", "soft"), ("PWRON_RESET", "power_on"),
                       ("HARD_RESET", "hard")):
        k = getattr(machine, attr, None)
        if k is not None and c == k:
            return name
    return "hard"


def _radio_off():
    """Power the CYW43 down (rp2, Pico W) before lightsleep: a live radio keeps waking
    the chip and can hang it. The next wake's connect step powers it up again."""
    try:
        import network
    except ImportError:
        return
    try:
        w = network.WLAN(network.STA_IF)
        if w.active():
            w.disconnect()
            w.active(False)
    except (OSError, AttributeError):
        pass


class Board:
    """boards/HAL.md on hardware. port is "esp32" (deep sleep, RTC memory, pad hold)
    or "rp2" (chained lightsleep, RAM-kept memory, hard IRQs)."""

    def __init__(self, name, port, pins, role, options=None):
        relays, inputs, sensors, has_meter, uarts = role_parts(role)
        opts = options or {}
        self.name = name
        self.port = port
        self.role = role
        self._pins = pins
        self._opts = opts
        self._cause = reset_cause()
        self._wdt = None
        self.watchdog_ms = 0
        esp = port == "esp32"
        keep = esp and self._cause == "deep_sleep"
        self._relays = {}
        for n in relays:
            o = opts.get(n, {})
            self._relays[n] = Relay(self._pin(n), o.get("active_low", False), esp, keep)
        self._inputs = {}
        for n in inputs:
            o = opts.get(n, {})
            self._inputs[n] = Input(self._pin(n), o.get("pull", "up"), o.get("inverted", False))
        self._sensors = {}
        for n in sensors:
            self._sensors[n] = DS18B20(self._pin(n), opts.get(n, {}).get("parasite", False))
        o = opts.get("meter", {})
        self.sample_ms = o.get("sample_ms", _SAMPLE_MS)
        self._meter = None
        if has_meter:
            cf, cf1, sel = (self._pin(n) for n in METER_PINS)
            self._meter = PulseMeter(cf, cf1, sel, self.sample_ms,
                                     o.get("current_level", 0), hard=port == "rp2")
        self._uart_names = uarts
        self._uarts = {}

    def _pin(self, n):
        try:
            return self._pins[n]
        except KeyError:
            raise ValueError("%s has no pin for %r (role %s)" % (self.name, n, self.role))

    def _part(self, table, kind, n):
        try:
            return table[n]
        except KeyError:
            raise ValueError("no %s %r on %s for role %s" % (kind, n, self.name, self.role))

    def relay(self, name):
        return self._part(self._relays, "relay", name)

    def input(self, name):
        return self._part(self._inputs, "input", name)

    def temperature(self, name):
        return self._part(self._sensors, "sensor", name).read()

    def meter(self):
        return self._meter.meter() if self._meter else None

    def uart(self, name):
        u = self._uarts.get(name)
        if u is None:
            if name not in self._uart_names:
                raise ValueError("no uart %r on %s for role %s" % (name, self.name, self.role))
            o = self._opts.get(name, {})
            u = ModbusUart(o.get("uart", 1), self._pin(name + UART_PINS[0]),
                           self._pin(name + UART_PINS[1]), self._pins.get(name + "_de"),
                           o.get("baudrate", _BAUD))
            self._uarts[name] = u
        return u

    def rtc_memory(self):
        """ESP32: the RTC slow memory (kept through deep sleep, lost on power loss).
        rp2: a module-level bytearray; lightsleep returns to the same program, so it
        survives every sleep, but a reset or power loss clears it."""
        if self.port == "esp32":
            import machine

            return bytes(machine.RTC().memory())
        return bytes(_ram)

    def set_rtc_memory(self, b):
        if len(b) > _RTC_MEM_MAX:
            raise ValueError("rtc memory holds at most %d bytes, not %d" % (_RTC_MEM_MAX, len(b)))
        if self.port == "esp32":
            import machine

            machine.RTC().memory(b)
        else:
            _ram[:] = b

    def watchdog(self, timeout_ms):
        """machine.WDT. rp2's counter stops at 8388 ms: a longer timeout is cut to
        that, and watchdog_ms says what was granted."""
        from machine import WDT

        if self.port == "rp2" and timeout_ms > _RP2_WDT_MAX_MS:
            timeout_ms = _RP2_WDT_MAX_MS
        self._wdt = WDT(timeout=timeout_ms)
        self.watchdog_ms = timeout_ms
        return self._wdt

    def reset_cause(self):
        return self._cause

    def ticks_ms(self):
        return ticks_ms()

    def sleep(self, ms):
        """ESP32: deep sleep (does not return; held relay pads stay as they are).
        rp2: lightsleep in chunks of at most 71 minutes, shorter than the watchdog
        when one runs (fed between chunks), until ms have passed by ticks_ms: an
        early wake sleeps again for the rest."""
        import machine

        if self.port == "esp32":
            try:
                import esp32

                esp32.gpio_deep_sleep_hold(True)  # non-RTC pads keep their hold too
            except (ImportError, AttributeError):
                pass
            machine.deepsleep(ms)
            return
        if self.port != "rp2":
            sleep_ms(ms)
            return
        _radio_off()
        chunk = _LIGHTSLEEP_MAX_MS
        wdt = self._wdt
        if wdt is not None:
            chunk = min(chunk, max(self.watchdog_ms - _WDT_MARGIN_MS, self.watchdog_ms // 2))
        done = 0
        last = ticks_ms()
        while done < ms:
            n = min(ms - done, chunk)
            machine.lightsleep(n)
            now = ticks_ms()
            slept = ticks_diff(now, last)
            done += slept if slept > 0 else n  # a clock that stood still: trust the request
            last = now
            if wdt is not None:
                wdt.feed()


def make(name, port, pins, options, role, overrides=None):
    """A board file's make(): the Board for a role from its pin map; overrides (a device
    config's "board" entry) replace OPTIONS entries by name."""
    if overrides:
        options = dict(options)
        options.update(overrides)
    return Board(name, port, pins, role, options)
