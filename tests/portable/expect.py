"""Assertion helpers shared by the portable tests (no pytest: they also run under MicroPython)."""
from spot.errors import NAMES, SpotError


def expect_error(code, fn, *args):
    """Call fn(*args) and require a SpotError with this code; return it."""
    try:
        fn(*args)
    except SpotError as e:
        assert e.code == code, "wanted %s, got %s (%s)" % (NAMES.get(code), NAMES.get(e.code), e)
        return e
    raise AssertionError("wanted %s, got no error" % NAMES.get(code))


def on_micropython():
    import sys

    return sys.implementation.name == "micropython"


class Skip(Exception):
    """Raised by a test that cannot run on this interpreter; counted as skipped."""


class Rng:
    """xorshift32: the same pseudo-random bytes on every interpreter."""

    def __init__(self, seed):
        self.s = seed & 0xFFFFFFFF or 1

    def next(self):
        s = self.s
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        self.s = s
        return s

    def below(self, n):
        return self.next() % n

    def bytes(self, n):
        return bytes(self.next() & 0xFF for _ in range(n))


def scratch_dir():
    """A fresh empty directory for state files (MicroPython has no tempfile)."""
    import os

    try:
        tag = os.urandom(6)
    except AttributeError:  # no urandom (the WebAssembly port): its filesystem is fresh
        _made[0] += 1
        tag = b"%d" % _made[0]
    path = "/tmp/spot-test-" + "".join("%02x" % b for b in tag)
    os.mkdir(path)
    return path


_made = [0]


def remove_tree(path):
    import os

    for name in os.listdir(path):
        os.remove(path + "/" + name)
    os.rmdir(path)
