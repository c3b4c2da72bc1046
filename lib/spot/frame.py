"""SPOT frames: build one, or take a received one apart.

A frame is the 19-byte header, the payload (strict CBOR, see cbor.py) and, when
FLAG_SECURED is set, a 9-byte trailer: key id and truncated authentication tag.
The header check itself lives in hotpath.py so a device can drop a frame
before anything here runs.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from array import array

from spot import hotpath
from spot.errors import BAD_VALUE, NAMES, SpotError

HEADER_SIZE = const(19)
TRAILER_SIZE = const(9)
TAG_SIZE = const(8)
VERSION = const(1)

FLAG_SECURED = const(0x01)
FLAG_ENCRYPTED = const(0x02)
FLAG_ACK_WANTED = const(0x04)

CLASS_COMMAND = const(0)
CLASS_INFO = const(1)
CLASS_REPORT = const(2)
CLASS_ACK = const(3)
CLASS_TIMESYNC = const(4)
CLASS_DISCOVERY = const(5)

BROADCAST = const(0xFFFFFFFF)
GROUP_BIT = const(0x80000000)

_NO_TAG = bytes(TAG_SIZE)


class Frame:
    """A decoded frame; `payload` is a memoryview into the received buffer."""

    __slots__ = ("flags", "service", "version", "cls", "dst", "src", "seq",
                 "payload", "key_id", "tag")

    def __init__(self, flags, service, version, cls, dst, src, seq, payload,
                 key_id=0, tag=None):
        self.flags = flags
        self.service = service
        self.version = version
        self.cls = cls
        self.dst = dst
        self.src = src
        self.seq = seq
        self.payload = payload
        self.key_id = key_id
        self.tag = tag

    @property
    def secured(self):
        return bool(self.flags & FLAG_SECURED)

    def __repr__(self):
        return "Frame(svc=%d v%d cls=%d %08x->%08x seq=%d len=%d flags=%02x)" % (
            self.service, self.version, self.cls, self.src, self.dst, self.seq,
            len(self.payload), self.flags)


def _u(value, bits, what):
    # bool is an int on CPython only: refuse it everywhere.
    if not isinstance(value, int) or value is True or value is False or value < 0 or value >> bits:
        raise SpotError(BAD_VALUE, "%s %r does not fit %d bits" % (what, value, bits))
    return value


def encode(service, version, cls, dst, src, seq, payload=b"", flags=0, key_id=0, tag=None,
           raw=False):
    """The bytes of a frame; a secured frame without a tag gets a zero placeholder.
    raw: the bytearray itself, the one buffer a sender fills in (spot.secure.seal
    writes the tag into it)."""
    _u(flags, 8, "flags")
    if flags & 0xE0:
        raise SpotError(BAD_VALUE, "flags 0x%02x sets must-understand bits" % flags)
    if flags & FLAG_ENCRYPTED and not flags & FLAG_SECURED:
        raise SpotError(BAD_VALUE, "an encrypted frame must be secured")
    if not service:
        raise SpotError(BAD_VALUE, "service 0 is reserved")
    if not dst:
        raise SpotError(BAD_VALUE, "destination 0 is unassigned")
    n = len(payload)
    _u(n, 16, "payload length")
    out = bytearray(HEADER_SIZE + n + (TRAILER_SIZE if flags & FLAG_SECURED else 0))
    out[0] = VERSION
    out[1] = flags
    out[2] = _u(service, 8, "service")
    out[3] = _u(version, 8, "service version")
    out[4] = _u(cls, 8, "class")
    _u32(out, 5, dst, "destination")  # no tuple of (offset, value, name) per field
    _u32(out, 9, src, "source")
    _u32(out, 13, seq, "sequence")
    out[17] = n >> 8
    out[18] = n & 0xFF
    out[HEADER_SIZE:HEADER_SIZE + n] = payload
    if flags & FLAG_SECURED:
        t = _NO_TAG if tag is None else tag
        if len(t) != TAG_SIZE:
            raise SpotError(BAD_VALUE, "tag must be %d bytes" % TAG_SIZE)
        out[HEADER_SIZE + n] = _u(key_id, 8, "key id")
        out[HEADER_SIZE + n + 1:] = t
    return out if raw else bytes(out)


def _u32(out, offset, value, what):
    _u(value, 32, what)
    out[offset] = value >> 24
    out[offset + 1] = (value >> 16) & 0xFF
    out[offset + 2] = (value >> 8) & 0xFF
    out[offset + 3] = value & 0xFF


def decode(buf, table=None):
    """The Frame in buf, or SpotError: malformed, or dropped by `table` (a FilterTable)."""
    if isinstance(buf, str):  # MicroPython would read a str's bytes: refuse on both
        raise TypeError("decode() takes bytes, not str")
    fields = array("H", bytes(2 * hotpath.FIELDS))
    n = len(buf)
    if table is None:
        code = hotpath.parse(buf, n, fields)
    else:
        code = hotpath.screen(buf, n, table.buf, fields)
    if code:
        raise SpotError(code, "frame of %d bytes" % n)
    mv = memoryview(buf)
    plen = fields[hotpath.F_LENGTH]
    flags = fields[hotpath.F_FLAGS]
    key_id = 0
    tag = None
    if flags & FLAG_SECURED:
        key_id = buf[HEADER_SIZE + plen]
        tag = mv[HEADER_SIZE + plen + 1:]
    return Frame(flags, fields[hotpath.F_SERVICE], fields[hotpath.F_SERVICE_VERSION],
                 fields[hotpath.F_CLASS], join(fields, hotpath.F_DST_HI),
                 join(fields, hotpath.F_SRC_HI), join(fields, hotpath.F_SEQ_HI),
                 mv[HEADER_SIZE:HEADER_SIZE + plen], key_id, tag)


def join(fields, hi):
    """The 32-bit header field whose high half is in fields[hi] (low half next)."""
    return (fields[hi] << 16) | fields[hi + 1]


def reason(code):
    """A short human name for an error or drop code."""
    return NAMES.get(code, "code %d" % code)
