"""A SPOT device node: filter, verify, read, apply, answer, with a durable journal.

Transport-free: the wake cycle (spot.wake) hands over each received buffer and
publishes what this node puts in its journal's outbox, so the same node runs
behind any transport adapter (and under CPython in tests and fleets).

Every received frame ends as exactly one of kept, dropped (counted per reason
code: filter, security or codec), answered again (a duplicate command), the
answer to this wake's time request (counted apart), or error, so rx == kept +
drops + duplicates + errors. A
kept frame's effects, its inbox record, its ACK and the replay window that
refuses it next time are committed together (spot.journal) before receive()
returns, which is before the broker is acknowledged: a power cut at any point
loses nothing and applies nothing twice. A command delivered again after a cut
(the window already has it) is answered again from the inbox record.

Without a role the application is the generic one of the first demo: it
records what is in force (demand response, price forecast, clock offset). With
a role (role.py: thermostat, smart plug, heat pump) demand response, price
forecasts and device commands go to the role, which decides what to do within
its device's limits and answers in the ACK; the node sends the role's state
report after every command and on its telemetry period, and its capability
record on first contact and whenever it changes (SPEC.md 12).

A service is a module (_HANDLERS): demand response svc_dr.py, price forecasts
svc_price.py, schedules svc_schedule.py, key management svc_keys.py, a role's
commands svc_role.py and its reports role_report.py, a generic node's status
svc_status.py, each imported on its first use, so a device holds the code of
the services it uses. What every wake needs
(filter, verify, the journal, ACKs, the time exchange, the schedule's clock)
stays here.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from spot import cbor, frame, journal, secure
from spot.clock import REASONS as CLOCK_REASONS
from spot.clock import Clock
from spot.errors import BAD_VALUE, NAMES, REPLAYED, SpotError
from spot.filter_table import FilterTable
from spot.objects import Time
from spot.payload import is_int, read_payload

# spot.messages' numbers this module uses: private, free at run time.
_ACK_APPLIED = const(0)
_K_KIND = const(0)
_K_ACK_SEQ = const(1)
_K_DISC_SERVICES = const(1)
_K_TS_TIME = const(1)
_SVC_CORE = const(1)
_ACK_REFUSED = const(2)
_K_ACK_STATUS = const(2)
_SVC_DR = const(2)
_K_ACK_REASON = const(3)
_K_TS_ECHO = const(3)
_SVC_PRICE = const(3)
_ACK_UNSUPPORTED = const(4)
_K_TS_RECEIVED = const(4)
_K_TS_SENT = const(5)
_SVC_SCHEDULE = const(5)
_SVC_DEVICE = const(6)

_CODES = const(32)  # drop codes are small ints (errors.py): one counter slot each

# What this node serves; every class must come secured (the table's default)
# but read-only discovery.
_SERVICES = (
    (_SVC_DR, (frame.CLASS_COMMAND,)),
    (_SVC_PRICE, (frame.CLASS_INFO,)),
    (_SVC_CORE, (frame.CLASS_TIMESYNC, frame.CLASS_COMMAND, frame.CLASS_DISCOVERY)),
    (_SVC_SCHEDULE, (frame.CLASS_COMMAND,)),
)
# Service id -> the module that handles its frames (each `apply(node, frame, kind,
# body) -> (ack status, reason)`), imported on first use. A role's device hands
# demand response, prices and device commands to svc_role; key commands (service
# CORE, class COMMAND) are svc_keys'; the time exchange stays here (every wake).
_HANDLERS = {
    _SVC_DR: "svc_dr",
    _SVC_PRICE: "svc_price",
    _SVC_SCHEDULE: "svc_schedule",
}


class Node:
    """One device's protocol state; everything durable lives in its journal."""

    def __init__(self, address, emit, keyring, counter, jnl, groups=(), clock=None, cloud=1,
                 make_role=None):
        self.address = address
        self.emit = emit  # emit(event, **fields): the node's only output channel
        self.clock = clock  # () -> the device's own clock in ms (its RTC: it drifts)
        self.cloud = cloud  # where status reports go
        self.keyring = keyring
        self.journal = jnl
        keyring.restore_windows(jnl.windows)
        self.sender = secure.Sender(address, keyring, counter)
        self.on_applied = None  # hook after a commit: (src, seq) of an applied command
        self.reply = None  # receive()'s way back over the frame's own transport
        self.replied = None  # the ACK to send that way once the journal holds it
        t = self.table = FilterTable(address)
        for g in groups:
            t.add_address(g)
        for svc, classes in _SERVICES:
            t.set_service(svc, classes)
        if make_role is not None:
            t.set_service(_SVC_DEVICE, (frame.CLASS_COMMAND,))
        t.allow_unsecured((frame.CLASS_DISCOVERY,))
        self.drops = [0] * _CODES
        self.rx = self.kept = self.errors = self.refused = self.acks = self.duplicates = 0
        self.time_answers = 0
        self.bytes_in = 0
        app = jnl.app
        app.setdefault("applied", 0)
        app.setdefault("wakes", 0)
        app.setdefault("offset", 0)
        app["wakes"] += 1
        self.time = Clock(app.get("clk"))  # true time from the drifting clock (SPEC.md 9)
        # spot.schedule loads on first use: a wake with no schedule never imports it
        self.sch = None
        if app.get("sch") or app.get("week"):
            self.schedule  # noqa: B018 (loads the schedule in force)
        self.asked = None  # the local ms of this wake's time request
        self.time_answered = False
        self.commanded = False  # a role command came this wake: report the new state
        self.reset_cause = None  # set by the device on the first wake after a boot
        self.role = make_role(self) if make_role is not None else None

    @property
    def schedule(self):
        """The scheduler (spot.schedule), made on first use from the journal's record; a
        role made before it sees it from then on (role.sch)."""
        s = self.sch
        if s is None:
            from spot.schedule import Scheduler

            app = self.journal.app
            s = self.sch = Scheduler(self.address, app.get("sch"), app.get("week", 0))
            if getattr(self, "role", None) is not None:
                self.role.sch = s
        return s

    @property
    def applied(self):
        return self.journal.app["applied"]

    def local_ms(self):
        return int(self.clock()) if self.clock else 0

    def now_ms(self):
        """True time by the clock model (or, before its first exchange, a one-way sync)."""
        local = self.local_ms()
        if self.time.synced:
            return self.time.true_ms(local)
        return local + self.journal.app["offset"] * 1000

    def now(self):
        return self.now_ms() // 1000

    # receive ---------------------------------------------------------------
    def receive(self, buf, where="", reply=None):
        """Handle one received frame. Never raises for bad input: a bad frame is a counted drop.

        reply(frame), when given, sends a frame back over the transport this one came
        on (local UDP, SPEC 13): the ACK goes there as well as into the outbox (so
        the cloud has it at the next MQTT session), and a discovery request is
        answered there. Counters, windows and inbox are one set for every transport."""
        self.reply = reply
        self.replied = None
        n = len(buf)
        self.rx += 1
        self.bytes_in += n
        f = None
        try:
            # Over the local link (a reply path) only a paired controller's frames
            # (SPEC 13.4): never the cloud's key nor a group key there.
            f = secure.open_frame(buf, self.table, self.keyring, 0,
                                  None if reply is None else self.cloud)
            body = read_payload(f)
            if f.cls == frame.CLASS_TIMESYNC and _K_TS_ECHO in body:
                # The answer to this wake's time request: housekeeping, not a signal.
                self.time_answers += 1
                self.rx -= 1  # counted apart: rx and bytes_in are the signals and commands
                self.bytes_in -= n
                self._time_sync(body)
                # Persisted with the wake's closing commit: a clock sample lost to
                # a power cut costs nothing, and it saves a flash write per wake.
                self.journal.windows = self.keyring.windows()
                self.journal.dirty = True
                return
            self.emit("rx", where=where, n=n)
        except SpotError as e:
            self.emit("rx", where=where, n=n)
            if e.code == REPLAYED and e.frame is not None and self._answer_again(e.frame):
                return
            code = e.code if 0 <= e.code < _CODES else 0
            self.drops[code] += 1
            self.emit("dropped", code=e.code, reason=NAMES.get(e.code, "?"), n=n)
            if f is not None and f.secured and f.cls == frame.CLASS_COMMAND:
                # Authentic but unreadable (a newer sender's must-understand
                # field): refuse it out loud, or its sender retries for ever.
                self.journal.record(f.src, f.seq, _ACK_REFUSED, e.code)
                self._queue_ack(f.src, f.seq, _ACK_REFUSED, e.code)
                self.journal.commit(self.keyring.windows())
                self._reply_ack()
            return
        except Exception as e:  # a codec bug must not take the device down
            self.emit("rx", where=where, n=n)
            self.errors += 1
            self.emit("error", stage="decode", detail=repr(e), n=n)
            return
        self.kept += 1
        self.emit("kept", svc=f.service, cls=f.cls, src=f.src, dst=f.dst, seq=f.seq,
                  secured=f.secured, n=n)
        self._seq = f.seq
        if f.cls == frame.CLASS_DISCOVERY:  # read-only: answered where it came from, or not
            if reply is not None and _K_DISC_SERVICES not in body:
                from spot import discover  # rare: loaded on the first question

                discover.answer(self, f, reply, n)
            if f.secured:
                self.journal.commit(self.keyring.windows())
            return
        try:
            status, reason = self._apply(f, body)
        except Exception as e:  # applying is the role's business; keep receiving
            self.emit("refused", what="apply failed: %r" % (e,))
            status, reason = _ACK_REFUSED, BAD_VALUE
        if status != _ACK_APPLIED:
            self.refused += 1
        command = f.cls == frame.CLASS_COMMAND
        if command:
            self.journal.record(f.src, f.seq, status, reason)
            self._queue_ack(f.src, f.seq, status, reason)
        if f.secured or command:
            # The one commit point; an OSError here (flash full) aborts the wake
            # before the broker is acknowledged, so the frame comes again.
            self.journal.commit(self.keyring.windows())
        self._reply_ack()
        if command and status == _ACK_APPLIED and self.on_applied:
            self.on_applied(f.src, f.seq)

    def _answer_again(self, f):
        """A command the inbox already holds: answer it again, apply nothing."""
        if f.cls != frame.CLASS_COMMAND:
            return False
        done = self.journal.result(f.src, f.seq)
        if done is None:
            return False
        self.duplicates += 1
        self.emit("duplicate", src=f.src, seq=f.seq)
        if self.reply is not None:
            # Over the local link: answered again there alone. The outbox already
            # holds the first ACK; a controller resends every 250 ms, and an ACK
            # queued and committed per repeat would wear the flash and push older
            # undelivered ACKs out of the outbox.
            buf = self._seal_ack(f.src, f.seq, done[0], done[1])
            if buf is not None:
                self.acks += 1
                self.emit("acked", seq=f.seq, to=f.src, status=done[0], n=len(buf))
                self.reply(buf)
            return True
        self._queue_ack(f.src, f.seq, done[0], done[1])
        self.journal.commit()
        self._reply_ack()
        return True

    def _reply_ack(self):
        """The committed ACK, back over the transport its command came on (SPEC 13)."""
        buf = self.replied
        if buf is not None:
            self.replied = None
            self.reply(buf)

    # apply -----------------------------------------------------------------
    def _apply(self, f, body):
        """(ack status, reason code); emits what was applied."""
        kind = body.get(_K_KIND)
        svc = f.service
        if kind is not None and not is_int(kind) and (
                svc in (_SVC_DR, _SVC_PRICE, _SVC_SCHEDULE, _SVC_DEVICE)
                or (svc == _SVC_CORE and f.cls == frame.CLASS_COMMAND)):
            # SPEC 6: a kind is an integer, never a boolean or anything else; in the
            # messages without kinds (meter report, ACK, time sync...) key 0 is ignored
            self.emit("refused", what="kind %r is not an integer" % (kind,), svc=f.service,
                      status=_ACK_REFUSED, reason=BAD_VALUE)
            return _ACK_REFUSED, BAD_VALUE
        if self.role is not None and svc in (_SVC_DR, _SVC_DEVICE,
                                             _SVC_PRICE):
            name = "svc_role"  # the role decides, within its device's limits
        elif svc == _SVC_CORE:
            if f.cls == frame.CLASS_TIMESYNC:
                return self._time_sync(body)
            if f.cls != frame.CLASS_COMMAND:
                return _ACK_UNSUPPORTED, 0
            name = "svc_keys"
        else:
            name = _HANDLERS.get(svc)
            if name is None:
                return _ACK_UNSUPPORTED, 0
        # A service is a module, loaded on its first frame: a device carries the
        # code of the services it uses, and only once it uses them.
        return __import__(name).apply(self, f, kind, body)

    def control(self):
        """One control step of the role (between wakes too: the radio sleeps, the role not).
        Never raises: a role's bug must not take the device down; it is reported."""
        if self.role is not None:
            r = self.role
            try:
                r.control(self.now_ms())
                if r.urgent:  # a trip, a block begun or ended: on flash before a power cut
                    r.urgent = False
                    self.journal.commit()
            except Exception as e:  # OSError of a full flash included: control goes on
                self.errors += 1
                self.emit("error", stage="control", detail=repr(e))

    def _time_sync(self, body):
        app = self.journal.app
        if _K_TS_ECHO in body:  # the answer to this wake's two-way exchange
            echo = body.get(_K_TS_ECHO)
            t2 = body.get(_K_TS_RECEIVED)
            t3 = body.get(_K_TS_SENT)
            if echo != self.asked or not is_int(t2) or not is_int(t3):
                self.emit("refused", what="time answer to no question of this wake")
                return _ACK_REFUSED, BAD_VALUE
            code = self.time.add(echo, t2, t3, self.local_ms())
            self.asked = None
            self.time_answered = True
            app["clk"] = self.time.to_record()
            self.emit("clock", result=CLOCK_REASONS[code], skew_ppm=self.time.skew // 1000,
                      bound_ms=self.time.error_bound_ms(self.local_ms()))
            return (_ACK_APPLIED, 0) if code < 3 else (_ACK_REFUSED, BAD_VALUE)
        t = body.get(_K_TS_TIME)
        if not isinstance(t, Time):
            self.emit("refused", what="time sync without a time")
            return _ACK_REFUSED, BAD_VALUE
        # One-way: only an offset, and only until the first two-way exchange.
        app["offset"] = t.seconds - self.local_ms() // 1000
        app["applied"] += 1
        self.emit("applied", what="one-way time: offset %+d s%s" % (
            app["offset"], " (the two-way model keeps the clock)" if self.time.synced else ""),
            time=t.seconds)
        return _ACK_APPLIED, 0

    def time_request(self):
        """This wake's two-way time request to the cloud (not journaled: it is transient)."""
        self.asked = self.local_ms()
        self.time_answered = False
        try:
            return self.sender.seal(_SVC_CORE, 1, frame.CLASS_TIMESYNC, self.cloud,
                                    cbor.encode({_K_TS_ECHO: self.asked}))
        except (SpotError, OverflowError, OSError):
            self.asked = None
            return None

    # schedule ----------------------------------------------------------------
    def tick(self):
        """Act on every occurrence that is due by the corrected clock; each once, ever
        (svc_schedule.tick)."""
        if self.sch is None:  # no schedule ever arrived: nothing is due
            return []
        from svc_schedule import tick

        return tick(self)

    def ms_to_next(self):
        """Local ms until the next occurrence by the corrected clock, or None."""
        if self.sch is None:
            return None
        from svc_schedule import ms_to_next

        return ms_to_next(self)

    def plan_wake(self, default_ms, exchange_ms=2000):
        """(ms to sleep, whether the next wake needs the radio), drift-aware: with a
        schedule, svc_schedule.plan_wake; without one, the period and the radio."""
        if self.sch is None:  # no schedule ever arrived: nothing to wake for early
            return default_ms, True
        from svc_schedule import plan_wake

        return plan_wake(self, default_ms, exchange_ms)

    # answer and report -------------------------------------------------------
    def _seal_ack(self, dst, seq, status, reason):
        """A sealed ACK, or None (said why) when it cannot be sealed."""
        body = {_K_ACK_SEQ: seq, _K_ACK_STATUS: status}
        if reason:
            body[_K_ACK_REASON] = reason
        try:
            return self.sender.seal(_SVC_CORE, 1, frame.CLASS_ACK, dst, cbor.encode(body))
        except (SpotError, OverflowError, OSError) as e:  # no key, counter spent, flash full
            self.emit("refused", what="no ACK: %r" % (e,))
            return None

    def _queue_ack(self, dst, seq, status, reason):
        buf = self._seal_ack(dst, seq, status, reason)
        if buf is None:
            return
        if not self.journal.add(journal.PRIO_RESULT, buf):
            self.emit("outbox_full", dropped=self.journal.dropped)
        if self.reply is not None:  # back over the transport the command came on, too,
            self.replied = buf  # once committed (receive sends it)
        self.acks += 1
        self.emit("acked", seq=seq, to=dst, status=status, n=len(buf))

    def report(self):
        """This wake's status report into the outbox (committed): the wake cycle sends it."""
        # A role's device: its state and capability record (role_report.py); a
        # generic node: its status (svc_status.py).
        return __import__("svc_status" if self.role is None else "role_report").report(self)

    def summary(self):
        dropped = {}
        for code in range(_CODES):
            if self.drops[code]:
                dropped[str(code)] = self.drops[code]
        return {"rx": self.rx, "kept": self.kept, "dropped": dropped, "errors": self.errors,
                "acks": self.acks, "duplicates": self.duplicates, "time_answers": self.time_answers,
                "applied": self.applied, "refused": self.refused, "bytes_in": self.bytes_in,
                "outbox_dropped": self.journal.dropped, "outbox": len(self.journal.outbox)}
