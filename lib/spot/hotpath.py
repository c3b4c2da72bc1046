"""The receive hot path: fixed-header check and drop/keep filter for SPOT frames.

Precompiled with mpy-cross to native code (viper) for each board architecture;
the same source runs as plain Python under CPython and, with the viper
decorators stripped, as bytecode (the build makes that variant to measure the
gain). Nothing here allocates: inputs are buffers, results are small ints and
header fields written into a caller-owned array('H') of FIELDS slots. The
32-bit fields (destination, source, sequence) go out as two 16-bit halves:
on a 32-bit MicroPython an int of 2**30 or more (a site group 0x8000xxxx,
broadcast, a large sequence number) is a long int, and making one allocates,
so the bytecode build of this module would allocate on such frames. Frames
compare addresses byte by byte; only frame.decode() joins the halves.

Header (19 bytes, big-endian), see SPEC.md:
  0 version | 1 flags | 2 service | 3 service version | 4 class |
  5..8 destination | 9..12 source | 13..16 sequence | 17..18 payload length
Filter table (bytearray of TABLE_SIZE), see filter_table.py:
  0 address count | 1 options | 2 classes that must be secured | 3 reserved |
  4..5 max payload | 6..7 reserved | 8..39 eight u32 addresses |
  40.. per service id: class mask, lowest version, highest version
"""
try:
    import micropython
    from micropython import const
except ImportError:
    from spot._cpython import micropython, const, ptr8, ptr16

TABLE_SIZE = const(808)
OPT_BROADCAST = const(0x01)
OPT_ANY_DESTINATION = const(0x02)  # controllers and bridges see every frame
# Field slots in the parse result array.
F_FLAGS = const(0)
F_SERVICE = const(1)
F_SERVICE_VERSION = const(2)
F_CLASS = const(3)
F_DST_HI = const(4)  # each 32-bit field: high half, then low half
F_DST_LO = const(5)
F_SRC_HI = const(6)
F_SRC_LO = const(7)
F_SEQ_HI = const(8)
F_SEQ_LO = const(9)
F_LENGTH = const(10)
FIELDS = const(11)

# The codes returned are errors.py's, written as literals (with their names in
# comments): viper needs constants it can see, and this module stands alone.


@micropython.viper
def check(buf: ptr8, n: int) -> int:
    """Structural check of a whole frame of n bytes; 0 or an error code."""
    if n < 19:
        return 1  # _TRUNCATED
    if buf[0] != 1:
        return 2  # _BAD_VERSION
    flags = buf[1]
    if flags & 0xE0:
        return 7  # _UNKNOWN_MANDATORY
    want = 19 + ((buf[17] << 8) | buf[18])
    if flags & 0x01:
        want += 9
    elif flags & 0x02:
        return 8  # _BAD_FLAGS: encrypted needs the security trailer
    if n < want:
        return 1  # _TRUNCATED
    if n > want:
        return 3  # _LENGTH_MISMATCH
    return 0


@micropython.viper
def parse(buf: ptr8, n: int, out: ptr16) -> int:
    """check(), then the header fields into out[0..10]; 0 or an error code."""
    code = int(check(buf, n))
    if code:
        return code
    out[0] = buf[1]
    out[1] = buf[2]
    out[2] = buf[3]
    out[3] = buf[4]
    out[4] = (buf[5] << 8) | buf[6]
    out[5] = (buf[7] << 8) | buf[8]
    out[6] = (buf[9] << 8) | buf[10]
    out[7] = (buf[11] << 8) | buf[12]
    out[8] = (buf[13] << 8) | buf[14]
    out[9] = (buf[15] << 8) | buf[16]
    out[10] = (buf[17] << 8) | buf[18]
    return 0


@micropython.viper
def screen(buf: ptr8, n: int, table: ptr8, out: ptr16) -> int:
    """Keep (0, fields parsed into out) or drop (a code) a received frame.

    Cheap refusals come first: a device on a busy bus spends its time here.
    """
    # check() inlined: a call out of viper code costs more than the whole test.
    if n < 19:
        return 1  # _TRUNCATED
    if buf[0] != 1:
        return 2  # _BAD_VERSION
    flags = buf[1]
    if flags & 0xE0:
        return 7  # _UNKNOWN_MANDATORY
    plen = (buf[17] << 8) | buf[18]
    want = 19 + plen
    if flags & 0x01:
        want += 9
    elif flags & 0x02:
        return 8  # _BAD_FLAGS
    if n < want:
        return 1  # _TRUNCATED
    if n > want:
        return 3  # _LENGTH_MISMATCH
    if plen > ((table[4] << 8) | table[5]):
        return 5  # _OVERSIZED
    cls = buf[4]
    if cls > 7:
        return 19  # _CLASS_REFUSED
    entry = 40 + 3 * buf[2]
    mask = table[entry]
    if mask == 0:
        return 17  # _UNKNOWN_SERVICE
    if not (mask & (1 << cls)):
        return 19  # _CLASS_REFUSED
    ver = buf[3]
    if ver < table[entry + 1] or ver > table[entry + 2]:
        return 18  # _UNKNOWN_SERVICE_VERSION
    options = table[1]
    if not (options & 0x02):
        d0 = buf[5]
        d1 = buf[6]
        d2 = buf[7]
        d3 = buf[8]
        mine = 0
        if d0 == 0xFF and d1 == 0xFF and d2 == 0xFF and d3 == 0xFF:
            mine = options & 0x01
        else:
            i = 0
            count = table[0]
            if count > 8:  # a corrupt table must not read past its addresses
                count = 8
            a = 8
            while i < count:
                if table[a] == d0 and table[a + 1] == d1 and table[a + 2] == d2 and table[a + 3] == d3:
                    mine = 1
                    break
                i += 1
                a += 4
        if not mine:
            return 16  # _NOT_FOR_ME
    if (table[2] & (1 << cls)) and not (flags & 0x01):
        return 20  # _INSECURE
    out[0] = flags
    out[1] = buf[2]
    out[2] = ver
    out[3] = cls
    out[4] = (buf[5] << 8) | buf[6]
    out[5] = (buf[7] << 8) | buf[8]
    out[6] = (buf[9] << 8) | buf[10]
    out[7] = (buf[11] << 8) | buf[12]
    out[8] = (buf[13] << 8) | buf[14]
    out[9] = (buf[15] << 8) | buf[16]
    out[10] = plen
    return 0
