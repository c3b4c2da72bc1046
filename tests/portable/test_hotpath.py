"""The hot path on its own: header fields, drop codes, and no allocation when dropping."""
from array import array

from spot import frame, hotpath, messages
from spot.errors import NOT_FOR_ME, UNKNOWN_SERVICE

from expect import Skip, on_micropython
from test_frame import plug_table
from vector_cases import CONTROLLER, PLUG, SITE_GROUP, valid


def _fields():
    return array("H", bytes(2 * hotpath.FIELDS))


def test_parse_fills_every_field():
    raw = frame.encode(0x22, 3, frame.CLASS_REPORT, 0xFFFFFFFE, 0x80000001, 0xFFFFFFFF, b"\xa0",
                       frame.FLAG_SECURED)
    out = _fields()
    assert hotpath.parse(raw, len(raw), out) == 0
    assert list(out) == [1, 0x22, 3, 2, 0xFFFF, 0xFFFE, 0x8000, 0x0001, 0xFFFF, 0xFFFF, 1]
    assert frame.join(out, hotpath.F_DST_HI) == 0xFFFFFFFE


def test_screen_and_check_agree_on_structure():
    t = plug_table()
    out = _fields()
    for _, raw in valid():
        for n in range(len(raw) + 2):
            b = (raw + b"\x00\x00")[:n]
            c = hotpath.check(b, n)
            s = hotpath.screen(b, n, t.buf, out)
            p = hotpath.parse(b, n, out)
            assert c == p
            if c:
                assert s == c


def test_buffers_of_every_kind_are_accepted():
    raw = valid()[0][1]
    t = plug_table()
    for buf in (raw, bytearray(raw), memoryview(bytearray(raw))):
        out = _fields()
        assert hotpath.screen(buf, len(raw), t.buf, out) == 0
        assert frame.join(out, hotpath.F_SEQ_HI) == 1001


def _drop_and_keep(screen, frames, table, out):
    total = 0
    for raw in frames:
        total += screen(raw, len(raw), table, out)
    return total


def test_drop_path_does_not_allocate():
    if not on_micropython():
        raise Skip("heap_lock is MicroPython's")
    import micropython

    t = plug_table()
    out = _fields()
    frames = [
        frame.encode(messages.SVC_DR, 1, frame.CLASS_COMMAND, 0x999, CONTROLLER, 1, b"\xa0", 1),
        frame.encode(0x55, 1, frame.CLASS_COMMAND, PLUG, CONTROLLER, 1, b"\xa0", 1),
        valid()[0][1],
    ]
    mv = memoryview(bytearray(frames[0]))
    buf = t.buf
    screen = hotpath.screen
    micropython.heap_lock()
    try:
        codes = _drop_and_keep(screen, frames, buf, out)
        one = screen(mv, len(mv), buf, out)
    finally:
        micropython.heap_unlock()
    assert codes == NOT_FOR_ME + UNKNOWN_SERVICE + 0
    assert one == NOT_FOR_ME


def test_keep_path_does_not_allocate_for_large_u32_fields():
    # On a 32-bit MicroPython an int >= 2**30 is a long int: a site group, broadcast
    # or a late sequence number must still pass the bytecode build with the heap locked.
    if not on_micropython():
        raise Skip("heap_lock is MicroPython's")
    import micropython

    t = plug_table()
    t.accept_broadcast(True)
    out = _fields()
    frames = [frame.encode(messages.SVC_PRICE, 1, frame.CLASS_INFO, dst, 0xC0000001, seq, b"\xa0")
              for dst, seq in ((SITE_GROUP, 0x40000000), (frame.BROADCAST, 0xFFFFFFFF),
                               (PLUG, 0x80000001))]
    buf = t.buf
    screen = hotpath.screen
    parse = hotpath.parse
    micropython.heap_lock()
    try:
        codes = _drop_and_keep(screen, frames, buf, out)
        for raw in frames:
            codes += parse(raw, len(raw), out)
    finally:
        micropython.heap_unlock()
    assert codes == 0, codes
    assert frame.join(out, hotpath.F_SEQ_HI) == 0x80000001
    assert frame.join(out, hotpath.F_SRC_HI) == 0xC0000001
