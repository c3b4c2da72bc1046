"""A SPOT device node's receive side: filter, verify, read, apply, answer.

Transport-free: main.py hands over each received buffer and sends the ACK
frames this queues, so the same node runs behind any transport adapter (and
under CPython in tests). Every received frame ends as exactly one of kept,
dropped (counted per reason code: filter, security or codec) or error (the
codec itself failed), so rx == kept + drops + errors; a kept frame is then
applied or refused. ACKs are sealed with the key shared with the sender.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from spot import cbor, frame, key_admin, messages, secure
from spot.errors import BAD_VALUE, NAMES, SpotError
from spot.filter_table import FilterTable
from spot.objects import UNIT_PERCENT, UNIT_W, Analog, Schedule, Time

_CODES = const(32)  # drop codes are small ints (errors.py): one counter slot each
_OUTBOX = const(4)  # ACKs waiting for the uplink; more means it is stuck

# What this node serves; every class must come secured (the table's default)
# but read-only discovery.
_SERVICES = (
    (messages.SVC_DR, (frame.CLASS_COMMAND,)),
    (messages.SVC_PRICE, (frame.CLASS_INFO,)),
    (messages.SVC_CORE, (frame.CLASS_TIMESYNC, frame.CLASS_COMMAND, frame.CLASS_DISCOVERY)),
)

_UNITS = {UNIT_PERCENT: " %", UNIT_W: " W"}
_DR_NAMES = {
    messages.DR_REDUCE: "reduce",
    messages.DR_LIMIT: "limit",
    messages.DR_RESTORE: "restore",
    messages.DR_SHUT_DOWN: "shut down",
    messages.DR_KEEP_BAND: "keep band",
}


def _scaled(v, scale):
    """v * 10**scale as text, without floats (a board may have none)."""
    if scale >= 0:
        return str(v * 10 ** scale)
    d = 10 ** -scale
    sign = "-" if v < 0 else ""
    v = abs(v)
    frac = str(v % d)
    return "%s%d.%s%s" % (sign, v // d, "0" * (-scale - len(frac)), frac)


def _analog_text(a):
    return _scaled(a.value, a.scale) + _UNITS.get(a.unit, "")


class Node:
    """One device's protocol state: filter table, counters, applied signals."""

    def __init__(self, address, emit, keyring, counter, groups=(), clock=None):
        self.address = address
        self.emit = emit  # emit(event, **fields): the node's only output channel
        self.clock = clock  # () -> epoch seconds; None until time sync matters
        self.keyring = keyring
        self.sender = secure.Sender(address, keyring, counter)
        t = self.table = FilterTable(address)
        for g in groups:
            t.add_address(g)
        for svc, classes in _SERVICES:
            t.set_service(svc, classes)
        t.allow_unsecured((frame.CLASS_DISCOVERY,))
        self.drops = [0] * _CODES
        self.rx = self.kept = self.errors = self.applied = self.refused = 0
        self.bytes_in = 0
        self.outbox = []  # (acked seq, destination, frame bytes), oldest first
        self.outbox_lost = 0
        self.clock_offset = 0
        self.dr = None  # the demand-response state in force, as read
        self.forecast = None  # the latest price Schedule

    # receive ---------------------------------------------------------------
    def receive(self, buf, where=""):
        """Handle one received frame. Never raises: a bad frame is a counted drop."""
        n = len(buf)
        self.rx += 1
        self.bytes_in += n
        self.emit("rx", where=where, n=n)
        try:
            f = secure.open_frame(buf, self.table, self.keyring)
            body = messages.read_payload(f)
        except SpotError as e:
            code = e.code if 0 <= e.code < _CODES else 0
            self.drops[code] += 1
            self.emit("dropped", code=e.code, reason=NAMES.get(e.code, "?"), n=n)
            return
        except Exception as e:  # a codec bug must not take the device down
            self.errors += 1
            self.emit("error", stage="decode", detail=repr(e), n=n)
            return
        self.kept += 1
        self.emit("kept", svc=f.service, cls=f.cls, src=f.src, dst=f.dst, seq=f.seq,
                  secured=f.secured, n=n)
        try:
            status, reason = self._apply(f, body)
        except Exception as e:  # applying is the role's business; keep receiving
            self.emit("refused", what="apply failed: %r" % (e,))
            status, reason = messages.ACK_REFUSED, BAD_VALUE
        if status != messages.ACK_APPLIED:
            self.refused += 1
        if f.cls == frame.CLASS_COMMAND:
            self._queue_ack(f, status, reason)

    # apply -----------------------------------------------------------------
    def _apply(self, f, body):
        """(ack status, reason code); emits what was applied."""
        kind = body.get(messages.K_KIND)
        if f.service == messages.SVC_DR:
            return self._demand_response(kind, body)
        if f.service == messages.SVC_PRICE:
            return self._forecast(kind, body)
        if f.service == messages.SVC_CORE and f.cls == frame.CLASS_TIMESYNC:
            return self._time_sync(body)
        if f.service == messages.SVC_CORE and f.cls == frame.CLASS_COMMAND:
            status, reason = key_admin.apply(self.keyring, f, body)
            if status == messages.ACK_APPLIED:
                self.applied += 1
                self.emit("applied", what="key %d of %08x %s" % (
                    body.get(messages.K_KEY_ID), body.get(messages.K_KEY_PEER),
                    "added" if kind == messages.CORE_KEY_ADD else "retired"))
            else:
                self.emit("refused", what="key command: %s" % NAMES.get(reason, reason))
            return status, reason
        return messages.ACK_UNSUPPORTED, 0

    def _demand_response(self, kind, body):
        name = _DR_NAMES.get(kind)
        if name is None:
            self.emit("refused", what="demand response kind %r" % (kind,))
            return messages.ACK_UNSUPPORTED, 0
        amount = body.get(messages.K_DR_AMOUNT)
        start = body.get(messages.K_DR_START)
        duration = body.get(messages.K_DR_DURATION, 0)
        if kind in (messages.DR_REDUCE, messages.DR_LIMIT) and not isinstance(amount, Analog):
            self.emit("refused", what=name + " without an amount")
            return messages.ACK_REFUSED, BAD_VALUE
        if (start is not None and not isinstance(start, Time)) or not isinstance(duration, int):
            self.emit("refused", what=name + " with a bad start or duration")
            return messages.ACK_REFUSED, BAD_VALUE
        # The role controller (a later issue) decides how to carry it out; the
        # node records what is in force.
        self.dr = None if kind == messages.DR_RESTORE else (kind, amount, start, duration)
        self.applied += 1
        text = name
        if amount is not None:
            text += " " + _analog_text(amount)
        if duration:
            text += " for %d s" % duration
        self.emit("applied", what=text, start=start.seconds if start else None)
        return messages.ACK_APPLIED, 0

    def _forecast(self, kind, body):
        s = body.get(messages.K_FC_SCHEDULE)
        if kind != messages.FC_ENERGY_PRICE or not isinstance(s, Schedule) or not s.values:
            self.emit("refused", what="forecast kind %r" % (kind,))
            return messages.ACK_UNSUPPORTED, 0
        self.forecast = s
        self.applied += 1
        lo = min(s.values)
        hi = max(s.values)
        self.emit("applied", what="price forecast: %d steps, %s..%s per MWh" % (
            len(s.values), _scaled(lo, s.scale), _scaled(hi, s.scale)),
            start=s.base, step=s.interval(),
            currency=body.get(messages.K_FC_CURRENCY))
        return messages.ACK_APPLIED, 0

    def _time_sync(self, body):
        t = body.get(messages.K_TS_TIME)
        if not isinstance(t, Time):
            self.emit("refused", what="time sync without a time")
            return messages.ACK_REFUSED, BAD_VALUE
        if self.clock is not None:
            self.clock_offset = t.seconds - self.clock()
        self.applied += 1
        self.emit("applied", what="clock set, offset %+d s" % self.clock_offset, time=t.seconds)
        return messages.ACK_APPLIED, 0

    # answer ----------------------------------------------------------------
    def _queue_ack(self, f, status, reason):
        body = {messages.K_ACK_SEQ: f.seq, messages.K_ACK_STATUS: status}
        if reason:
            body[messages.K_ACK_REASON] = reason
        try:
            buf = self.sender.seal(messages.SVC_CORE, 1, frame.CLASS_ACK, f.src,
                                   cbor.encode(body))
        except SpotError as e:  # no key to answer with (unsecured discovery)
            self.emit("refused", what="no ACK: %s" % e)
            return
        if len(self.outbox) >= _OUTBOX:
            self.outbox.pop(0)  # the oldest answer is the least useful one
            self.outbox_lost += 1
        self.outbox.append((f.seq, f.src, status, buf))

    def summary(self):
        dropped = {}
        for code in range(_CODES):
            if self.drops[code]:
                dropped[str(code)] = self.drops[code]
        return {"rx": self.rx, "kept": self.kept, "dropped": dropped, "errors": self.errors,
                "applied": self.applied, "refused": self.refused, "bytes_in": self.bytes_in,
                "outbox_lost": self.outbox_lost}
