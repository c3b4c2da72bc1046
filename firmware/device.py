"""SPOT device firmware: wake, run one cycle, sleep, again (MicroPython).

main.py starts it. On the unix port (what `make demo` and the tests run):

    MICROPYPATH=.frozen:build/mpy/x64 micropython build/mpy/x64/main.py device.json

Config (JSON; path in argv[1], else $SPOT_CONFIG, else config.json):
    {"dir": "/", "broker": {"host": "127.0.0.1", "port": 1883},
     "wake_ms": 1000, "budget_ms": 5000, "cycles": 0, "run_s": 0, "stdin_stop": true,
     "role": "thermostat", "board": {"seed": 1}, "control_ms": 1000}
"power" is "sleepy" (this wake cycle) or "connected" (mains powered: one MQTT session
held open, commands applied on arrival; connected.py, loaded in that mode alone); the
plug and the heat pump default to connected, the rest to sleepy (power_mode).
"role" (thermostat, smart_plug, heat_pump; none: the generic node) runs on the
board that `import board` finds (boards/<name>/board.py on a board;
boards/virtual/board.py under the unix port, "board" holding its arguments);
its control step runs every "control_ms" between wakes, the radio asleep.
"local": {"port": 17883, "awake_ms": 0} turns on direct local control (SPEC.md 13):
SPOT frames in UDP datagrams, accepted only while the device is awake (during
the wake, and for "awake_ms" after it, taken from the sleep that follows).
"dir" holds what `spot provision` wrote for this device (identity.json with its
address, site, groups, cloud address and broker account; keys.json with its
keys; ca.der, the CA that signed the broker's certificate, when "broker" says
"tls": true, with "ca" and "tls_name" to name another file or certificate name) and the
device's own state (journal.json, counter.json). Every wake rebuilds the node
from those files, as a board waking from deep sleep does. "cycles" > 0 stops
after that many wakes; "run_s" bounds the whole run (0: for ever); with "stdin_stop" the
device also stops when stdin says "stop" or closes.

Output: one JSON object per line on stdout ({"ev": ..., "t": ms since start}),
ending with {"ev": "summary", ...}. Topic layout: spot/topics.py.
"""
import gc
import json
import select
import sys
import time

try:
    from micropython import const
    from time import sleep_ms, ticks_add, ticks_diff, ticks_ms

    _collect = gc.collect  # a small heap fragments: tidy it between phases of a wake
except ImportError:  # CPython: fleets and soak tests run this same file
    from spot._cpython import const, sleep_ms, ticks_add, ticks_diff, ticks_ms

    def _collect():  # CPython's own collector is another matter: leave it be
        pass

from node import Node
from spot import topics, wake
from spot.counter import SendCounter
from spot.journal import Journal
from spot.keyring import Keyring

_BACKOFF_MAX_MS = const(60000)
_AWAKE_WAIT_MS = const(5000)  # an occurrence closer than this is waited for awake

_t0 = ticks_ms()


def local_ms():
    """The device's own clock (its RTC) in ms: what drifts, and what the model corrects."""
    try:
        return time.time_ns() // 1000000
    except AttributeError:  # ports without time_ns
        return int(time.time() * 1000)


_heap = [0]  # the heap's high-water mark, sampled at every event (gc.mem_alloc)


def _alloc():
    try:
        return gc.mem_alloc()
    except AttributeError:  # CPython
        return 0


def emit(ev, **fields):
    a = _alloc()
    if a > _heap[0]:
        _heap[0] = a
    fields["ev"] = ev
    fields["t"] = ticks_diff(ticks_ms(), _t0)
    if _collect is gc.collect:  # MicroPython: streamed, the line's text is never made
        json.dump(fields, sys.stdout)
        sys.stdout.write("\n")
    else:  # CPython: one write per line (a fleet's devices share a stdout)
        print(json.dumps(fields))


def load_config(path=None):
    if path is None and len(sys.argv) > 1:
        path = sys.argv[1]
    if path is None:
        try:
            import os

            path = os.getenv("SPOT_CONFIG")
        except (ImportError, AttributeError):  # boards have no environment
            pass
    with open(path or "config.json") as f:
        return json.load(f)


_board = None
_board_heap = 0
_safe = [False]  # safe mode: the boots before this one all failed before a healthy wake
_wdt = [None]
_failed = set()  # devices whose last wake (this boot) failed: the next one subscribes again


def _feed():
    if _wdt[0] is not None:
        _wdt[0].feed()


def _step(node):
    """While something waits (Wi-Fi): the watchdog fed, the role in control."""
    _feed()
    node.control()


def _once(name):
    """A module a boot uses once (safe_mode): imported for the call and dropped from
    sys.modules again, so its code is garbage afterwards."""
    m = __import__(name)
    sys.modules.pop(name, None)
    return m


def _count_boot(cfg, healthy=False):
    """Boots since the last healthy wake, on flash; True if that is too many (safe mode)."""
    return _once("safe_mode").count_boot(cfg, healthy)


def _healthy(cfg, node):
    """The first good wake of a boot: safe mode ends (safe_mode.healthy: the boot
    counter restarts, an ESP32 keeps the firmware it runs)."""
    _safe[0] = False
    _once("safe_mode").healthy(cfg, node)


def the_board(cfg):
    """The board, made once per boot (its relays hold their state between wakes)."""
    global _board, _board_heap
    if _board is None and cfg.get("role"):
        _collect()
        a = _alloc()
        import board

        _board = board.make(cfg["role"], **cfg.get("board", {}))
        _collect()
        _board_heap = _alloc() - a  # a virtual board's models live in this heap too
    return _board


def make_node(cfg, power_on=False):
    """The node as a wake finds it: everything from the device's own files."""
    d = cfg.get("dir", ".")
    with open(d + "/identity.json") as f:
        ident = json.load(f)
    ring = Keyring(d + "/keys.json")
    make_role = None
    name = cfg.get("role")
    if name:
        hw = cfg.get("board_obj") or the_board(cfg)  # hosts running many devices pass one

        def make_role(n):
            import role

            r = role.make(name, hw, n, power_on)
            r.safe = _safe[0]
            return r
    node = Node(int(ident["address"]), emit, ring, SendCounter(d + "/counter.json"),
                Journal(d + "/journal.json"), ident.get("groups", ()), clock=local_ms,
                cloud=ident.get("cloud", 1), make_role=make_role)
    node.site = ident["site"]
    node.broker_auth = ident.get("broker")  # {"user", "password"}: its broker account
    return node


_CONNECTED_ROLES = ("smart_plug", "heat_pump")  # mains powered: connected by default


def power_mode(cfg):
    """"sleepy" (the wake cycle) or "connected" (one session held open: connected.py),
    by the config's "power", else by the role (the plug and the heat pump: connected)."""
    p = cfg.get("power")
    if p == "sleepy" or p == "connected":
        return p
    if p is not None:
        emit("refused", what="power %r: sleepy or connected; the role's default taken" % (p,))
    return "connected" if cfg.get("role") in _CONNECTED_ROLES else "sleepy"


def make_link(cfg, node, fault=None):
    """The node's MQTT link as the config says (broker, account, TLS, budget), the role's
    control step and the watchdog in its waits; spot.offline.Offline without a network stack."""
    b = cfg.get("broker", {})
    subs = [topics.topic(node.site, a) for a in node.table.addresses()]
    subs.append(topics.topic(node.site, 0xFFFFFFFF))
    own = topics.topic(node.site, node.address)
    try:  # the transport on first use: a board without `socket` still runs its role
        from spot.mqtt_link import MqttLink

        auth = node.broker_auth or {}
        link = MqttLink("spot-%08x" % node.address, b.get("host", "127.0.0.1"),
                        int(b.get("port", 1883)), subs, own, None,
                        budget_ms=int(cfg.get("budget_ms", 5000)),
                        keepalive=int(cfg.get("keepalive_s", 60)),
                        user=auth.get("user"), password=auth.get("password"),
                        # TLS per deployment: "tls": true and the CA deployed in "dir"
                        tls=cfg.get("dir", ".") + "/" + b.get("ca", "ca.der") if b.get("tls") else None,
                        tls_name=b.get("tls_name"))
    except ImportError as e:  # no network stack: the wake fails, the report is journalled
        from spot.offline import Offline

        link = Offline(repr(e))
    link.fault = fault
    if node.role is not None:  # the role keeps control (an over-current) through the wake
        step = int(cfg.get("control_ms", 1000))
        last = [ticks_ms()]

        def idle():
            _feed()
            if ticks_diff(ticks_ms(), last[0]) >= step:
                last[0] = ticks_ms()
                node.control()

        link.idle = idle
        link.idle_ms = min(step, 200)
    return link


def refused(link, node):
    """A broker that refused the session (wrong credentials or ACL): say why, once per
    attempt; the caller backs off (no crash loop). True if it did."""
    code = getattr(link, "refused", 0)  # an Offline link never reached a broker
    if code:
        from spot.mqtt_link import REFUSALS

        emit("broker_refused", code=code, why=REFUSALS[code],
             user=(node.broker_auth or {}).get("user"))
    return bool(code)


def wake_once(cfg, fault=None, setup=None, boot=None):
    """One wake: build the node from flash, run the cycle; (node, result).

    Hooks for hosts that run many devices: fault is called before every socket
    operation (see storage.fault), setup(node) before the cycle starts. boot is
    the reset cause on the first wake after a boot (reported once).
    """
    for done in wake_phases(cfg, fault, setup, boot):
        if done is not None:
            return done
        _collect()


def wake_phases(cfg, fault=None, setup=None, boot=None):
    """wake_once's work as a generator: it yields None where the heap is to be
    collected, then (node, result). The points are the wake's own; the 32-bit bench
    drives this too, collecting at each (its port cannot collect inside a call)."""
    t0 = ticks_ms()
    yield  # the last wake's garbage goes before this one's state is loaded
    node = make_node(cfg, boot in ("power_on", "hard"))
    node.control()  # readings before anything is reported
    if boot is not None and node.role is not None:  # reported in the role's first state
        from role import RESETS

        node.reset_cause = RESETS.index(boot) if boot in RESETS else 0
    yield  # and the loading's (JSON text, temporary lists) before the radio
    if setup:
        setup(node)
    if cfg.get("wifi"):
        import net

        if not net.up(cfg, int(cfg.get("budget_ms", 5000)) * 2, lambda: _step(node)):
            emit("wifi", up=False)
    local = None
    if cfg.get("local"):  # direct local control (SPEC.md 13): its own module, loaded if asked,
        import local_control  # once the network is up (a multicast join needs an interface)

        local = local_control.open(cfg, node, emit)
    if local is not None:
        local.poll()  # what came while the wake loaded its state
    link = make_link(cfg, node, fault)
    if local is not None:  # local frames are taken while the link waits for the broker
        role_idle = link.idle

        def idle():
            if role_idle is not None:
                role_idle()  # the watchdog and the role's control step
            else:
                _feed()
            local.poll()

        link.idle = idle
        link.idle_ms = min(link.idle_ms, int(cfg["local"].get("poll_ms", 20)))
    if cfg.get("availability", bool(cfg.get("role"))):  # Tasmota's habit, for products
        st = topics.status(node.site, node.address)
        link.will = (st, b"lost")
        link.farewell = (st, b"asleep %d" % (node.now() + int(cfg.get("wake_ms", 1000)) // 1000))
    # After a failed wake, never trust a session the broker says it kept: one restored
    # from an older persistence file can have lost its subscriptions (the marker would
    # never come back, and every wake fail). One SUBSCRIBE more, then as before.
    link.resubscribe = node.address in _failed  # (a host running many devices has one each)
    for res in wake.steps(node, link, topics.topic(node.site, node.address, up=True)):
        if res is None:
            yield  # between the cycle's phases
        else:
            break
    if res.ok:
        _failed.discard(node.address)
    else:
        _failed.add(node.address)
    refused(link, node)  # wrong credentials or ACL: say why; main() backs off
    node.tick()  # occurrences due by the freshly corrected clock
    res.ms = ticks_diff(ticks_ms(), t0)  # the whole wake, loading state included
    emit("cycle", **res.as_dict())
    yield node, res


def _stdin_says_stop(poller, ms, node=None, step_ms=0):
    """Sleep up to ms, the role's control step every step_ms meanwhile; True if
    stdin asked to stop."""
    end = ticks_add(ticks_ms(), ms)
    while True:
        left = ticks_diff(end, ticks_ms())
        if left <= 0:
            return False
        nap = min(left, step_ms) if node is not None and step_ms > 0 else left
        _feed()
        if poller is None:
            sleep_ms(nap)
        elif poller.poll(nap):
            line = sys.stdin.readline()
            if not line or line.strip() == "stop":
                return True
        if node is not None and step_ms > 0:
            node.control()


def main(config=None):
    """Run the device; config: a path (else argv[1], $SPOT_CONFIG, config.json)."""
    try:
        cfg = load_config(config)
    except Exception as e:
        emit("summary", why="bad config: %r" % (e,))
        return 2
    poller = None
    if cfg.get("stdin_stop"):
        poller = select.poll()
        poller.register(sys.stdin, select.POLLIN)
    run_ms = int(float(cfg.get("run_s", 0)) * 1000)  # 0: for ever, as on a board
    wake_ms = int(cfg.get("wake_ms", 1000))
    backoff_max = int(cfg.get("backoff_max_ms", _BACKOFF_MAX_MS))
    limit = int(cfg.get("cycles", 0))
    totals = {}
    failures = cycles = 0
    why = "time limit"
    node = None
    radio = True
    step = int(cfg.get("control_ms", 1000)) if cfg.get("role") else 0
    hw = the_board(cfg)
    boot = hw.reset_cause() if hw is not None else "power_on"
    healthy = False
    if hw is not None:
        _safe[0] = _count_boot(cfg)
        _wdt[0] = hw.watchdog(int(cfg.get("watchdog_ms", 30000)))
        emit("boot", role=cfg["role"], board=hw.name, cause=boot, safe=_safe[0],
             board_heap=_board_heap)
    if power_mode(cfg) == "connected":  # mains powered: one session held open
        import connected  # loaded in this mode alone

        return connected.run(sys.modules[__name__], cfg, bool(cfg.get("stdin_stop")), boot)
    t_start = ticks_ms()
    while not run_ms or ticks_diff(ticks_ms(), t_start) < run_ms:
        if node is not None and node.role is not None:
            node.journal.commit()  # what the role did since the last wake (energy, blocks)
        if not radio:  # a wake for a scheduled occurrence alone: the clock is good enough
            node = make_node(cfg)
            lc = sys.modules.get("local_control")
            if lc is not None and lc.LINK[0] is not None:  # the socket stayed open: its
                lc.open(cfg, node, emit)  # frames go to this node (not the old one's journal)
            node.tick()
            emit("quiet_wake", due=len(node.schedule.events))
        else:
            _feed()
            node, res = wake_once(cfg, boot=boot)
            _feed()
            boot = None
            if res.ok and hw is not None and not healthy:
                healthy = True
                _healthy(cfg, node)
            cycles += 1
            for k, v in node.summary().items():
                if isinstance(v, int):
                    totals[k] = totals.get(k, 0) + v
                elif isinstance(v, dict):
                    d = totals.setdefault(k, {})
                    for c, n in v.items():
                        d[c] = d.get(c, 0) + n
            totals["bytes_out"] = totals.get("bytes_out", 0) + res.bytes_out
            failures = 0 if res.ok else failures + 1
            if limit and cycles >= limit:
                why = "cycles"
                break
        # An occurrence due before the next wake could correct the clock again:
        # stay up (radio off) and act when the corrected clock reaches it.
        due = node.ms_to_next()
        while due is not None and due <= _AWAKE_WAIT_MS:
            if _stdin_says_stop(poller, due, node, step):
                why = "stop"
                break
            node.tick()
            due = node.ms_to_next()
        if why == "stop":
            break
        # Broker trouble: back off (the outbox keeps everything meanwhile). Either
        # way, wake for the next scheduled occurrence, drift-aware (Node.plan_wake).
        sleep = min(wake_ms << min(failures, 6), backoff_max) if failures else wake_ms
        sleep, radio = node.plan_wake(sleep)
        left = run_ms - ticks_diff(ticks_ms(), t_start) if run_ms else sleep
        sleep = max(0, min(sleep, left))
        lc = sys.modules.get("local_control")
        if lc is not None and lc.LINK[0] is not None:  # awake for local control a while,
            awake = min(sleep, int(cfg["local"].get("awake_ms", 0)))  # then the radio sleeps
            stop = awake > 0 and lc.listen(poller, awake, node, step, _feed)
            sleep -= awake
            if sleep > 0 or stop:  # no sleep between wakes: the socket stays open, nothing lost
                lc.close(emit)
            if stop:
                why = "stop"
                break
        if _stdin_says_stop(poller, sleep, node, step):
            why = "stop"
            break
    totals.update(why=why, cycles=cycles, applied=node.applied if node else 0,
                  outbox=len(node.journal.outbox) if node else 0, heap_peak=_heap[0])
    if cfg.get("list_modules"):  # what the run loaded (make bench weighs the code alone)
        totals["modules"] = sorted(sys.modules)
    emit("summary", **totals)
    return 0


