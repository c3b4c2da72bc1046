"""SPOT's payload codec: a strict, bounded subset of CBOR (RFC 8949).

Accepted: unsigned and negative integers within 64-bit signed range, byte and
strictly valid UTF-8 text strings, arrays, maps with integer keys,
false/true/null, tag 1 (time) and the SPOT object tags in their canonical
forms; anything else tagged decodes to objects.Unknown, which re-encodes byte
for byte. Refused with a SpotError: floats, indefinite lengths, non-shortest
(non-deterministic) heads, duplicate map keys, trailing bytes. The decoder never
allocates past a bound set by the receiver's Limits, whatever the input; the
encoder refuses anything the decoder would refuse.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from spot.errors import BAD_PAYLOAD, BAD_VALUE, OVERSIZED, TOO_DEEP, TRUNCATED, SpotError
from spot.objects import TAG_ANALOG, TAG_SCHEDULE, TAG_TIME, Analog, Schedule, Time, Unknown

_INT_MAX = const(0x7FFFFFFFFFFFFFFF)
_INT_MIN = const(-0x8000000000000000)
_ARG_MAX = const(0xFFFFFFFFFFFFFFFF)
_SCALE_MAX = const(24)
_UNIT_MAX = const(255)  # codes 11..255 are reserved for later units (SPEC 5.1)
_BASE_MAX = const(0xFFFFFFFF)  # a schedule's base: unsigned 32-bit epoch seconds
# Every offset of a schedule (explicit, or i * interval) stays a small int on a
# 32-bit MicroPython port, whose small ints hold 31 bits: nothing allocates.
_OFFSET_MAX = const(0x3FFFFFFF)


class Limits:
    """What a receiver is willing to decode; bounds both work and memory.

    max_items counts data items as RFC 8949 defines them: every head is one
    (an integer, a string, a simple value, an array, a map, a tag), so a map
    entry is two and an interval-form schedule of n steps is 6 + n (SPEC 4.1).
    The defaults carry a day of quarter-hour prices (96 steps) or a full weekly
    program (48 steps). Decoding allocates at most about 256 bytes per item
    plus twice max_payload on a 64-bit port (half that on 32-bit boards),
    whatever the input.
    """

    __slots__ = ("max_payload", "max_depth", "max_items", "max_string")

    def __init__(self, max_payload=512, max_depth=4, max_items=128, max_string=64):
        self.max_payload = max_payload
        self.max_depth = max_depth
        self.max_items = max_items
        self.max_string = max_string


DEFAULT_LIMITS = Limits()


def _is_int(v):
    # bool is an int on CPython but not on MicroPython: refuse it on both.
    return isinstance(v, int) and v is not True and v is not False


# --- encoding --------------------------------------------------------------

def _head(out, major, arg):
    if not 0 <= arg <= _ARG_MAX:
        raise SpotError(OVERSIZED, "head argument out of range")
    major <<= 5
    if arg < 24:
        out.append(major | arg)
    elif arg < 0x100:
        out.append(major | 24)
        out.append(arg)
    elif arg < 0x10000:
        out.append(major | 25)
        out.append(arg >> 8)
        out.append(arg & 0xFF)
    elif arg < 0x100000000:
        out.append(major | 26)
        for shift in (24, 16, 8, 0):
            out.append((arg >> shift) & 0xFF)
    else:
        out.append(major | 27)
        for shift in (56, 48, 40, 32, 24, 16, 8, 0):
            out.append((arg >> shift) & 0xFF)


def _int(out, v, what="integer"):
    if not _is_int(v):
        raise SpotError(BAD_VALUE, what + " must be an integer")
    if v > _INT_MAX or v < _INT_MIN:
        raise SpotError(OVERSIZED, what + " out of 64-bit range")
    if v >= 0:
        _head(out, 0, v)
    else:
        _head(out, 1, -1 - v)


def _key_order(k):
    # RFC 8949 section 4.2.1: bytewise order of encoded keys, which for
    # integers is every non-negative key ascending, then negatives by magnitude.
    return (k < 0, -k if k < 0 else k)


def _encode(out, v):
    if v is True:
        out.append(0xF5)
    elif v is False:
        out.append(0xF4)
    elif v is None:
        out.append(0xF6)
    elif isinstance(v, int):
        _int(out, v)
    elif isinstance(v, (bytes, bytearray, memoryview)):
        _head(out, 2, len(v))
        out.extend(v)
    elif isinstance(v, str):
        try:
            b = v.encode()
        except UnicodeError:
            raise SpotError(BAD_VALUE, "text is not valid Unicode")
        _head(out, 3, len(b))
        out.extend(b)
    elif isinstance(v, (list, tuple)):
        _head(out, 4, len(v))
        for item in v:
            _encode(out, item)
    elif isinstance(v, dict):
        neg = False
        for k in v:
            if not _is_int(k):
                raise SpotError(BAD_VALUE, "map keys must be integers")
            if k < 0:
                neg = True
        _head(out, 5, len(v))
        # Non-negative keys alone (the usual map) sort as plain ints: a key function
        # makes a tuple per key, 2 KB for a capability record on a 32-bit board.
        for k in (sorted(v, key=_key_order) if neg else sorted(v)):
            _int(out, k)
            _encode(out, v[k])
    elif isinstance(v, Analog):
        _head(out, 6, TAG_ANALOG)
        _analog(out, v)
    elif isinstance(v, Time):
        if not _is_int(v.seconds) or v.seconds < 0:
            raise SpotError(BAD_VALUE, "time must be whole seconds since 1970")
        _head(out, 6, TAG_TIME)
        _int(out, v.seconds)
    elif isinstance(v, Schedule):
        _head(out, 6, TAG_SCHEDULE)
        _schedule(out, v)
    elif isinstance(v, Unknown):
        if not _is_int(v.tag) or v.tag in (TAG_TIME, TAG_ANALOG, TAG_SCHEDULE):
            raise SpotError(BAD_VALUE, "unknown object with a known or invalid tag")
        _head(out, 6, v.tag)
        if v.raw is not None:
            out.extend(v.raw)  # as received: passed on byte for byte
        else:
            _encode(out, v.content)
    else:
        raise SpotError(BAD_VALUE, "cannot encode " + type(v).__name__)


def _analog(out, a):
    if not _is_int(a.unit) or not 0 <= a.unit <= _UNIT_MAX or not _is_int(a.scale) or (
            not -_SCALE_MAX <= a.scale <= _SCALE_MAX):
        raise SpotError(BAD_VALUE, "analog unit or scale out of range")
    # Canonical form: trailing scale 0, then unit 0, are left out.
    n = 3 if a.scale else (2 if a.unit else 1)
    _head(out, 4, n)
    _int(out, a.value, "analog value")
    if n > 1:
        _int(out, a.unit)
    if n > 2:
        _int(out, a.scale)


def _schedule(out, s):
    n = len(s.values)
    if n != len(s.offsets) or n == 0:
        raise SpotError(BAD_VALUE, "a schedule needs one offset per value, at least one")
    if not _is_int(s.base) or not 0 <= s.base <= _BASE_MAX or not _is_int(s.unit) or (
            not 0 <= s.unit <= _UNIT_MAX) or not _is_int(s.scale) or (
            not -_SCALE_MAX <= s.scale <= _SCALE_MAX):
        raise SpotError(BAD_VALUE, "schedule base, unit or scale out of range")
    last = -1
    for off in s.offsets:
        if not _is_int(off) or off <= last or off > _OFFSET_MAX:
            raise SpotError(BAD_VALUE, "schedule offsets must increase from 0 to 2^30-1")
        last = off
    for v in s.values:
        if not isinstance(v, int):  # int or bool, on both interpreters
            if v is not True and v is not False:
                raise SpotError(BAD_VALUE, "schedule values are integers or booleans")
    step = s.interval()
    _head(out, 4, 4 + n if step else 4 + 2 * n)
    _int(out, s.base)
    _int(out, s.unit)
    _int(out, s.scale)
    _int(out, step)
    for i in range(n):
        if not step:
            _int(out, s.offsets[i])
        _encode(out, s.values[i])


def encode(value):
    """The deterministic encoding of value, as bytes."""
    out = bytearray()
    _encode(out, value)
    return bytes(out)


# --- decoding --------------------------------------------------------------

def _utf8_error(b, i, n):
    """The offset of the first invalid UTF-8 byte in b[i:i+n], or -1 (RFC 3629: strict)."""
    end = i + n
    while i < end:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            need, lo, hi = 1, 0x80, 0xBF
        elif 0xE0 <= c <= 0xEF:
            need = 2
            lo = 0xA0 if c == 0xE0 else 0x80  # no overlong forms
            hi = 0x9F if c == 0xED else 0xBF  # no surrogates
        elif 0xF0 <= c <= 0xF4:
            need = 3
            lo = 0x90 if c == 0xF0 else 0x80
            hi = 0x8F if c == 0xF4 else 0xBF  # nothing above U+10FFFF
        else:
            return i
        if i + need >= end:
            return i
        if not lo <= b[i + 1] <= hi:
            return i
        for j in range(i + 2, i + need + 1):
            if not 0x80 <= b[j] <= 0xBF:
                return i
        i += need + 1
    return -1


class _Decoder:
    __slots__ = ("buf", "pos", "end", "items", "limits")

    def __init__(self, buf, limits):
        self.buf = buf
        self.pos = 0
        self.end = len(buf)
        self.items = 0
        self.limits = limits

    def _byte(self):
        if self.pos >= self.end:
            raise SpotError(TRUNCATED, "payload ends inside an item")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def _arg(self, info):
        if info < 24:
            return info
        if info > 27:
            raise SpotError(BAD_PAYLOAD, "indefinite length or reserved head at %d" % (self.pos - 1))
        size = 1 << (info - 24)
        p = self.pos
        if p + size > self.end:
            raise SpotError(TRUNCATED, "payload ends inside a head")
        b = self.buf
        if size == 1:
            v = b[p]
            small = v < 24
        elif size == 2:
            v = (b[p] << 8) | b[p + 1]
            small = v < 0x100
        else:
            # Two 32-bit halves: fewer big-integer steps on small boards.
            hi = (b[p] << 8 | b[p + 1]) << 16 | (b[p + 2] << 8 | b[p + 3])
            if size == 4:
                v = hi
                small = v < 0x10000
            else:
                lo = (b[p + 4] << 8 | b[p + 5]) << 16 | (b[p + 6] << 8 | b[p + 7])
                small = hi == 0
                v = (hi << 32) | lo
        if small:
            raise SpotError(BAD_PAYLOAD, "non-shortest head at %d" % (p - 1))
        self.pos = p + size
        return v

    def _count(self, n):
        self.items += n
        if self.items > self.limits.max_items:
            raise SpotError(OVERSIZED, "more than max_items %d items" % self.limits.max_items)

    def _room(self, n, start):
        # Refuse a container before building it if its items cannot fit.
        if n > self.limits.max_items - self.items:
            raise SpotError(OVERSIZED, "%d items at %d over max_items %d" % (
                n, start, self.limits.max_items))

    def _deeper(self, depth, start):
        if depth <= 0:
            raise SpotError(TOO_DEEP, "nesting at %d deeper than max_depth %d" % (
                start, self.limits.max_depth))

    def _int(self):
        """An integer field of an object."""
        self._count(1)
        start = self.pos
        ib = self._byte()
        major = ib >> 5
        if major == 7 and 25 <= (ib & 31) <= 27:
            raise SpotError(BAD_PAYLOAD, "float at %d: SPOT numbers are scaled integers" % start)
        if major > 1:
            raise SpotError(BAD_VALUE, "integer expected at %d" % start)
        arg = self._arg(ib & 31)
        if arg > _INT_MAX:
            raise SpotError(OVERSIZED, "integer out of 64-bit range at %d" % start)
        return arg if major == 0 else -1 - arg

    def item(self, depth):
        self._count(1)
        start = self.pos
        ib = self._byte()
        major = ib >> 5
        info = ib & 31
        if major == 7:
            if info == 20:
                return False
            if info == 21:
                return True
            if info == 22:
                return None
            if 25 <= info <= 27:
                raise SpotError(BAD_PAYLOAD, "float at %d: SPOT numbers are scaled integers" % start)
            raise SpotError(BAD_PAYLOAD, "simple value 0x%02x at %d not in subset" % (ib, start))
        arg = self._arg(info)
        if major == 0:
            if arg > _INT_MAX:
                raise SpotError(OVERSIZED, "integer out of 64-bit range at %d" % start)
            return arg
        if major == 1:
            if arg > _INT_MAX:
                raise SpotError(OVERSIZED, "integer out of 64-bit range at %d" % start)
            return -1 - arg
        if major == 2 or major == 3:
            # Every head: fits the bytes left first, then the receiver's limits.
            p = self.pos
            if arg > self.end - p:
                raise SpotError(TRUNCATED, "payload ends inside a string")
            if arg > self.limits.max_string:
                raise SpotError(OVERSIZED, "string of %d bytes at %d over max_string %d" % (
                    arg, start, self.limits.max_string))
            self.pos = p + arg
            if major == 3:
                # Checked here, not by decode(): MicroPython's decoder is lenient.
                if _utf8_error(self.buf, p, arg) >= 0:
                    raise SpotError(BAD_PAYLOAD, "invalid UTF-8 at %d" % start)
                return str(self.buf[p:p + arg], "utf-8") if arg else ""
            return bytes(self.buf[p:p + arg]) if arg else b""
        if major == 4:
            if arg > self.end - self.pos:
                raise SpotError(TRUNCATED, "array of %d items in %d bytes" % (arg, self.end - self.pos))
            self._deeper(depth, start)
            self._room(arg, start)
            if not arg:
                return []
            items = [None] * arg  # one allocation, not a growing list
            for i in range(arg):
                items[i] = self.item(depth - 1)
            return items
        if major == 5:
            if 2 * arg > self.end - self.pos:
                raise SpotError(TRUNCATED, "map of %d entries in %d bytes" % (arg, self.end - self.pos))
            self._deeper(depth, start)
            self._room(2 * arg, start)
            d = {}
            for _ in range(arg):
                at = self.pos
                k = self.item(depth - 1)
                if not _is_int(k):
                    raise SpotError(BAD_PAYLOAD, "map key at %d is not an integer" % at)
                if k in d:
                    raise SpotError(BAD_PAYLOAD, "duplicate map key %d at %d" % (k, at))
                d[k] = self.item(depth - 1)
            return d
        # major 6: a tag; the tag and its content each take a nesting level.
        self._deeper(depth, start)
        if arg == TAG_TIME:
            at = self.pos
            ib = self.buf[at] if at < self.end else 0
            if ib >> 5 == 7 and 25 <= (ib & 31) <= 27:
                raise SpotError(BAD_PAYLOAD, "float time at %d" % at)
            v = self.item(depth - 1)
            if not _is_int(v) or v < 0:
                raise SpotError(BAD_VALUE, "time at %d is not whole seconds since 1970" % start)
            return Time(v)
        if arg == TAG_ANALOG:
            return self._analog(depth - 1, start)
        if arg == TAG_SCHEDULE:
            return self._schedule(depth - 1, start)
        at = self.pos
        content = self.item(depth - 1)
        return Unknown(arg, content, bytes(self.buf[at:self.pos]))

    def _array_head(self, depth, start, what):
        # The same order as any head (SPEC 4.2): the head, the bytes left, the limits.
        self._count(1)
        ib = self._byte()
        if ib >> 5 != 4:
            raise SpotError(BAD_VALUE, what + " at %d is not an array" % start)
        n = self._arg(ib & 31)
        if n > self.end - self.pos:
            raise SpotError(TRUNCATED, what + " at %d is cut short" % start)
        self._deeper(depth, start)
        return n

    def _analog(self, depth, start):
        n = self._array_head(depth, start, "analog value")
        if n < 1 or n > 3:
            raise SpotError(BAD_VALUE, "analog value at %d has %d fields" % (start, n))
        # Each field is checked as soon as it is read: the first error in reading order wins.
        value = self._int()
        unit = self._int() if n > 1 else 0
        if unit < 0 or unit > _UNIT_MAX:
            raise SpotError(BAD_VALUE, "analog unit out of range at %d" % start)
        scale = self._int() if n > 2 else 0
        if scale < -_SCALE_MAX or scale > _SCALE_MAX:
            raise SpotError(BAD_VALUE, "analog scale out of range at %d" % start)
        if (n == 3 and not scale) or (n == 2 and not unit):
            raise SpotError(BAD_PAYLOAD, "analog value at %d not in canonical form" % start)
        return Analog(value, unit, scale)

    def _schedule(self, depth, start):
        n = self._array_head(depth, start, "schedule")
        if n < 4:
            raise SpotError(BAD_VALUE, "schedule at %d has %d fields" % (start, n))
        base = self._int()
        if base < 0 or base > _BASE_MAX:
            raise SpotError(BAD_VALUE, "schedule base out of range at %d" % start)
        unit = self._int()
        if unit < 0 or unit > _UNIT_MAX:
            raise SpotError(BAD_VALUE, "schedule unit out of range at %d" % start)
        scale = self._int()
        if scale < -_SCALE_MAX or scale > _SCALE_MAX:
            raise SpotError(BAD_VALUE, "schedule scale out of range at %d" % start)
        step = self._int()
        if step < 0 or step > _OFFSET_MAX:
            raise SpotError(BAD_VALUE, "schedule interval out of range at %d" % start)
        if not step and n & 1:
            raise SpotError(BAD_VALUE, "schedule at %d has an offset without a value" % start)
        count = n - 4 if step else (n - 4) >> 1
        if count == 0:
            raise SpotError(BAD_VALUE, "schedule at %d has no steps" % start)
        if step and count < 2:
            raise SpotError(BAD_PAYLOAD, "one-step schedule at %d not in canonical form" % start)
        if step and step > _OFFSET_MAX // (count - 1):
            raise SpotError(BAD_VALUE, "schedule at %d ends past offset 2^30-1" % start)
        # Charged as the items the array holds: one per step here, two in pair form.
        self._room(n - 4, start)
        offsets = [0] * count
        values = [0] * count
        last = -1
        for i in range(count):
            if step:
                off = i * step
            else:
                off = self._int()
                if off > _OFFSET_MAX:
                    raise SpotError(BAD_VALUE, "schedule offset at %d past 2^30-1" % start)
                if off <= last:
                    raise SpotError(BAD_VALUE, "schedule steps at %d unsorted or overlapping" % start)
                last = off
            v = self.item(depth - 1)
            if not isinstance(v, int) and v is not True and v is not False:
                raise SpotError(BAD_VALUE, "schedule value at %d is not a number or boolean" % start)
            offsets[i] = off
            values[i] = v
        s = Schedule(base, offsets, values, unit, scale)
        if not step and s.interval():
            raise SpotError(BAD_PAYLOAD, "evenly spaced schedule at %d not in canonical form" % start)
        return s


def decode(buf, limits=DEFAULT_LIMITS):
    """The one item in buf (bytes, bytearray or memoryview), or SpotError."""
    if isinstance(buf, str):  # MicroPython would read a str's bytes: refuse on both
        raise TypeError("decode() takes bytes, not str")
    if len(buf) > limits.max_payload:
        raise SpotError(OVERSIZED, "payload of %d bytes over max_payload %d" % (
            len(buf), limits.max_payload))
    # Slices of a memoryview copy nothing until a string is kept.
    d = _Decoder(memoryview(buf), limits)
    v = d.item(limits.max_depth)
    if d.pos != d.end:
        raise SpotError(BAD_PAYLOAD, "%d trailing bytes after the payload" % (d.end - d.pos))
    return v
