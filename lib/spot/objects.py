"""SPOT's simple object types: analog value, time, schedule, and unknown tags.

A binary value is a plain CBOR boolean and needs no class. Each type here maps
to one CBOR tag (see SPEC.md "Objects"); a tag this code does not know decodes
to Unknown and re-encodes byte for byte, so old devices pass new objects on.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

TAG_TIME = const(1)  # RFC 8949 epoch-based date/time, integer seconds
TAG_ANALOG = const(54096)  # provisional, first-come-first-served range
TAG_SCHEDULE = const(54097)

# Units (SPEC.md "Units"); 0 means a plain number.
UNIT_NONE = const(0)
UNIT_W = const(1)
UNIT_WH = const(2)
UNIT_PERCENT = const(3)
UNIT_CELSIUS = const(4)
UNIT_SECOND = const(5)
UNIT_VOLT = const(6)
UNIT_AMPERE = const(7)
UNIT_HERTZ = const(8)
UNIT_PRICE_PER_MWH = const(9)  # in the currency the message names
UNIT_VAR = const(10)


class Analog:
    """A measured or commanded number: value * 10**scale in `unit`."""

    __slots__ = ("value", "unit", "scale")

    def __init__(self, value, unit=0, scale=0):
        self.value = value
        self.unit = unit
        self.scale = scale

    def __eq__(self, other):
        return (
            isinstance(other, Analog)
            and self.value == other.value
            and self.unit == other.unit
            and self.scale == other.scale
        )

    def __repr__(self):
        return "Analog(%r, unit=%r, scale=%r)" % (self.value, self.unit, self.scale)


class Time:
    """An absolute time: whole seconds since 1970-01-01T00:00:00Z (UTC)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds):
        self.seconds = seconds

    def __eq__(self, other):
        return isinstance(other, Time) and self.seconds == other.seconds

    def __repr__(self):
        return "Time(%r)" % self.seconds


class Schedule:
    """Steps (offset seconds from `base`, value); each value holds until the next.

    Values are ints (scaled like Analog by `unit` and `scale`) or booleans.
    Offsets are strictly increasing and start at or after 0.
    """

    __slots__ = ("base", "offsets", "values", "unit", "scale")

    def __init__(self, base, offsets, values, unit=0, scale=0):
        self.base = base
        self.offsets = offsets
        self.values = values
        self.unit = unit
        self.scale = scale

    @classmethod
    def uniform(cls, base, interval, values, unit=0, scale=0):
        return cls(base, [i * interval for i in range(len(values))], values, unit, scale)

    def interval(self):
        """The common step length if steps are evenly spaced from 0, else 0."""
        offs = self.offsets
        if len(offs) < 2 or offs[0] != 0:
            return 0
        step = offs[1]
        for i in range(2, len(offs)):
            if offs[i] != i * step:
                return 0
        return step

    def __eq__(self, other):
        return (
            isinstance(other, Schedule)
            and self.base == other.base
            and list(self.offsets) == list(other.offsets)
            and list(self.values) == list(other.values)
            and self.unit == other.unit
            and self.scale == other.scale
        )

    def __repr__(self):
        return "Schedule(%r, %r, %r, unit=%r, scale=%r)" % (
            self.base, self.offsets, self.values, self.unit, self.scale)


class Unknown:
    """A tagged object of a type this code does not know; kept so it can be skipped or passed on.

    `raw` holds the content's bytes as received, so passing it on changes nothing.
    """

    __slots__ = ("tag", "content", "raw")

    def __init__(self, tag, content, raw=None):
        self.tag = tag
        self.content = content
        self.raw = raw

    def __eq__(self, other):
        return isinstance(other, Unknown) and self.tag == other.tag and self.content == other.content

    def __repr__(self):
        return "Unknown(%r, %r)" % (self.tag, self.content)
