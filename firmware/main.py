"""SPOT device node: MQTT in, hot-path filter, apply, ACK out (MicroPython).

The first end-to-end demo device. On the unix port:

    MICROPYPATH=.frozen:build/mpy/x64:build/deps micropython firmware/main.py node.json

Config (JSON; path in argv[1], else $SPOT_CONFIG, else config.json):
    {"dir": "/", "broker": {"host": "127.0.0.1", "port": 1883},
     "run_s": 60, "keepalive": 30, "stdin_stop": true}
"dir" holds what `spot provision` wrote for this device (identity.json with
its address, site and groups; keys.json with its keys) and its own state.

Output: one JSON object per line on stdout ({"ev": ..., "t": ms since start}),
ending with {"ev": "summary", ...}. It stops after run_s seconds or, with
stdin_stop, when stdin says "stop" or closes: a host that goes away takes its
emulated device with it. Topic layout: topics.py.
"""
import json
import select
import sys
import time

from micropython import const
from umqtt.simple import MQTTClient

import topics
from node import Node
from spot.counter import SendCounter
from spot.keyring import Keyring

_SOCK_TIMEOUT_S = const(5)  # a stalled broker mid-packet is an error, not a hang
_MAX_POLL_MS = const(1000)
_BACKOFF_MAX_MS = const(4000)
_IPPROTO_TCP = const(6)  # not exported by every port's socket module
_TCP_NODELAY = const(1)

_t0 = time.ticks_ms()


def emit(ev, **fields):
    fields["ev"] = ev
    fields["t"] = time.ticks_diff(time.ticks_ms(), _t0)
    print(json.dumps(fields))


def load_config():
    path = sys.argv[1] if len(sys.argv) > 1 else None
    if path is None:
        try:
            import os

            path = os.getenv("SPOT_CONFIG")
        except (ImportError, AttributeError):  # boards have no environment
            pass
    with open(path or "config.json") as f:
        return json.load(f)


def _tune(sock):
    # umqtt.simple sets no timeout, and its wait_msg() calls setblocking(True),
    # which on lwIP ports clears one: so this runs after every call into it.
    sock.settimeout(_SOCK_TIMEOUT_S)


def _no_delay(sock):
    # ACKs are small writes made of several sock.write() calls; without this,
    # Nagle holds the tail until the broker's delayed ACK (~40 ms on Linux).
    try:
        sock.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        return True
    except (OSError, AttributeError, TypeError):
        return False


class Link:
    """The MQTT session: connect, subscribe, keep alive, send the node's ACKs."""

    def __init__(self, cfg, node):
        self.node = node
        self.site = cfg["site"]
        b = cfg.get("broker", {})
        self.keepalive = int(cfg.get("keepalive", 30))
        self.client = MQTTClient(cfg.get("client_id", "spot-%08x" % node.address),
                                 b.get("host", "127.0.0.1"), int(b.get("port", 1883)),
                                 keepalive=self.keepalive)
        self.client.set_callback(self._on_message)
        self.subs = [topics.topic(self.site, a) for a in node.table.addresses()]
        self.subs.append(topics.topic(self.site, 0xFFFFFFFF))
        self.up = topics.topic(self.site, node.address, up=True)
        self.sock = None
        self.last_out = time.ticks_ms()
        self.acks = self.bytes_out = self.reconnects = 0

    def _on_message(self, topic, msg):
        self.node.receive(msg, topic.decode())

    def connect(self, first):
        """Open the session; subscribe unless the broker kept our subscriptions."""
        present = self.client.connect(clean_session=False)
        self.sock = self.client.sock
        _tune(self.sock)
        nodelay = _no_delay(self.sock)
        # Re-subscribing would replay retained frames into a node that already
        # has them; a fresh run subscribes anyway to fetch the current state.
        if first or not present:
            for t in self.subs:
                self.client.subscribe(t, 1)
                _tune(self.sock)
        self.last_out = time.ticks_ms()
        emit("ready" if first else "reconnected", session=bool(present), nodelay=nodelay,
             subs=self.subs, up=self.up)

    def close(self, polite=True):
        if self.sock is None:
            return
        try:
            if polite:
                self.client.disconnect()
            else:
                self.sock.close()
        except Exception:
            pass
        self.sock = None

    def pump(self):
        """Read one MQTT packet (the node handles any frame in it)."""
        self.client.wait_msg()
        _tune(self.sock)

    def flush(self):
        """Send queued ACKs at QoS 1; an entry leaves the outbox only once sent."""
        box = self.node.outbox
        while box:
            acked, dst, status, buf = box[0]
            self.client.publish(self.up, buf, qos=1)  # returns on PUBACK
            _tune(self.sock)
            box.pop(0)
            self.acks += 1
            self.bytes_out += len(buf)
            self.last_out = time.ticks_ms()
            emit("acked", seq=acked, to=dst, status=status, n=len(buf), topic=self.up)

    def keep_alive(self):
        # Ping at half the keepalive: the broker drops us after 1.5 times it.
        if self.keepalive and self.ping_due_ms() <= 0:
            self.client.ping()
            self.last_out = time.ticks_ms()

    def ping_due_ms(self):
        if not self.keepalive:
            return _MAX_POLL_MS
        return self.keepalive * 500 - time.ticks_diff(time.ticks_ms(), self.last_out)


def _stdin_says_stop():
    line = sys.stdin.readline()
    return not line or line.strip() == "stop"


def _poller(watch_stdin, sock=None):
    # One per connection, not per turn of the loop: the loop allocates nothing
    # while idle.
    p = select.poll()
    if watch_stdin:
        p.register(sys.stdin, select.POLLIN)
    if sock is not None:
        p.register(sock, select.POLLIN)
    return p


def make_node(cfg):
    """The node from the device's own files: identity, keys, windows, counter.

    cfg["dir"] is the device's filesystem (a board's root): identity.json and
    keys.json come from provisioning (spot provision); window.json and
    counter.json are the device's own state.
    """
    d = cfg.get("dir", ".")
    with open(d + "/identity.json") as f:
        ident = json.load(f)
    cfg.setdefault("site", ident["site"])
    ring = Keyring(d + "/keys.json", d + "/window.json")
    return Node(int(ident["address"]), emit, ring, SendCounter(d + "/counter.json"),
                ident.get("groups", ()), clock=time.time)


def run(cfg):
    """Serve until the time limit or a stop; returns (node, link, why it stopped)."""
    node = make_node(cfg)
    link = Link(cfg, node)
    deadline = time.ticks_add(time.ticks_ms(), int(float(cfg.get("run_s", 60)) * 1000))
    watch_stdin = cfg.get("stdin_stop", False)
    idle = _poller(watch_stdin)  # while the link is down: a stop still counts
    poller = None
    first = True
    backoff = 100
    while True:
        left = time.ticks_diff(deadline, time.ticks_ms())
        if left <= 0:
            return node, link, "time limit"
        if link.sock is None:
            try:
                link.connect(first)
                poller = _poller(watch_stdin, link.sock)
                first = False
                backoff = 100
                continue
            except Exception as e:
                link.close(polite=False)
                link.reconnects += 1
                emit("link", state="down", detail=repr(e), retry_ms=backoff)
                if idle.poll(min(backoff, left)) and _stdin_says_stop():
                    return node, link, "stop"
                backoff = min(backoff * 2, _BACKOFF_MAX_MS)
                continue
        try:
            for obj, _ev in poller.poll(max(0, min(left, link.ping_due_ms(), _MAX_POLL_MS))):
                if obj is link.sock:
                    link.pump()
                elif _stdin_says_stop():
                    link.close()
                    return node, link, "stop"
            link.flush()
            link.keep_alive()
        except Exception as e:  # the session is broken; the node is not
            emit("link", state="lost", detail=repr(e))
            link.close(polite=False)
            link.reconnects += 1


def main():
    try:
        cfg = load_config()
    except Exception as e:
        emit("summary", why="bad config: %r" % (e,))
        return 2
    node, link, why = run(cfg)
    link.close()
    node.keyring.checkpoint()  # the windows of frames applied since the last one
    s = node.summary()
    s.update(why=why, acks=link.acks, bytes_out=link.bytes_out, reconnects=link.reconnects,
             address=node.address)
    emit("summary", **s)
    return 0


# Only when run as the application (a board's main.py or the unix port's
# script); importing it, for instance from a test, runs nothing.
if __name__ == "__main__":
    sys.exit(main())
