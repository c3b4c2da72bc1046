"""Builders for the standard SPOT messages: what controllers and tests send.

Kept apart from spot.messages (the ids and keys every node needs) so that a
device, which mostly receives, does not load them. The dependency runs one way:
builders needs messages, never the reverse.
"""
from spot import cbor, frame
from spot.errors import BAD_VALUE, SpotError
from spot.messages import (CORE_KEY_ADD, CORE_KEY_RETIRE, CURRENCY_EUR, DR_REDUCE,
                           FC_ENERGY_PRICE, K_ACK_REASON, K_ACK_SEQ, K_ACK_STATUS,
                           K_DEV_DURATION, K_DEV_SETTINGS, K_DEV_VALUE, K_DISC_PAD, K_DISC_ROLE,
                           K_DISC_SERVICES,
                           K_DR_AMOUNT, K_DR_DURATION, K_DR_HIGH, K_DR_LOW, K_DR_START,
                           K_DR_VALID_UNTIL,
                           K_FC_CURRENCY, K_FC_SCHEDULE, K_KEY_CLASSES, K_KEY_FLAGS,
                           K_KEY_ID, K_KEY_PEER, K_KEY_SECRET, K_KIND, K_MR_ENERGY,
                           K_MR_POWER, K_MR_RELAY, K_MR_TIME, K_SCH_DURATION, K_SCH_ID,
                           K_SCH_START, K_SCH_STEPS, K_SCH_THRESHOLD, K_SCH_VALUE,
                           K_SCH_WINDOW, K_TS_ECHO, K_TS_MILLIS, K_TS_RECEIVED, K_TS_SENT,
                           K_TS_TIME, SCH_EVENT, SCH_PRICE_RULE, SCH_PROGRAM, SVC_CORE,
                           SVC_DEVICE, SVC_DR, SVC_METER, SVC_PRICE, SVC_SCHEDULE)
from spot.objects import UNIT_CELSIUS, UNIT_PERCENT, UNIT_PRICE_PER_MWH, Analog, Schedule, Time


def build(service, cls, dst, src, seq, body, flags=0, version=1, key=None, encrypt=False):
    """A frame carrying body; sealed (secured) under `key` if one is given.

    A sender never builds what a receiver with the default limits (SPEC 4.1)
    refuses: such a body raises the receiver's own error, naming the limit.
    """
    payload = cbor.encode(body)
    try:
        cbor.decode(payload)  # the default receiver's own check, so the two cannot differ
    except SpotError as e:
        raise SpotError(e.code, "a receiver with the default limits refuses it: " + e.detail)
    if key is None:
        if encrypt:
            raise SpotError(BAD_VALUE, "encryption needs a key")
        return frame.encode(service, version, cls, dst, src, seq, payload, flags)
    from spot import secure

    return secure.seal(key, service, version, cls, dst, src, seq, payload, flags, encrypt)


_WEEK_S = 604800


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


def demand(dst, src, seq, kind, amount=None, start=None, duration_s=0, key=None,
           valid_until=None, low=None, high=None):
    """Any demand-response command: kind DR_*, amount an Analog (W or %), low and high
    an Analog each for DR_KEEP_BAND (a comfort band, in C)."""
    body = {K_KIND: kind}
    for k, v in ((K_DR_AMOUNT, amount), (K_DR_LOW, low), (K_DR_HIGH, high)):
        if v is not None:
            body[k] = v
    if start is not None:
        body[K_DR_START] = Time(start)
    if duration_s:
        body[K_DR_DURATION] = duration_s
    if valid_until is not None:
        body[K_DR_VALID_UNTIL] = Time(valid_until)
    return build(SVC_DR, frame.CLASS_COMMAND, dst, src, seq, body, frame.FLAG_ACK_WANTED, key=key)


def celsius(deci):
    """A temperature in 0.1 C as the Analog a command carries."""
    return Analog(deci, UNIT_CELSIUS, -1)


def device_command(dst, src, seq, kind, value=None, duration_s=0, settings=None, key=None):
    """A device role's command (SVC_DEVICE; kinds and settings in spot/role_codes.py)."""
    body = {K_KIND: kind}
    if value is not None:
        body[K_DEV_VALUE] = value
    if duration_s:
        body[K_DEV_DURATION] = duration_s
    if settings is not None:
        body[K_DEV_SETTINGS] = settings
    return build(SVC_DEVICE, frame.CLASS_COMMAND, dst, src, seq, body, frame.FLAG_ACK_WANTED,
                 key=key)


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
    """Set a device's weekly program: steps at offsets_s seconds into the week.

    Refuses what every device refuses (SPEC 9.2): more than MAX_STEPS steps, or
    a step outside the week."""
    from spot.schedule import MAX_STEPS  # only controllers build programs

    if len(offsets_s) > MAX_STEPS:
        raise SpotError(BAD_VALUE, "a weekly program holds at most MAX_STEPS %d steps, not %d" % (
            MAX_STEPS, len(offsets_s)))
    for off in offsets_s:
        if not isinstance(off, int) or not 0 <= off < _WEEK_S:
            raise SpotError(BAD_VALUE, "step at %r s is outside the week" % (off,))
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


def discovery(dst, src, seq, key=None, pad=0):
    """A discovery question; pad: bytes of padding (key 15, ignored by the device), so
    that an unsecured answer of up to 3 times the question's length may be sent (SPEC 13.3)."""
    return build(SVC_CORE, frame.CLASS_DISCOVERY, dst, src, seq, {K_DISC_PAD: bytes(pad)} if pad else {},
                 key=key)


def discovery_answer(dst, src, seq, services, role=0, key=None):
    """The answer to a discovery request (SPEC 6): what the device keeps.

    services: (service id, class mask, lowest version, highest version) for each
    service kept, as in its filter table; role: SPEC 12.4 key 1, 0 for none."""
    body = {K_DISC_SERVICES: [[s, c, lo, hi] for s, c, lo, hi in services]}
    if role:
        body[K_DISC_ROLE] = role
    return build(SVC_CORE, frame.CLASS_DISCOVERY, dst, src, seq, body, key=key)


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
