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
