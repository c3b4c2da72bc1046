"""Frames: header layout, round trips, every malformed kind, and the receiver filter."""
from spot import builders, cbor, frame, messages
from spot.errors import (BAD_FLAGS, BAD_PAYLOAD, BAD_VERSION, CLASS_REFUSED, INSECURE,
                         LENGTH_MISMATCH, NOT_FOR_ME, OVERSIZED, TOO_DEEP, TRUNCATED,
                         UNKNOWN_MANDATORY, UNKNOWN_SERVICE, UNKNOWN_SERVICE_VERSION, SpotError)
from spot.filter_table import FilterTable
from spot.objects import Unknown

from expect import Rng, expect_error
from receiver import receive
from vector_cases import CONTROLLER, PLUG, SITE_GROUP, controller_keys, plug_keys, valid


def plug_table():
    t = FilterTable(PLUG)
    t.add_address(SITE_GROUP)
    t.set_service(messages.SVC_DR, [frame.CLASS_COMMAND])
    t.set_service(messages.SVC_PRICE, [frame.CLASS_INFO], 1, 2)
    t.set_service(messages.SVC_CORE, [frame.CLASS_TIMESYNC, frame.CLASS_DISCOVERY])
    t.require_security([frame.CLASS_COMMAND])
    return t


def test_header_fields_at_fixed_offsets():
    raw = frame.encode(0x22, 3, frame.CLASS_REPORT, 0x01020304, 0xA0B0C0D0, 0xDEADBEEF, b"\xa0",
                       frame.FLAG_SECURED, 7, b"12345678")
    assert raw[:19].hex() == "010122030201020304a0b0c0d0deadbeef0001"
    assert raw[19:] == b"\xa0\x07" + b"12345678"
    f = frame.decode(raw)
    assert (f.flags, f.service, f.version, f.cls) == (1, 0x22, 3, 2)
    assert (f.dst, f.src, f.seq) == (0x01020304, 0xA0B0C0D0, 0xDEADBEEF)
    assert bytes(f.payload) == b"\xa0" and f.key_id == 7 and bytes(f.tag) == b"12345678"
    assert f.secured


def test_every_message_kind_round_trips():
    for name, raw in valid():
        f = receive(raw)
        body = messages.read_payload(f)
        key = None
        if f.secured:
            key = [k for k in plug_keys() + controller_keys() if k.key_id == f.key_id][0]
        again = builders.build(f.service, f.cls, f.dst, f.src, f.seq, body,
                               f.flags & frame.FLAG_ACK_WANTED, f.version, key,
                               bool(f.flags & frame.FLAG_ENCRYPTED))
        assert again == raw, name


def test_security_trailer_costs_nine_bytes():
    plain = builders.discovery(PLUG, CONTROLLER, 1)
    secured = builders.discovery(PLUG, CONTROLLER, 1, key=plug_keys()[0])
    assert len(secured) - len(plain) == frame.TRAILER_SIZE == 9


def test_malformed_frames_each_get_their_code():
    good = bytearray(valid()[0][1])
    expect_error(TRUNCATED, frame.decode, good[:18])
    expect_error(TRUNCATED, frame.decode, good[:-1])
    expect_error(LENGTH_MISMATCH, frame.decode, good + b"\x00")
    bad = bytearray(good)
    bad[0] = 2
    expect_error(BAD_VERSION, frame.decode, bad)
    bad = bytearray(good)
    bad[1] |= 0x80
    expect_error(UNKNOWN_MANDATORY, frame.decode, bad)
    bad = bytearray(good)
    bad[1] = frame.FLAG_ENCRYPTED
    expect_error(BAD_FLAGS, frame.decode, bad[:-9])
    # Ignorable reserved flag bits (3 and 4) do not stop a receiver.
    bad = bytearray(good)
    bad[1] |= 0x18
    assert frame.decode(bad).seq == 1001


def test_every_truncation_is_refused():
    for name, raw in valid():
        for cut in range(len(raw)):
            try:
                frame.decode(raw[:cut])
            except SpotError as e:
                assert e.code == TRUNCATED, (name, cut, e)
            else:
                raise AssertionError("%s cut at %d accepted" % (name, cut))


def test_payload_problems_surface_when_reading():
    def frame_with(payload):
        return frame.decode(frame.encode(messages.SVC_DR, 1, frame.CLASS_COMMAND, PLUG, CONTROLLER, 9, payload))

    expect_error(BAD_PAYLOAD, messages.read_payload, frame_with(b"\x01"))  # not a map
    expect_error(BAD_PAYLOAD, messages.read_payload, frame_with(b"\xa1\x01\xfb" + bytes(8)))
    expect_error(TOO_DEEP, messages.read_payload, frame_with(b"\xa1\x01" + b"\x81" * 10 + b"\x00"))
    expect_error(OVERSIZED, messages.read_payload, frame_with(b"\xa1\x01\x58\x80" + bytes(128)))
    # A must-understand (negative) key the receiver does not know: refuse the message.
    expect_error(UNKNOWN_MANDATORY, messages.read_payload, frame_with(cbor.encode({0: 1, -3: 5})))
    # An unknown ordinary key or object type is skipped, the rest still applies.
    body = messages.read_payload(frame_with(cbor.encode({0: 1, 40: Unknown(60001, 5), 3: 60})))
    assert body[0] == 1 and body[3] == 60


def test_filter_drops_by_fixed_offsets():
    t = plug_table()
    sec = frame.FLAG_SECURED
    cases = [
        (frame.encode(messages.SVC_DR, 1, frame.CLASS_COMMAND, PLUG, CONTROLLER, 1, b"\xa0", sec), 0),
        (frame.encode(messages.SVC_DR, 1, frame.CLASS_COMMAND, SITE_GROUP, CONTROLLER, 1, b"\xa0", sec), 0),
        (frame.encode(messages.SVC_DR, 1, frame.CLASS_COMMAND, 0x108, CONTROLLER, 1, b"\xa0", sec), NOT_FOR_ME),
        (frame.encode(messages.SVC_DR, 1, frame.CLASS_COMMAND, PLUG, CONTROLLER, 1, b"\xa0"), INSECURE),
        (frame.encode(0x77, 1, frame.CLASS_COMMAND, PLUG, CONTROLLER, 1, b"\xa0", sec), UNKNOWN_SERVICE),
        (frame.encode(messages.SVC_DR, 2, frame.CLASS_COMMAND, PLUG, CONTROLLER, 1, b"\xa0", sec), UNKNOWN_SERVICE_VERSION),
        (frame.encode(messages.SVC_PRICE, 3, frame.CLASS_INFO, PLUG, CONTROLLER, 1, b"\xa0"), UNKNOWN_SERVICE_VERSION),
        (frame.encode(messages.SVC_PRICE, 2, frame.CLASS_INFO, PLUG, CONTROLLER, 1, b"\xa0"), 0),
        (frame.encode(messages.SVC_DR, 1, frame.CLASS_REPORT, PLUG, CONTROLLER, 1, b"\xa0", sec), CLASS_REFUSED),
        (frame.encode(messages.SVC_DR, 1, 9, PLUG, CONTROLLER, 1, b"\xa0", sec), CLASS_REFUSED),
        (frame.encode(messages.SVC_CORE, 1, frame.CLASS_TIMESYNC, frame.BROADCAST, CONTROLLER, 1, b"\xa0"), 0),
        (frame.encode(messages.SVC_CORE, 1, frame.CLASS_TIMESYNC, PLUG, CONTROLLER, 1, bytes(600)), OVERSIZED),
    ]
    for raw, code in cases:
        if code:
            expect_error(code, frame.decode, raw, t)
        else:
            assert frame.decode(raw, t).dst in (PLUG, SITE_GROUP, frame.BROADCAST)


def test_filter_changes_at_run_time():
    t = plug_table()
    raw = frame.encode(messages.SVC_CORE, 1, frame.CLASS_TIMESYNC, 0x80000002, CONTROLLER, 1, b"\xa0")
    expect_error(NOT_FOR_ME, frame.decode, raw, t)
    t.add_address(0x80000002)
    assert frame.decode(raw, t).dst == 0x80000002
    t.remove_address(0x80000002)
    expect_error(NOT_FOR_ME, frame.decode, raw, t)
    assert t.addresses() == [PLUG, SITE_GROUP]
    bcast = frame.encode(messages.SVC_CORE, 1, frame.CLASS_TIMESYNC, frame.BROADCAST, CONTROLLER, 1, b"\xa0")
    t.accept_broadcast(False)
    expect_error(NOT_FOR_ME, frame.decode, bcast, t)
    t.any_destination(True)
    assert frame.decode(raw, t).seq == 1
    t.drop_service(messages.SVC_CORE)
    expect_error(UNKNOWN_SERVICE, frame.decode, raw, t)


def test_random_and_mutated_frames_raise_only_spot_errors():
    rng = Rng(99)
    t = plug_table()
    frames = [bytearray(raw) for _, raw in valid()]
    for i in range(4000):
        if i & 1:
            b = bytearray(rng.bytes(rng.below(64)))
        else:
            b = bytearray(frames[rng.below(len(frames))])
            for _ in range(1 + rng.below(3)):
                b[rng.below(len(b))] = rng.next() & 0xFF
        for table in (None, t):
            try:
                messages.read_payload(frame.decode(b, table))
            except SpotError:
                pass
