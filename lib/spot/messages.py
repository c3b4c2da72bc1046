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
from spot.errors import BAD_PAYLOAD, BAD_VALUE, UNKNOWN_MANDATORY, SpotError
from spot.objects import UNIT_PERCENT, UNIT_PRICE_PER_MWH, Analog, Schedule, Time

# Services (SPEC.md "Services"): one byte, each versioned on its own.
SVC_CORE = const(1)  # time sync, acknowledgements, discovery
SVC_DR = const(2)  # demand-response commands
SVC_PRICE = const(3)  # price and other forecasts
SVC_METER = const(4)  # measurement reports
SVC_SCHEDULE = const(5)  # programs, timed events and price rules a device keeps

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
    (SVC_CORE, frame.CLASS_DISCOVERY): (),
    (SVC_CORE, frame.CLASS_COMMAND): (K_KIND, K_KEY_ID, K_KEY_PEER, K_KEY_SECRET, K_KEY_CLASSES,
                                      K_KEY_FLAGS),
    (SVC_SCHEDULE, frame.CLASS_COMMAND): (K_KIND, K_SCH_STEPS, K_SCH_START, K_SCH_DURATION,
                                          K_SCH_WINDOW, K_SCH_VALUE, K_SCH_ID, K_SCH_THRESHOLD),
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


def build(service, cls, dst, src, seq, body, flags=0, version=1, key=None, encrypt=False):
    """A frame carrying body; sealed (secured) under `key` if one is given."""
    payload = cbor.encode(body)
    if key is None:
        if encrypt:
            raise SpotError(BAD_VALUE, "encryption needs a key")
        return frame.encode(service, version, cls, dst, src, seq, payload, flags)
    from spot import secure

    return secure.seal(key, service, version, cls, dst, src, seq, payload, flags, encrypt)


# Builders for the standard messages (the spec's test vectors use these). Each
# takes key= (a keyring.Key) to seal the frame; without one it is unsecured.

def reduce_power(dst, src, seq, percent, start, duration_s, key=None, valid_until=None):
    """Reduce power by percent from start for duration_s; not applied after valid_until."""
    body = {
        K_KIND: DR_REDUCE,
        K_DR_AMOUNT: Analog(percent, UNIT_PERCENT),
        K_DR_START: Time(start),
        K_DR_DURATION: duration_s,
    }
    if valid_until is not None:
        body[K_DR_VALID_UNTIL] = Time(valid_until)
    return build(SVC_DR, frame.CLASS_COMMAND, dst, src, seq, body, frame.FLAG_ACK_WANTED, key=key)


def price_forecast(dst, src, seq, start, interval_s, prices, scale, key=None):
    return build(SVC_PRICE, frame.CLASS_INFO, dst, src, seq, {
        K_KIND: FC_ENERGY_PRICE,
        K_FC_SCHEDULE: Schedule.uniform(start, interval_s, prices, UNIT_PRICE_PER_MWH, scale),
        K_FC_CURRENCY: CURRENCY_EUR,
    }, key=key)


def meter_report(dst, src, seq, when, power, energy, relay_on, key=None, encrypt=False):
    """power and energy as Analog values (W and Wh); reports may be private, so encrypt."""
    return build(SVC_METER, frame.CLASS_REPORT, dst, src, seq, {
        K_MR_TIME: Time(when),
        K_MR_POWER: power,
        K_MR_ENERGY: energy,
        K_MR_RELAY: relay_on,
    }, key=key, encrypt=encrypt)


def ack(dst, src, seq, acked_seq, status, reason=0, key=None):
    body = {K_ACK_SEQ: acked_seq, K_ACK_STATUS: status}
    if reason:
        body[K_ACK_REASON] = reason
    return build(SVC_CORE, frame.CLASS_ACK, dst, src, seq, body, key=key)


def time_sync(dst, src, seq, seconds, millis, key=None):
    return build(SVC_CORE, frame.CLASS_TIMESYNC, dst, src, seq,
                 {K_TS_TIME: Time(seconds), K_TS_MILLIS: millis}, key=key)


def weekly_program(dst, src, seq, week_origin, offsets_s, values, key=None, unit=0, scale=0):
    """Set a device's weekly program: steps at offsets_s seconds into the week."""
    return build(SVC_SCHEDULE, frame.CLASS_COMMAND, dst, src, seq, {
        K_KIND: SCH_PROGRAM, K_SCH_STEPS: Schedule(week_origin, offsets_s, values, unit, scale),
    }, frame.FLAG_ACK_WANTED, key=key)


def timed_event(dst, src, seq, event_id, start, duration_s, window_s=0, value=1, key=None):
    return build(SVC_SCHEDULE, frame.CLASS_COMMAND, dst, src, seq, {
        K_KIND: SCH_EVENT, K_SCH_ID: event_id, K_SCH_START: Time(start), K_SCH_DURATION: duration_s,
        K_SCH_WINDOW: window_s, K_SCH_VALUE: value,
    }, frame.FLAG_ACK_WANTED, key=key)


def price_rule(dst, src, seq, threshold, steps, key=None):
    """Run (an event per window) wherever a forecast price is under threshold for steps steps."""
    return build(SVC_SCHEDULE, frame.CLASS_COMMAND, dst, src, seq, {
        K_KIND: SCH_PRICE_RULE, K_SCH_THRESHOLD: threshold, K_SCH_DURATION: steps,
    }, frame.FLAG_ACK_WANTED, key=key)


def time_request(dst, src, seq, local_ms, key=None):
    """Ask dst for its time; local_ms is the asker's own clock, echoed in the answer."""
    return build(SVC_CORE, frame.CLASS_TIMESYNC, dst, src, seq, {K_TS_ECHO: local_ms}, key=key)


def time_answer(dst, src, seq, echo_ms, received_ms, sent_ms, key=None):
    return build(SVC_CORE, frame.CLASS_TIMESYNC, dst, src, seq, {
        K_TS_ECHO: echo_ms, K_TS_RECEIVED: received_ms, K_TS_SENT: sent_ms}, key=key)


def discovery(dst, src, seq, key=None):
    return build(SVC_CORE, frame.CLASS_DISCOVERY, dst, src, seq, {}, key=key)


def key_add(dst, src, seq, key, new_id, peer, secret, classes, group=False, admin=False):
    """Give dst a new key (encrypted under `key`, which must be an admin key)."""
    return build(SVC_CORE, frame.CLASS_COMMAND, dst, src, seq, {
        K_KIND: CORE_KEY_ADD, K_KEY_ID: new_id, K_KEY_PEER: peer, K_KEY_SECRET: secret,
        K_KEY_CLASSES: classes, K_KEY_FLAGS: (1 if group else 0) | (2 if admin else 0),
    }, frame.FLAG_ACK_WANTED, key=key, encrypt=True)


def key_retire(dst, src, seq, key, old_id, peer):
    return build(SVC_CORE, frame.CLASS_COMMAND, dst, src, seq, {
        K_KIND: CORE_KEY_RETIRE, K_KEY_ID: old_id, K_KEY_PEER: peer,
    }, frame.FLAG_ACK_WANTED, key=key)
