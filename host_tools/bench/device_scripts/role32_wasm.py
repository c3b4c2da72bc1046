"""role32.py's phases on the 32-bit WebAssembly port (tests/mp32_runner.py, top_level_await).

This port collects only when control is back in JavaScript, so each phase ends
with a top-level `await` (a resolved promise): the heap is then collected exactly,
with no roots but the module's globals. Inside the wake nothing is collected, so
the wake's mark (device.py samples gc.mem_alloc at every event) counts everything
it allocated: "alloc", an upper bound of its live peak, less what the virtual
board's models allocate as they step (floats: no board has them; "models_alloc"
says how much). usage: see role32.py.
"""
import gc
import json
import sys

import js
import role32

spec = role32.prepare(sys.argv[1])
await js.Promise.resolve(0)  # noqa: F704 (runs under runPythonAsync: collects)
base = gc.mem_alloc()
role32.boot(spec)
await js.Promise.resolve(0)  # noqa: F704
out = {"ev": "figures", "import": gc.mem_alloc() - base, "base": base}
if spec.get("wake"):
    role32.transport(spec)
    await js.Promise.resolve(0)  # noqa: F704
    a = gc.mem_alloc()
    role32.board(spec)
    await js.Promise.resolve(0)  # noqa: F704
    out["board"] = gc.mem_alloc() - a
    out["live_pre"] = gc.mem_alloc() - base - out["board"]
    role32.weigh_without_models()
    node, res = role32.wake(spec)
    out["models_alloc"] = role32.MODELS[0]
    out["alloc"] = role32.device_heap() - base - out["board"]
    out["peak"] = out["alloc"]
    await js.Promise.resolve(0)  # noqa: F704
    out["live_post"] = gc.mem_alloc() - base - out["board"]
    role32.result(out, node, res)
print(json.dumps(out))
