"""The link of a board without a transport (no `socket`): spot.wake.run over it fails
at open(), so the wake's report waits in the outbox, and the role's control goes on.

device.py loads it only when the transport cannot be imported; a board with one
never does.
"""


class Offline:
    """The link of a board without a transport (no `socket`: RPI_PICO, or Wi-Fi code
    not frozen in): every wake fails at open(), so run() puts the report into the
    outbox and commits it, and the role's control goes on between wakes."""

    def __init__(self, why):
        self.why = why
        self.on_frame = self.idle = self.fault = self.will = self.farewell = None
        self.idle_ms = 200
        self.acked = []
        self.bytes_in = self.bytes_out = self.round_trips = 0

    def open(self):
        raise OSError(19, "no transport: %s" % self.why)  # ENODEV

    def close(self, polite=True):
        pass
