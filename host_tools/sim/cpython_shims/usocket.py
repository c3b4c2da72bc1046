"""MicroPython module name `usocket` on CPython, so umqtt.simple imports there too."""
from socket import *  # noqa: F401,F403
from socket import getaddrinfo, socket  # noqa: F401
