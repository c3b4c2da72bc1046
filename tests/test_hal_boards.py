"""The machine-backed board drivers (firmware/hal.py), the ESP32 and Pico W boards,
their freeze manifests and the ESP32 updater (firmware/ota.py).

No board is reachable here, so `machine`, `esp32`, `onewire`, `ds18x20` and
`network` are fakes injected into sys.modules. They model what the drivers rely
on: a pad with a level, a pull, an output register and an ESP32 pad hold that
outlives a deep-sleep reset; pin IRQs fired by edges; the ESP32's input-only
pads refusing output; rp2's lightsleep limit and watchdog limit; flash in
4096-byte blocks that must be erased before a write sets bits again.
"""
from __future__ import annotations

import array
import hashlib
import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import pytest

from conftest import MICROPYTHON, ROOT

import hal  # noqa: E402  (firmware/ is on sys.path through conftest)
import ota  # noqa: E402

BOARDS = ROOT / "boards"
ROLES = ("thermostat", "smart_plug", "heat_pump")


# ---------------------------------------------------------------------------
# fake machine
# ---------------------------------------------------------------------------
IN, OUT = 1, 3  # ESP-IDF's GPIO_MODE_INPUT and GPIO_MODE_INPUT_OUTPUT: bit 2 = output
PULL_DOWN, PULL_UP = 1, 2
IRQ_RISING, IRQ_FALLING = 1, 2


class DeepSleep(Exception):
    """machine.deepsleep() does not return: the chip resets."""


class Pad:
    """One GPIO pad: what it drives or reads, and every level it has shown."""

    def __init__(self, gpio: int) -> None:
        self.gpio = gpio
        self.mode: int | None = None
        self.pull: int | None = None
        self.reg = 0  # output register
        self.held: int | None = None  # latched level while the pad hold is on
        self.ext: int | None = None  # level driven from outside (inputs)
        self.handler = None
        self.trigger = 0
        self.hard = None
        self.history: list[int] = []

    @property
    def level(self) -> int:
        if self.held is not None:
            return self.held
        if self.mode is not None and self.mode & 2:
            return self.reg
        if self.ext is not None:
            return self.ext
        if self.pull == PULL_UP:
            return 1
        return 0  # pulled down or floating

    def record(self) -> None:
        if self.mode is not None and self.mode & 2 or self.held is not None:
            if not self.history or self.history[-1] != self.level:
                self.history.append(self.level)

    def drive(self, v: int, pin) -> None:
        old = self.level
        self.ext = v
        new = self.level
        if self.handler and ((old == 0 and new == 1 and self.trigger & IRQ_RISING)
                             or (old == 1 and new == 0 and self.trigger & IRQ_FALLING)):
            self.handler(pin)

    def pulse(self, n: int, pin) -> None:
        for _ in range(n):
            self.drive(1, pin)
            self.drive(0, pin)


def make_machine(port: str) -> types.ModuleType:
    m = types.ModuleType("machine")
    m.port = port
    m.pads = {}
    m.clock = [0]
    m.rtc_mem = b""
    m.lightsleeps = []
    m.deepsleeps = []
    m.early_wakes = []  # lightsleep calls cut short to these many ms
    m.wdts = []
    m.uarts = []
    m.irq_off = [0]
    if port == "esp32":
        m.PWRON_RESET, m.HARD_RESET, m.WDT_RESET, m.DEEPSLEEP_RESET, m.SOFT_RESET = 1, 2, 3, 4, 5
        valid = set(range(0, 40)) - {20, 24, 28, 29, 30, 31}
    else:  # rp2 names only these two
        m.PWRON_RESET, m.WDT_RESET = 1, 3
        valid = set(range(0, 30))
    m.cause = m.PWRON_RESET

    class Pin:
        def __init__(self, gpio, mode=None, pull=-1, *, value=None, hold=None):
            if gpio not in valid:
                raise ValueError("invalid pin")
            self.pad = m.pads.setdefault(gpio, Pad(gpio))
            if mode is not None or pull != -1 or value is not None or hold is not None:
                self.init(mode, pull, value=value, hold=hold)

        def init(self, mode=None, pull=-1, *, value=None, hold=None):
            pad = self.pad
            if hold is not None and port != "esp32":
                raise TypeError("unexpected keyword argument 'hold'")
            if value is not None:
                pad.reg = 1 if value else 0
            if mode is not None:
                if port == "esp32" and pad.gpio >= 34 and mode & 2:
                    raise ValueError("pin can only be input")
                pad.mode = mode
            if pull != -1:
                # input-only ESP32 pads have no pull resistors: the request does nothing
                pad.pull = None if port == "esp32" and pad.gpio >= 34 else pull
            if hold is not None:
                pad.held = None  # release: the pad takes its configuration now
                if hold:
                    pad.held = pad.level
            pad.record()

        def value(self, v=None):
            if v is None:
                return self.pad.level
            self.pad.reg = 1 if v else 0
            self.pad.record()

        def irq(self, handler=None, trigger=IRQ_RISING | IRQ_FALLING, **kw):
            if "hard" in kw and port == "esp32":
                raise TypeError("unexpected keyword argument 'hard'")
            self.pad.handler, self.pad.trigger, self.pad.hard = handler, trigger, kw.get("hard")

    Pin.IN, Pin.OUT, Pin.PULL_UP, Pin.PULL_DOWN = IN, OUT, PULL_UP, PULL_DOWN
    Pin.IRQ_RISING, Pin.IRQ_FALLING = IRQ_RISING, IRQ_FALLING
    m.Pin = Pin

    def pin(gpio):
        return Pin(gpio)

    m.pin = pin

    class RTC:
        def memory(self, data=None):
            if port != "esp32":
                raise AttributeError("memory")
            if data is None:
                return m.rtc_mem
            if len(data) > 2048:
                raise ValueError("buffer too long")
            m.rtc_mem = bytes(data)

    m.RTC = RTC

    class WDT:
        def __init__(self, id=0, timeout=5000):
            if port == "rp2" and timeout > 8388:
                raise ValueError("timeout too long")
            self.timeout = timeout
            self.feeds = 0
            m.wdts.append(self)

        def feed(self):
            self.feeds += 1

    m.WDT = WDT

    class UART:
        def __init__(self, id, baudrate=115200, bits=8, parity=None, stop=1, tx=None, rx=None,
                     timeout=0):
            self.id, self.args = id, dict(baudrate=baudrate, bits=bits, parity=parity, stop=stop,
                                          tx=tx.pad.gpio, rx=rx.pad.gpio, timeout=timeout)
            self.sent = []  # (bytes, DE level while written)
            self.flushes = 0
            self.rx = b""
            m.uarts.append(self)

        def write(self, buf):
            de = m.pads.get(m.de_gpio) if hasattr(m, "de_gpio") else None
            self.sent.append((bytes(buf), de.level if de else None))
            return len(buf)

        def flush(self):
            self.flushes += 1

        def read(self, n):
            if not self.rx:
                return None
            out, self.rx = self.rx[:n], self.rx[n:]
            return out

        def any(self):
            return len(self.rx)

    m.UART = UART

    def reset_cause():
        return m.cause

    m.reset_cause = reset_cause

    def deepsleep(ms=0):
        m.deepsleeps.append(ms)
        raise DeepSleep(ms)

    m.deepsleep = deepsleep

    def lightsleep(ms=None):
        if port == "rp2" and ms is not None and ms * 1000 >= 1 << 32:
            raise ValueError("sleep too long")  # the timer alarm is 32 bits of microseconds
        m.lightsleeps.append(ms)
        m.clock[0] += m.early_wakes.pop(0) if m.early_wakes else ms

    m.lightsleep = lightsleep

    def disable_irq():
        m.irq_off[0] += 1
        return 1

    def enable_irq(state):
        m.irq_off[0] -= 1

    m.disable_irq, m.enable_irq = disable_irq, enable_irq

    def chip_reset(cause):
        """A chip reset: digital configuration gone; ESP32 pad holds survive unless
        power went away."""
        for pad in m.pads.values():
            pad.mode, pad.pull, pad.reg, pad.handler = None, None, 0, None
            if cause == m.PWRON_RESET:
                pad.held = None
        if cause == m.PWRON_RESET:
            m.rtc_mem = b""
        m.cause = cause

    m.chip_reset = chip_reset
    return m


@pytest.fixture
def hw(monkeypatch):
    """A fake machine for a port, wired into sys.modules and hal's clock."""

    def install(port: str, chip=None):
        m = make_machine(port)
        monkeypatch.setitem(sys.modules, "machine", m)
        esp = types.ModuleType("esp32")
        esp.holds = []
        esp.gpio_deep_sleep_hold = esp.holds.append
        monkeypatch.setitem(sys.modules, "esp32", esp)

        def ticks_ms():
            return m.clock[0]

        def sleep_ms(ms):
            if m.chip is not None:
                m.chip.run(ms)
            m.clock[0] += ms

        m.chip = chip
        monkeypatch.setattr(hal, "ticks_ms", ticks_ms)
        monkeypatch.setattr(hal, "sleep_ms", sleep_ms)
        hal._ram[:] = b""
        return m

    return install


# ---------------------------------------------------------------------------
# relays and inputs
# ---------------------------------------------------------------------------
def test_relay_off_at_boot_and_active_low_inverts(hw):
    m = hw("rp2")
    r = hal.Relay(16, active_low=True)
    assert r.on is False and m.pads[16].level == 1  # active-low: high is off
    r.set(True)
    assert r.on is True and m.pads[16].level == 0
    r.set(False)
    assert m.pads[16].level == 1
    h = hal.Relay(17)
    assert m.pads[17].level == 0
    h.set(1)
    assert h.on is True and m.pads[17].level == 1
    assert m.pads[16].history == [1, 0, 1]  # never a stray level on the way


def test_esp32_relay_held_through_deep_sleep_without_a_glitch(hw):
    m = hw("esp32")
    r = hal.Relay(26, active_low=True, hold=True)
    r.set(True)
    assert m.pads[26].level == 0 and m.pads[26].held == 0
    m.chip_reset(m.DEEPSLEEP_RESET)  # wake from deep sleep: a new boot, the pad still held
    again = hal.Relay(26, active_low=True, hold=True, keep=True)
    assert again.on is True
    assert m.pads[26].history == [1, 0]  # adopting the held pad switched nothing
    again.set(False)
    assert m.pads[26].level == 1 and m.pads[26].held == 1


def test_esp32_board_keeps_relays_only_after_deep_sleep(hw):
    m = hw("esp32")
    esp = load_board("esp32_devkitc")
    b = esp.make("heat_pump")
    b.relay("sg2").set(True)
    m.chip_reset(m.DEEPSLEEP_RESET)
    b2 = esp.make("heat_pump")
    assert b2.reset_cause() == "deep_sleep"
    assert b2.relay("sg2").on is True and b2.relay("sg1").on is False
    m.chip_reset(m.WDT_RESET)  # a crash: outputs back to safe
    b3 = esp.make("heat_pump")
    assert b3.relay("sg2").on is False and m.pads[27].level == 1  # active-low off


def test_input_pull_and_inversion(hw):
    m = hw("rp2")
    button = hal.Input(14, pull="up", inverted=True)
    assert m.pads[14].pull == PULL_UP
    assert button.value() == 0  # pulled up, not pressed
    m.pads[14].drive(0, None)  # contact closes to GND
    assert button.value() == 1
    window = hal.Input(15, pull="down")
    assert m.pads[15].pull == PULL_DOWN and window.value() == 0
    m.pads[15].drive(1, None)
    assert window.value() == 1


def test_esp32_input_only_pads_refuse_outputs(hw):
    hw("esp32")
    with pytest.raises(ValueError, match="only be input"):
        hal.Relay(34)
    hal.Input(35, pull=None)  # fine as an input


# ---------------------------------------------------------------------------
# pulse-counting meter
# ---------------------------------------------------------------------------
class BL0937:
    """Pulses at fixed rates: CF for power; CF1 for current or voltage by SEL."""

    def __init__(self, m, cf, cf1, sel, f_p, f_i, f_u, current_level=0):
        self.m, self.cf, self.cf1, self.sel = m, cf, cf1, sel
        self.f_p, self.f_i, self.f_u, self.cur = f_p, f_i, f_u, current_level
        self.acc = [0.0, 0.0]

    def run(self, ms):
        cf1_rate = self.f_i if self.m.pads[self.sel].level == self.cur else self.f_u
        for k, (gpio, f) in enumerate(((self.cf, self.f_p), (self.cf1, cf1_rate))):
            self.acc[k] += f * ms / 1000
            n = int(self.acc[k])
            self.acc[k] -= n
            self.m.pads[gpio].pulse(n, self.m.pin(gpio))


@pytest.mark.parametrize("current_level", [0, 1])
def test_meter_counts_pulses_per_period(hw, current_level):
    m = hw("esp32")
    m.chip = BL0937(m, 35, 34, 25, f_p=100, f_i=50, f_u=400, current_level=current_level)
    pm = hal.PulseMeter(35, 34, 25, sample_ms=2000, current_level=current_level)
    counts = pm.counts
    assert isinstance(counts, array.array) and len(counts) == 2
    t0 = m.clock[0]
    # 1000 ms on current, 1000 ms on voltage; the pulses while SEL settles are dropped
    assert pm.meter() == (400, 50, 200)
    assert m.clock[0] - t0 == 2000 + 2 * hal._SEL_SETTLE_MS
    assert pm.counts is counts  # the IRQs count into the array made at start-up
    assert m.irq_off[0] == 0  # interrupts re-enabled after every take
    assert m.pads[25].level == current_level  # SEL left on current
    assert m.pads[35].hard is None  # esp32: scheduled handlers (no hard= keyword)


def test_meter_none_when_chip_silent_and_hard_irq_on_rp2(hw):
    m = hw("rp2")
    m.chip = BL0937(m, 10, 11, 12, f_p=0, f_i=0, f_u=0)
    pm = hal.PulseMeter(10, 11, 12, sample_ms=1000, hard=True)
    assert m.pads[10].hard is True and m.pads[11].hard is True
    assert pm.meter() is None


def test_irq_handler_allocates_nothing_under_micropython(tmp_path):
    """The pulse handler runs with the heap locked: any allocation would raise."""
    (tmp_path / "machine.py").write_text(
        "handlers = {}\n"
        "class Pin:\n"
        "    IN = 1\n    OUT = 3\n    PULL_UP = 2\n    PULL_DOWN = 1\n    IRQ_RISING = 1\n"
        "    def __init__(self, gpio, mode=None, pull=-1, value=None, hold=None):\n"
        "        self.gpio = gpio\n"
        "    def value(self, v=None):\n        return 0\n"
        "    def irq(self, handler=None, trigger=3, hard=False):\n"
        "        handlers[self.gpio] = handler\n"
        "def disable_irq():\n    return 0\n"
        "def enable_irq(s):\n    pass\n")
    script = tmp_path / "irq_heap.py"
    script.write_text(
        "import sys\n"
        f"sys.path[:0] = [{str(tmp_path)!r}, {str(ROOT / 'lib')!r}, {str(ROOT / 'firmware')!r}]\n"
        "import micropython, machine, hal\n"
        "pm = hal.PulseMeter(10, 11, 12, hard=True)\n"
        "cf = machine.handlers[10]\n"
        "cf1 = machine.handlers[11]\n"
        "i = 0\n"
        "micropython.heap_lock()\n"
        "try:\n"
        "    while i < 1000:\n"
        "        cf(None)\n"
        "        cf1(None)\n"
        "        cf1(None)\n"
        "        i += 1\n"
        "finally:\n"
        "    micropython.heap_unlock()\n"
        "print(pm.counts[0], pm.counts[1])\n")
    res = subprocess.run([str(MICROPYTHON), str(script)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.split() == ["1000", "2000"]


# ---------------------------------------------------------------------------
# DS18B20
# ---------------------------------------------------------------------------
def _crc8(data: bytes) -> int:
    """Dallas/Maxim 1-Wire CRC-8 (x^8 + x^5 + x^4 + 1, reflected)."""
    crc = 0
    for byte in data:
        for _ in range(8):
            mix = (crc ^ byte) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            byte >>= 1
    return crc


def _rom(serial: bytes) -> bytes:
    body = b"\x28" + serial
    return body + bytes((_crc8(body),))


# A floating line (no sensor fitted, no pull-up) as rp2 saw it: reset() sees a
# "presence" (the line is low), every read slot reads 0, and onewire's scan()
# searches its 255 passes: about 3.4 s of bit slots (issue 15).
_FLOATING_SCAN_MS = 3400


@pytest.fixture
def onewire_bus(monkeypatch):
    bus = types.SimpleNamespace(roms=[_rom(b"ROMROM")], busy_reads=3, temp=21.5, fail=None,
                                reads=0, floating=False, scans=0)

    class OneWireError(Exception):
        pass

    class OneWire:
        def __init__(self, pin):
            self.pin = pin
            self.cmd = None

        def reset(self, required=False):
            if bus.fail == "bus":
                raise OneWireError()
            hal.sleep_ms(1)
            return bus.floating or bool(bus.roms)

        def writebyte(self, b):
            self.cmd = b

        def readinto(self, buf):
            src = bytes(len(buf)) if bus.floating else bus.roms[0]
            if self.cmd == 0x33 and len(bus.roms) > 1:  # two devices answer at once: garbled
                src = bytes(a & b for a, b in zip(bus.roms[0], bus.roms[1]))
            buf[:] = src[:len(buf)]

        def crc8(self, data):
            return _crc8(bytes(data))

        def readbit(self):
            bus.reads += 1
            if bus.fail == "bus":
                raise OneWireError()
            if bus.floating or bus.busy_reads is None:
                return 0  # never finishes
            if bus.busy_reads:
                bus.busy_reads -= 1
                return 0
            return 1

    class DS18X20:
        def __init__(self, ow):
            self.ow = ow

        def scan(self):
            bus.scans += 1
            if bus.floating:
                hal.sleep_ms(_FLOATING_SCAN_MS)
                return [bytes(8)]
            return list(bus.roms)

        def convert_temp(self):
            if bus.fail == "bus":
                raise OneWireError()

        def read_temp(self, rom):
            if bus.fail == "crc" or bus.floating:
                raise Exception("CRC error")
            return bus.temp

    ow_mod = types.ModuleType("onewire")
    ow_mod.OneWire, ow_mod.OneWireError = OneWire, OneWireError
    ds_mod = types.ModuleType("ds18x20")
    ds_mod.DS18X20 = DS18X20
    monkeypatch.setitem(sys.modules, "onewire", ow_mod)
    monkeypatch.setitem(sys.modules, "ds18x20", ds_mod)
    return bus


def test_ds18b20_reads_after_conversion(hw, onewire_bus):
    m = hw("esp32")
    t = hal.DS18B20(4)
    assert t.read() == 21.5
    assert m.clock[0] == 1 + 3 * hal._DS_POLL_MS  # a reset, then polled until done
    onewire_bus.temp = 85.0  # the power-on value passes through: the role judges it
    assert t.read() == 85.0


@pytest.mark.parametrize("fault", ["absent", "bus", "crc", "stuck"])
def test_ds18b20_none_on_any_bus_error(hw, onewire_bus, fault):
    m = hw("esp32")
    if fault == "absent":
        onewire_bus.roms = []
    elif fault == "stuck":
        onewire_bus.busy_reads = None
    else:
        onewire_bus.fail = fault
    t = hal.DS18B20(4)
    assert t.read() is None
    assert m.clock[0] <= hal._DS_CONVERT_MAX_MS + hal._DS_POLL_MS  # bounded wait
    onewire_bus.roms, onewire_bus.busy_reads, onewire_bus.fail = [_rom(b"ROMROM")], 0, None
    assert t.read() == 21.5  # and it recovers once the bus does


def test_ds18b20_parasite_waits_the_full_conversion(hw, onewire_bus):
    m = hw("rp2")
    assert hal.DS18B20(22, parasite=True).read() == 21.5
    assert m.clock[0] == 1 + hal._DS_CONVERT_MAX_MS and onewire_bus.reads == 0


@pytest.mark.parametrize("fault", ["floating", "two-sensors", "stuck"])
def test_a_failed_sensor_costs_one_bounded_attempt(hw, onewire_bus, fault):
    m = hw("rp2")
    if fault == "floating":
        onewire_bus.floating = True
    elif fault == "two-sensors":
        onewire_bus.roms = [_rom(b"ROMROM"), _rom(b"OTHER!")]
    else:
        onewire_bus.busy_reads = None
    t = hal.DS18B20(4)
    for _ in range(3):  # every control step tries once, and once only
        t0 = m.clock[0]
        assert t.read() is None
        assert m.clock[0] - t0 <= hal._DS_CONVERT_MAX_MS + hal._DS_POLL_MS + 1
    assert onewire_bus.scans == 0  # never the 255-pass search


@pytest.mark.parametrize("port,name", [("rp2", "rp2040_picow"), ("esp32", "esp32_devkitc")])
@pytest.mark.parametrize("role", ["thermostat", "heat_pump"])
def test_a_control_step_with_no_sensor_fitted_stays_far_below_the_watchdog(
        hw, onewire_bus, monkeypatch, port, name, role):
    """With no DS18B20 on the bus (a floating line), one control step took about
    6.2 s on rp2, whose watchdog caps at 8.4 s (issue 15). Now: about one sensor
    attempt, and a Modbus timeout where the heat pump has one configured."""
    import time as _time
    from types import SimpleNamespace

    import role as rolemod
    from spot import role_codes
    from spot.schedule import Scheduler

    m = hw(port)
    onewire_bus.floating = True
    b = load_board(name).make(role)
    node = SimpleNamespace(journal=SimpleNamespace(app={"cfg": {}}), sch=Scheduler(0x100))
    r = rolemod.make(role, b, node, power_on=True)
    if role == "heat_pump":
        node.journal.app["cfg"][role_codes.CFG_MODBUS_UNIT] = 1  # a unit that never answers, too
    worst = 0.0
    for step in range(5):
        t0, w0 = m.clock[0], _time.monotonic()
        r.control(m.clock[0])
        took = m.clock[0] - t0 + (_time.monotonic() - w0) * 1000  # hal sleeps + real waits
        worst = max(worst, took)
        m.clock[0] += 1000
    assert worst < 2000, worst  # the watchdog's 8.4 s is four times that
    assert onewire_bus.scans == 0


# ---------------------------------------------------------------------------
# sleep, reset cause, RTC memory, watchdog, UART
# ---------------------------------------------------------------------------
def test_rp2_sleep_chains_lightsleeps_of_at_most_71_minutes(hw):
    m = hw("rp2")
    b = load_board("rp2040_picow").make("thermostat")
    b.sleep(3 * 3600 * 1000)
    assert len(m.lightsleeps) == 3
    assert all(ms <= 71 * 60 * 1000 for ms in m.lightsleeps)
    assert sum(m.lightsleeps) == 3 * 3600 * 1000
    assert m.clock[0] == 3 * 3600 * 1000


def test_rp2_sleep_resumes_after_an_early_wake(hw):
    m = hw("rp2")
    b = load_board("rp2040_picow").make("thermostat")
    m.early_wakes = [1000]  # an interrupt ended the first lightsleep after 1 s
    b.sleep(60000)
    assert m.lightsleeps == [60000, 59000]
    assert m.clock[0] == 60000


def test_rp2_sleep_feeds_the_watchdog_between_chunks(hw):
    m = hw("rp2")
    b = load_board("rp2040_picow").make("smart_plug")
    wdt = b.watchdog(30000)
    assert b.watchdog_ms == 8388 and wdt.timeout == 8388  # rp2's limit
    b.sleep(60000)
    assert all(ms < 8388 for ms in m.lightsleeps)
    assert sum(m.lightsleeps) == 60000
    assert wdt.feeds == len(m.lightsleeps)


def test_rp2_sleep_powers_the_radio_down(hw, monkeypatch):
    hw("rp2")
    calls = []

    class WLAN:
        def __init__(self, i):
            pass

        def active(self, on=None):
            calls.append(on)
            return True

        def disconnect(self):
            calls.append("disconnect")

    net = types.ModuleType("network")
    net.WLAN, net.STA_IF = WLAN, 0
    monkeypatch.setitem(sys.modules, "network", net)
    load_board("rp2040_picow").make("thermostat").sleep(1000)
    assert calls == [None, "disconnect", False]


def test_esp32_sleep_is_deep_sleep_with_holds(hw):
    m = hw("esp32")
    b = load_board("esp32_devkitc").make("thermostat")
    with pytest.raises(DeepSleep):
        b.sleep(3 * 3600 * 1000)
    assert m.deepsleeps == [3 * 3600 * 1000] and m.lightsleeps == []
    assert sys.modules["esp32"].holds == [True]


@pytest.mark.parametrize("port,attr,want", [
    ("esp32", "PWRON_RESET", "power_on"),
    ("esp32", "HARD_RESET", "hard"),
    ("esp32", "WDT_RESET", "watchdog"),
    ("esp32", "DEEPSLEEP_RESET", "deep_sleep"),
    ("esp32", "SOFT_RESET", "soft"),
    ("rp2", "PWRON_RESET", "power_on"),
    ("rp2", "WDT_RESET", "watchdog"),
])
def test_reset_cause_mapping(hw, port, attr, want):
    m = hw(port)
    m.cause = getattr(m, attr)
    assert hal.reset_cause() == want


def test_reset_cause_unknown_is_hard(hw):
    m = hw("rp2")  # rp2 has no DEEPSLEEP_RESET or SOFT_RESET: never matched by accident
    m.cause = 99
    assert hal.reset_cause() == "hard"


def test_rtc_memory_esp32_and_rp2(hw):
    m = hw("esp32")
    b = load_board("esp32_devkitc").make("thermostat")
    b.set_rtc_memory(b"clock")
    assert m.rtc_mem == b"clock" and b.rtc_memory() == b"clock"
    with pytest.raises(ValueError):
        b.set_rtc_memory(bytes(2049))
    m.chip_reset(m.DEEPSLEEP_RESET)
    assert load_board("esp32_devkitc").make("thermostat").rtc_memory() == b"clock"
    m.chip_reset(m.PWRON_RESET)
    assert load_board("esp32_devkitc").make("thermostat").rtc_memory() == b""

    hw("rp2")
    p = load_board("rp2040_picow").make("thermostat")
    assert p.rtc_memory() == b""
    p.set_rtc_memory(b"x" * 2048)
    p.sleep(1000)
    assert p.rtc_memory() == b"x" * 2048
    assert isinstance(hal._ram, bytearray)


def test_modbus_uart_9600_8n1_with_driver_enable(hw):
    m = hw("esp32")
    m.de_gpio = 23
    b = load_board("esp32_devkitc").make("heat_pump")
    u = b.uart("modbus")
    assert b.uart("modbus") is u
    (dev,) = m.uarts
    assert dev.id == 2
    assert dev.args == dict(baudrate=9600, bits=8, parity=None, stop=1, tx=19, rx=18, timeout=0)
    assert m.pads[23].level == 0  # receiving
    assert u.write(b"\x01\x03\x00\x00\x00\x02") == 6
    assert dev.sent == [(b"\x01\x03\x00\x00\x00\x02", 1)]  # DE on while sending
    assert dev.flushes == 1 and m.pads[23].level == 0  # and off once it is out
    dev.rx = b"\x01\x03\x04"
    assert u.any() == 3 and u.read(2) == b"\x01\x03" and u.read(5) == b"\x04"
    assert u.read(1) is None
    with pytest.raises(ValueError):
        load_board("esp32_devkitc").make("thermostat").uart("modbus")


# ---------------------------------------------------------------------------
# the boards
# ---------------------------------------------------------------------------
def load_board(name: str):
    spec = importlib.util.spec_from_file_location(f"board_{name}", BOARDS / name / "board.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _uses() -> tuple[set[str], set[str]]:
    """(names read only as inputs, names that drive their pin at some time)."""
    ins, outs = {"cf", "cf1", "modbus_rx"}, {"sel", "modbus_tx", "modbus_de"}
    for relays, inputs, sensors, _, _ in hal.ROLES.values():
        outs |= set(relays) | set(sensors)  # a 1-Wire bus is driven low by the master
        ins |= set(inputs)
    return ins, outs


def _role_pins(role) -> list[str]:
    relays, inputs, sensors, meter, uarts = hal.role_parts(role)
    names = list(relays) + list(inputs) + list(sensors)
    if meter:
        names += list(hal.METER_PINS)
    for u in uarts:
        names += [u + "_tx", u + "_rx", u + "_de"]
    return names


@pytest.mark.parametrize("name", ["esp32_devkitc", "rp2040_picow"])
def test_board_pins_are_complete_and_distinct_per_role(name):
    board = load_board(name)
    ins, outs = _uses()
    assert set(board.PINS) <= ins | outs
    for role in ROLES:
        names = _role_pins(role)
        gpios = [board.PINS[n] for n in names]
        assert len(set(gpios)) == len(gpios), (role, dict(zip(names, gpios)))


def test_esp32_pins_avoid_strapping_flash_and_input_only_misuse():
    board = load_board("esp32_devkitc")
    ins, outs = _uses()
    forbidden = {0, 2, 5, 12, 15} | set(range(6, 12)) | {1, 3} | {16, 17}
    for n, gpio in board.PINS.items():
        assert gpio not in forbidden, (n, gpio)
        assert 0 <= gpio <= 39 and gpio not in (20, 24, 28, 29, 30, 31), (n, gpio)
        if gpio >= 34:
            assert n in ins and n not in outs, f"{n} on input-only GPIO{gpio}"
    for n in ("heat", "load", "sg1", "sg2"):  # relays on RTC pads: held through deep sleep
        assert board.PINS[n] in (25, 26, 27, 32, 33), n


def test_picow_pins_avoid_the_radio():
    board = load_board("rp2040_picow")
    for n, gpio in board.PINS.items():
        assert 0 <= gpio <= 28 and gpio not in (23, 24, 25), (n, gpio)
    assert board.OPTIONS["modbus"]["uart"] == 1
    assert board.PINS["modbus_tx"] in (4, 8, 20) and board.PINS["modbus_rx"] in (5, 9, 21)


@pytest.mark.parametrize("name,port", [("esp32_devkitc", "esp32"), ("rp2040_picow", "rp2")])
@pytest.mark.parametrize("role", ROLES)
def test_make_role(hw, onewire_bus, name, port, role):
    m = hw(port)
    board = load_board(name)
    b = board.make(role)
    assert b.name == name and b.reset_cause() == "power_on"
    relays, inputs, sensors, meter, uarts = hal.role_parts(role)
    for r in relays:
        assert b.relay(r).on is False
        b.relay(r).set(True)
        assert b.relay(r).on is True
    for i in inputs:
        assert b.input(i).value() in (0, 1)
    for s in sensors:
        assert b.temperature(s) == 21.5
    if meter:
        m.chip = BL0937(m, board.PINS["cf"], board.PINS["cf1"], board.PINS["sel"], 10, 5, 300)
        assert b.meter() == (300, 5, 20)
    else:
        assert b.meter() is None
    for u in uarts:
        assert b.uart(u).any() == 0
    with pytest.raises(ValueError):
        b.relay("nonexistent")
    assert b.ticks_ms() == m.clock[0]
    assert b.sample_ms == 2000


def test_make_takes_option_overrides_and_refuses_unknown_roles(hw):
    hw("esp32")
    esp = load_board("esp32_devkitc")
    b = esp.make("smart_plug", meter={"sample_ms": 4000, "current_level": 1})
    assert b.sample_ms == 4000
    assert esp.OPTIONS["meter"]["sample_ms"] == 2000  # the board's own table untouched
    with pytest.raises(ValueError, match="unknown role"):
        esp.make("toaster")


# ---------------------------------------------------------------------------
# freeze manifests
# ---------------------------------------------------------------------------
def manifest_files(path: Path, seen: set | None = None) -> list[Path]:
    """Run a manifest with stand-ins for the manifest API, resolving paths as
    MicroPython's tools/manifestfile.py does (relative to the manifest's folder);
    $(...) paths belong to the MicroPython tree and are not followed."""
    out: list[Path] = []
    seen = set() if seen is None else seen
    here = path.parent

    def include(p, **kw):
        if "$(" in p:
            return
        q = (here / p).resolve()
        if q.is_dir():
            q = q / "manifest.py"
        if q not in seen:
            seen.add(q)
            out.extend(manifest_files(q, seen))

    def module(p, base_path="."):
        out.append((here / base_path / p).resolve())

    def package(p, files=None, base_path="."):
        base = (here / base_path / p).resolve()
        out.extend(base / f for f in files) if files else out.extend(base.rglob("*.py"))

    g = {"include": include, "module": module, "package": package,
         "require": lambda *a, **k: None, "metadata": lambda **k: None, "options": None}
    exec(compile(path.read_text(), str(path), "exec"), g)
    return out


@pytest.mark.parametrize("name", ["esp32_devkitc", "rp2040_picow"])
def test_manifest_lists_only_files_that_exist(name):
    files = manifest_files(BOARDS / name / "manifest.py")
    names = {f.name for f in files}
    assert {"hal.py", "board.py", "device.py", "frame.py", "clock.py"} <= names
    assert "_cpython.py" not in names and "manifest.py" not in names  # host-only files
    missing = [str(f.relative_to(ROOT)) for f in files if not f.is_file()]
    assert not missing, f"{name}/manifest.py names files that do not exist: {missing}"


def test_esp32_manifest_has_ota():
    assert "ota.py" in {f.name for f in manifest_files(BOARDS / "esp32_devkitc" / "manifest.py")}


# ---------------------------------------------------------------------------
# OTA
# ---------------------------------------------------------------------------
BLOCK = 4096


class Partition:
    """esp32.Partition over a model of flash: 4096-byte blocks, erase sets 0xff,
    a write can only clear bits, accesses past the end fail."""

    BOOT, RUNNING, TYPE_APP, TYPE_DATA = 0, 1, 0, 1
    parts: dict = {}
    running = "ota_0"
    boot = "ota_0"
    cancels = 0
    cancel_error: OSError | None = None

    def __new__(cls, id, block_size=4096):
        label = {cls.RUNNING: cls.running, cls.BOOT: cls.boot}.get(id, id)
        if label not in cls.parts:
            raise OSError(2, "ENOENT")
        return cls.parts[label]

    @classmethod
    def add(cls, label, size):
        p = object.__new__(cls)
        p.label, p.size = label, size
        p.flash = bytearray(b"\x5a" * size)  # an old image's leftovers
        p.writes = []
        p.corrupt_block = None
        cls.parts[label] = p
        return p

    def info(self):
        return (0, 0x10, 0x10000, self.size, self.label, False)

    def ioctl(self, cmd, arg):
        return {4: self.size // BLOCK, 5: BLOCK}.get(cmd)

    def readblocks(self, block, buf, offset=0):
        a = block * BLOCK + offset
        if a + len(buf) > self.size:
            raise OSError(22, "EINVAL")
        buf[:] = self.flash[a:a + len(buf)]

    def writeblocks(self, block, buf, offset=None):
        a = block * BLOCK + (offset or 0)
        if a + len(buf) > self.size:
            raise OSError(22, "EINVAL")
        if offset is None:  # the 3-argument form erases first
            if len(buf) % BLOCK:
                raise OSError(22, "EINVAL")
            self.flash[a:a + len(buf)] = b"\xff" * len(buf)
        data = bytearray(buf)
        if block == self.corrupt_block:
            data[100] ^= 0x01
        for i, v in enumerate(data):
            self.flash[a + i] &= v
        self.writes.append((block, len(buf)))

    def set_boot(self):
        type(self).boot = self.label

    def get_next_update(self):
        others = [p for p in type(self).parts if p.startswith("ota_") and p != self.label]
        if not others:
            raise OSError(2, "ENOENT")
        return type(self).parts[sorted(others)[0]]

    @classmethod
    def mark_app_valid_cancel_rollback(cls):
        if cls.cancel_error:
            raise cls.cancel_error
        cls.cancels += 1


@pytest.fixture
def flash(monkeypatch, tmp_path):
    cls = type("Partition", (Partition,), {"parts": {}, "running": "ota_0", "boot": "ota_0",
                                           "cancels": 0, "cancel_error": None})
    cls.add("ota_0", 64 * BLOCK)
    cls.add("ota_1", 16 * BLOCK)
    esp = types.ModuleType("esp32")
    esp.Partition = cls
    monkeypatch.setitem(sys.modules, "esp32", esp)
    cls.marker = str(tmp_path / "ota_pending")
    return cls


def image(n: int) -> bytes:
    body = hashlib.sha256(b"seed").digest() * (n // 32 + 1)
    return b"\xe9" + body[: n - 1]


def send(u, img: bytes, sizes=(1000, 3000, 777, 4096, 5000)):
    i = k = 0
    while i < len(img):
        n = sizes[k % len(sizes)]
        u.write(img[i:i + n])
        i += n
        k += 1


def test_ota_good_update_sets_boot_and_verifies(flash):
    img = image(40_000)
    u = ota.Updater(marker=flash.marker)
    u.begin(len(img))
    send(u, img)
    u.finish(hashlib.sha256(img).hexdigest())
    target = flash.parts["ota_1"]
    assert flash.boot == "ota_1"
    assert bytes(target.flash[: len(img)]) == img
    assert all(n == BLOCK for _, n in target.writes)  # whole 4096-byte blocks only
    assert [b for b, _ in target.writes] == list(range(10))
    assert len(u._buf) == BLOCK  # the buffer stays one block, whatever the chunks
    # not yet rebooted: the old image runs, nothing awaits verification
    assert ota.pending_verify(flash.marker) is False
    flash.running = "ota_1"  # the reset into the new image
    assert ota.pending_verify(flash.marker) is True
    ota.mark_healthy(flash.marker)
    assert flash.cancels == 1
    assert ota.pending_verify(flash.marker) is False


def test_ota_truncated_image_never_boots(flash):
    img = image(40_000)
    u = ota.Updater(marker=flash.marker)
    u.begin(len(img))
    send(u, img[:30_000])
    with pytest.raises(ota.OtaError, match="truncated image: 30000 of 40000"):
        u.finish(hashlib.sha256(img).hexdigest())
    assert flash.boot == "ota_0"
    assert not Path(flash.marker).exists()
    with pytest.raises(ota.OtaError):
        u.write(b"more")  # the failed update stays failed


def test_ota_sha_mismatch_never_boots(flash):
    img = image(20_000)
    bad = bytearray(img)
    bad[12_345] ^= 0xFF
    u = ota.Updater(marker=flash.marker)
    u.begin(len(img))
    send(u, bytes(bad))
    with pytest.raises(ota.OtaError, match="sha256 mismatch"):
        u.finish(hashlib.sha256(img).hexdigest())
    assert flash.boot == "ota_0"


def test_ota_verifies_what_flash_holds_not_what_was_sent(flash):
    img = image(20_000)
    flash.parts["ota_1"].corrupt_block = 2  # a bad flash write
    u = ota.Updater(marker=flash.marker)
    u.begin(len(img))
    send(u, img)
    with pytest.raises(ota.OtaError, match="sha256 mismatch"):
        u.finish(hashlib.sha256(img).hexdigest())
    assert flash.boot == "ota_0"


def test_ota_oversize_image_refused_up_front(flash):
    u = ota.Updater(marker=flash.marker)
    with pytest.raises(ota.OtaError, match="does not fit partition ota_1"):
        u.begin(16 * BLOCK + 1)
    assert flash.parts["ota_1"].writes == []
    with pytest.raises(ota.OtaError, match="without a successful begin"):
        u.write(b"\xe9")
    u.begin(16 * BLOCK)  # exactly full is fine


def test_ota_longer_than_announced_or_not_an_image(flash):
    u = ota.Updater(marker=flash.marker)
    u.begin(5000)
    with pytest.raises(ota.OtaError, match="longer than the 5000 bytes"):
        send(u, image(6000))
    assert flash.boot == "ota_0"
    u.begin(5000)
    with pytest.raises(ota.OtaError, match="not an ESP32 app image"):
        u.write(b"PK\x03\x04")
    u.begin(10)
    u.write(image(10))
    with pytest.raises(ota.OtaError, match="64 hex digits"):
        u.finish("abc")
    assert flash.boot == "ota_0"


def test_ota_without_ota_partitions(flash):
    flash.parts.clear()
    flash.add("factory", 64 * BLOCK)
    flash.running = flash.boot = "factory"
    with pytest.raises(ota.OtaError, match="no OTA partition"):
        ota.Updater(marker=flash.marker).begin(1000)


def test_mark_healthy_calls_cancel_rollback(flash):
    ota.mark_healthy(flash.marker)
    ota.mark_healthy(flash.marker)
    assert flash.cancels == 2
    flash.cancel_error = OSError(-261)
    with pytest.raises(ota.OtaError, match="rollback"):
        ota.mark_healthy(flash.marker)
    assert issubclass(ota.OtaError, ValueError)


# ---------------------------------------------------------------------------
# imports on MicroPython
# ---------------------------------------------------------------------------
def test_hal_and_ota_import_on_the_unix_port():
    res = subprocess.run(
        [str(MICROPYTHON), "-c",
         "import sys; sys.path[:0]=['lib','firmware']; import hal, ota; print(hal.role_parts('heat_pump')[0])"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "('sg1', 'sg2')"
