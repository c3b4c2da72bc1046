"""One wake cycle of a sleepy node: connect, drain the queue, act, report, sleep.

    wake -> connect (session kept by the broker) -> publish the end-of-queue
    marker and a time request, resend the outbox -> receive everything queued, each frame
    committed before the broker is acknowledged -> the marker comes back: the
    queue is drained -> reports into the outbox, committed, published ->
    PUBACKs -> outbox trimmed, committed -> DISCONNECT -> sleep

The node is the application: it has .journal, .receive(buf), .report()
(which adds frames to the journal's outbox), .time_request() (a frame, or
None) and .time_answered. Nothing here waits for a timeout
when things go well; when they do not, the link's budget bounds the whole
cycle, and the outbox keeps everything, this wake's report included, for the
next wake.
"""
try:
    from time import ticks_diff, ticks_ms
except ImportError:
    from spot._cpython import ticks_diff, ticks_ms



TIME_PATIENCE_MS = 500  # how long a wake waits for the cloud's time after draining
# A board without a transport runs the same cycle over spot.offline.Offline.


class CycleResult:
    __slots__ = ("ok", "error", "ms", "received", "published", "delivered", "bytes_in",
                 "bytes_out", "round_trips", "session_present", "time_answered")

    def __init__(self):
        self.ok = False
        self.error = None
        self.ms = 0
        self.received = self.published = self.delivered = 0
        self.bytes_in = self.bytes_out = self.round_trips = 0
        self.session_present = False
        self.time_answered = False

    def as_dict(self):
        return dict((k, getattr(self, k)) for k in self.__slots__)


def flusher(journal, link, up_topic, res):
    """flush(): publish every outbox entry not yet published in this session.

    The journal numbers its entries in order and never reuses a number (its next id is
    committed with it), so the highest id published says what this session has sent: a
    connected device's session, days long, holds one int, not a set of every report."""
    high = [0]  # the highest outbox entry id published in this session

    def flush():
        if journal.next_id - 1 <= high[0]:  # nothing added since: no list made (a connected
            return  # device flushes at every pass of its loop)
        for entry_id, raw in journal.pending():
            if entry_id > high[0]:
                link.publish(up_topic, raw, entry_id)
                high[0] = entry_id
                res.published += 1

    return flush


def start(node, link, up_topic, res, flush, rearm=False):
    """A session's opening, the same for a wake and for a connected device's session:
    connect (opening), then drain: the end-of-queue marker, the outbox resent, a time
    request, and the queue received until the marker comes back; the time request's
    local ms or None.
    With rearm (a connected session), each frame handled re-arms the link's budget: a
    long queue drains at the pace it arrives, not under one wake's budget."""
    opening(node, link, res, flush, rearm)
    return drain(node, link, up_topic, flush)


def opening(node, link, res, flush, rearm=False):
    """The link's frame handler set, the session opened (connect, CONNACK)."""

    def on_frame(buf):
        res.received += 1
        node.receive(buf)
        flush()  # ACKs go out while the queue is still arriving
        if rearm:
            link.rearm()

    link.on_frame = on_frame
    res.session_present = link.open()


def drain(node, link, up_topic, flush):
    """The marker, the outbox and a time request sent; the queue received to its end."""
    link.send_marker()
    # What earlier wakes could not deliver goes first, in the order it was sealed: the
    # time request carries this wake's newer counter, and a receiver that saw it first
    # would find those frames 64 or more below it, outside its replay window.
    flush()
    ask = node.time_request()  # a two-way time exchange rides along
    if ask is not None:
        link.publish(up_topic, ask, None)
    link.pump(lambda: link.drained)
    return ask


def settle(journal, link, res):
    """The PUBACKs collected so far trim the outbox (committed); False if flash refused."""
    n = 0
    if link.acked:
        n = journal.delivered(set(link.acked))
        res.delivered += n
        link.acked = []
    if n or journal.dirty:
        try:
            journal.commit()
        except OSError as e:  # flash full: the entries stay, and are sent again
            res.error = repr(e)
            return False
    return True


def run(node, link, up_topic):
    """One cycle; never raises for network trouble (the result says what happened)."""
    for res in steps(node, link, up_topic):
        if res is not None:
            return res


def steps(node, link, up_topic):
    """run()'s work as a generator: it yields None between the cycle's phases, where a
    small heap is best collected (the session opened; the queue handled), then the
    result. device.wake_phases collects there."""
    res = CycleResult()
    t0 = ticks_ms()
    journal = node.journal
    flush = flusher(journal, link, up_topic, res)
    reported = False
    try:
        opening(node, link, res, flush)
        yield  # the connection's garbage (a TLS handshake's, the MQTT client's import)
        ask = drain(node, link, up_topic, flush)
        yield  # the queue's (frames decoded, verified, applied, acknowledged)
        node.report()  # after acting: the report shows the new state
        reported = True
        flush()
        if ask is not None:
            # The PUBACKs and the cloud's time answer, in the same wait; the answer
            # is welcome but not required (the cloud may be down).
            res.time_answered = link.pump(lambda: node.time_answered and not link.unacked,
                                          TIME_PATIENCE_MS)
        link.pump(lambda: not link.unacked)
        res.ok = True
    except OSError as e:  # LinkError too; anything else (a power cut) ends it all
        res.error = repr(e)
        if not reported:
            node.report()  # this wake's measurements wait in the outbox for the next
    if not settle(journal, link, res):
        res.ok = False
    link.close(polite=res.ok)
    res.ms = ticks_diff(ticks_ms(), t0)
    res.bytes_in = link.bytes_in
    res.bytes_out = link.bytes_out
    res.round_trips = link.round_trips
    yield res
