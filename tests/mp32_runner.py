"""Run a script under a 32-bit MicroPython: the WebAssembly port from npm, under node.

The x64 unix port hides what a 32-bit board sees: there small ints are 63 bits,
on ESP32 and RP2040 (and here) they are 31 bits, so an int of 2**30 or more is
a long int and making one allocates; pointers and objects are half the size.
`@micropython/micropython-webassembly-pyscript` is a real MicroPython (1.27,
32-bit, bytecode only: no native or viper emitter, no sockets, double-precision
floats), so it runs the bytecode build of the device code.

    from mp32_runner import Unavailable, ensure, run
    try:
        ensure()                    # npm install into build/mp32 on first use
    except Unavailable as e:
        pytest.skip(str(e))         # no node or npm here: say so, never pass silently
    res = run(script, args, mounts={"/lib": ROOT / "lib"}, heapsize="256k")

`mounts` copies host folders into the port's in-memory filesystem (the port has
no host filesystem): source and .mpy files, JSON and text. `files` places single
files. The script runs as __main__ with sys.argv = [script, *args], __file__ set
and the mount points named in `path` first on sys.path. The result is a
subprocess.CompletedProcess: stdout as printed, an uncaught exception's
traceback on stderr and return code 1. `make test` installs the port
(`make mp32`); issue 12's 32-bit heap figures can run through the same helper.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

ROOT = Path(__file__).resolve().parent.parent
PREFIX = ROOT / "build" / "mp32"
PACKAGE = "@micropython/micropython-webassembly-pyscript"
VERSION = "1.27.0"
MJS = PREFIX / "node_modules" / "@micropython" / "micropython-webassembly-pyscript" / "micropython.mjs"
_KEEP = (".py", ".mpy", ".json", ".txt", ".md")

# The node side: load the port, copy files in, run the script, report exceptions.
_LAUNCHER = r"""
import { loadMicroPython } from "%(mjs)s";
import fs from "fs";
import path from "path";
const spec = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const mp = await loadMicroPython({heapsize: spec.heapsize, linebuffer: false,
                                  stdout: (d) => process.stdout.write(d),
                                  stderr: (d) => process.stderr.write(d)});
const FS = mp.FS;
function put(dst, src) {
  FS.mkdirTree(path.posix.dirname(dst));
  FS.writeFile(dst, fs.readFileSync(src));
}
function copy(dst, src) {
  for (const name of fs.readdirSync(src)) {
    const s = path.join(src, name), d = dst + "/" + name;
    if (fs.statSync(s).isDirectory()) {
      if (name !== "__pycache__" && name !== "node_modules") copy(d, s);
    } else if (spec.keep.some((e) => name.endsWith(e))) put(d, s);
  }
}
for (const [dst, src] of spec.mounts) { FS.mkdirTree(dst); copy(dst, src); }
for (const [dst, src] of spec.files) put(dst, src);
let code = 0;
try {
  mp.runPython("import sys\nsys.argv[:] = " + JSON.stringify(spec.argv) +
               "\nsys.path[:0] = " + JSON.stringify(spec.path) +
               "\n__file__ = " + JSON.stringify(spec.argv[0]) + "\n");
  const code = fs.readFileSync(spec.script, "utf8");
  if (spec.top_level_await) await mp.runPythonAsync(code);
  else mp.runPython(code);
} catch (e) {
  if (e.name !== "PythonError") throw e;
  if (e.type !== "SystemExit") { process.stderr.write(e.message + "\n"); code = 1; }
}
process.stdout.write("", () => process.exit(code));
"""


class Unavailable(RuntimeError):
    """No 32-bit MicroPython here (no node, no npm, or the install failed); the reason."""


def ensure() -> Path:
    """The port's micropython.mjs, installed into build/mp32 with npm if missing."""
    if shutil.which("node") is None:
        raise Unavailable("node is not installed: the 32-bit MicroPython (WebAssembly) needs it")
    if not MJS.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise Unavailable("npm is not installed: cannot fetch %s" % PACKAGE)
        PREFIX.mkdir(parents=True, exist_ok=True)
        res = subprocess.run([npm, "install", "--no-save", "--prefix", str(PREFIX),
                              "%s@%s" % (PACKAGE, VERSION)],
                             capture_output=True, text=True, timeout=600)
        if res.returncode or not MJS.exists():
            raise Unavailable("npm install %s failed: %s" % (PACKAGE, res.stderr[-500:]))
    return MJS


def run(script: Path | str, args: Sequence[str] = (), *, mounts: Mapping[str, Path] = {},
        files: Mapping[str, Path] = {}, path: Sequence[str] = (), heapsize: str = "1024k",
        timeout: float = 300, top_level_await: bool = False) -> subprocess.CompletedProcess:
    """Run a host script file under the 32-bit port (see the module docstring).
    top_level_await: run it with runPythonAsync, so the script may `await` at its top
    level; this port collects garbage only then (gc.collect() inside a call to Python
    merely asks for a collection at the next return to JavaScript)."""
    mjs = ensure()
    size = int(heapsize.rstrip("kKmM")) * {"k": 1024, "m": 1 << 20}.get(heapsize[-1].lower(), 1)
    script = Path(script)
    with tempfile.TemporaryDirectory(prefix="mp32-") as tmp:
        launcher = Path(tmp) / "run.mjs"
        launcher.write_text(_LAUNCHER % {"mjs": mjs.as_uri()})
        spec = {"heapsize": size, "keep": list(_KEEP), "script": str(script),
                "top_level_await": top_level_await,
                "argv": ["/main/" + script.name, *map(str, args)], "path": list(path),
                "mounts": [[d, str(s)] for d, s in mounts.items()],
                "files": [[d, str(s)] for d, s in files.items()] + [["/main/" + script.name, str(script)]]}
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        return subprocess.run(["node", str(launcher), str(Path(tmp) / "spec.json")],
                              capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, NODE_NO_WARNINGS="1"))


if __name__ == "__main__":  # `make mp32`: install the port, or say why it is not there
    try:
        print("32-bit MicroPython (WebAssembly): %s" % ensure().relative_to(ROOT))
    except Unavailable as e:
        print("32-bit MicroPython unavailable, its tests will be skipped: %s" % e)
