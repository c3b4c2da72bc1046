"""SPOT: a compact, secured, service-oriented protocol for smart-grid end devices.

Importing the package costs almost nothing: each submodule loads on first use
(`spot.frame`, `spot.cbor`, ...), so a device pays only for what it uses.
"""
__version__ = "0.1.0"


def __getattr__(name):
    # Lazy submodule access for interpreters that do not import on attribute.
    if name in ("cbor", "errors", "filter_table", "frame", "hotpath", "messages", "objects"):
        return __import__("spot." + name, None, None, [name])
    raise AttributeError(name)
