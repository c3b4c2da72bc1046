"""The link's sliced socket I/O (spot.mqtt_link.BoundedSocket): a socket timeout, by
whatever errno the port's C library gives it, is waited through, the role's idle step
between the slices; anything else ends the session."""
import errno

from expect import Skip


def _mqtt_link():
    try:
        from spot import mqtt_link
    except (ImportError, AttributeError):  # the 32-bit WebAssembly port: no socket module
        raise Skip("this port has no socket module")
    return mqtt_link


class _Link:
    op_timeout_ms = 2000
    idle_ms = 10
    fault = None
    bytes_in = bytes_out = 0

    def __init__(self):
        self.idles = 0

    def idle(self):
        self.idles += 1

    def remaining_ms(self):
        return 5000


class _Sock:
    """Times out `times` times with OSError(code), then hands out the bytes."""

    def __init__(self, code, times, data=b"\xd0\x00"):
        self.code = code
        self.times = times
        self.data = data
        self.timeouts = []

    def settimeout(self, s):
        self.timeouts.append(s)

    def recv(self, n):
        if self.times:
            self.times -= 1
            raise OSError(self.code)
        out, self.data = self.data[:n], self.data[n:]
        return out

    def close(self):
        pass


def _bounded(sock):
    link = _Link()
    s = _mqtt_link().BoundedSocket(link)
    s.raw.close()
    s.raw = s.io = sock
    return link, s


def _timeout_waited_through(code):
    link, s = _bounded(_Sock(code, 3))
    assert s.read(2) == b"\xd0\x00"
    assert link.idles >= 3, link.idles  # control ran between the slices
    assert link.bytes_in == 2


def test_etimedout_by_name_is_a_slice_not_an_error():
    _timeout_waited_through(errno.ETIMEDOUT)


def test_esp32_etimedout_116_is_a_slice_not_an_error():
    # newlib's ETIMEDOUT (the ESP32's socket timeout) is 116, Linux's 110
    _timeout_waited_through(116)


def test_eagain_is_a_slice_not_an_error():
    _timeout_waited_through(errno.EAGAIN)


def test_a_reset_connection_ends_the_read():
    link, s = _bounded(_Sock(errno.ECONNRESET, 1))
    try:
        s.read(2)
    except OSError as e:
        assert e.args[0] == errno.ECONNRESET, e
    else:
        raise AssertionError("a reset connection was retried")
