"""The MQTT transport adapter: one bounded session per wake, over umqtt.simple.

umqtt.simple opens the connection (CONNECT, CONNACK); this module makes the
session safe for a sleepy device (micropython-lib issues 103, 192, 321, 334):
  * every socket operation has a timeout, and none may outlive the wake's
    budget: umqtt gets its socket through a module we hand it, so even its
    connect() and the CONNACK wait are bounded;
  * QoS 1 publishes are pipelined (sent without waiting, acknowledged in the
    receive loop), so a lost PUBACK costs nothing but a resend from the
    journal's outbox on the next wake;
  * a dead link (TLS or not) shows up as a timeout or a closed socket, and the
    session is abandoned; the broker keeps the device's queue;
  * incoming packets are read here, not by umqtt: bounded in size, and
    anything unexpected is a LinkError (a failed wake), never a crash.
It also drains the device's queue without waiting for a timeout: see
send_marker() and SPEC.md "Delivery".
"""
import errno
import os
import select
import socket as _socket

try:
    from micropython import const
    from time import ticks_add, ticks_diff, ticks_ms
except ImportError:
    from spot._cpython import const, ticks_add, ticks_diff, ticks_ms

try:
    _Timeout = TimeoutError  # CPython's socket timeout
except NameError:  # MicroPython: an OSError with ETIMEDOUT (or EAGAIN)
    _Timeout = ()

# A socket timeout's errno: EAGAIN (11) on the unix port and lwIP's non-blocking path,
# ETIMEDOUT, whose number is the C library's: 110 on Linux, 116 on the ESP32 (newlib).
# The names where the port's errno module has them, the numbers anyway.
_RETRY = (getattr(errno, "EAGAIN", 11), getattr(errno, "ETIMEDOUT", 110), 11, 110, 116)

_IPPROTO_TCP = const(6)  # not exported by every port's socket module
_SOL_SOCKET = getattr(_socket, "SOL_SOCKET", 1)
_SO_ERROR = getattr(_socket, "SO_ERROR", 4)
_POLLOUT = const(4)
_POLL_BAD = const(0x18)  # POLLERR | POLLHUP
_IN_PROGRESS = (getattr(errno, "EINPROGRESS", 115), 115, 119, 11)
_TCP_NODELAY = const(1)
_MAX_TOPIC = const(256)
MAX_MESSAGE = const(65600)  # the largest SPOT frame (65563 bytes) and some room
MARKER_HEAD = b"\x00EOQ"  # byte 0 is no SPOT version: any other receiver drops it


# CONNACK return codes (MQTT 3.1.1, 3.2.2.3): why a broker refused the session.
REFUSALS = ("", "unacceptable protocol version", "client id rejected", "server unavailable",
            "bad user name or password", "not authorised")


class LinkError(OSError):
    """The session failed or ran out of time; the caller abandons it."""


def _tls_wrap(link, raw):
    """TLS over the connected socket, the broker's certificate checked against the CA
    deployed with the device (DER: MicroPython's ssl parses PEM only NUL-terminated).
    Done here rather than by umqtt.simple, whose TLS path imports `ussl` (gone in
    MicroPython >= 1.23) or wants an SSLContext (newer versions)."""
    import ssl

    with open(link.tls, "rb") as f:  # a few hundred bytes, our own file
        ca = f.read()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=ca)
    return ctx.wrap_socket(raw, server_hostname=link.tls_name or link.host)


class BoundedSocket:
    """A socket whose every operation ends by the wake's deadline; counts bytes.

    It offers what every umqtt.simple a vendor may freeze calls on its socket:
    1.3.4 (connect, write, read, close) and 1.4 to 1.7.0, whose connect() also
    calls settimeout(timeout) (None by default) and whose wait_msg() calls
    setblocking(). A timeout given that way can only shorten an operation; none
    outlives the link's own op_timeout_ms or the wake's budget.
    """

    def __init__(self, link):
        self.link = link
        self.cap_ms = None  # umqtt's own timeout, if it set one
        self.raw = _socket.socket()
        link.raw = self.raw
        self.io = self.raw  # what carries the bytes: the socket, or TLS over it
        try:
            # Small writes back to back: without this, Nagle holds the tail of
            # each packet until the broker's delayed ACK (~40 ms on Linux).
            self.raw.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        except (OSError, AttributeError, TypeError):
            pass

    def _arm(self, slice_ms=0):
        """Bound the next operation; ms it may take. With slice_ms, the socket's own
        timeout is at most that (a read waits in slices, the role's step between)."""
        left = self.link.remaining_ms()
        if left <= 0:
            raise LinkError(110, "wake budget spent")
        ms = min(left, self.link.op_timeout_ms)
        if self.cap_ms is not None and self.cap_ms < ms:
            ms = self.cap_ms
        self.raw.settimeout((min(ms, slice_ms) if slice_ms else ms) / 1000)
        if self.link.idle is not None:  # slow socket steps too: the role keeps control
            self.link.idle()
        if self.link.fault:
            self.link.fault("net", self.link)
        return ms

    def _connect_sliced(self, addr, ms):
        """A non-blocking connect whose handshake is waited for (POLLOUT) in slices of
        idle_ms, idle() between: a broker's host that drops the SYN holds the role's
        control no longer than a slice, not for the whole operation timeout."""
        raw = self.raw
        raw.setblocking(False)
        try:
            raw.connect(addr)
        except OSError as e:  # EINPROGRESS (115 Linux, 119 newlib; CPython: BlockingIOError)
            if not (e.args and e.args[0] in _IN_PROGRESS):
                _forget(self.link)
                raise
        p = select.poll()
        p.register(raw, _POLLOUT)
        end = ticks_add(ticks_ms(), ms)
        while True:
            ev = p.poll(max(0, min(ticks_diff(end, ticks_ms()), self.link.idle_ms)))
            if ev:
                break
            if ticks_diff(end, ticks_ms()) <= 0:
                _forget(self.link)
                raise LinkError(110, "no answer to connect in %d ms" % ms)
            self.link.idle()
        p.unregister(raw)
        err = 0
        try:  # CPython and the unix port say why; lwIP's poll flags do
            err = raw.getsockopt(_SOL_SOCKET, _SO_ERROR)
        except (OSError, AttributeError, TypeError, ValueError):
            pass
        if not isinstance(err, int):
            err = 0
        if err or ev[0][1] & _POLL_BAD:
            _forget(self.link)
            raise LinkError(err or 111, "connect failed")  # ECONNREFUSED, if nothing says

    def settimeout(self, seconds):
        """umqtt >= 1.4: None (blocking) leaves the link's bounds; a number caps them."""
        self.cap_ms = None if seconds is None else max(0, int(seconds * 1000))

    def setblocking(self, flag):
        self.settimeout(None if flag else 0)

    def connect(self, addr):
        ms = self._arm()
        if self.link.idle is None:
            self.raw.connect(addr)
        else:
            self._connect_sliced(addr, ms)
        if self.link.tls:
            self._arm()
            try:
                self.io = _tls_wrap(self.link, self.raw)
            except OSError:
                raise
            except Exception as e:  # a certificate that does not verify: ValueError here
                raise LinkError(71, "TLS: %r" % (e,))
            if hasattr(self.io, "settimeout"):  # CPython's wrapped socket replaces the raw one
                self.raw = self.link.raw = self.io

    def pending(self):
        """Bytes TLS has decrypted but not handed out (CPython's poll cannot see them;
        MicroPython's TLS socket counts them in its poll)."""
        p = getattr(self.io, "pending", None)
        return p() if p is not None else 0

    def write(self, buf, n=None):
        if isinstance(buf, str):  # umqtt writes client id and topics as str
            buf = buf.encode()
        mv = memoryview(buf)
        if n is not None:
            mv = mv[:n]
        sent = 0
        while sent < len(mv):
            k = self._io(self.io.send, mv[sent:])
            if not k:
                raise LinkError(104, "connection closed while sending")
            sent += k
        self.link.bytes_out += sent
        return sent

    def _io(self, op, arg):
        """One recv or send, bounded as any operation; a peer that neither sends nor
        reads is waited for in slices of the link's idle_ms, its idle() (the role's
        control, the watchdog) between them, so a hung socket never stalls control for
        a whole operation timeout. (A send that times out has sent nothing: it is
        retried as it was.)"""
        if self.link.idle is None:
            self._arm()
            return op(arg)
        end = ticks_add(ticks_ms(), self._arm(self.link.idle_ms))
        while True:
            try:
                return op(arg)
            except OSError as e:
                if not (isinstance(e, _Timeout) or (e.args and e.args[0] in _RETRY)):
                    raise
                if ticks_diff(end, ticks_ms()) <= 0:
                    raise LinkError(110, "the broker went quiet (no progress for %d ms)" % (
                        self.link.op_timeout_ms,))
            left = ticks_diff(end, ticks_ms())
            self._arm(max(1, min(left, self.link.idle_ms)))

    def read(self, n):
        out = b""
        while len(out) < n:
            chunk = self._io(self.io.recv, n - len(out))
            if not chunk:
                raise LinkError(104, "connection closed by the broker")
            out += chunk
        self.link.bytes_in += n
        return out

    def close(self):
        self.raw.close()


def _head(op, n):
    """An MQTT fixed header: the packet type and its remaining length."""
    out = bytearray((op,))
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return out


_addrs = {}  # (host, port) -> getaddrinfo's answer: a connected device's sessions resolve once


def _forget(link):
    """A connect that failed: resolve the broker's name again next time (it may have moved)."""
    _addrs.pop((link.host, link.port), None)


class _SocketModule:
    """What umqtt.simple sees as its `socket` module: sockets bound to one link."""

    def __init__(self, link):
        self.link = link

    def socket(self, *args):
        return BoundedSocket(self.link)

    def getaddrinfo(self, host, port, *args):
        """Cached: a DNS lookup blocks (lwIP's has no timeout) and a long-lived device
        reconnects often; a failed connect forgets the answer."""
        key = (host, port)
        a = _addrs.get(key)
        if a is None:
            a = _addrs[key] = _socket.getaddrinfo(host, port)
        return a


class MqttLink:
    """One wake's MQTT session: connect, subscribe once, publish pipelined, drain.

    on_frame(buf) is called for every received frame, inside the receive loop
    and before the broker is acknowledged, so a frame it has not committed is
    delivered again after a power cut.
    """

    def __init__(self, client_id, host, port, subscriptions, own_topic, on_frame,
                 budget_ms=5000, op_timeout_ms=2000, keepalive=60, user=None, password=None,
                 tls=None, tls_name=None):
        self.client_id = client_id
        self.user = user  # the broker account (broker_config.py); None: anonymous
        self.password = password
        self.tls = tls  # None, or the CA certificate's file (DER): TLS to the broker
        self.tls_name = tls_name  # the name the broker's certificate must carry (default host)
        self.refused = 0  # the CONNACK code when the broker refused the session
        self.host = host
        self.port = port
        self.subscriptions = subscriptions
        self.own_topic = own_topic
        self.on_frame = on_frame
        self.budget_ms = budget_ms
        self.op_timeout_ms = op_timeout_ms
        self.keepalive = keepalive
        self.fault = None  # test hook: fault("net", link) before each socket operation
        self.client = None
        self.raw = None
        self.poller = None
        self.t0 = ticks_ms()
        self.bytes_in = self.bytes_out = 0
        self.round_trips = 0
        self.unacked = {}  # packet id -> caller's tag
        self.acked = []  # tags whose PUBACK arrived
        self.marker = None
        self.drained = False
        self.session_present = False
        # Availability (SPEC.md 8.5): the will the broker publishes if this wake dies
        # (topic, payload), and what a polite close leaves retained on that topic.
        self.will = None
        self.farewell = None
        # Called while the link waits (at least every idle_ms): a device's role keeps
        # its control step and watchdog going through a wake.
        self.idle = None
        self.idle_ms = 200
        self.suback = None
        self.oversized = 0  # messages too big to be frames: discarded, acknowledged
        self.ping_at = None  # a long session (connected mode): when the PINGREQ went out
        # Subscribe even when the broker says it kept our session: set after a session
        # that failed (a broker restored from an older persistence file can keep a session
        # without its subscriptions, and the end-of-queue marker never comes back).
        self.resubscribe = False

    # A long session (firmware/connected.py) ------------------------------------
    def rearm(self):
        """A long session's budget is per burst of work, not for its whole life."""
        self.t0 = ticks_ms()

    def io(self):
        """What to poll for the broker's packets (the socket, or TLS over it)."""
        return self.client.sock.io

    def ready(self):
        """Bytes waiting without a wait: TLS's decrypted ones, or the socket's."""
        return bool(self.client.sock.pending() or self.poller.poll(0))

    def ping(self):
        """PINGREQ (keepalive); the PINGRESP clears ping_at."""
        self.client.sock.write(b"\xc0\x00")
        if self.ping_at is None:
            self.ping_at = ticks_ms()

    def service(self, most=32):
        """Handle the packets already waiting (at most `most`: control goes on under a
        flood); never waits for one to begin."""
        n = 0
        while n < most and self.ready():
            self._packet()
            n += 1
        return n

    def remaining_ms(self):
        return self.budget_ms - ticks_diff(ticks_ms(), self.t0)

    def open(self):
        """Connect (clean_session off) and subscribe if the broker has no session for us."""
        from umqtt import simple

        simple.socket = _SocketModule(self)  # umqtt's own sockets, bounded
        c = self.client = simple.MQTTClient(self.client_id, self.host, self.port,
                                            user=self.user, password=self.password,
                                            keepalive=self.keepalive)
        if self.will is not None:
            c.set_last_will(self.will[0], self.will[1], retain=True, qos=1)
        try:
            self.session_present = bool(c.connect(clean_session=False))
        except OSError:
            raise
        except Exception as e:  # umqtt's assert on a bad CONNACK, MQTTException on a refusal
            code = e.args[0] if e.args and isinstance(e.args[0], int) else 0
            if 0 < code < len(REFUSALS):
                self.refused = code
                raise LinkError(71, "the broker refused the connection: " + REFUSALS[code])
            raise LinkError(71, "the broker refused or garbled the connection: %r" % (e,))
        self.poller = select.poll()
        self.poller.register(c.sock.io, select.POLLIN)
        if not self.session_present or self.resubscribe:
            self._subscribe()
        return self.session_present

    def _subscribe(self):
        """One SUBSCRIBE for every topic (QoS 1); frames may arrive before the SUBACK."""
        c = self.client
        c.pid = c.pid % 0xFFFF + 1
        pid = c.pid
        body = bytearray((pid >> 8, pid & 0xFF))
        for t in self.subscriptions:
            b = t.encode()
            body += bytes((len(b) >> 8, len(b) & 0xFF)) + b + b"\x01"
        c.sock.write(_head(0x82, len(body)) + body)
        self.suback = pid
        self.pump(lambda: self.suback is None)

    def _on_publish(self, msg):
        if self.marker is not None and msg == self.marker:
            self.drained = True
            return
        self.on_frame(msg)

    def publish(self, topic, payload, tag=None):
        """Send a QoS 1 PUBLISH now; its PUBACK is collected by pump()."""
        c = self.client
        c.pid = c.pid % 0xFFFF + 1
        pid = c.pid
        t = topic.encode() if isinstance(topic, str) else topic
        head = _head(0x32, 2 + len(t) + 2 + len(payload))  # PUBLISH, QoS 1
        head += bytes((len(t) >> 8, len(t) & 0xFF)) + t + bytes((pid >> 8, pid & 0xFF))
        c.sock.write(head + payload)  # one write: one segment on the wire
        self.unacked[pid] = tag
        return pid

    def retain(self, topic, payload):
        """A retained QoS 0 PUBLISH (availability): it needs no answer."""
        t = topic.encode()
        body = bytes((len(t) >> 8, len(t) & 0xFF)) + t + payload
        self.client.sock.write(_head(0x31, len(body)) + body)

    def send_marker(self):
        """Publish a fresh end-of-queue marker to our own downlink topic.

        The broker delivers it after everything it queued for us before it
        received the marker, so its return means the queue is drained.
        """
        self.marker = MARKER_HEAD + os.urandom(8)
        self.drained = False
        self.publish(self.own_topic, self.marker, None)

    def pump(self, done, patience_ms=None):
        """Receive until done() is true; each call is one round trip of waiting.

        With patience_ms, waiting that long in vain is not an error: pump()
        returns False (for answers that are welcome but not required).
        """
        if done():
            return True
        self.round_trips += 1
        t0 = quiet = ticks_ms()
        idle = self.idle
        while not done():
            left = self.remaining_ms()
            if patience_ms is not None:
                left = min(left, patience_ms - ticks_diff(ticks_ms(), t0))
                if left <= 0:
                    return False
            if left <= 0:
                raise LinkError(110, "wake budget spent waiting for the broker")
            wait = min(left, self.op_timeout_ms)
            if idle is not None:
                idle()
                wait = min(wait, self.idle_ms)
            if not (self.client.sock.pending() or self.poller.poll(wait)):
                if patience_ms is not None or ticks_diff(ticks_ms(), quiet) < self.op_timeout_ms:
                    continue
                raise LinkError(110, "the broker went quiet")
            quiet = ticks_ms()
            self._packet()
        return True

    def _packet(self):
        """Read and handle one MQTT packet, never holding more than a frame's worth.

        umqtt.simple's own reader would allocate whatever length a packet
        announces and assert on what it does not expect: a broker (or anyone who
        may publish to our topic) could crash the device or, with one huge
        message, block its queue at every wake. Here an oversized message is
        read off in chunks, discarded, counted and acknowledged.
        """
        s = self.client.sock
        op = s.read(1)[0]
        n = 0
        shift = 0
        while True:
            b = s.read(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 21:
                raise LinkError(71, "malformed MQTT length")
        kind = op & 0xF0
        if kind == 0x30:
            qos = (op >> 1) & 3
            if qos == 2 or n < 2:
                raise LinkError(71, "QoS 2 or malformed PUBLISH")
            tlen = int.from_bytes(s.read(2), "big")
            if tlen + 2 + (2 if qos else 0) > n or tlen > _MAX_TOPIC:
                raise LinkError(71, "malformed PUBLISH topic")
            s.read(tlen)  # the topic routes; the frame decides (SPEC.md 8.1)
            pid = int.from_bytes(s.read(2), "big") if qos else 0
            size = n - tlen - 2 - (2 if qos else 0)
            if size > MAX_MESSAGE:
                while size:
                    k = min(size, 512)
                    s.read(k)
                    size -= k
                self.oversized += 1
            else:
                self._on_publish(s.read(size) if size else b"")
            if qos:
                s.write(bytes((0x40, 2, pid >> 8, pid & 0xFF)))
        elif kind == 0x40 and n == 2:  # PUBACK
            rest = s.read(2)
            tag = self.unacked.pop((rest[0] << 8) | rest[1], None)
            if tag is not None:
                self.acked.append(tag)
        elif kind == 0x90 and 3 <= n <= 2 + len(self.subscriptions):  # SUBACK
            rest = s.read(n)
            if ((rest[0] << 8) | rest[1]) == self.suback:
                if 0x80 in rest[2:]:
                    raise LinkError(71, "the broker refused a subscription")
                self.suback = None
        elif op == 0xD0 and n == 0:  # PINGRESP
            self.ping_at = None
        else:
            raise LinkError(71, "unexpected MQTT packet 0x%02x of %d bytes" % (op, n))

    def close(self, polite=True):
        """DISCONNECT (polite) or just drop the connection (a failed or cut wake)."""
        if self.client is None or self.client.sock is None:
            return
        try:
            if polite:
                if self.farewell is not None:
                    self.retain(self.farewell[0], self.farewell[1])
                self.client.sock.write(b"\xe0\x00")
        except OSError:
            pass
        try:
            self.client.sock.close()
        except OSError:
            pass
        self.client.sock = None
