"""MicroPython module name `ustruct` on CPython, so umqtt.simple imports there too."""
from struct import *  # noqa: F401,F403
from struct import pack, pack_into, unpack  # noqa: F401
