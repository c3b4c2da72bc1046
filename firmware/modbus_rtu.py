"""Modbus RTU client for the device: read holding registers (function 3) over a UART.

Enough Modbus for an adapter to poll its appliance (the heat pump's store
temperature, compressor state, power). Every failure is a ModbusError naming
the reason: "no answer", "short frame", "bad crc", "wrong unit", "exception
code N", "wrong function", "bad length". Garbage on the bus never escapes as an
IndexError, and a reply is read into a buffer of exactly the expected size, so
a babbling bus cannot make the device allocate.
"""
try:
    from micropython import const
    from time import sleep_ms, ticks_diff, ticks_ms
except ImportError:
    from spot._cpython import const, sleep_ms, ticks_diff, ticks_ms

_READ_HOLDING = const(3)
_MAX_COUNT = const(125)  # what one RTU frame can carry
_DRAIN_ROUNDS = const(8)


class ModbusError(ValueError):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def crc16(data, n=-1):
    """CRC-16/MODBUS of data[:n] (all of it by default): a bit loop, no 512-byte table."""
    crc = 0xFFFF
    for i in range(len(data) if n < 0 else n):
        crc ^= data[i]
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0xA001
            else:
                crc >>= 1
    return crc


def request(unit, addr, count):
    """The 8-byte read-holding-registers frame."""
    f = bytearray(8)
    f[0] = unit
    f[1] = _READ_HOLDING
    f[2] = addr >> 8
    f[3] = addr & 0xFF
    f[4] = count >> 8
    f[5] = count & 0xFF
    crc = crc16(f, 6)
    f[6] = crc & 0xFF  # the CRC goes low byte first, unlike the registers
    f[7] = crc >> 8
    return f


def s16(v):
    """A register as a signed 16-bit value."""
    return v - 0x10000 if v & 0x8000 else v


def read_holding(uart, unit, addr, count, timeout_ms=200):
    """Registers addr..addr+count-1 of unit, as a list of ints (0..65535)."""
    if not 1 <= unit <= 247 or not 0 <= addr <= 0xFFFF or not 1 <= count <= _MAX_COUNT:
        raise ModbusError("bad request")
    want = 5 + 2 * count
    for _ in range(_DRAIN_ROUNDS):  # a late answer to an earlier request must not pass as ours
        n = uart.any()
        if not n:
            break
        uart.read(min(n, want))
    uart.write(request(unit, addr, count))
    buf = bytearray(want)
    got = 0
    t0 = ticks_ms()
    while got < want:
        n = uart.any()
        chunk = uart.read(min(n, want - got)) if n > 0 else None
        if chunk:
            for i in range(min(len(chunk), want - got)):  # a UART handing back more: ignored
                buf[got] = chunk[i]
                got += 1
            if got >= 2 and buf[1] & 0x80:
                want = 5  # an exception frame: unit, function | 0x80, code, CRC
            continue
        if ticks_diff(ticks_ms(), t0) >= timeout_ms:
            break
        sleep_ms(1)
    if got == 0:
        raise ModbusError("no answer")
    if got < want:
        raise ModbusError("short frame")
    if crc16(buf, want - 2) != buf[want - 2] | buf[want - 1] << 8:
        raise ModbusError("bad crc")
    if buf[0] != unit:
        raise ModbusError("wrong unit")
    if buf[1] == _READ_HOLDING | 0x80:
        raise ModbusError("exception code %d" % buf[2])
    if buf[1] != _READ_HOLDING:
        raise ModbusError("wrong function")
    if buf[2] != 2 * count:
        raise ModbusError("bad length")
    return [buf[3 + 2 * i] << 8 | buf[4 + 2 * i] for i in range(count)]
