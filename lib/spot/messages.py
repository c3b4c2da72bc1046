"""The messages of SPOT's core services: ids, payload keys and builders.

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
from spot.objects import UNIT_PERCENT, UNIT_PRICE_PER_MWH, Analog, Schedule, Time

# Services (SPEC.md "Services"): one byte, each versioned on its own.
SVC_CORE = const(1)  # time sync, acknowledgements, discovery
SVC_DR = const(2)  # demand-response commands
SVC_PRICE = const(3)  # price and other forecasts
SVC_METER = const(4)  # measurement reports

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
# Acknowledgement (SVC_CORE, CLASS_ACK).
K_ACK_SEQ = const(1)
K_ACK_STATUS = const(2)
K_ACK_REASON = const(3)
ACK_APPLIED = const(0)
ACK_ADAPTED = const(1)  # carried out within the device's own limits, not as asked
ACK_REFUSED = const(2)
ACK_EXPIRED = const(3)
ACK_UNSUPPORTED = const(4)
# Time sync (SVC_CORE, CLASS_TIMESYNC).
K_TS_TIME = const(1)
K_TS_MILLIS = const(2)

# Keys each (service, class) understands; negative keys outside these are refused.
KNOWN_KEYS = {
    (SVC_DR, frame.CLASS_COMMAND): (K_KIND, K_DR_AMOUNT, K_DR_START, K_DR_DURATION,
                                    K_DR_VALID_UNTIL, K_DR_LOW, K_DR_HIGH),
    (SVC_PRICE, frame.CLASS_INFO): (K_KIND, K_FC_SCHEDULE, K_FC_CURRENCY),
    (SVC_METER, frame.CLASS_REPORT): (K_MR_TIME, K_MR_POWER, K_MR_ENERGY, K_MR_RELAY),
    (SVC_CORE, frame.CLASS_ACK): (K_ACK_SEQ, K_ACK_STATUS, K_ACK_REASON),
    (SVC_CORE, frame.CLASS_TIMESYNC): (K_TS_TIME, K_TS_MILLIS),
    (SVC_CORE, frame.CLASS_DISCOVERY): (),
}


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


def build(service, cls, dst, src, seq, body, flags=0, version=1, key_id=0, tag=None):
    return frame.encode(service, version, cls, dst, src, seq, cbor.encode(body), flags, key_id, tag)


# Builders for the standard messages (the spec's test vectors use these).

def reduce_power(dst, src, seq, percent, start, duration_s, flags=frame.FLAG_SECURED):
    return build(SVC_DR, frame.CLASS_COMMAND, dst, src, seq, {
        K_KIND: DR_REDUCE,
        K_DR_AMOUNT: Analog(percent, UNIT_PERCENT),
        K_DR_START: Time(start),
        K_DR_DURATION: duration_s,
    }, flags | frame.FLAG_ACK_WANTED)


def price_forecast(dst, src, seq, start, interval_s, prices, scale, flags=frame.FLAG_SECURED):
    return build(SVC_PRICE, frame.CLASS_INFO, dst, src, seq, {
        K_KIND: FC_ENERGY_PRICE,
        K_FC_SCHEDULE: Schedule.uniform(start, interval_s, prices, UNIT_PRICE_PER_MWH, scale),
        K_FC_CURRENCY: CURRENCY_EUR,
    }, flags)


def meter_report(dst, src, seq, when, power, energy, relay_on, flags=frame.FLAG_SECURED):
    """power and energy as Analog values (W and Wh)."""
    return build(SVC_METER, frame.CLASS_REPORT, dst, src, seq, {
        K_MR_TIME: Time(when),
        K_MR_POWER: power,
        K_MR_ENERGY: energy,
        K_MR_RELAY: relay_on,
    }, flags)


def ack(dst, src, seq, acked_seq, status, reason=0, flags=frame.FLAG_SECURED):
    body = {K_ACK_SEQ: acked_seq, K_ACK_STATUS: status}
    if reason:
        body[K_ACK_REASON] = reason
    return build(SVC_CORE, frame.CLASS_ACK, dst, src, seq, body, flags)


def time_sync(dst, src, seq, seconds, millis, flags=frame.FLAG_SECURED):
    return build(SVC_CORE, frame.CLASS_TIMESYNC, dst, src, seq,
                 {K_TS_TIME: Time(seconds), K_TS_MILLIS: millis}, flags)


def discovery(dst, src, seq, flags=0):
    return build(SVC_CORE, frame.CLASS_DISCOVERY, dst, src, seq, {}, flags)


