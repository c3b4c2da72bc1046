"""The payload codec: RFC 8949 examples, the subset's refusals, limits and garbage."""
from spot import cbor
from spot.errors import (BAD_PAYLOAD, BAD_VALUE, OVERSIZED, TOO_DEEP, TRUNCATED, SpotError)
from spot.objects import TAG_ANALOG, Analog, Schedule, Time, Unknown

from expect import Rng, Skip, expect_error, on_micropython

# (value, hex) pairs from RFC 8949 Appendix A that fall inside the subset.
RFC_EXAMPLES = [
    (0, "00"), (1, "01"), (10, "0a"), (23, "17"), (24, "1818"), (25, "1819"),
    (100, "1864"), (1000, "1903e8"), (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"), (-1, "20"), (-10, "29"), (-100, "3863"),
    (-1000, "3903e7"), (False, "f4"), (True, "f5"), (None, "f6"),
    (b"", "40"), (b"\x01\x02\x03\x04", "4401020304"), ("", "60"), ("a", "6161"),
    ("IETF", "6449455446"), ("\u00fc", "62c3bc"), ("\u6c34", "63e6b0b4"),
    ([], "80"), ([1, 2, 3], "83010203"), ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"), ({1: 2, 3: 4}, "a201020304"),
    (Time(1363896240), "c11a514b67b0"),
]


def test_rfc8949_examples_encode_and_decode():
    for value, hx in RFC_EXAMPLES:
        raw = bytes.fromhex(hx)
        assert cbor.encode(value) == raw, (value, cbor.encode(value).hex(), hx)
        limits = cbor.Limits(max_items=64)
        assert cbor.decode(raw, limits) == value, hx


def test_map_keys_in_deterministic_order():
    # RFC 8949 4.2.1: bytewise order of the encoded keys: 1, 24, then -1.
    assert cbor.encode({-1: 0, 24: 0, 1: 0}).hex() == "a30100181800" + "2000"


def test_objects_round_trip():
    values = [
        Analog(20, 3), Analog(12345, 1, -1), Analog(-5), Time(0), Time(1795651200),
        Schedule(1795651200, [0, 3600, 7200], [1, 2, 3], 9, -2),
        Schedule(100, [0, 10, 900], [True, False, True]),
        Schedule(5, [30], [215], 4, -1),
        Unknown(60000, [1, "x"]),
        {0: [Analog(1), Time(2)], 7: {1: b"\x00"}},
    ]
    for v in values:
        assert cbor.decode(cbor.encode(v)) == v, v


def test_uniform_schedule_is_compact():
    s = Schedule.uniform(1795651200, 3600, list(range(24)), 9, -2)
    explicit = Schedule(1795651200, [0, 1, 2], [1, 2, 3])
    # tag 3, array head 2, base 5, unit 1, scale 1, interval 3, 24 one-byte values
    assert len(cbor.encode(s)) == 39
    assert cbor.decode(cbor.encode(s)) == s
    assert cbor.decode(cbor.encode(explicit)) == explicit


def test_refuses_what_is_outside_the_subset():
    cases = [
        ("f93c00", BAD_PAYLOAD),  # half float
        ("fa47c35000", BAD_PAYLOAD),  # single float
        ("fb3ff199999999999a", BAD_PAYLOAD),  # double float
        ("9fff", BAD_PAYLOAD),  # indefinite array
        ("5f42010243030405ff", BAD_PAYLOAD),  # indefinite byte string
        ("1c", BAD_PAYLOAD),  # reserved additional info
        ("1817", BAD_PAYLOAD),  # 23 in two bytes: not shortest
        ("190017", BAD_PAYLOAD),  # 23 in three bytes
        ("1a0000ffff", BAD_PAYLOAD),
        ("1b00000000ffffffff", BAD_PAYLOAD),
        ("f7", BAD_PAYLOAD),  # undefined
        ("f0", BAD_PAYLOAD),  # unassigned simple value
        ("a2010201ff", BAD_PAYLOAD),  # duplicate key (value 0xff is also bad, key check first)
        ("a1616101", BAD_PAYLOAD),  # text map key
        ("0000", BAD_PAYLOAD),  # trailing byte
        ("62ff00", BAD_PAYLOAD),  # invalid UTF-8
        ("1bffffffffffffffff", OVERSIZED),  # above 2**63 - 1
        ("", TRUNCATED),
        ("19", TRUNCATED),
        ("83", TRUNCATED),
        ("6461", TRUNCATED),
        ("c1", TRUNCATED),
        ("c120", BAD_VALUE),  # time before 1970
        ("c16161", BAD_VALUE),  # time as text
        ("d9d35080", BAD_VALUE),  # analog with no fields
        ("d9d3508161", BAD_VALUE),  # analog value as text
        ("d9d35101", BAD_VALUE),  # schedule not an array
        ("d9d351880a0000000a050a06", BAD_VALUE),  # explicit steps: offset 10 after 10
        ("d9d351850a000000", TRUNCATED),
    ]
    for hx, code in cases:
        expect_error(code, cbor.decode, bytes.fromhex(hx))


def test_duplicate_key_named():
    e = expect_error(BAD_PAYLOAD, cbor.decode, bytes.fromhex("a201020103"))
    assert "duplicate" in str(e)


def test_limits_bound_the_work():
    tight = cbor.Limits(max_payload=64, max_depth=2, max_items=8, max_string=4)
    expect_error(OVERSIZED, cbor.decode, bytes(65), tight)
    expect_error(OVERSIZED, cbor.decode, cbor.encode(list(range(8))), tight)
    assert cbor.decode(cbor.encode(list(range(7))), tight) == list(range(7))
    expect_error(OVERSIZED, cbor.decode, cbor.encode(b"12345"), tight)
    expect_error(TOO_DEEP, cbor.decode, cbor.encode([[[1]]]), tight)
    assert cbor.decode(cbor.encode([[1]]), tight) == [[1]]
    # A huge claimed length fails at once, before anything is built.
    expect_error(TRUNCATED, cbor.decode, bytes.fromhex("9affffffff00"))
    expect_error(OVERSIZED, cbor.decode, bytes.fromhex("98ff") + bytes(255))
    # A string past the end is truncated whatever its length (SPEC 4.2: the bytes
    # left are checked before the receiver's limits).
    expect_error(TRUNCATED, cbor.decode, bytes.fromhex("5a00010000"))


def test_deep_nesting_is_refused_not_recursed():
    limits = cbor.Limits(max_payload=4096, max_items=4096)
    expect_error(TOO_DEEP, cbor.decode, b"\x81" * 4000 + b"\x00", limits)
    expect_error(TOO_DEEP, cbor.decode, b"\xc1" * 4000 + b"\x00", limits)


def test_every_truncation_of_valid_payloads_is_refused():
    payloads = [cbor.encode(v) for v in (
        {0: 1, 1: Analog(20, 3), 2: Time(1795712400), 3: 7200},
        {1: Schedule.uniform(1795651200, 3600, [8520, 8015, 15275], 9, -2), 2: 978},
        {1: "text", 2: b"\x00\x01", 3: [True, None, -70000]},
    )]
    for p in payloads:
        for cut in range(len(p)):
            expect_error(TRUNCATED, cbor.decode, p[:cut])


def test_garbage_raises_only_spot_errors():
    rng = Rng(2024)
    limits = cbor.Limits(max_payload=256)
    for _ in range(3000):
        raw = rng.bytes(1 + rng.below(40))
        try:
            cbor.decode(raw, limits)
        except SpotError:
            pass


def test_mutated_payloads_raise_only_spot_errors():
    rng = Rng(7)
    base = bytearray(cbor.encode({0: 1, 1: Analog(20, 3), 2: Time(1795712400), 3: [Schedule(5, [0, 9], [1, 2])]}))
    for _ in range(3000):
        b = bytearray(base)
        for _ in range(1 + rng.below(3)):
            b[rng.below(len(b))] = rng.next() & 0xFF
        try:
            cbor.decode(b)
        except SpotError:
            pass


def test_unknown_tag_is_kept_not_refused():
    raw = bytes.fromhex("a20001" + "05" + "d9ea60" + "820102")
    body = cbor.decode(raw)
    assert body[5] == Unknown(60000, [1, 2])
    assert cbor.encode(body) == raw
    assert TAG_ANALOG != 60000


def test_encoder_refuses_what_it_cannot_say():
    expect_error(BAD_VALUE, cbor.encode, {"a": 1})
    expect_error(BAD_VALUE, cbor.encode, 1.5)
    expect_error(OVERSIZED, cbor.encode, 1 << 64)
    expect_error(BAD_VALUE, cbor.encode, Time(-1))
    expect_error(BAD_VALUE, cbor.encode, Schedule(0, [0, 1], [1]))


def test_decoder_allocation_is_bounded():
    if not on_micropython():
        raise Skip("gc.mem_alloc is MicroPython's")
    import gc

    limits = cbor.DEFAULT_LIMITS  # what every role decodes with
    n = limits.max_items - 1  # the most items an array may hold
    m = n // 2  # the most entries a map may hold
    steps = limits.max_items - 6  # the longest interval-form schedule
    hostile = [
        bytes.fromhex("98ff") + bytes(255),  # a long array
        bytes((0x98, n)) + b"\x58\x40" + bytes(64) + b"\x00" * (n - 1),  # strings + ints
        b"\x84" + b"\x84" * 3 + bytes(4) * 50,  # deep and wide
        (b"\x58\x40" + bytes(64)) * 7,
        bytes((0xB8, m)) + b"".join(bytes((i, 0x80)) for i in range(24))
        + b"".join(bytes((0x18, i, 0x80)) for i in range(24, m)),  # a map of empty arrays
        bytes((0x98, n)) + b"\x00" * n,  # the longest array the limits allow
        bytes((0x98, n)) + b"\x80" * n,  # empty arrays
        bytes((0x98, n)) + b"\x40" * n,  # empty byte strings
        bytes((0x98, n)) + bytes((0x61, 0x41)) * n,  # one-character texts
        b"\x98\x38" + b"\x3b\x7f\xff\xff\xff\xff\xff\xff\xfe" * 56,  # big negatives
        bytes((0xB8, m)) + b"".join(bytes((i, 0)) for i in range(24))
        + b"".join(bytes((0x18, i, 0)) for i in range(24, m)),  # the largest map
        # the longest schedule: one item per step, two lists built
        bytes.fromhex("d9d351") + bytes((0x98, 4 + steps)) + bytes.fromhex("1a6b0776800900190384")
        + b"\x00" * steps,
        # a schedule of big values, as many as the payload holds
        bytes.fromhex("d9d351") + bytes((0x98, 4 + 54)) + bytes.fromhex("1a6b0776800900190384")
        + b"\x3b\x7f\xff\xff\xff\xff\xff\xff\xfe" * 54,
    ]
    for raw in hostile[-2:]:  # the schedules are valid: they must decode, not be refused
        assert len(cbor.decode(raw, limits).values) in (steps, 54)
    gc.collect()
    gc.disable()
    try:
        worst = 0
        for raw in hostile:
            before = gc.mem_alloc()
            try:
                cbor.decode(raw, limits)
            except SpotError:
                pass
            worst = max(worst, gc.mem_alloc() - before)
    finally:
        gc.enable()
    # The bound Limits documents: 256 bytes per item (64-bit port) plus every
    # payload byte copied twice, plus the decoder and an exception.
    bound = limits.max_items * 256 + 2 * limits.max_payload + 2048
    assert worst <= bound, (worst, bound)
    print("decode worst allocation", worst, "bound", bound)
