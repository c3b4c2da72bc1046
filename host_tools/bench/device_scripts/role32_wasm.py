"""role32.py's phases on the 32-bit WebAssembly port (tests/mp32_runner.py, top_level_await).

This port collects only when control is back in JavaScript: gc.collect() inside a
call merely asks for a collection then. So each phase ends with collected(): a
request and a top-level `await` (a resolved promise), after which the heap holds
what is live, with no roots but the module's globals.

The wake runs as device.wake_phases, which yields where the firmware collects (the
last wake's garbage, the loading's, after connecting, after the queue): a collection
here at each. Inside a phase nothing is collected, so the phase's mark (the live
heap it started from plus everything it allocated, garbage included) bounds its
live peak from above, and "peak" is the highest mark. What the virtual board's
models allocate as they step (floats: no board has them) is left out, and said in
"models_alloc". usage: see role32.py.
"""
import gc
import json
import sys

import js
import role32


async def collected():
    gc.collect()
    await js.Promise.resolve(0)


spec = role32.prepare(sys.argv[1])
await collected()  # noqa: F704 (runs under runPythonAsync)
base = gc.mem_alloc()
role32.boot(spec)
await collected()  # noqa: F704
out = {"ev": "figures", "import": gc.mem_alloc() - base, "base": base}
if spec.get("wake"):
    role32.transport(spec)
    await collected()  # noqa: F704
    a = gc.mem_alloc()
    role32.board(spec)
    await collected()  # noqa: F704
    out["board"] = gc.mem_alloc() - a
    out["live_pre"] = gc.mem_alloc() - base - out["board"]
    role32.weigh_without_models()
    import device

    out["phases"] = phases = []  # each phase's mark
    models = device._heap[0] = 0
    for done in device.wake_phases(spec["config"], boot="deep_sleep"):
        phases.append(max(device._heap[0], device._alloc()) - base - out["board"])
        if done is not None:
            node, res = done
            break
        models += role32.MODELS[0]
        await collected()  # noqa: F704 (the models' garbage goes too)
        device._heap[0] = role32.MODELS[0] = 0
    out["models_alloc"] = models + role32.MODELS[0]
    out["alloc"] = out["peak"] = max(phases)
    await collected()  # noqa: F704
    out["live_post"] = gc.mem_alloc() - base - out["board"]
    role32.result(out, node, res)
print(json.dumps(out))
