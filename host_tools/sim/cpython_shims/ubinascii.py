"""MicroPython module name `ubinascii` on CPython, so umqtt.simple imports there too."""
from binascii import *  # noqa: F401,F403
from binascii import hexlify  # noqa: F401
