"""A received frame's payload map: decoded, its must-understand keys checked (SPEC.md 4).

What a device needs of spot.messages, without its table of names: a board keeps the
numbers it uses as private consts (a public name costs it about 60 bytes of heap),
and controllers read the names in spot.messages, which re-exports these two.
"""
from spot import cbor
from spot.errors import BAD_PAYLOAD, UNKNOWN_MANDATORY, SpotError


def is_int(v):
    """True for an integer field's value: a CBOR integer, never a boolean.

    bool is an int on CPython but not on MicroPython; SPEC 6 says a boolean is
    never an integer, so both interpreters refuse `true` where a number belongs.
    """
    return isinstance(v, int) and v is not True and v is not False


def read_payload(f, limits=cbor.DEFAULT_LIMITS):
    """The payload map of a decoded Frame, checked for must-understand keys.

    A negative key is must-understand, and no message of SPEC 1.1 defines one: a
    receiver refuses every negative key (a later version that defines some lists,
    here, the ones this receiver understands, by service and class)."""
    body = cbor.decode(f.payload, limits)
    if not isinstance(body, dict):
        raise SpotError(BAD_PAYLOAD, "payload is not a map")
    for k in body:
        if k < 0:
            raise SpotError(UNKNOWN_MANDATORY, "key %d of service %d class %d" % (k, f.service, f.cls))
    return body
