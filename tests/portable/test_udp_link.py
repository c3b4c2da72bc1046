"""spot.udp_link and the node's reply path (SPEC.md 13), over real loopback sockets.

Runs on CPython and the MicroPython unix port: one frame per datagram, a bounded
burst per poll, oversized and runt datagrams and discovery floods dropped and
counted, a reply back to the sender; the node answers an ACK after its commit and
refuses a frame replayed from the other transport.
"""
from spot import builders, messages
from spot.counter import SendCounter
from spot.errors import NOT_PAIRED
from spot.journal import Journal
from spot.keyring import Keyring
from expect import Skip
from vector_cases import CONTROLLER, PLUG, controller_keys, plug_keys

try:
    from time import sleep_ms, ticks_diff, ticks_ms
except ImportError:
    from spot._cpython import sleep_ms, ticks_diff, ticks_ms

def _socket():
    try:
        import socket
    except ImportError:
        raise Skip("this port has no socket module")
    return socket


def _open(on_frame, **kw):
    """A link on a free loopback port (MicroPython has no getsockname: try a few)."""
    import os

    _socket()
    from spot.udp_link import UdpLink

    for i in range(20):
        port = 41000 + (os.urandom(2)[0] << 4 | i) % 20000
        link = UdpLink(on_frame, port, None, "127.0.0.1", **kw)
        try:
            link.open()
            return link, port
        except OSError:
            continue
    raise AssertionError("no free port")


def _sender():
    socket = _socket()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(socket.getaddrinfo("127.0.0.1", 0)[0][-1])
    return s


def _to(port):
    socket = _socket()
    return socket.getaddrinfo("127.0.0.1", port, 0, socket.SOCK_DGRAM)[0][-1]


def _poll_until(link, want, ms=1000):
    """Poll until `want` datagrams were read (loopback delivery is quick, not instant)."""
    got = 0
    t0 = ticks_ms()
    while got < want and ticks_diff(ticks_ms(), t0) < ms:
        got += link.poll()
        if got < want:
            sleep_ms(2)
    return got


def test_one_frame_per_datagram_and_a_reply_to_its_sender():
    seen = []

    def on_frame(buf, reply):
        seen.append(bytes(buf))
        reply(b"answer:" + bytes(buf[:4]))

    link, port = _open(on_frame)
    s = _sender()
    try:
        frame_ = builders.discovery(0xFFFFFFFF, CONTROLLER, 7)
        s.sendto(frame_, _to(port))
        assert _poll_until(link, 1) == 1
        assert seen == [frame_]
        s.settimeout(1)
        data, _ = s.recvfrom(64)
        assert data == b"answer:" + frame_[:4]
        assert link.rx == 1 and link.tx == 1 and link.drops() == {}
    finally:
        s.close()
        link.close()


def test_oversized_and_runt_datagrams_are_counted_not_handed_over():
    seen = []
    link, port = _open(lambda buf, reply: seen.append(len(buf)))
    from spot.udp_link import MAX_FRAME as MAX_DATAGRAM

    s = _sender()
    try:
        s.sendto(b"\x01" * (MAX_DATAGRAM + 1), _to(port))
        s.sendto(b"\x01" * 18, _to(port))
        s.sendto(b"\x01" * MAX_DATAGRAM, _to(port))  # at the limit: the node's to judge
        assert _poll_until(link, 3) == 3
        assert seen == [MAX_DATAGRAM], seen
        assert link.drops() == {"oversized": 1, "runt": 1}, link.drops()
    finally:
        s.close()
        link.close()


def test_a_flood_is_read_a_burst_at_a_time_and_discovery_rate_limited():
    seen = []
    link, port = _open(lambda buf, reply: seen.append(buf[4]), burst=8, discovery_per_s=4)
    s = _sender()
    try:
        ask = builders.discovery(0xFFFFFFFF, CONTROLLER, 1)
        for _ in range(30):
            s.sendto(ask, _to(port))
        sleep_ms(50)
        assert link.poll() == 8  # one call: a bounded burst, whatever waits
        got = 8 + _poll_until(link, 22)
        assert got == 30
        # The bucket: 4 at once, then 1 per 250 ms (a slow machine may earn one or two).
        assert 4 <= len(seen) <= 6, seen
        assert link.drops() == {"flood": 30 - len(seen)}, link.drops()
    finally:
        s.close()
        link.close()


def _node(groups=(), cloud=1):
    from node import Node

    events = []
    ring = Keyring()
    for k in plug_keys():
        ring.add(k, save=False)
    n = Node(PLUG, lambda ev, **kw: events.append((ev, kw)), ring, SendCounter(), Journal(None),
             groups, cloud=cloud)
    return n, events


def test_node_acks_over_the_frames_transport_after_its_commit_and_once_per_command():
    n, events = _node()
    commits = []
    real_commit = n.journal.commit

    def commit(*a):
        commits.append(len(replies))
        return real_commit(*a)

    n.journal.commit = commit
    replies = []
    cmd = builders.demand(PLUG, CONTROLLER, 5, messages.DR_RESTORE, key=plug_keys()[0])
    n.receive(cmd, "udp", replies.append)
    assert len(replies) == 1 and commits == [0]  # committed, then answered
    ring = Keyring()
    for k in controller_keys():
        ring.add(k, save=False)
    from receiver import receive

    ack = receive(replies[0], ring)
    body = messages.read_payload(ack)
    assert body[messages.K_ACK_SEQ] == 5 and body[messages.K_ACK_STATUS] == messages.ACK_APPLIED
    assert len(n.journal.outbox) == 1  # the same ACK waits for the cloud too
    applied = n.applied
    # Replayed over the other transport (no reply path: MQTT): answered again, not applied.
    n.receive(cmd, "mqtt")
    assert n.applied == applied and n.duplicates == 1
    assert len(replies) == 1  # MQTT's answer goes into the outbox only
    # And back over UDP: answered again where it came from.
    n.receive(cmd, "udp", replies.append)
    assert n.applied == applied and n.duplicates == 2 and len(replies) == 2


def test_node_answers_discovery_on_the_local_transport_only():
    n, events = _node()
    replies = []
    ask = builders.discovery(0xFFFFFFFF, 0x300, 1)
    n.receive(ask, "udp", replies.append)
    assert len(replies) == 1
    from receiver import receive

    f = receive(replies[0])
    body = messages.read_payload(f)
    assert f.src == PLUG and not f.secured
    assert [1, 0x31, 1, 1] in body[messages.K_DISC_SERVICES]
    n.receive(builders.discovery(0xFFFFFFFF, 0x300, 2), "mqtt")
    assert len(replies) == 1 and not n.journal.outbox  # nothing journalled, nothing sent
    assert n.refused == 0


def test_an_unsecured_answer_is_at_most_three_times_its_question():
    """SPEC 13.3: a question with a forged source must not make the device send much more
    than it was sent. The node's answer lists several services: too long for the shortest
    question, sent for one padded with key 15; a secured question is not limited."""
    n, events = _node()
    for s in range(2, 12):  # a device that keeps many services: a longer answer
        n.table.set_service(s, [0])
    replies = []
    ask = builders.discovery(0xFFFFFFFF, 0x300, 1)
    n.receive(ask, "udp", replies.append)
    assert replies == []
    why = [kw["what"] for ev, kw in events if ev == "refused"]
    assert why and "over 3 x the question's %d" % len(ask) in why[-1]
    padded = builders.discovery(0xFFFFFFFF, 0x300, 2, pad=28)
    n.receive(padded, "udp", replies.append)
    assert len(replies) == 1 and len(ask) * 3 < len(replies[0]) <= 3 * len(padded)
    from receiver import receive

    assert len(messages.read_payload(receive(replies[0]))[messages.K_DISC_SERVICES]) == 11
    n.receive(builders.discovery(PLUG, CONTROLLER, 3, key=plug_keys()[0]), "udp", replies.append)
    assert len(replies) == 2 and len(replies[1]) > 3 * len(ask)  # paired: secured, not limited


def test_a_frame_from_an_unpaired_sender_gets_no_reply():
    from spot.keyring import Key

    n, events = _node()
    replies = []
    stranger = Key(9, 0x300, bytes(32), 0xFF)
    n.receive(builders.demand(PLUG, 0x300, 1, messages.DR_RESTORE, key=stranger), "udp",
              replies.append)
    assert replies == [] and n.kept == 0
    assert [kw["code"] for ev, kw in events if ev == "dropped"] == [NOT_PAIRED]


# Review of the local link (SPEC 13): each of these failed before its fix ------------

def test_the_default_receive_size_is_the_longest_frame_a_node_accepts():
    _socket()
    from spot import frame
    from spot.filter_table import FilterTable
    from spot.udp_link import MAX_FRAME, UdpLink

    link = UdpLink(None)
    t = FilterTable().buf  # its default payload limit, bytes 4..5
    longest = frame.HEADER_SIZE + ((t[4] << 8) | t[5]) + frame.TRAILER_SIZE
    assert MAX_FRAME == longest and link.max == longest, (MAX_FRAME, link.max, longest)
    assert len(link.buf) == longest + 1


class _Clock:
    def __init__(self, link_module):
        self.t = 0
        self.m = link_module
        self.saved = (link_module.ticks_ms, link_module.ticks_diff, link_module.ticks_add)
        link_module.ticks_ms = lambda: self.t
        link_module.ticks_diff = lambda a, b: a - b
        link_module.ticks_add = lambda a, b: a + b

    def restore(self):
        self.m.ticks_ms, self.m.ticks_diff, self.m.ticks_add = self.saved


def test_the_discovery_bucket_survives_a_tick_wrap_and_keeps_fractions():
    _socket()
    from spot import udp_link

    clock = _Clock(udp_link)
    try:
        link = udp_link.UdpLink(None, discovery_per_s=4)
        assert [link._flooded() for _ in range(5)] == [False] * 4 + [True]
        # A quiet spell of days: the tick difference wrapped and came out negative.
        clock.t = -(1 << 29)
        assert not link._flooded()  # the bucket is full again, not hugely negative
        assert [link._flooded() for _ in range(4)] == [False] * 3 + [True]
        # 300 ms earn one token (250 ms); the 50 ms left over count toward the next.
        base = clock.t
        clock.t = base + 300
        assert not link._flooded() and link._flooded()
        clock.t = base + 500
        assert not link._flooded(), "the remainder of the last refill was lost"
    finally:
        clock.restore()


class _NoHeapSocket:
    def __init__(self):
        self.calls = 0

    def recvfrom(self, n):
        self.calls += 1
        raise MemoryError

    def close(self):
        pass


def test_no_memory_for_a_datagram_is_a_counted_drop_not_a_crash():
    _socket()
    from spot.udp_link import UdpLink

    link = UdpLink(lambda buf, reply: None, burst=3)
    link.sock = _NoHeapSocket()
    link._into = None  # MicroPython's way: recvfrom allocates
    assert link.poll() == 3  # a bounded burst, and no exception
    assert link.drops() == {"no memory": 3}, link.drops()


def test_group_and_cloud_keys_are_refused_over_udp_before_their_window():
    from spot.errors import NOT_PERMITTED
    from vector_cases import GROUP_ID, SITE_GROUP, T0, PRICES

    n, events = _node(groups=(SITE_GROUP,))
    group = plug_keys()[1]
    replies = []
    forecast = builders.price_forecast(SITE_GROUP, CONTROLLER, 500, T0, 3600, PRICES, -2, key=group)
    n.receive(forecast, "udp", replies.append)
    assert n.kept == 0 and n.drops[NOT_PERMITTED] == 1, (n.kept, n.drops[NOT_PERMITTED])
    gk = n.keyring.find(CONTROLLER, GROUP_ID)
    assert gk.check_fresh(500), "the group key's window moved for a frame refused over UDP"
    # The same frame over MQTT is the group key's business, as before.
    n.receive(forecast, "mqtt")
    assert n.kept == 1
    # The cloud's key over UDP: refused too (here the controller stands for the cloud).
    c, events = _node(cloud=CONTROLLER)
    cmd = builders.demand(PLUG, CONTROLLER, 9, messages.DR_RESTORE, key=plug_keys()[0])
    c.receive(cmd, "udp", replies.append)
    assert c.kept == 0 and c.drops[NOT_PERMITTED] == 1 and replies == []
    assert c.keyring.find(CONTROLLER, 1).check_fresh(9)
    c.receive(cmd, "mqtt")
    assert c.kept == 1
    # Unsecured over UDP: discovery only.
    n2, events = _node()
    n2.table.allow_unsecured((0, 5))
    n2.receive(builders.demand(PLUG, CONTROLLER, 3, messages.DR_RESTORE), "udp", replies.append)
    assert n2.kept == 0 and n2.drops[NOT_PERMITTED] == 1


def test_a_command_repeated_over_udp_is_answered_there_without_flash_or_outbox():
    n, events = _node()
    commits = []
    real_commit = n.journal.commit

    def commit(*a):
        commits.append(1)
        return real_commit(*a)

    n.journal.commit = commit
    replies = []
    cmd = builders.demand(PLUG, CONTROLLER, 5, messages.DR_RESTORE, key=plug_keys()[0])
    n.receive(cmd, "udp", replies.append)
    assert len(commits) == 1 and len(n.journal.outbox) == 1
    outbox = list(n.journal.outbox)
    for _ in range(30):  # a controller resending every 250 ms
        n.receive(cmd, "udp", replies.append)
    assert len(replies) == 31 and n.duplicates == 30
    assert len(commits) == 1, "%d commits for 30 repeats" % len(commits)
    assert list(n.journal.outbox) == outbox
    ring = Keyring()
    for k in controller_keys():
        ring.add(k, save=False)
    from receiver import receive

    body = messages.read_payload(receive(replies[-1], ring))
    assert body[messages.K_ACK_SEQ] == 5 and body[messages.K_ACK_STATUS] == messages.ACK_APPLIED
