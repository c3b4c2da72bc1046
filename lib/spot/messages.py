"""The messages of SPOT's core services: ids and payload keys (their builders: spot.builders).

A payload is a CBOR map with small integer keys. A receiver ignores positive
keys it does not know; negative keys are must-understand, so an old receiver
refuses (UNKNOWN_MANDATORY) rather than half-apply a newer message.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

# A receiver's part (a board imports spot.payload, never this table of names):
from spot.payload import is_int, read_payload  # noqa: F401

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
# are in spot/role_codes.py (the roles keep private copies).
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
K_DISC_PAD = const(15)  # a question's padding, ignored: room for its unsecured answer (13.3)
# Key management (SVC_CORE, CLASS_COMMAND; admin keys only, key_add encrypted).
CORE_KEY_ADD = const(1)
CORE_KEY_RETIRE = const(2)
K_KEY_ID = const(1)
K_KEY_PEER = const(2)
K_KEY_SECRET = const(3)
K_KEY_CLASSES = const(4)
K_KEY_FLAGS = const(5)  # bit 0 group key, bit 1 admin key
