"""Direct local control on the device (SPEC.md 13): the UDP link's life and the frames it
brings. Loaded only by a device whose config has "local" (a device carries only what it
uses); device.py and connected.py call it, passing their emit (and feed) in.

    "local": {"port": 17883, "awake_ms": 0, "bind": "0.0.0.0", "group": "239.255.83.80",
              "burst": 8, "discovery_per_s": 4, "poll_ms": 20}
"""
import select
import sys

try:
    from time import ticks_add, ticks_diff, ticks_ms
except ImportError:  # CPython: fleets and tests run this same file
    from spot._cpython import ticks_add, ticks_diff, ticks_ms

LINK = [None]  # the UDP link while the device is awake and local control is on


def open(cfg, node, emit):
    """Open the local transport if the config asks for it; the link, or None.

    link.sock can be registered in select.poll, and link.poll() (at most a burst of
    datagrams per call) drains it: the pair a connected loop waits on. Frames go
    through node.receive with a reply path back to their sender. Called again with
    a new node (a new wake), the open link hands its frames to that one."""
    lc = cfg.get("local")
    if not lc:
        return None
    link = LINK[0]
    if link is None:
        try:
            from spot.udp_link import GROUP, PORT, UdpLink
        except ImportError:  # a board without `socket`: no local control
            return None
        link = UdpLink(None, int(lc.get("port", PORT)), lc.get("group", GROUP),
                       lc.get("bind", "0.0.0.0"), int(lc.get("burst", 8)),
                       int(lc.get("discovery_per_s", 4)))
        try:
            link.open()
        except Exception as e:  # no network, port taken, a port's odd socket: no local control
            emit("local", up=False, why=repr(e))
            return None
        if link.group_error is not None:  # unicast works; discovery by multicast does not
            emit("local", up=True, group=False, why=link.group_error)
        LINK[0] = link
    link.on_frame = lambda buf, reply: frame_in(node, buf, reply, emit)
    return link


def frame_in(node, buf, reply, emit):
    """One local frame: its ACK goes back at once (in node.receive), then a role command
    it applied gets its own state report into the outbox. Reporting once per burst
    instead merged the states of commands that came in the same burst (on, off read in
    one poll reported only "off"): a change the cloud never heard of.
    Never raises: a full flash, a role's bug or no memory is counted and reported,
    and the device (or its MQTT session) goes on."""
    try:
        node.receive(buf, "udp", reply)
        if node.commanded:
            node.report()
    except Exception as e:
        node.errors += 1
        emit("error", stage="local", detail=repr(e))


def poll():
    """Handle what waits on the local transport (a bounded burst); how many datagrams."""
    link = LINK[0]
    return 0 if link is None else link.poll()


def handlers():
    """[(socket, handler)] for a loop that waits on select.poll (a connected device): the
    UDP socket, and a handler that drains at most a burst of datagrams per call."""
    link = LINK[0]
    return [] if link is None else [(link.sock, link.poll)]


def close(emit):
    """Close the local transport (the radio goes to sleep); its counts as an event."""
    link = LINK[0]
    if link is None:
        return None
    LINK[0] = None
    link.close()
    emit("local", rx=link.rx, tx=link.tx, dropped=link.drops())
    return link


def _is_stdin(obj):
    return obj is sys.stdin or (isinstance(obj, int) and obj == 0)


def listen(poller, ms, node, step_ms, feed):
    """Awake, radio on, for ms: local frames handled as they come, the role's control
    step every step_ms, the watchdog fed (feed); True if stdin asked to stop."""
    link = LINK[0]
    p = select.poll()
    p.register(link.sock, select.POLLIN)
    if poller is not None:
        p.register(sys.stdin, select.POLLIN)
    end = ticks_add(ticks_ms(), ms)
    last = ticks_ms()
    while True:
        left = ticks_diff(end, ticks_ms())
        if left <= 0:
            return False
        feed()
        for ev in p.poll(min(left, step_ms) if step_ms > 0 else left):
            if _is_stdin(ev[0]):
                line = sys.stdin.readline()
                if not line or line.strip() == "stop":
                    return True
            else:
                link.poll()
        if step_ms > 0 and ticks_diff(ticks_ms(), last) >= step_ms:
            last = ticks_ms()
            node.control()
