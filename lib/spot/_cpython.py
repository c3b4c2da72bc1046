"""Stand-ins for MicroPython's compile-time builtins, used only under CPython.

On a board and under the unix port the compiler itself handles `const()`,
`@micropython.viper` and the viper pointer annotations; CPython needs names for
them so the very same source runs there as plain Python.
"""


def const(value):
    return value


def _same(fn):
    return fn


class micropython:  # noqa: N801 - mirrors the MicroPython module's name
    const = staticmethod(const)
    viper = staticmethod(_same)
    native = staticmethod(_same)


# Viper pointer annotations; CPython evaluates annotations, MicroPython ignores
# them outside viper functions.
ptr8 = ptr16 = ptr32 = bytearray


class aes:  # noqa: N801 - mirrors MicroPython's cryptolib.aes
    """cryptolib.aes(key, 1) (ECB) on CPython, backed by the `cryptography` package."""

    def __init__(self, key, mode, iv=None):
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        if mode != 1:
            raise ValueError("only ECB (mode 1) is provided")
        self._enc = Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()

    def encrypt(self, data, out=None):
        block = self._enc.update(bytes(data))
        if out is None:
            return block
        out[:] = block
        return None


_PERIOD = 1 << 30  # MicroPython's ticks wrap here, and code must cope: so here too
_HALF = _PERIOD >> 1


def ticks_ms():
    import time

    return int(time.monotonic() * 1000) & (_PERIOD - 1)


def ticks_diff(a, b):
    return ((a - b + _HALF) & (_PERIOD - 1)) - _HALF


def ticks_add(a, b):
    return (a + b) & (_PERIOD - 1)


def sleep_ms(ms):
    import time

    time.sleep(ms / 1000)
