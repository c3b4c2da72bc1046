"""The receiver's drop/keep rules, kept as one bytearray the hot path reads.

Rules change at run time (join a group, take on a service version) by writing
bytes; nothing is rebuilt and the hot path never allocates. Layout in
hotpath.py's docstring and SPEC.md "Filter".
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from spot import hotpath

MAX_ADDRESSES = const(8)
_SERVICES = const(40)
_ADDRS = const(8)


def _mask(classes):
    mask = 0
    for c in classes:
        if not isinstance(c, int) or not 0 <= c <= 7:
            raise ValueError("message class must be 0..7")
        mask |= 1 << c
    return mask


def _service(service):
    if not isinstance(service, int) or not 0 <= service <= 255:
        raise ValueError("service must be 0..255")
    return service


class FilterTable:
    """Which frames a device keeps: its addresses, services, versions, classes."""

    def __init__(self, address=None, max_payload=512):
        self.buf = bytearray(hotpath.TABLE_SIZE)
        self.set_max_payload(max_payload)
        self.accept_broadcast(True)
        self.require_security(range(8))  # nothing unsecured unless allowed
        if address is not None:
            self.add_address(address)

    # addresses -------------------------------------------------------------
    def addresses(self):
        b = self.buf
        return [int.from_bytes(b[_ADDRS + 4 * i:_ADDRS + 4 * i + 4], "big") for i in range(b[0])]

    def add_address(self, address):
        """Keep frames sent to `address` (the device's own id or a group it joined)."""
        if not 0 < address < 0xFFFFFFFF:
            raise ValueError("address must be 1..0xFFFFFFFE")
        if address in self.addresses():
            return
        n = self.buf[0]
        if n >= MAX_ADDRESSES:
            raise ValueError("filter table holds %d addresses at most" % MAX_ADDRESSES)
        self.buf[_ADDRS + 4 * n:_ADDRS + 4 * n + 4] = address.to_bytes(4, "big")
        self.buf[0] = n + 1

    def remove_address(self, address):
        keep = [a for a in self.addresses() if a != address]
        self.buf[0] = 0
        self.buf[_ADDRS:_SERVICES] = bytes(_SERVICES - _ADDRS)
        for a in keep:
            self.add_address(a)

    def accept_broadcast(self, on):
        self._option(hotpath.OPT_BROADCAST, on)

    def any_destination(self, on):
        """Keep frames whatever their destination (controllers, bridges, sniffers)."""
        self._option(hotpath.OPT_ANY_DESTINATION, on)

    def _option(self, bit, on):
        self.buf[1] = (self.buf[1] | bit) if on else (self.buf[1] & ~bit & 0xFF)

    # services --------------------------------------------------------------
    def set_service(self, service, classes, lowest=1, highest=1):
        """Keep `service` versions lowest..highest for the classes listed."""
        mask = _mask(classes)
        if not (1 <= _service(service) and 0 <= lowest <= highest <= 255):
            raise ValueError("service 0 is reserved; versions are 0..255, lowest <= highest")
        at = _SERVICES + 3 * service
        self.buf[at] = mask
        self.buf[at + 1] = lowest
        self.buf[at + 2] = highest

    def drop_service(self, service):
        self.buf[_SERVICES + 3 * _service(service)] = 0

    def service(self, service):
        """(class mask, lowest, highest) for a service; mask 0 means not kept."""
        at = _SERVICES + 3 * _service(service)
        return self.buf[at], self.buf[at + 1], self.buf[at + 2]

    # policy ----------------------------------------------------------------
    def require_security(self, classes):
        """Drop frames of exactly these classes when they carry no security trailer."""
        self.buf[2] = _mask(classes)

    def allow_unsecured(self, classes):
        """Let these classes through without a trailer (read-only DISCOVERY at most)."""
        self.buf[2] &= ~_mask(classes) & 0xFF

    def set_max_payload(self, n):
        if not 0 <= n <= 0xFFFF:
            raise ValueError("max payload must be 0..65535")
        self.buf[4] = n >> 8
        self.buf[5] = n & 0xFF
