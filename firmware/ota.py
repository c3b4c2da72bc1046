"""ESP32 firmware update with rollback, on esp32.Partition (MIT licence).

    u = Updater()
    u.begin(size)              # the next OTA partition exists and is big enough
    u.write(chunk) ...         # any chunk sizes; written in 4096-byte flash blocks
    u.finish(sha256_hex)       # read back, hash, compare; only then set_boot
    machine.reset()
    ...                        # the new image boots, connects, completes a wake
    mark_healthy()             # cancel the rollback; until then a reset goes back

Nothing half-written is ever made bootable: set_boot() is called only after the
whole announced image was written and its sha256, read back from flash, matched.
Every failure raises OtaError (a ValueError) saying what went wrong, and leaves
the boot partition as it was.

MicroPython does not expose the bootloader's "pending verify" state, so finish()
leaves a small marker file naming the new partition; pending_verify() is true
while that partition runs and mark_healthy() has not been called yet.
`esp32` is imported where it is used, so the module imports anywhere.
"""
try:
    from micropython import const
except ImportError:  # CPython
    from spot._cpython import const

_BLOCK = const(4096)
_IOCTL_BLOCK_COUNT = const(4)
_IOCTL_BLOCK_SIZE = const(5)
_APP_MAGIC = const(0xE9)  # first byte of every ESP32 application image
_IDLE = const(0)
_WRITING = const(1)
_DONE = const(2)
_FAILED = const(3)

MARKER = "ota_pending"


class OtaError(ValueError):
    pass


def _running():
    import esp32

    try:
        return esp32.Partition(esp32.Partition.RUNNING)
    except OSError as e:
        raise OtaError("cannot find the running partition: %s" % e)


def _label(part):
    return part.info()[4]


class Updater:
    """One firmware update into the OTA partition after the running one.

    target: a Partition to write instead (tests, or a board with its own layout).
    marker: the pending-verify marker file (None: none is kept).
    """

    def __init__(self, target=None, marker=MARKER):
        self._target = target
        self._marker = marker
        self._state = _IDLE
        self._buf = None
        self._size = 0
        self._written = 0
        self._fill = 0
        self._block = 0

    def _fail(self, msg):
        self._state = _FAILED
        raise OtaError(msg)

    def begin(self, size):
        if self._state == _WRITING:
            raise OtaError("an update is already in progress")
        if size <= 0:
            raise OtaError("image size must be positive, not %d" % size)
        part = self._target
        if part is None:
            try:
                part = _running().get_next_update()
            except OSError:
                raise OtaError("no OTA partition to update: the partition table has no "
                               "ota_0/ota_1 (flash a firmware built with OTA partitions)")
        bs = part.ioctl(_IOCTL_BLOCK_SIZE, 0)
        if bs != _BLOCK:
            raise OtaError("partition %s has %d-byte blocks, expected %d" % (_label(part), bs, _BLOCK))
        cap = part.ioctl(_IOCTL_BLOCK_COUNT, 0) * _BLOCK
        if size > cap:
            raise OtaError("image of %d bytes does not fit partition %s (%d bytes)"
                           % (size, _label(part), cap))
        self._target = part
        self._size = size
        self._written = 0
        self._fill = 0
        self._block = 0
        if self._buf is None:
            self._buf = bytearray(_BLOCK)
        self._state = _WRITING

    def write(self, chunk):
        if self._state != _WRITING:
            raise OtaError("write() without a successful begin()")
        n = len(chunk)
        if not n:
            return
        if self._written + n > self._size:
            self._fail("image longer than the %d bytes announced" % self._size)
        if self._written == 0 and chunk[0] != _APP_MAGIC:
            self._fail("not an ESP32 app image: first byte 0x%02x, expected 0x%02x"
                       % (chunk[0], _APP_MAGIC))
        src = memoryview(chunk)
        buf = self._buf
        i = 0
        while i < n:
            k = min(_BLOCK - self._fill, n - i)
            buf[self._fill:self._fill + k] = src[i:i + k]
            self._fill += k
            i += k
            if self._fill == _BLOCK:
                self._flush()
        self._written += n

    def _flush(self):
        try:
            self._target.writeblocks(self._block, self._buf)  # erases the block, then writes
        except OSError as e:
            self._fail("flash write failed at block %d: %s" % (self._block, e))
        self._block += 1
        self._fill = 0

    def finish(self, sha256_hex):
        if self._state != _WRITING:
            raise OtaError("finish() without a successful begin()")
        want = sha256_hex.lower() if isinstance(sha256_hex, str) else ""
        if len(want) != 64 or any(c not in "0123456789abcdef" for c in want):
            self._fail("expected sha256 as 64 hex digits, got %r" % (sha256_hex,))
        if self._written != self._size:
            self._fail("truncated image: %d of %d bytes received" % (self._written, self._size))
        if self._fill:
            buf = self._buf
            for j in range(self._fill, _BLOCK):  # erased flash reads 0xff: pad with it
                buf[j] = 0xFF
            self._flush()
        got = self._readback_sha256()
        if got != want:
            self._fail("sha256 mismatch: flash holds %s, expected %s" % (got, want))
        try:
            self._target.set_boot()
        except OSError as e:
            self._fail("the bootloader refused the image: %s" % e)
        self._state = _DONE
        if self._marker:
            try:
                with open(self._marker, "w") as f:
                    f.write(_label(self._target))
            except OSError:
                pass  # the update stands; only pending_verify() will not know of it

    def _readback_sha256(self):
        import hashlib
        from binascii import hexlify

        h = hashlib.sha256()
        buf = self._buf
        mv = memoryview(buf)
        left = self._size
        b = 0
        while left > 0:
            try:
                self._target.readblocks(b, buf)
            except OSError as e:
                self._fail("flash read failed at block %d: %s" % (b, e))
            k = min(left, _BLOCK)
            h.update(mv[:k])
            left -= k
            b += 1
        return hexlify(h.digest()).decode()

    def abort(self):
        """Give up an update in progress; the boot partition was never touched."""
        if self._state == _WRITING:
            self._state = _FAILED


def mark_healthy(marker=MARKER):
    """Cancel the rollback: call once the new image has proved itself (connected and
    completed a wake cycle). Harmless to call on every healthy boot."""
    import esp32

    try:
        esp32.Partition.mark_app_valid_cancel_rollback()
    except OSError as e:
        raise OtaError("could not mark this firmware valid (is bootloader rollback "
                       "enabled?): %s" % e)
    if marker:
        try:
            import os

            os.remove(marker)
        except OSError:
            pass


def pending_verify(marker=MARKER):
    """True while the image finish() installed is running and mark_healthy() has not
    been called. False otherwise, including after a rollback to the old image."""
    try:
        with open(marker) as f:
            label = f.read().strip()
    except OSError:
        return False
    return label == _label(_running())
