"""SPEC 1.1: the rules an independent receiver built from the spec alone found unclear.

Each test names the section it checks; all run on CPython and on the unix port,
so both interpreters decide every case the same way.
"""
from spot import builders, cbor, frame, key_admin, messages, secure
from spot.errors import (BAD_PAYLOAD, BAD_VALUE, NOT_PAIRED, OVERSIZED, REPLAYED, TOO_DEEP,
                         TRUNCATED, SpotError)
from spot.keyring import GROUP_CLASSES, WINDOW, Key
from spot.objects import Analog, Schedule
from spot.schedule import MAX_STEPS

import attacks
from expect import expect_error, remove_tree, scratch_dir
from receiver import everything_table, keyring
from vector_cases import CONTROLLER, GROUP_ID, GROUP_SECRET, PAIR_ID, PLUG, PRICES96, SITE_GROUP, T0

HEMS = 0x00010002  # a second sender of site-wide forecasts


def test_builders_never_build_what_a_default_receiver_refuses():
    # SPEC 4.1: a forecast is built exactly when a default receiver decodes it,
    # and a refusal names the limit.
    built = 0
    for n in range(2, 160):
        try:
            raw = builders.price_forecast(SITE_GROUP, CONTROLLER, n, T0, 900, [9000] * n, -2)
        except SpotError as e:
            assert e.code == OVERSIZED and "max_items" in e.detail, (n, e)
            continue
        f = frame.decode(raw)
        assert len(messages.read_payload(f)[messages.K_FC_SCHEDULE].values) == n
        built = n
    assert built == cbor.DEFAULT_LIMITS.max_items - 12  # map, kind, currency, schedule head
    assert built >= 96  # a day of quarter-hour prices


def test_weekly_programs_the_builder_makes_every_device_holds():
    # SPEC 9.2: up to 48 steps, evenly spaced or not; the 49th is refused by name.
    for n in range(2, 89):
        offsets = [i * (604800 // 96) for i in range(n)]  # 44..88 evenly spaced steps included
        try:
            raw = builders.weekly_program(PLUG, CONTROLLER, n, T0, offsets, [200] * n)
        except SpotError as e:
            assert n > MAX_STEPS and e.code == BAD_VALUE and "MAX_STEPS" in e.detail, (n, e)
            continue
        assert n <= MAX_STEPS
        s = messages.read_payload(frame.decode(raw))[messages.K_SCH_STEPS]
        assert list(s.offsets) == offsets
    uneven = [i * 3600 + (i % 3) * 60 for i in range(MAX_STEPS)]  # pair form: 2 items a step
    raw = builders.weekly_program(PLUG, CONTROLLER, 1, T0, uneven, list(range(MAX_STEPS)))
    assert messages.read_payload(frame.decode(raw))[messages.K_SCH_STEPS].interval() == 0
    expect_error(BAD_VALUE, builders.weekly_program, PLUG, CONTROLLER, 1, T0, [0, 604800], [1, 2])


def test_an_item_is_an_rfc8949_data_item():
    # SPEC 4.1: every head is one item; an interval-form schedule of n steps is 6 + n,
    # in pair form 6 + 2n.
    for n in (2, 5, 40):
        for s, items in ((Schedule.uniform(T0, 900, [1] * n), 6 + n),
                         (Schedule(T0, [i * i + 1 for i in range(n)], [1] * n), 6 + 2 * n)):
            raw = cbor.encode(s)
            assert cbor.decode(raw, cbor.Limits(max_items=items)) == s
            expect_error(OVERSIZED, cbor.decode, raw, cbor.Limits(max_items=items - 1))
    assert cbor.DEFAULT_LIMITS.max_items == 128
    p96 = cbor.encode({0: 1, 1: Schedule.uniform(T0, 900, PRICES96, 9), 2: 978})
    assert cbor.decode(p96, cbor.Limits(max_items=12 + 96))[1].values == PRICES96


def test_one_order_of_checks():
    # SPEC 4.2: the first failing check in reading order wins; for one head: the
    # head, the bytes left, the receiver's limits, then the content.
    tight = cbor.Limits(max_string=4, max_depth=2)
    expect_error(TRUNCATED, cbor.decode, bytes.fromhex("4a0102"), tight)  # over the limit and cut
    expect_error(OVERSIZED, cbor.decode, bytes.fromhex("450102030405"), tight)
    expect_error(TRUNCATED, cbor.decode, bytes.fromhex("818183"), tight)  # too deep and cut
    expect_error(TOO_DEEP, cbor.decode, bytes.fromhex("81818100"), tight)
    expect_error(BAD_PAYLOAD, cbor.decode, bytes.fromhex("590001"), tight)  # non-shortest first
    # a map key is read whole, then judged
    expect_error(TRUNCATED, cbor.decode, bytes.fromhex("a1634101"))
    expect_error(BAD_PAYLOAD, cbor.decode, bytes.fromhex("a1f501"))  # true is no key
    expect_error(BAD_PAYLOAD, cbor.decode, bytes.fromhex("a2010201ff"))  # duplicate, then the rest
    # an object: its shape, then each field as it is read
    expect_error(BAD_VALUE, cbor.decode, bytes.fromhex("d9d35084fa3f800000010203"))
    expect_error(BAD_VALUE, cbor.decode, bytes.fromhex("d9d3508314" + "20" + "fa3f800000"))  # unit -1
    expect_error(BAD_PAYLOAD, cbor.decode, bytes.fromhex("d9d3508314" + "fa3f800000" + "20"))
    expect_error(BAD_VALUE, cbor.decode, bytes.fromhex("d9d35185" + "20" + "fa3f800000" + "000000"))


def test_object_ranges():
    # SPEC 5.2: scale -24..24, unit 0..255, base 0..2^32-1, every offset 0..2^30-1,
    # so no offset is a long integer on a 32-bit port; encoder and decoder agree.
    edge = 0x3FFFFFFF
    good = [Analog(1, 255, 24), Analog(-1, 0, -24), Schedule(0xFFFFFFFF, [0, edge], [1, 2]),
            Schedule.uniform(0, edge // 3, [1, 2, 3, 4])]
    for v in good:
        assert cbor.decode(cbor.encode(v)) == v
    for s in good[2:]:
        assert max(s.offsets) <= edge
    for bad in (Analog(1, 256), Analog(1, 3, 25), Analog(1, 3, -25), Analog(1, -1),
                Schedule(1 << 32, [0, 60], [1, 2]), Schedule(0, [0, edge + 1], [1, 2]),
                Schedule.uniform(0, edge // 3 + 1, [1, 2, 3, 4])):
        expect_error(BAD_VALUE, cbor.encode, bad)
    # the same by hand, to the decoder: interval 2^29 with three steps ends at 2^30
    expect_error(BAD_VALUE, cbor.decode, bytes.fromhex("d9d35187000000" + "1a20000000" + "010203"))
    expect_error(BAD_VALUE, cbor.decode, bytes.fromhex("d9d35186000000" + "1a40000000" + "0102"))
    expect_error(BAD_VALUE, cbor.decode, bytes.fromhex("d9d351861b0000000100000000000000" + "0102"))
    expect_error(OVERSIZED, cbor.decode, bytes.fromhex("1bffffffffffffffff"))  # beyond int64
    expect_error(OVERSIZED, cbor.decode, bytes.fromhex("3b8000000000000000"))


def _key_command(ring, table, ctl, body):
    raw = builders.build(messages.SVC_CORE, frame.CLASS_COMMAND, PLUG, CONTROLLER,
                         ctl.counter.next(), body, frame.FLAG_ACK_WANTED, key=ctl.pair, encrypt=True)
    f = secure.open_frame(raw, table, ring)
    return key_admin.apply(ring, f, messages.read_payload(f))


def test_key_management_validates_every_field_on_every_interpreter():
    # SPEC 7.4: kind 1..2, key id 0..255, peer 1..2^31-1, a 32-byte key, class mask
    # 1..255, flags 0..3; a boolean is never an integer.
    path = scratch_dir()
    try:
        ring = attacks.plug_ring(path)
        table = attacks.plug_table()
        ctl = attacks.Controller(path)
        good = {0: 1, 1: 9, 2: HEMS, 3: bytes(range(100, 132)), 4: 0x01, 5: 0}
        refused = (messages.ACK_REFUSED, BAD_VALUE)
        for field, value in ((0, True), (1, 256), (1, -1), (1, True), (2, 0), (2, -1), (2, True),
                             (2, 0x80000000), (2, 0xFFFFFFFF), (2, 1 << 40), (3, bytes(31)),
                             (3, "x" * 32), (4, -1), (4, 0), (4, 256), (4, True), (5, 4), (5, -1),
                             (5, True), (5, 0x81)):
            body = dict(good)
            body[field] = value
            assert _key_command(ring, table, ctl, body) == refused, (field, value)
            assert ring.find(HEMS, 9) is None and ring.find(1, 9) is None
        assert _key_command(ring, table, ctl, good) == (messages.ACK_APPLIED, 0)
        assert ring.find(HEMS, 9).classes == 0x01
        assert _key_command(ring, table, ctl, good) == (messages.ACK_APPLIED, 0)  # delivered again
        # a group key carries INFO only, never the admin flag
        group = {0: 1, 1: 201, 2: HEMS, 3: bytes(32), 4: 0x03, 5: 1}
        assert _key_command(ring, table, ctl, group) == refused
        group[4] = 0x02
        group[5] = 3
        assert _key_command(ring, table, ctl, group) == refused
        group[5] = 1
        assert _key_command(ring, table, ctl, group) == (messages.ACK_APPLIED, 0)
        assert _key_command(ring, table, ctl, {0: 7, 1: 9, 2: HEMS})[0] == messages.ACK_UNSUPPORTED
        assert _key_command(ring, table, ctl, {0: 2, 1: 9, 2: True}) == refused
        assert _key_command(ring, table, ctl, {0: 2, 1: 9, 2: HEMS}) == (messages.ACK_APPLIED, 0)
        assert ring.find(HEMS, 9) is None
    finally:
        remove_tree(path)


def test_group_key_windows_are_per_sender():
    # SPEC 7.2/7.3: a group key entry names one sender; a second sender of the
    # same group key has its own entry and window, so unrelated counters both pass.
    ring = keyring()
    ring.add(Key(GROUP_ID, HEMS, GROUP_SECRET, GROUP_CLASSES, group=True), save=False)
    table = everything_table()

    def forecast(src, seq):
        return builders.price_forecast(SITE_GROUP, src, seq, T0, 3600, [1, 2], 0,
                                       key=Key(GROUP_ID, src, GROUP_SECRET, GROUP_CLASSES, group=True))

    for src, seq in ((CONTROLLER, 1000000), (HEMS, 5), (HEMS, 6), (CONTROLLER, 1000001), (HEMS, 4)):
        assert secure.open_frame(forecast(src, seq), table, ring).seq == seq
    expect_error(REPLAYED, secure.open_frame, forecast(HEMS, 5), table, ring)
    # a device of the site holds the key too, but is no sender of it
    expect_error(NOT_PAIRED, secure.open_frame, forecast(0x00000108, 1), table, ring)


def test_replay_window_holds_the_highest_and_the_63_below():
    # SPEC 7.3: highest - 63 is still fresh, highest - 64 is refused, seen or not.
    ring = keyring()
    table = everything_table()
    pair = Key(PAIR_ID, CONTROLLER, bytes(range(32)), 0xFF)

    def cmd(seq):
        return builders.reduce_power(PLUG, CONTROLLER, seq, 20, T0, 60, key=pair)

    assert WINDOW == 64
    secure.open_frame(cmd(1000), table, ring)
    secure.open_frame(cmd(1000 - 63), table, ring)
    expect_error(REPLAYED, secure.open_frame, cmd(1000 - 63), table, ring)
    expect_error(REPLAYED, secure.open_frame, cmd(1000 - 64), table, ring)


def test_discovery_answer_says_what_the_device_keeps():
    # SPEC 6: the answer lists [service, class mask, lowest, highest] and the role.
    raw = builders.discovery_answer(CONTROLLER, PLUG, 1, [(1, 0x31, 1, 1), (3, 0x02, 1, 2)], 2)
    f = frame.decode(raw)
    assert f.cls == frame.CLASS_DISCOVERY
    body = messages.read_payload(f)
    assert body == {messages.K_DISC_SERVICES: [[1, 0x31, 1, 1], [3, 0x02, 1, 2]],
                    messages.K_DISC_ROLE: 2}
    assert messages.read_payload(frame.decode(builders.discovery(PLUG, CONTROLLER, 2))) == {}


def test_key_0_is_ignored_in_messages_without_kinds():
    """6: key 0 is the kind only in messages that come in kinds. A time sync (and an
    ACK, a meter or status report) with key 0 of any type is taken as if key 0 were
    absent; a DR command's key 0 that is no integer is refused with bad value."""
    from node import Node
    from spot.counter import SendCounter
    from spot.journal import Journal
    from spot.keyring import Keyring
    from spot.objects import Time
    from vector_cases import plug_keys

    events = []
    ring = Keyring()
    for k in plug_keys():
        ring.add(k, save=False)
    n = Node(PLUG, lambda ev, **kw: events.append((ev, kw)), ring, SendCounter(), Journal(None),
             cloud=CONTROLLER)
    key = plug_keys()[0]
    for seq, zero in ((1, True), (2, "x"), (3, [1])):
        n.receive(builders.build(messages.SVC_CORE, frame.CLASS_TIMESYNC, PLUG, CONTROLLER, seq,
                                 {0: zero, 1: Time(T0 + seq), 2: 0}, key=key))
    applied = [kw["time"] for ev, kw in events if ev == "applied"]
    assert applied == [T0 + 1, T0 + 2, T0 + 3], events
    assert not [kw for ev, kw in events if ev == "refused"]
    events.clear()
    n.receive(builders.build(messages.SVC_DR, frame.CLASS_COMMAND, PLUG, CONTROLLER, 4,
                             {0: True}, frame.FLAG_ACK_WANTED, key=key))
    assert [kw["reason"] for ev, kw in events if ev == "refused"] == [BAD_VALUE]
    # A meter report (service 4, no kinds) that reached the node's apply step: key 0 of
    # the wrong type is no refusal (the node keeps no meter service: unsupported).
    meter = frame.decode(builders.build(messages.SVC_METER, frame.CLASS_REPORT, PLUG, CONTROLLER, 5,
                                        {0: True, 1: 5}))
    assert n._apply(meter, {0: True, 1: 5}) == (messages.ACK_UNSUPPORTED, 0)
