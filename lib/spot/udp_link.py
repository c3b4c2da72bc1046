"""SPOT frames in UDP datagrams on the local network (SPEC.md 13): one frame per datagram.

The device side of direct local control: a non-blocking UDP socket on port
17883, joined to the discovery group 239.255.83.80, read at most the longest
frame a node accepts (MAX_FRAME) plus one byte: into one buffer allocated once
where the socket has recvfrom_into (CPython), else (MicroPython) as a bytes
object per datagram, bounded by that size. poll() hands each datagram to on_frame(buf, reply)
(the node's receive path: hot-path filter, tag, replay window, journal, the
same as frames from MQTT; a frame is bytes, as MQTT's are), with reply(frame) sending an answer back to the
datagram's sender. A call handles at most `burst` datagrams, so a flood never
stalls the caller's control loop; what is left waits in the kernel's buffer,
bounded by it (the rest is the kernel's to drop).

Dropped here, each counted by reason (drops()): datagrams over the size
limit (oversized), shorter than a frame header (runt), discovery requests
over the rate limit (flood), and reads that found no memory (no memory). Everything else is the node's to judge and count.
Portable: MicroPython (unix port, boards with `socket`) and CPython.
"""
import socket

try:
    from micropython import const
    from time import ticks_add, ticks_diff, ticks_ms
except ImportError:
    from spot._cpython import const, ticks_add, ticks_diff, ticks_ms

PORT = const(17883)
GROUP = "239.255.83.80"
MAX_DATAGRAM = const(1232)  # fits any IPv6 path unfragmented: the most a sender may send
# The longest frame a node accepts: header, its payload limit (512, filter_table), trailer.
# A device reads at most this (plus one byte, to see a longer one): a flood of big
# datagrams is cut short, and its node would refuse them anyway.
MAX_FRAME = const(540)
_HEADER = const(19)
_CLASS_AT = const(4)
_DISCOVERY = const(5)
_IPPROTO_IP = const(0)
_IP_ADD_MEMBERSHIP = const(35)  # Linux; MicroPython's socket module names it on most ports
_EAGAIN = (11, 35, 110)  # EAGAIN (Linux), EAGAIN (BSD), ETIMEDOUT (lwIP's non-blocking read)

# Drop reasons counted by the link (the node counts everything after it).
OVERSIZED = const(0)
RUNT = const(1)
FLOOD = const(2)
SEND_FAILED = const(3)
NO_MEMORY = const(4)
REASONS = ("oversized", "runt", "flood", "send failed", "no memory")


def _ip(text):
    return bytes(int(p) for p in text.split("."))


def _sockaddr(host, port):
    return socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][-1]


class UdpLink:
    """One bound UDP socket; poll() drains it into on_frame(buf, reply)."""

    def __init__(self, on_frame, port=PORT, group=GROUP, bind="0.0.0.0", burst=8,
                 discovery_per_s=4, max_datagram=MAX_FRAME):
        self.on_frame = on_frame
        self.port = port
        self.group = group
        self.bind_host = bind
        self.burst = burst
        self.max = max_datagram
        self.rate = discovery_per_s  # answers to discovery: a bucket of this many per second
        self.tokens = discovery_per_s
        self.refill = ticks_ms()
        # One buffer for the whole life of the link; a datagram longer than the limit
        # fills it to max + 1 and so is seen to be oversized.
        self.buf = bytearray(max_datagram + 1)
        self.mv = memoryview(self.buf)
        self.counts = [0, 0, 0, 0, 0]
        self.rx = self.tx = 0
        self.peer = None  # the sender of the datagram in hand
        self.sock = None
        self.reply = self._reply  # bound once: no allocation per datagram
        self._into = None
        self.group_error = None  # why joining the discovery group failed (open())

    def open(self):
        """Bind and join the discovery group; raises OSError (no network, port taken).
        A failed join is no failure (unicast still works, discovery not): group is None
        and group_error says why, for the caller to report."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(_sockaddr(self.bind_host, self.port))
            if self.group:
                try:
                    s.setsockopt(getattr(socket, "IPPROTO_IP", _IPPROTO_IP),
                                 getattr(socket, "IP_ADD_MEMBERSHIP", _IP_ADD_MEMBERSHIP),
                                 _ip(self.group) + bytes(4))
                except (OSError, ValueError) as e:
                    # No multicast route (OSError), or an lwIP port that wants another
                    # option size (ValueError): unicast still works, discovery not.
                    self.group = None
                    self.group_error = repr(e)
            s.setblocking(False)
        except Exception:
            s.close()
            raise
        self.sock = s
        self._into = getattr(s, "recvfrom_into", None)  # CPython: no copy; MicroPython: recvfrom
        return s

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def _reply(self, raw):
        """Send a frame back to the sender of the datagram in hand; False if it failed."""
        try:
            self.sock.sendto(raw, self.peer)
            self.tx += 1
            return True
        except (OSError, TypeError):
            self.counts[SEND_FAILED] += 1
            return False

    def _read(self):
        """(data, n, peer) of the next datagram (data None: it is in self.buf), or
        (None, 0, None) when none waits."""
        try:
            if self._into is not None:
                n, peer = self._into(self.buf)
                return None, n, peer
            data, peer = self.sock.recvfrom(self.max + 1)  # allocates (no recvfrom_into)
        except OSError as e:
            if e.args and e.args[0] in _EAGAIN:
                return None, 0, None
            raise
        except MemoryError:  # no heap for this datagram: a counted drop, the loop goes on
            self.counts[NO_MEMORY] += 1
            return None, -1, None
        return data, len(data), peer

    def _flooded(self):
        """A discovery request past the rate limit (a bucket of `rate` per second)."""
        now = ticks_ms()
        elapsed = ticks_diff(now, self.refill)
        if elapsed < 0 or elapsed >= 1000:
            # A full second (or a quiet spell so long the tick difference wrapped
            # and came out negative): the bucket is full again.
            self.tokens = self.rate
            self.refill = now
        else:
            gained = elapsed * self.rate // 1000
            if gained:
                self.tokens = min(self.rate, self.tokens + gained)
                # only the time turned into tokens: the remainder counts toward the next
                self.refill = ticks_add(self.refill, gained * 1000 // self.rate)
        if self.tokens <= 0:
            return True
        self.tokens -= 1
        return False

    def poll(self, burst=None):
        """Handle up to `burst` waiting datagrams without blocking; how many were read."""
        if self.sock is None:
            return 0
        done = 0
        limit = burst or self.burst
        while done < limit:
            try:
                data, n, peer = self._read()
            except OSError:
                return done
            if peer is None:
                if n < 0:  # a datagram dropped for want of memory (counted): the next one
                    done += 1
                    continue
                return done
            done += 1
            self.rx += 1
            if n > self.max:
                self.counts[OVERSIZED] += 1
                continue
            if n < _HEADER:
                self.counts[RUNT] += 1
                continue
            if data is None:
                data = bytes(self.mv[:n])
            if data[_CLASS_AT] == _DISCOVERY and self._flooded():
                self.counts[FLOOD] += 1
                continue
            self.peer = peer
            try:
                self.on_frame(data, self.reply)
            finally:
                self.peer = None
        return done

    def drops(self):
        d = {}
        for i in range(len(REASONS)):
            if self.counts[i]:
                d[REASONS[i]] = self.counts[i]
        return d
