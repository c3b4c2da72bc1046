"""A role's image on a 32-bit MicroPython (the WebAssembly port, tests/mp32_runner.py).

usage (host_tools/bench/suite.py runs it through mp32_runner.run):
    role32.py SPEC.json
SPEC: {"modules": [what a boot and a wake import], "config": {device.py's config},
       "frames": [hex of the frames queued for the wake], "wake": true|false}
The role's bytecode image (build/images/bytecode/<role>/: this port has no native
emitter) is first on sys.path. Prints one JSON line {"ev": "figures", ...}:
  import  bytes the image's modules hold once imported and collected, beyond the
          interpreter's own heap before them (gc.mem_alloc after gc.collect)
  peak    the heap's high-water mark through one whole wake (device.py samples
          gc.mem_alloc at every event, as on the unix port) with a collection after
          every "threshold" bytes allocated (its garbage at most that), less the
          virtual board's models (board), which a real board does not have
  cycle   the wake's result; modules: sys.modules after the wake

What this port lacks and every board has built in C (no heap for code) is stubbed
before the baseline (the unix port has them all): `socket` and `usocket` (spot.mqtt_link and umqtt.simple import
them; nothing here connects) and `cryptolib` (AES: only encrypted frames use it, and
none here are). The transport is a MemoryLink: spot.mqtt_link and umqtt.simple are
imported as on a board, but the queued frames arrive from memory and every publish
counts as acknowledged, so the wake runs whole: verify, apply, ACK, report, commit.
"""
import gc
import json
import os
import sys

spec = json.load(open(sys.argv[1]))

# What every board has built in (C: no heap for its code), imported before the
# baseline; on this port some are Python (binascii) and would count as the image's.
_BUILTINS = ("array", "binascii", "errno", "gc", "hashlib", "json", "micropython", "os",
             "select", "struct", "sys", "time")
_STUBS = {
    "socket": "AF_INET = 2\nSOCK_STREAM = 1\n\n\ndef getaddrinfo(*a):\n"
              "    raise OSError(19)\n\n\ndef socket(*a):\n    raise OSError(19)\n",
    "usocket": "from socket import *  # noqa\n",
    "cryptolib": "def aes(*a):\n    raise OSError(95)  # no AES on this port\n",
}
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
gc.collect()
base = gc.mem_alloc()
for m in spec["modules"]:
    __import__(m)
gc.collect()
out = {"ev": "figures", "import": gc.mem_alloc() - base, "base": base}

if spec.get("wake"):
    import device  # noqa: E402 (what the wake imports follows from here)
    from spot import mqtt_link  # noqa: E402

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
    cfg = spec["config"]
    device.the_board(cfg)  # made once per boot, as main() does; its models weighed apart
    # A board's small heap collects when it fills; this port's heap grows instead. A
    # collection after every `threshold` bytes allocated makes the high-water mark the
    # live heap plus at most that much garbage, as on a board with a heap that size.
    if spec.get("threshold"):
        gc.threshold(spec["threshold"])
    gc.collect()
    device._heap[0] = 0
    node, res = device.wake_once(cfg, boot="deep_sleep")
    out["peak"] = device._heap[0] - device._board_heap
    out["board"] = device._board_heap
    out["cycle"] = res.as_dict()
    out["applied"] = node.applied
    out["modules"] = sorted(sys.modules)
print(json.dumps(out))
