"""`machine` for a virtual board served by host_tools/board/virtual_board/ (MIT licence).

Runs inside the MicroPython unix port that plays the board's chip. The unix
port's own `machine` has no pins, RTC or sleep, so the board's boot script puts
this module in sys.modules["machine"] (and `onewire`, `ds18x20` below under
their names) before any user code runs; `import machine` then finds it.

Nothing here keeps state that a reset would clear on a real chip: the server
behind the board holds the peripheral models (boards/virtual/models.py, on the
wall clock), the RTC, its memory, the watchdog and the reset cause, and every
call that touches them is a round trip to it (`_rpc`). Pins take the GPIO
numbers of the board the chip stands for (boards/esp32_devkitc or
boards/rp2040_picow PINS) or their logical names ("heat", "window", ...): a
relay pin drives the model's relay (active-low where the real board's module
is), an input pin reads the model (a window open, a button pressed) through the
real board's pull and inversion. The 1-Wire bus reads the model's temperature
sensor; the heat pump's UART is the model's Modbus responder.

Not modelled: pin IRQs never fire (so the BL0937 pulse meter counts nothing),
no I2C/SPI/ADC/PWM, time.localtime() follows the host clock, not RTC.datetime().
"""
import sys
import time

_rpc = None  # set by _attach(): call(name, *args) -> value, a round trip to the server
_cfg = {}

# reset_cause() values (the ESP32 port's numbering)
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
# wake_reason() values
PIN_WAKE = 2
EXT0_WAKE = 2
EXT1_WAKE = 3
TIMER_WAKE = 4
TOUCHPAD_WAKE = 5
ULP_WAKE = 6
# lightsleep/deepsleep "wake" kinds kept for API compatibility
IDLE = 0
SLEEP = 2
DEEPSLEEP = 4


def _attach(rpc, cfg):
    """Wire the module to its server (the boot script does this once per boot)."""
    global _rpc, _cfg
    _rpc = rpc
    _cfg = cfg


def _hang():
    # The server ends the interpreter; until then nothing else may run.
    while True:
        time.sleep_ms(1000)


def reset():
    """Hard reset: the interpreter restarts from boot.py, RTC memory is lost."""
    _rpc("reset")
    _hang()


def soft_reset():
    """Soft reset, as the REPL's Ctrl-D: a fresh interpreter, RTC and pins kept."""
    raise SystemExit


def bootloader(*_args):
    """A virtual board has no ROM bootloader: it resets instead."""
    reset()


def reset_cause():
    return _cfg["cause"]


def wake_reason():
    return TIMER_WAKE if _cfg["cause"] == DEEPSLEEP_RESET else 0


def deepsleep(ms=None):
    """Sleep ms milliseconds (None: until reset), then boot again with reset
    cause DEEPSLEEP_RESET; RTC memory and held pins are kept, nothing else."""
    _rpc("deepsleep", None if ms is None else int(ms))
    _hang()


def lightsleep(ms=None):
    if ms is None:
        _hang()
    time.sleep_ms(int(ms))


sleep = lightsleep


def idle():
    time.sleep_ms(1)


def unique_id():
    return bytes.fromhex(_cfg["uid"])


def freq(hz=None):
    if hz is None:
        return _cfg["freq"]
    _cfg["freq"] = int(hz)


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


def time_pulse_us(pin, level, timeout_us=1000000):
    return -2


class Pin:
    """A GPIO by number (or logical name), backed by the board's models."""

    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_DOWN = 1
    PULL_UP = 2
    PULL_HOLD = 4
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, alt=None, hold=None):
        self._id = id
        self._handler = None
        self.init(mode, pull, value=value, drive=drive, hold=hold)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, alt=None, hold=None):
        _rpc("pin_init", self._id, None if mode == -1 else mode, None if pull == -1 else pull,
             value if value is None else (1 if value else 0), hold)

    def value(self, x=None):
        if x is None:
            return _rpc("pin_get", self._id)
        _rpc("pin_set", self._id, 1 if x else 0)

    __call__ = value

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3, *, priority=1, wake=None, hard=False):
        # accepted and remembered; the models produce no edges
        self._handler = handler
        return self

    def __repr__(self):
        return "Pin(%r)" % (self._id,)


class Signal:
    def __init__(self, pin, *args, invert=False, **kw):
        self._pin = pin if isinstance(pin, Pin) else Pin(pin, *args, **kw)
        self._inv = 1 if invert else 0

    def value(self, x=None):
        if x is None:
            return self._pin.value() ^ self._inv
        self._pin.value((1 if x else 0) ^ self._inv)

    __call__ = value

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class RTC:
    """The chip's real-time clock: its time and its memory outlive deep sleep and
    soft resets (the memory is lost on a hard reset or power loss)."""

    def __init__(self, id=0):
        pass

    def init(self, t=None):
        if t is not None:
            self.datetime(t)

    def datetime(self, t=None):
        if t is None:
            return tuple(_rpc("rtc_datetime", None))
        _rpc("rtc_datetime", list(t))

    def memory(self, data=None):
        if data is None:
            return bytes.fromhex(_rpc("rtc_memory", None))
        b = bytes(data)
        if len(b) > 2048:
            raise ValueError("buffer too long")
        _rpc("rtc_memory", b.hex())


class WDT:
    """The watchdog: once started it cannot be stopped, and it keeps running
    through a soft reset (as on the chips); starve it and the board resets."""

    def __init__(self, id=0, timeout=5000):
        _rpc("wdt", int(timeout))

    def feed(self):
        _rpc("wdt_feed")


class UART:
    """The heat pump's Modbus UART (the model answers at once); other UARTs
    accept writes and never receive."""

    def __init__(self, id, baudrate=115200, *args, **kw):
        self._id = id
        self.init(baudrate, *args, **kw)

    def init(self, baudrate=115200, *args, **kw):
        _rpc("uart_init", self._id)

    def write(self, buf):
        return _rpc("uart_write", self._id, bytes(buf).hex())

    def read(self, n=-1):
        r = _rpc("uart_read", self._id, n)
        return None if r is None else bytes.fromhex(r)

    def readinto(self, buf, n=-1):
        r = self.read(len(buf) if n < 0 else n)
        if r is None:
            return None
        buf[: len(r)] = r
        return len(r)

    def any(self):
        return _rpc("uart_any", self._id)

    def flush(self):
        pass

    def deinit(self):
        pass


# --- 1-Wire and DS18B20 (the modules `onewire` and `ds18x20` on a board) ---------


class OneWireError(Exception):
    pass


class _OneWire:
    def __init__(self, pin):
        self.pin = pin._id if isinstance(pin, Pin) else pin

    def reset(self, required=False):
        present = _rpc("ow_present", self.pin)
        if required and not present:
            raise OneWireError
        return present

    def readbit(self):
        return 1  # a conversion is always done by the time anyone asks

    def scan(self):
        if _rpc("ow_present", self.pin):
            return [bytearray(b"\x28\x56\x49\x30\x00\x00\x00\x8c")]
        return []


class _DS18X20:
    def __init__(self, onewire):
        self.ow = onewire

    def scan(self):
        return self.ow.scan()

    def convert_temp(self):
        if not self.ow.reset():
            raise OneWireError

    def read_temp(self, rom):
        t = _rpc("ow_temp", self.ow.pin)
        if t is None:
            raise OneWireError
        return t


class onewire:  # noqa: N801 - installed as the module `onewire`
    OneWire = _OneWire
    OneWireError = OneWireError


class ds18x20:  # noqa: N801 - installed as the module `ds18x20`
    DS18X20 = _DS18X20


def _install():
    """Put this module (and the 1-Wire modules) where `import` looks first."""
    sys.modules["machine"] = sys.modules[__name__]
    sys.modules["onewire"] = onewire
    sys.modules["ds18x20"] = ds18x20
