"""A role's image on a MicroPython port: its heap at boot and through one wake.

usage (host_tools/bench/role_images.py runs it):
    micropython role32.py SPEC.json                  the unix port (x64)
    role32_wasm.py SPEC.json, through mp32_runner    the 32-bit WebAssembly port
SPEC: {"modules": [what a boot imports], "config": {device.py's config},
       "frames": [hex of the frames queued for the wake], "wake": true|false,
       "threshold": bytes allocated between collections during the wake}
The role's image is first on sys.path. Prints one JSON line {"ev": "figures", ...}:
  import     bytes the boot's modules hold once imported and collected, beyond the
             interpreter's own heap before them
  live_pre   the live heap just before the wake (modules, the board's models excluded)
  live_post  the live heap just after it, the node and its result still held
  alloc      WebAssembly port: the highest phase mark of the wake (device.wake_phases,
             collected between phases): a phase's live heap at its start plus all it
             allocated, garbage included (an upper bound); "phases" lists them
  peak       unix port: the heap's high-water mark through the wake (device.py samples
             gc.mem_alloc at every event) with a collection every "threshold" bytes
             allocated, so the live heap plus at most that much garbage; on the
             WebAssembly port the same as alloc (see below)
  cycle      the wake's result; modules: sys.modules after the wake

The WebAssembly port (MICROPY_GC_SPLIT_HEAP_AUTO) never collects while Python code
runs: gc.collect() and the threshold only ask for a collection, which happens when
control is back in JavaScript (it cannot see the roots wasm keeps outside its
linear memory). role32_wasm.py therefore runs these phases, and the wake's own
(device.wake_phases), from a top-level `await`, where the port does collect, and
its in-wake figure is an allocation bound per phase, not a live peak.

What a port lacks and every board has built in C (no heap for code) is stubbed
before the baseline: `socket` and `usocket` (spot.mqtt_link and umqtt.simple import
them; nothing here connects) and `cryptolib` (AES: only encrypted frames use it, and
none here are). The transport is a MemoryLink: spot.mqtt_link and umqtt.simple are
imported as on a board, but the queued frames arrive from memory and every publish
counts as acknowledged, so the wake runs whole: verify, apply, ACK, report, commit.
"""
import gc
import json
import os
import sys

# What every board has built in (C: no heap for its code), imported before the
# baseline; on the WebAssembly port some are Python (binascii) and would count as the image's.
_BUILTINS = ("array", "binascii", "errno", "gc", "hashlib", "json", "micropython", "os",
             "select", "struct", "sys", "time")
_STUBS = {
    "socket": "AF_INET = 2\nSOCK_STREAM = 1\n\n\ndef getaddrinfo(*a):\n"
              "    raise OSError(19)\n\n\ndef socket(*a):\n    raise OSError(19)\n",
    "usocket": "from socket import *  # noqa\n",
    "cryptolib": "def aes(*a):\n    raise OSError(95)  # no AES on this port\n",
}


def prepare(path):
    """The spec, the built-ins imported and the stubs in place (before the baseline)."""
    spec = json.load(open(path))
    for name in _BUILTINS:
        try:
            __import__(name)
        except ImportError:
            pass
    stubs = spec.get("stubs", "/stubs")
    for name, text in _STUBS.items():
        try:
            __import__(name)  # the unix port has them all
        except ImportError:
            try:
                os.mkdir(stubs)
            except OSError:
                pass
            with open("%s/%s.py" % (stubs, name), "w") as f:
                f.write(text)
            if stubs not in sys.path:
                sys.path.append(stubs)
            __import__(name)
    return spec


def boot(spec):
    for m in spec["modules"]:
        __import__(m)


def transport(spec):
    """The MemoryLink in place of MqttLink (imported as device.wake_once would)."""
    from spot import mqtt_link

    queue = [bytes.fromhex(h) for h in spec.get("frames", ())]

    class MemoryLink(mqtt_link.MqttLink):
        def open(self):
            from umqtt import simple  # noqa: F401 (what a board's open() imports)

            return True

        def send_marker(self):
            self.drained = False

        def publish(self, topic, payload, tag=None):
            self.bytes_out += len(payload)
            if tag is not None:
                self.acked.append(tag)
            return 0

        def pump(self, done, patience_ms=None):
            if done():
                return True
            self.round_trips += 1
            if self.idle is not None:
                self.idle()
            while queue:
                buf = queue.pop(0)
                self.bytes_in += len(buf)
                self.on_frame(buf)
            self.drained = True
            return done()

        def close(self, polite=True):
            pass

    mqtt_link.MqttLink = MemoryLink


def board(spec):
    import device

    device.the_board(spec["config"])


MODELS = [0]  # bytes the virtual board's models allocated while stepping
_IN = [False]  # inside a weighed call already (the models step inside _sync)


def _weighed(f):
    """f, what it allocates counted in MODELS, not the firmware's (outermost call only)."""

    def call(*a):
        if _IN[0]:
            return f(*a)
        _IN[0] = True
        at = gc.mem_alloc()
        try:
            return f(*a)
        finally:
            MODELS[0] += gc.mem_alloc() - at
            _IN[0] = False

    return call


def weigh_without_models():
    """For a heap that never collects (the WebAssembly port): device.py's heap samples
    leave out what the virtual board's simulation allocates (garbage a board's firmware
    does not make), counted in MODELS: its models stepping (floats), catching up with
    the wall clock and its ticks (epoch ms: long ints on a 32-bit port, where a board's
    ticks are small ints in C), a meter or sensor reading computed from the model (its
    noise, in floats) and the heat pump's Modbus side answering a request. The UART's
    read, like a board's, counts as the firmware's."""
    import device

    hw = device._board
    if hw is None or not hasattr(hw, "advance"):
        return
    for name in ("_sync", "ticks_ms", "feed"):
        setattr(hw, name, _weighed(getattr(hw, name)))
    m = hw.model
    for name in ("meter", "temperature"):
        if hasattr(m, name):
            setattr(m, name, _weighed(getattr(m, name)))
    port = getattr(m, "port", None)
    if port is not None:
        port.write = _weighed(port.write)
    device._alloc = lambda: gc.mem_alloc() - MODELS[0]


def wake(spec):
    """One whole wake; device._heap holds its high-water mark (sampled at every event)."""
    import device

    device._heap[0] = 0
    return device.wake_once(spec["config"], boot="deep_sleep")


def result(out, node, res):
    out["cycle"] = res.as_dict()
    out["applied"] = node.applied
    out["modules"] = sorted(sys.modules)
    return out


def main():
    """The unix port: gc.collect() collects here, so the phases run straight through."""
    spec = prepare(sys.argv[1])
    gc.collect()
    base = gc.mem_alloc()
    boot(spec)
    gc.collect()
    out = {"ev": "figures", "import": gc.mem_alloc() - base, "base": base}
    if spec.get("wake"):
        transport(spec)
        gc.collect()
        a = gc.mem_alloc()
        board(spec)
        gc.collect()
        out["board"] = gc.mem_alloc() - a  # a virtual board's models: no board has them
        out["live_pre"] = gc.mem_alloc() - base - out["board"]
        # A board's small heap collects when it fills: a collection every `threshold`
        # bytes allocated makes the mark the live heap plus at most that much garbage.
        gc.threshold(spec.get("threshold") or -1)
        node, res = wake(spec)
        out["peak"] = device_heap() - base - out["board"]
        gc.threshold(-1)
        gc.collect()
        out["live_post"] = gc.mem_alloc() - base - out["board"]
        # The same wake's allocation bound needs a heap that never collects: not here.
        result(out, node, res)
    print(json.dumps(out))


def device_heap():
    import device

    return device._heap[0]


if __name__ == "__main__":
    main()
