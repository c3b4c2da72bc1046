"""Edge cases of the codec, frame and filter table found in review: each once a defect."""
from spot import cbor, frame
from spot.errors import BAD_PAYLOAD, BAD_VALUE, NOT_FOR_ME, SpotError
from spot.filter_table import FilterTable
from spot.objects import Analog, Schedule, Time, Unknown

from expect import expect_error


def test_invalid_utf8_is_refused_on_every_interpreter():
    # SPEC 4: "text must be valid UTF-8". MicroPython's bytes.decode() accepts
    # overlong forms, surrogates and code points above U+10FFFF.
    cases = [
        "62c0af",  # overlong "/" (classic filter bypass)
        "62c080",  # overlong NUL
        "63e080af",  # overlong "/" in three bytes
        "64f08f8080",  # overlong four-byte form
        "63eda080",  # UTF-16 surrogate U+D800
        "64f4908080",  # U+110000, above the Unicode range
    ]
    for hx in cases:
        expect_error(BAD_PAYLOAD, cbor.decode, bytes.fromhex(hx))


def test_schedule_costs_no_more_depth_than_analog():
    # With the default limits an array of schedules in a payload map is refused
    # as "nesting too deep" while an array of analog values (also tag + flat
    # array) is accepted: _schedule checks depth <= 1 where _analog checks <= 0.
    s = Schedule(1795651200, [0, 3600], [1, 2], 9, -2)
    body = {1: [s, s]}
    assert cbor.decode(cbor.encode(body)) == body
    assert cbor.decode(cbor.encode(s), cbor.Limits(max_depth=2)) == s


def test_unknown_object_reencodes_byte_for_byte():
    # SPEC 3.3: an unknown tag is "re-encoded byte for byte if passed on".
    # Its content is decoded and re-encoded, so any accepted key order changes.
    raw = bytes.fromhex("d9ea60a201000000")  # tag 60000 {1: 0, 0: 0}
    assert cbor.encode(cbor.decode(raw)) == raw


def test_decoded_objects_reencode_to_the_same_bytes():
    # Non-canonical object forms are accepted, so one value has several
    # encodings (and test_garbage_is_refused_cleanly's claim is false).
    for hx in ("d9d350820000",  # analog [0, 0]: trailing unit 0 not omitted
               "d9d35083000000",  # analog [0, 0, 0]
               "d9d351850000000a01",  # one-step schedule in interval form
               "d9d3518400000005"):  # empty schedule with interval 5
        raw = bytes.fromhex(hx)
        try:
            v = cbor.decode(raw)
        except SpotError:
            continue
        assert cbor.encode(v) == raw, (hx, cbor.encode(v).hex())


def test_encoder_never_emits_what_the_decoder_refuses():
    bad = [
        Unknown(-1, 0),  # CPython: ValueError; MicroPython: emits ff00 (a break byte)
        Unknown(2 ** 64 + 1, 0),  # silently becomes tag 1 (time)
        Unknown(1, "x"),  # a time tag holding text
        Analog(1, -1), Analog(1, 1, 30), Analog(True),
        Schedule.uniform(0, 0, [1, 2]),  # offsets 0, 0
        Schedule(-1, [0], [1]),
        Schedule(0, [0.0, 1.0], [1, 2]),  # CPython: TypeError from _head
    ]
    for v in bad:
        try:
            raw = cbor.encode(v)
        except SpotError:
            continue
        except Exception as e:
            raise AssertionError("%r: %s instead of SpotError" % (v, type(e).__name__))
        try:
            back = cbor.decode(raw)
        except SpotError as e:
            raise AssertionError("%r encodes to %s, which decodes to %s" % (v, raw.hex(), e))
        assert back == v, (v, raw.hex(), back)


def test_bool_is_not_an_int_on_either_interpreter():
    # isinstance(True, int) is True on CPython, False on MicroPython.
    expect_error(BAD_VALUE, cbor.encode, Time(True))  # CPython: c101
    expect_error(BAD_VALUE, frame.encode, True, 1, 0, 1, 1, 1, b"\xa0")  # CPython: service 1


def test_text_input_is_not_a_payload():
    # MicroPython gives str the buffer protocol: decode("\xa0") reads c2 a0.
    for fn, arg in ((cbor.decode, "\xa0"), (frame.decode, "\x01" + "\x00" * 17 + "\x01\xa0")):
        try:
            got = fn(arg)
        except (SpotError, TypeError):
            continue
        raise AssertionError("%r decoded to %r" % (arg, got))


def test_float_inside_an_object_is_bad_payload():
    # SPEC 4: floats are refused with `bad payload`; inside an analog they get `bad value`.
    expect_error(BAD_PAYLOAD, cbor.decode, bytes.fromhex("d9d35081f93c00"))
    expect_error(BAD_PAYLOAD, cbor.decode, bytes.fromhex("d9d35185fb000000000000000000000000"))


def test_drop_service_checks_its_range():
    t = FilterTable(0x107)
    for a in range(0x80000001, 0x80000007):
        t.add_address(a)
    t.add_address(0x0A0B0C0D)  # bytes 36..39 of the table
    before = t.addresses()
    try:
        t.drop_service(-1)  # writes buf[37]: the last byte of address 8
    except ValueError:
        pass
    assert t.addresses() == before, [hex(a) for a in t.addresses()]


def test_hot_path_reads_at_most_eight_addresses():
    # A count byte above 8 makes screen() compare service bytes as addresses
    # (and, on a board, read past the 808-byte table).
    t = FilterTable(0x107)
    t.set_service(1, [4])
    t.allow_unsecured([4])
    t.buf[0] = 9  # corrupt or hand-written table; address 9 overlaps service 0/1
    raw = frame.encode(1, 1, 4, 0x00000010, 1, 1, b"\xa0")
    expect_error(NOT_FOR_ME, frame.decode, raw, t)


