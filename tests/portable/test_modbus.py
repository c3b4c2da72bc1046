"""Modbus RTU: the CRC against the known vector, a round trip to the virtual heat pump,
and every failure mode as its own ModbusError (never an IndexError, never a big read)."""
import board
import models
import modbus_rtu
from expect import Rng
from modbus_rtu import ModbusError, crc16, read_holding, request, s16

REASONS = ("no answer", "short frame", "bad crc", "wrong unit", "wrong function", "bad length")


class _Stub:
    """A UART that answers each write with fixed bytes; records the largest read."""

    def __init__(self, reply, stale=b""):
        self.reply = bytes(reply)
        self.rx = bytes(stale)
        self.sent = []
        self.max_n = 0

    def write(self, buf):
        self.sent.append(bytes(buf))
        self.rx += self.reply
        return len(buf)

    def any(self):
        return len(self.rx)

    def read(self, n):
        self.max_n = max(self.max_n, n)
        out, self.rx = self.rx[:n], self.rx[n:]
        return out or None


def _frame(body):
    c = crc16(bytes(body))
    return bytes(body) + bytes((c & 0xFF, c >> 8))


def _reason(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except ModbusError as e:
        assert isinstance(e, ValueError) and str(e) == e.reason
        return e.reason
    raise AssertionError("no ModbusError")


def test_crc_matches_the_known_vector():
    assert crc16(bytes((1, 3, 0, 0, 0, 1))) == 0x0A84  # sent as 84 0A
    assert bytes(request(1, 0, 1)) == bytes((1, 3, 0, 0, 0, 1, 0x84, 0x0A))
    assert bytes(request(0x11, 0x006B, 3)) == bytes((0x11, 3, 0, 0x6B, 0, 3, 0x76, 0x87))
    assert models.crc16(bytes((1, 3, 0, 0, 0, 1))) == 0x0A84  # the responder's own
    assert crc16(b"123456789") == 0x4B37  # the CRC catalogue's check value
    assert crc16(b"") == 0xFFFF and crc16(b"\x01\x03\xff", 2) == crc16(b"\x01\x03")


def test_round_trip_to_the_virtual_heat_pump():
    b = board.make("heat_pump", store_c=38.0, out_noise=0.0)
    b.advance(30 * 60000)  # it starts (NORMAL, store under 40) and runs a while
    hp = b.model
    regs = read_holding(b.uart("modbus"), 1, 0, 5)
    assert regs == list(hp.holding())
    assert abs(regs[0] / 10.0 - hp.store) <= 0.05 and regs[1] == 1 and regs[2] == 2500
    assert regs[3] == 2 and regs[4] == int(hp.energy_wh / 100)
    assert read_holding(b.uart("modbus"), 1, 3, 1) == [2]
    b.relay("sg1").set(True)  # BLOCKED
    b.advance(10000)
    assert read_holding(b.uart("modbus"), 1, 1, 3) == [0, 0, 1]
    cold = board.make("heat_pump", store_c=-5.0)
    assert s16(read_holding(cold.uart("modbus"), 1, 0, 1)[0]) == -50  # signed 0.1 C


def test_exception_codes_come_back_as_errors():
    b = board.make("heat_pump")
    port = b.uart("modbus")
    assert _reason(read_holding, port, 1, 4, 2) == "exception code 2"  # past register 4
    assert _reason(read_holding, port, 1, 100, 1) == "exception code 2"
    port.write(_frame((1, 6, 0, 1, 0, 1)))  # write single register: not offered
    assert port.read(16) == _frame((1, 0x86, 1))
    assert _reason(read_holding, _Stub(_frame((1, 0x83, 1))), 1, 0, 2) == "exception code 1"
    assert read_holding(port, 1, 0, 1)  # the port still answers after all that


def test_each_uart_fault_gives_its_reason():
    b = board.make("heat_pump")
    hp = b.model
    port = b.uart("modbus")
    hp.uart_fault = "silent"
    assert _reason(read_holding, port, 1, 0, 5, 20) == "no answer"
    hp.uart_fault = "badcrc"
    assert _reason(read_holding, port, 1, 0, 5, 20) == "bad crc"
    hp.uart_fault = "garbage"
    for count in (1, 2, 5):
        assert _reason(read_holding, port, 1, 0, count, 20) in REASONS
    hp.uart_fault = None
    assert len(read_holding(port, 1, 0, 5)) == 5
    other = board.make("heat_pump", unit=7)  # a slave ignores another unit's request
    assert _reason(read_holding, other.uart("modbus"), 1, 0, 1, 20) == "no answer"
    assert read_holding(other.uart("modbus"), 7, 0, 1)


def test_wrong_unit_short_frame_function_and_length():
    good = _frame((1, 3, 2, 0, 42))
    assert read_holding(_Stub(good), 1, 0, 1) == [42]
    assert _reason(read_holding, _Stub(_frame((2, 3, 2, 0, 42))), 1, 0, 1) == "wrong unit"
    assert _reason(read_holding, _Stub(good[:4]), 1, 0, 1, 20) == "short frame"
    assert _reason(read_holding, _Stub(b""), 1, 0, 1, 20) == "no answer"
    assert _reason(read_holding, _Stub(_frame((1, 4, 2, 0, 42))), 1, 0, 1) == "wrong function"
    assert _reason(read_holding, _Stub(_frame((1, 3, 3, 0, 42))), 1, 0, 1) == "bad length"
    bad = bytearray(good)
    bad[4] ^= 1
    assert _reason(read_holding, _Stub(bad), 1, 0, 1) == "bad crc"
    for args in ((0, 0, 1), (248, 0, 1), (1, 0, 0), (1, 0, 126), (1, 0x10000, 1)):
        assert _reason(read_holding, _Stub(good), *args) == "bad request"


def test_stale_bytes_are_dropped_and_extra_bytes_ignored():
    good = _frame((1, 3, 2, 0x12, 0x34))
    u = _Stub(good, stale=b"\x01\x03\x02\xff")  # the tail of an answer that came too late
    assert read_holding(u, 1, 0, 1) == [0x1234]
    u = _Stub(good + b"\x00" * 40)  # a babbling bus after the frame
    assert read_holding(u, 1, 0, 1) == [0x1234] and u.max_n <= 7


def _ticks():
    # Short intervals by ticks: time.time() counts whole seconds on rp2.
    try:
        from time import ticks_diff, ticks_ms
    except ImportError:
        from spot._cpython import ticks_diff, ticks_ms
    return ticks_ms, ticks_diff


def test_garbage_never_escapes_as_anything_else():
    ticks_ms, ticks_diff = _ticks()
    rng = Rng(20260101)
    t0 = ticks_ms()
    for _ in range(300):
        count = 1 + rng.below(6)
        n = rng.below(3 * (5 + 2 * count))
        junk = bytearray(rng.bytes(n))
        if n > 2 and rng.below(2):
            junk[0], junk[1] = 1, 3 if rng.below(2) else 0x83  # plausible headers too
        u = _Stub(junk)
        try:
            read_holding(u, 1, 0, count, 0)
        except ModbusError as e:
            assert e.reason in REASONS or e.reason.startswith("exception code"), e.reason
        assert u.max_n <= 5 + 2 * count  # never read more than one frame's worth
    assert ticks_diff(ticks_ms(), t0) < 5000


def test_silence_times_out_in_time():
    ticks_ms, ticks_diff = _ticks()
    t0 = ticks_ms()
    assert _reason(read_holding, _Stub(b""), 1, 0, 1, 50) == "no answer"
    took = ticks_diff(ticks_ms(), t0)
    assert 40 <= took < 500, took
    assert modbus_rtu.ModbusError is ModbusError
