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
  * reports on change (a command applied at once; a fault, an output or the
    button's request no closer than "report_min_ms", 2000: role_report.due, the
    sleepy wake's predicate too) and on the telemetry period; the role's state
    committed every "save_ms" (60000) and at the end, as each sleepy wake does;
    a two-way time exchange every "time_s" (3600);
  * keepalive: a PINGREQ after keepalive/2 s without sending; no PINGRESP within
    half that (the link's operation timeout at least) ends the session;
    keepalive 0: no pings;
  * a session that fails (the broker gone, restarted, refusing us) is closed and
    opened again after a backoff that doubles from "reconnect_ms" (500) to 60 s,
    with jitter (half to all of it), the extra sources served meanwhile; the
    doubling restarts only after a session that lasted a keepalive (5 s at most).
    A refusal (bad credentials, ACL) is said once per attempt (device.refused).
    Without a session (no broker, no network stack) reports wait in the outbox.
    The network (cfg "wifi") is brought up before every session.

Config keys: "power", "keepalive_s" (60), "reconnect_ms", "time_s", "telemetry_s"
(a node without a role: its status report's period, 300), "control_ms", "run_s",
"save_ms", "report_min_ms", "stdin_stop". Events: "session" (opened), "session_end"
(why), "backoff", "error" (a bug caught: backed off), "summary".
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

_BACKOFF_MAX_MS = const(60000)
_POLLIN = const(1)
_STABLE_MAX_MS = const(5000)  # a session this old (or one keepalive) ends a failure streak

_urandom = os.urandom  # the random source (a test stubs it)


def _jitter(ms):
    """Half to all of ms, at random (devices that lost the broker together spread out)."""
    r = int.from_bytes(_urandom(2), "big")
    return ms // 2 + (ms // 2) * r // 0xFFFF


def backoff_ms(base_ms, failures):
    """The wait after the failures-th failure in a row: base doubling, capped at 60 s,
    then jittered (half to all of it)."""
    return _jitter(min(base_ms << min(failures - 1, 8), _BACKOFF_MAX_MS))


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
        # The role's state (energy, blocks) on flash at least this often, as a sleepy
        # device's every wake does, and at the end of the run.
        self.save_ms = int(cfg.get("save_ms", 60000))
        # Reports on a change the device made itself (a fault, the button) no closer than
        # this: a flapping fault must not write flash and publish at every control step.
        # A command's new state and a boot's report go at once.
        self.report_min_ms = int(cfg.get("report_min_ms", 2000))
        ka = int(cfg.get("keepalive_s", 60))
        # A session that lasted one keepalive (at most a few seconds) was a good one: the
        # failure streak, and so the backoff, start again. A session the broker kills
        # right after it opens keeps backing off.
        self.stable_ms = min(ka * 1000, _STABLE_MAX_MS) if ka > 0 else _STABLE_MAX_MS
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
        self.up = topics.topic(node.site, node.address, up=True)
        self.status = topics.status(node.site, node.address)
        self.last_report = self.last_save = ticks_ms()
        self.stepped = True  # a control step ran since the report check last looked

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
        self.stepped = True

    def _report_due(self):
        node = self.node
        r = node.role
        since = ticks_diff(ticks_ms(), self.last_report)
        if r is None:
            return since >= self.tele_ms
        if node.commanded or node.reset_cause is not None:
            return True  # a command's new state, a boot: at once
        if not self.stepped or since < self.report_min_ms:
            return False  # nothing new since the last look, or too soon after a report
        self.stepped = False
        import role_report  # the predicate node.report() itself applies: one for both modes

        return role_report.due(node, node.now())

    def _report(self):
        if self._report_due():
            self.last_report = self.last_save = ticks_ms()
            self.node.report()  # into the outbox, committed; published by flush()

    def _save(self, force=False):
        """The role's state on flash every save_ms (and at the end): what a sleepy device's
        every wake commits (device.py), energy and block time between reports included."""
        if self.node.role is None:
            return
        now = ticks_ms()
        if force or ticks_diff(now, self.last_save) >= self.save_ms:
            self.last_save = now
            try:
                self.node.journal.commit()
            except OSError as e:  # flash full: control goes on, the next save tries again
                self.emit("error", stage="save", detail=repr(e))

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
    def _wifi(self):
        """The network up (at once when it is): before every session, not just the first."""
        if self.cfg.get("wifi"):
            import net

            if not net.up(self.cfg, int(self.cfg.get("budget_ms", 5000)) * 2,
                          lambda: self.dev._step(self.node)):
                self.emit("wifi", up=False)

    def _local(self):
        """Direct local control (SPEC 13), opened once the network is up (a multicast join
        before it has no interface to join on): its socket waits in the same poll, so a
        local command is applied as soon as it arrives, broker or no broker. Tried again
        before every session until it opens."""
        if not self.cfg.get("local"):
            return
        import local_control

        if local_control.LINK[0] is None and local_control.open(self.cfg, self.node,
                                                                 self.dev.emit) is not None:
            self.extra = self.extra + tuple(local_control.handlers())

    def session(self):
        """One session: open, drain, then serve until it fails or the run ends."""
        dev = self.dev
        node = self.node
        self._wifi()
        self._local()
        link = self.link = dev.make_link(self.cfg, node, self.fault)
        link.resubscribe = self.failures > 0  # after a failure: never trust a kept session
        if not hasattr(link, "why"):  # an Offline link does not wait: this loop keeps the pace
            link.idle = self._control
            link.idle_ms = min(self.step, 200)
        if self.cfg.get("availability", bool(self.cfg.get("role"))):  # as a wake's
            link.will = (self.status, b"lost")
            link.farewell = (self.status, b"lost")
        res = wake.CycleResult()
        flush = wake.flusher(node.journal, link, self.up, res)
        t0 = ticks_ms()
        ok = opened = False
        why = None
        try:
            # Each frame of the drain re-arms the budget: a long queue is not one burst.
            wake.start(node, link, self.up, res, flush, rearm=True)
            if link.will is not None:
                link.retain(self.status, b"online")
            self._report()
            flush()
            wake.settle(node.journal, link, res)
            self.sessions += 1
            opened = True
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
        if ticks_diff(ticks_ms(), t0) >= self.stable_ms and opened:
            self.failures = 0  # it lasted: the next failure backs off from the start
        if not opened:
            # No session (no broker, no network stack: spot.offline): the report goes into
            # the outbox as a failed wake's does, and waits there for a session.
            self._report()
        wake.settle(node.journal, link, res)
        refused = dev.refused(link, node)
        if refused:
            self.refusals += 1
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
        # A PINGREQ at half the keepalive, its PINGRESP awaited half that (the operation
        # timeout at least); keepalive 0: the broker never drops us, no pings at all.
        keep_ms = max(1000, link.keepalive * 500) if link.keepalive > 0 else None
        pong_ms = max(keep_ms // 2, link.op_timeout_ms) if keep_ms else 0
        sent = link.bytes_out
        last_tx = last_time = ticks_ms()
        while not self._over():
            now = ticks_ms()
            wait = self.step - ticks_diff(now, self.last_control)
            if keep_ms:
                wait = min(wait, keep_ms - ticks_diff(now, last_tx))
            if link.client.sock.pending():
                wait = 0
            poll.wait(max(0, min(wait, self.step)))
            link.rearm()  # the budget bounds each burst of work, not the session
            if link.client.sock.pending():  # TLS: decrypted bytes poll cannot see
                self._mqtt()
            self._control()
            self._report()
            self._save()
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
            elif keep_ms and ticks_diff(now, last_tx) >= keep_ms:
                link.ping()
                sent = link.bytes_out
                last_tx = now
            if link.ping_at is not None and ticks_diff(now, link.ping_at) > pong_ms:
                from spot.mqtt_link import LinkError  # loaded with the link (none offline)

                raise LinkError(110, "no PINGRESP: the broker went quiet")

    def _backoff(self):
        """Wait before the next session: doubling, capped, jittered; the extra sources
        served and control kept meanwhile."""
        self.failures += 1
        ms = backoff_ms(self.base_ms, self.failures)
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
            self._save()

    def run(self):
        while not self._over():
            self.dev._collect()
            try:
                if not self.session() and not self._over():
                    self._backoff()
            except Exception as e:  # a bug must not end the device: said, then backed off
                link = self.link  # (a power cut, a BaseException, still ends it all)
                self.link = None
                self.emit("error", stage="connected", detail=repr(e))
                if link is not None:
                    try:
                        link.close(polite=False)
                    except Exception:
                        pass
                try:
                    if not self._over():
                        self._backoff()
                except Exception as e2:
                    self.emit("error", stage="connected", detail=repr(e2))
                    sleep_ms(self.base_ms)
        self._save(True)
        node = self.node
        lc = sys.modules.get("local_control")
        if lc is not None:
            lc.close(self.dev.emit)  # its counts as an event
        totals = node.summary()
        totals.update(why=self.stop, power="connected", sessions=self.sessions,
                      refusals=self.refusals,
                      link_bytes_in=self.bytes_in, link_bytes_out=self.bytes_out,
                      control_gap_ms=self.gap_ms, heap_peak=self.dev._heap[0])
        if self.hw is not None and hasattr(self.hw, "watchdog_resets"):
            totals["watchdog_resets"] = self.hw.watchdog_resets
        if self.cfg.get("list_modules"):  # what the run loaded
            totals["modules"] = sorted(sys.modules)
        self.emit("summary", **totals)
        return 0


def run(dev, cfg, stdin=False, boot="power_on", extra=(), fault=None, setup=None,
        should_stop=None):
    """Run connected until stdin says stop, run_s is up or should_stop() is true.

    dev is firmware/device.py's module; extra: [(socket_like, handler)] polled with
    the MQTT socket, handler() called when readable (local control)."""
    return Connected(dev, cfg, stdin, boot, extra, fault, setup, should_stop).run()
