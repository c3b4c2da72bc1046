"""The messages of SPOT's core services: ids and payload keys (their builders: spot.builders).

A payload is a CBOR map with small integer keys. A receiver ignores positive
keys it does not know; negative keys are must-understand, so an old receiver
refuses (UNKNOWN_MANDATORY) rather than half-apply a newer message.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from spot import cbor, frame
from spot.errors import BAD_PAYLOAD, UNKNOWN_MANDATORY, SpotError

# Services (SPEC.md "Services"): one byte, each versioned on its own.
SVC_CORE = const(1)  # time sync, acknowledgements, discovery
SVC_DR = const(2)  # demand-response commands
SVC_PRICE = const(3)  # price and other forecasts
SVC_METER = const(4)  # measurement reports
SVC_SCHEDULE = const(5)  # programs, timed events and price rules a device keeps
SVC_DEVICE = const(6)  # a device role's own commands, state reports and capabilities

# Keys shared by many messages.
K_KIND = const(0)
# Demand response (SVC_DR, CLASS_COMMAND).
K_DR_AMOUNT = const(1)
K_DR_START = const(2)
K_DR_DURATION = const(3)
K_DR_VALID_UNTIL = const(4)
DR_REDUCE = const(1)  # lower consumption by an amount (W or %)
DR_LIMIT = const(2)  # keep consumption under an amount
DR_RESTORE = const(3)  # end any demand-response state now
DR_SHUT_DOWN = const(4)
DR_KEEP_BAND = const(5)  # hold a controlled value between two bounds
K_DR_LOW = const(5)
K_DR_HIGH = const(6)
# Forecasts (SVC_PRICE, CLASS_INFO).
K_FC_SCHEDULE = const(1)
K_FC_CURRENCY = const(2)  # ISO 4217 numeric code
FC_ENERGY_PRICE = const(1)
CURRENCY_EUR = const(978)
# Measurement reports (SVC_METER, CLASS_REPORT).
K_MR_TIME = const(1)
K_MR_POWER = const(2)
K_MR_ENERGY = const(3)
K_MR_RELAY = const(4)
# Schedules (SVC_SCHEDULE, CLASS_COMMAND), SPEC.md section 9.2.
SCH_PROGRAM = const(1)  # K_SCH_STEPS: Schedule, base = the week's origin, offsets in seconds
SCH_EVENT = const(2)
SCH_PRICE_RULE = const(3)
K_SCH_STEPS = const(1)
K_SCH_START = const(2)  # event start (Time)
K_SCH_DURATION = const(3)  # event duration or rule run length, seconds
K_SCH_WINDOW = const(4)  # event spread window, seconds
K_SCH_VALUE = const(5)
K_SCH_ID = const(6)
K_SCH_THRESHOLD = const(7)  # price rule: run while the price is under this (forecast units)
# Device roles (SVC_DEVICE), SPEC.md section 12; the kinds and the report keys
# are in firmware/role.py, where the roles use them.
K_DEV_VALUE = const(1)
K_DEV_DURATION = const(2)
K_DEV_SETTINGS = const(3)
# Acknowledgement (SVC_CORE, CLASS_ACK).
K_ACK_SEQ = const(1)
K_ACK_STATUS = const(2)
K_ACK_REASON = const(3)
ACK_APPLIED = const(0)
ACK_ADAPTED = const(1)  # carried out within the device's own limits, not as asked
ACK_REFUSED = const(2)
ACK_EXPIRED = const(3)
ACK_UNSUPPORTED = const(4)
# Time sync (SVC_CORE, CLASS_TIMESYNC): a one-way time, or a two-way exchange.
K_TS_TIME = const(1)
K_TS_MILLIS = const(2)
K_TS_ECHO = const(3)  # the requester's local clock (ms) when it asked, echoed back
K_TS_RECEIVED = const(4)  # the answerer's true time (epoch ms) on receiving the request
K_TS_SENT = const(5)  # the answerer's true time (epoch ms) on sending the answer
# Discovery (SVC_CORE, CLASS_DISCOVERY): an empty map asks; the answer carries
# what the device keeps (SPEC 6).
K_DISC_SERVICES = const(1)  # [[service id, class mask, lowest version, highest version], ...]
K_DISC_ROLE = const(2)  # SPEC 12.4 key 1: 1 thermostat, 2 smart plug, 3 heat pump
# Key management (SVC_CORE, CLASS_COMMAND; admin keys only, key_add encrypted).
CORE_KEY_ADD = const(1)
CORE_KEY_RETIRE = const(2)
K_KEY_ID = const(1)
K_KEY_PEER = const(2)
K_KEY_SECRET = const(3)
K_KEY_CLASSES = const(4)
K_KEY_FLAGS = const(5)  # bit 0 group key, bit 1 admin key

# Keys each (service, class) understands; negative keys outside these are refused.
KNOWN_KEYS = {
    (SVC_DR, frame.CLASS_COMMAND): (K_KIND, K_DR_AMOUNT, K_DR_START, K_DR_DURATION,
                                    K_DR_VALID_UNTIL, K_DR_LOW, K_DR_HIGH),
    (SVC_PRICE, frame.CLASS_INFO): (K_KIND, K_FC_SCHEDULE, K_FC_CURRENCY),
    (SVC_METER, frame.CLASS_REPORT): (K_MR_TIME, K_MR_POWER, K_MR_ENERGY, K_MR_RELAY),
    (SVC_CORE, frame.CLASS_ACK): (K_ACK_SEQ, K_ACK_STATUS, K_ACK_REASON),
    (SVC_CORE, frame.CLASS_TIMESYNC): (K_TS_TIME, K_TS_MILLIS, K_TS_ECHO, K_TS_RECEIVED, K_TS_SENT),
    (SVC_CORE, frame.CLASS_DISCOVERY): (K_DISC_SERVICES, K_DISC_ROLE),
    (SVC_CORE, frame.CLASS_COMMAND): (K_KIND, K_KEY_ID, K_KEY_PEER, K_KEY_SECRET, K_KEY_CLASSES,
                                      K_KEY_FLAGS),
    (SVC_DEVICE, frame.CLASS_COMMAND): (K_KIND, K_DEV_VALUE, K_DEV_DURATION, K_DEV_SETTINGS),
    (SVC_SCHEDULE, frame.CLASS_COMMAND): (K_KIND, K_SCH_STEPS, K_SCH_START, K_SCH_DURATION,
                                          K_SCH_WINDOW, K_SCH_VALUE, K_SCH_ID, K_SCH_THRESHOLD),
}


def is_int(v):
    """True for an integer field's value: a CBOR integer, never a boolean.

    bool is an int on CPython but not on MicroPython; SPEC 6 says a boolean is
    never an integer, so both interpreters refuse `true` where a number belongs.
    """
    return isinstance(v, int) and v is not True and v is not False


def read_payload(f, limits=cbor.DEFAULT_LIMITS):
    """The payload map of a decoded Frame, checked for must-understand keys."""
    body = cbor.decode(f.payload, limits)
    if not isinstance(body, dict):
        raise SpotError(BAD_PAYLOAD, "payload is not a map")
    known = KNOWN_KEYS.get((f.service, f.cls), ())
    for k in body:
        if k < 0 and k not in known:
            raise SpotError(UNKNOWN_MANDATORY, "key %d of service %d class %d" % (k, f.service, f.cls))
    return body

