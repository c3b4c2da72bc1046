"""SPOT: a compact, secured, service-oriented protocol for smart-grid end devices.

Importing the package costs almost nothing: each submodule loads on first use
(`spot.frame`, `spot.cbor`, ...), so a device pays only for what it uses.
"""
__version__ = "0.1.0"


def __getattr__(name):
    # Any submodule, loaded on first attribute access. MicroPython resolves
    # `from spot import x` through this hook too, so it must find every module.
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return __import__("spot." + name, None, None, [name])
    except ImportError:
        raise AttributeError(name)
