"""spot.wake.flusher: each outbox entry published once per session, and the flusher's
own state bounded however many reports a long (connected) session makes."""
from spot import wake
from spot.journal import PRIO_TELEMETRY, Journal


class _Link:
    def __init__(self):
        self.published = []

    def publish(self, topic, payload, tag=None):
        self.published.append(tag)
        return len(self.published)


def _held(fn):
    """The containers a closure holds (CPython; MicroPython functions do not show them)."""
    cells = getattr(fn, "__closure__", None) or ()
    out = []
    for c in cells:
        v = c.cell_contents
        if isinstance(v, (set, list, dict, tuple)):
            out.append(v)
    return out


def test_a_long_session_publishes_each_entry_once_in_bounded_state():
    j = Journal(None)
    link = _Link()
    res = wake.CycleResult()
    flush = wake.flusher(j, link, "up", res)
    for i in range(2000):
        j.add(PRIO_TELEMETRY, b"report %d" % i)
        flush()
        flush()  # again before the PUBACK: nothing new
        if i % 3 == 0:  # some acknowledged at once, others later
            j.delivered(set(link.published[-2:]))
    assert res.published == 2000 and link.published == list(range(1, 2001))
    for v in _held(flush):
        assert len(v) <= 4, "the flusher keeps %d entries" % len(v)


def test_a_new_session_resends_what_was_not_acknowledged():
    j = Journal(None)
    for i in range(3):
        j.add(PRIO_TELEMETRY, b"r%d" % i)
    first = _Link()
    wake.flusher(j, first, "up", wake.CycleResult())()
    j.delivered({1})
    again = _Link()
    flush = wake.flusher(j, again, "up", wake.CycleResult())
    flush()
    assert again.published == [2, 3]


class _DrainLink(_Link):
    """Hands out `n` queued frames during the drain; counts rearm()."""

    def __init__(self, n):
        _Link.__init__(self)
        self.n = n
        self.rearms = 0
        self.drained = False
        self.on_frame = None

    def open(self):
        return True

    def send_marker(self):
        pass

    def rearm(self):
        self.rearms += 1

    def pump(self, done, patience_ms=None):
        for i in range(self.n):
            self.on_frame(b"frame %d" % i)
        self.drained = True
        return done()


class _Node:
    def __init__(self):
        self.journal = Journal(None)
        self.got = 0

    def receive(self, buf):
        self.got += 1

    def time_request(self):
        return None


def test_a_connected_drain_rearms_the_budget_per_frame():
    for rearm, want in ((True, 50), (False, 0)):
        link = _DrainLink(50)
        node = _Node()
        res = wake.CycleResult()
        wake.start(node, link, "up", res, wake.flusher(node.journal, link, "up", res), rearm=rearm)
        assert node.got == 50 and res.received == 50
        assert link.rearms == want, (rearm, link.rearms)


class _AskingNode(_Node):
    def time_request(self):
        return b"ask"  # sealed now: this wake's counter, above every outbox entry's


def test_a_session_resends_its_outbox_before_this_wakes_time_request():
    # A receiver that saw the newer counter first would find the outbox's frames, sealed
    # wakes ago, outside its replay window: they must go out first, in their order.
    node = _AskingNode()
    for i in range(3):
        node.journal.add(PRIO_TELEMETRY, b"r%d" % i)
    link = _DrainLink(0)
    res = wake.CycleResult()
    wake.start(node, link, "up", res, wake.flusher(node.journal, link, "up", res))
    assert link.published == [1, 2, 3, None], link.published
