"""Connected mode: a mains-powered device holds one MQTT session open (issue 13).

device.main() loads this module only when the config's "power" is "connected"
(the default of the smart plug and the heat pump; device.power_mode). The node,
its journal and the session's opening are the wake cycle's (spot.wake.start): a
session begins with the end-of-queue marker and a time request, the outbox is
resent and the queue the broker kept is received to the marker, every frame
committed before the broker is acknowledged. Then the session stays open:

  * commands are applied as they arrive, the ACK and the new state published at
    once (PUBACKs trim the outbox, committed);
  * the wait is one select.poll over the MQTT socket, stdin (stop) and any
    extra sources [(socket_like, handler)], with a timeout no longer than the
    control step: the role's control step, the schedule and the watchdog keep
    their pace, and a packet that stops half way is waited for in slices with
    the control step between (mqtt_link.BoundedSocket), so a hung socket never
    stalls control;
  * reports on change (a command applied, a fault) and on the telemetry period;
    a two-way time exchange every "time_s" (3600);
  * keepalive: a PINGREQ after keepalive/2 s without sending; no PINGRESP within
    the link's operation timeout ends the session;
  * a session that fails (the broker gone, restarted, refusing us) is closed and
    opened again after a backoff that doubles from "reconnect_ms" (500) to 60 s,
    with jitter (half to all of it), the extra sources served meanwhile. A
    refusal (bad credentials, ACL) is said once per attempt (device.refused).

Config keys: "power", "keepalive_s" (60), "reconnect_ms", "time_s", "telemetry_s"
(a node without a role: its status report's period, 300), "control_ms", "run_s",
"stdin_stop". Events: "session" (opened), "session_end" (why), "summary".
"""
import os
import select
import sys

try:
    from micropython import const
    from time import sleep_ms, ticks_add, ticks_diff, ticks_ms
except ImportError:
    from spot._cpython import const, sleep_ms, ticks_add, ticks_diff, ticks_ms

from spot import topics, wake
from spot.mqtt_link import LinkError

_BACKOFF_MAX_MS = const(60000)
_POLLIN = const(1)
_BAD = const(0x18)  # POLLHUP | POLLERR


def _jitter(ms):
    """Half to all of ms, at random (devices that lost the broker together spread out)."""
    r = int.from_bytes(os.urandom(2), "big")
    return ms // 2 + (ms // 2) * r // 0xFFFF


class _Poll:
    """One select.poll over several sources, each with its handler; the same on
    MicroPython (poll answers with the object) and CPython (with its file number)."""

    def __init__(self, sources):
        self.p = select.poll()
        self.by = {}
        for obj, handler in sources:
            self.p.register(obj, _POLLIN)
            self.by[id(obj)] = handler
            fileno = getattr(obj, "fileno", None)
            if fileno is not None:
                try:
                    self.by[fileno()] = handler
                except (OSError, ValueError):
                    pass

    def wait(self, ms):
        """Call the handler of every source that is readable within ms; how many."""
        n = 0
        for ev in self.p.poll(max(0, ms)):
            obj = ev[0]
            h = self.by.get(obj if isinstance(obj, int) else id(obj))
            if h is not None:
                h()
                n += 1
        return n


class Connected:
    """The connected device: its node for the whole run, one link per session."""

    def __init__(self, dev, cfg, stdin=False, boot="power_on", extra=(), fault=None,
                 setup=None, should_stop=None):
        self.dev = dev
        self.cfg = cfg
        self.emit = dev.emit
        self.extra = tuple(extra)
        self.fault = fault
        self.should_stop = should_stop
        self.stdin = stdin
        self.stop = None  # why the run ends
        self.step = int(cfg.get("control_ms", 1000))
        self.run_ms = int(float(cfg.get("run_s", 0)) * 1000)
        self.time_ms = int(cfg.get("time_s", 3600)) * 1000
        self.tele_ms = int(cfg.get("telemetry_s", 300)) * 1000
        self.base_ms = int(cfg.get("reconnect_ms", 500))
        self.t_start = ticks_ms()
        self.sessions = self.failures = self.refusals = 0
        self.bytes_in = self.bytes_out = 0  # the link's, MQTT included, over all sessions
        self.gap_ms = 0  # the longest wait between two control steps (a stall shows here)
        self.last_control = ticks_ms()
        self.link = None
        self.healthy = False
        self.hw = dev.the_board(cfg) if cfg.get("role") and not cfg.get("board_obj") else None
        node = self.node = dev.make_node(cfg, boot in ("power_on", "hard"))
        node.control()
        if boot is not None and node.role is not None:  # reported in the role's first state
            from role import RESETS

            node.reset_cause = RESETS.index(boot) if boot in RESETS else 0
        if setup:
            setup(node)
        if cfg.get("local") and dev.local_open(cfg, node) is not None:
            # direct local control (SPEC 13): its socket waits in the same poll, so a
            # local command is applied as soon as it arrives, broker or no broker
            self.extra = self.extra + tuple(dev.local_handlers(node))
        self.up = topics.topic(node.site, node.address, up=True)
        self.status = topics.status(node.site, node.address)
        self.last_report = ticks_ms()

    # the loop's pieces ------------------------------------------------------
    def _stdin(self):
        line = sys.stdin.readline()
        if not line or line.strip() == "stop":
            self.stop = "stop"

    def _sources(self, link=None):
        out = []
        if link is not None:
            out.append((link.io(), self._mqtt))
        out.extend(self.extra)
        if self.stdin:
            out.append((sys.stdin, self._stdin))
        return out

    def _control(self):
        """The watchdog fed; the role's step and the schedule when the step is due (also
        called by the link while it waits on the socket: link.idle)."""
        self.dev._feed()
        now = ticks_ms()
        gap = ticks_diff(now, self.last_control)
        if gap < self.step:
            return
        if gap > self.gap_ms:
            self.gap_ms = gap
        self.last_control = now
        self.node.control()
        self.node.tick()

    def _report_due(self):
        node = self.node
        r = node.role
        if r is None:
            return ticks_diff(ticks_ms(), self.last_report) >= self.tele_ms
        if node.commanded or node.reset_cause is not None or r.fault != node.journal.app.get("flt"):
            return True
        from role import CFG_TELEMETRY_S  # a const: free once loaded

        return node.now() - node.journal.app.get("rep", -1 << 40) >= r.get(CFG_TELEMETRY_S)

    def _report(self):
        if self._report_due():
            self.last_report = ticks_ms()
            self.node.report()  # into the outbox, committed; published by flush()

    def _over(self):
        if self.stop is None:
            if self.run_ms and ticks_diff(ticks_ms(), self.t_start) >= self.run_ms:
                self.stop = "time limit"
            elif self.should_stop is not None and self.should_stop():
                self.stop = "stopped"
        return self.stop is not None

    def _mqtt(self):
        link = self.link
        link.rearm()
        link.service()

    # a session --------------------------------------------------------------
    def session(self):
        """One session: open, drain, then serve until it fails or the run ends."""
        dev = self.dev
        node = self.node
        link = self.link = dev.make_link(self.cfg, node, self.fault)
        if not hasattr(link, "why"):  # an Offline link does not wait: this loop keeps the pace
            link.idle = self._control
            link.idle_ms = min(self.step, 200)
        if self.cfg.get("availability", bool(self.cfg.get("role"))):  # as a wake's
            link.will = (self.status, b"lost")
            link.farewell = (self.status, b"lost")
        res = wake.CycleResult()
        flush = wake.flusher(node.journal, link, self.up, res)
        t0 = ticks_ms()
        ok = False
        why = None
        try:
            wake.start(node, link, self.up, res, flush)
            if link.will is not None:
                link.retain(self.status, b"online")
            self._report()
            flush()
            wake.settle(node.journal, link, res)
            self.sessions += 1
            self.failures = 0
            if not self.healthy and self.hw is not None:
                self.healthy = True
                dev._healthy(self.cfg, node)
            self.emit("session", n=self.sessions, present=res.session_present,
                      received=res.received, published=res.published,
                      ms=ticks_diff(ticks_ms(), t0), bytes_in=link.bytes_in)
            self._serve(link, flush, res)
            link.rearm()  # stopping: the last PUBACKs are welcome, not required
            link.pump(lambda: not link.unacked, link.op_timeout_ms)
            ok = True
            why = self.stop
        except OSError as e:  # LinkError too; a power cut (BaseException) ends it all
            why = repr(e)
        wake.settle(node.journal, link, res)
        refused = dev.refused(link, node)
        link.close(polite=ok)
        self.link = None
        self.bytes_in += link.bytes_in
        self.bytes_out += link.bytes_out
        self.emit("session_end", why=why, received=res.received, published=res.published,
                  delivered=res.delivered, refused=refused, bytes_in=link.bytes_in,
                  bytes_out=link.bytes_out)
        return ok

    def _serve(self, link, flush, res):
        node = self.node
        poll = _Poll(self._sources(link))
        keep_ms = max(1000, link.keepalive * 500)  # a PINGREQ at half the keepalive
        sent = link.bytes_out
        last_tx = last_time = ticks_ms()
        while not self._over():
            now = ticks_ms()
            wait = self.step - ticks_diff(now, self.last_control)
            wait = min(wait, keep_ms - ticks_diff(now, last_tx))
            if link.client.sock.pending():
                wait = 0
            poll.wait(max(0, min(wait, self.step)))
            link.rearm()  # the budget bounds each burst of work, not the session
            if link.client.sock.pending():  # TLS: decrypted bytes poll cannot see
                self._mqtt()
            self._control()
            self._report()
            flush()
            if link.acked:
                wake.settle(node.journal, link, res)
            now = ticks_ms()
            if ticks_diff(now, last_time) >= self.time_ms:
                last_time = now
                ask = node.time_request()
                if ask is not None:
                    link.publish(self.up, ask, None)
            if link.bytes_out != sent:
                sent = link.bytes_out
                last_tx = now
            elif ticks_diff(now, last_tx) >= keep_ms:
                link.ping()
                sent = link.bytes_out
                last_tx = now
            if link.ping_at is not None and ticks_diff(now, link.ping_at) > link.op_timeout_ms:
                raise LinkError(110, "no PINGRESP: the broker went quiet")

    def _backoff(self):
        """Wait before the next session: doubling, capped, jittered; the extra sources
        served and control kept meanwhile."""
        self.failures += 1
        ms = _jitter(min(self.base_ms << min(self.failures - 1, 8), _BACKOFF_MAX_MS))
        self.emit("backoff", ms=ms, failures=self.failures)
        poll = _Poll(self._sources())
        end = ticks_add(ticks_ms(), ms)
        while not self._over():
            left = ticks_diff(end, ticks_ms())
            if left <= 0:
                return
            self.dev._feed()
            if self.extra or self.stdin:
                poll.wait(min(left, self.step))
            else:
                sleep_ms(min(left, self.step))
            self._control()

    def run(self):
        if self.cfg.get("wifi"):
            import net

            def wait():
                self.dev._feed()
                self.node.control()

            if not net.up(self.cfg, int(self.cfg.get("budget_ms", 5000)) * 2, wait):
                self.emit("wifi", up=False)
        while not self._over():
            self.dev._collect()
            if not self.session() and not self._over():
                self._backoff()
        node = self.node
        self.dev.local_close()  # its counts as an event (nothing when local control is off)
        totals = node.summary()
        totals.update(why=self.stop, power="connected", sessions=self.sessions,
                      link_bytes_in=self.bytes_in, link_bytes_out=self.bytes_out,
                      control_gap_ms=self.gap_ms, heap_peak=self.dev._heap[0])
        if self.hw is not None and hasattr(self.hw, "watchdog_resets"):
            totals["watchdog_resets"] = self.hw.watchdog_resets
        self.emit("summary", **totals)
        return 0


def run(dev, cfg, stdin=False, boot="power_on", extra=(), fault=None, setup=None,
        should_stop=None):
    """Run connected until stdin says stop, run_s is up or should_stop() is true.

    dev is firmware/device.py's module; extra: [(socket_like, handler)] polled with
    the MQTT socket, handler() called when readable (local control)."""
    return Connected(dev, cfg, stdin, boot, extra, fault, setup, should_stop).run()
