"""SPOT error and drop codes, and the exception the codec raises.

Every way a frame can be refused has one small integer code, so the hot path can
return it without allocating and a device can count drops per reason.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

OK = const(0)
# Malformed input (the frame or payload is broken).
TRUNCATED = const(1)
BAD_VERSION = const(2)
LENGTH_MISMATCH = const(3)
BAD_PAYLOAD = const(4)
OVERSIZED = const(5)
TOO_DEEP = const(6)
UNKNOWN_MANDATORY = const(7)
BAD_FLAGS = const(8)
BAD_VALUE = const(9)
# Well-formed frames this receiver does not want (filter decisions).
NOT_FOR_ME = const(16)
UNKNOWN_SERVICE = const(17)
UNKNOWN_SERVICE_VERSION = const(18)
CLASS_REFUSED = const(19)
INSECURE = const(20)
# Security refusals (after the filter kept the frame).
BAD_TAG = const(21)
NOT_PAIRED = const(22)
NOT_PERMITTED = const(23)
REPLAYED = const(24)

NAMES = {
    OK: "ok",
    TRUNCATED: "truncated",
    BAD_VERSION: "bad protocol version",
    LENGTH_MISMATCH: "length mismatch",
    BAD_PAYLOAD: "bad payload",
    OVERSIZED: "oversized",
    TOO_DEEP: "nesting too deep",
    UNKNOWN_MANDATORY: "unknown mandatory field",
    BAD_FLAGS: "bad flag combination",
    BAD_VALUE: "bad value",
    NOT_FOR_ME: "not for this device",
    UNKNOWN_SERVICE: "unknown service",
    UNKNOWN_SERVICE_VERSION: "unknown service version",
    CLASS_REFUSED: "message class refused",
    INSECURE: "security required",
    BAD_TAG: "authentication failed",
    NOT_PAIRED: "sender not paired",
    NOT_PERMITTED: "not permitted for this sender",
    REPLAYED: "replayed or too old",
}


class SpotError(ValueError):
    """A frame or payload was refused; `code` says why, the message says where."""

    def __init__(self, code, detail="", frame=None):
        super().__init__(code, detail)
        self.code = code
        self.detail = detail
        self.frame = frame  # the authenticated frame, for REPLAYED: it may need a fresh ACK

    def __str__(self):
        name = NAMES.get(self.code, "error %d" % self.code)
        return name + ": " + self.detail if self.detail else name
