"""A sender's frame counter that never repeats, even across power cuts.

The header's sequence number is the security counter, so reusing one would
let a replay through or reuse an encryption nonce. Writing flash for every
frame would wear it out, so counters are reserved in blocks: the file always
holds a value above every counter handed out, and a power cut only skips the
rest of the block.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from spot import storage

BLOCK = const(64)
_LIMIT = const(0xFFFFFFFF)


class SendCounter:
    def __init__(self, path=None, block=BLOCK, start=1):
        self.path = path
        self.block = block
        stored = storage.load(path) if path else None
        self._next = stored if isinstance(stored, int) and stored > start else start
        self._reserved = self._next  # nothing above this is safe to use yet
        self.writes = 0

    def next(self):
        """The next sequence number; reserves a new block first when needed."""
        n = self._next
        if n >= _LIMIT:
            raise OverflowError("frame counter exhausted: rotate keys and re-provision")
        if n >= self._reserved:
            reserved = min(n + self.block, _LIMIT)
            if self.path:
                storage.save(self.path, reserved)  # raises before anything is handed out
                self.writes += 1
            self._reserved = reserved
        self._next = n + 1
        return n

    def peek(self):
        return self._next
