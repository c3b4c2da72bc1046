"""Issue 12's per-role figures: what each role's image costs a 32-bit board, x64 beside it.

Every figure runs host_tools/bench/device_scripts/role32.py on a role's own image
(host_tools.board.build.build_role): under the 32-bit MicroPython (the WebAssembly
port, tests/mp32_runner.py) the bytecode image, under the unix port the x64 one.

  role_import_heap_kb_32bit_<role>      heap the image's boot imports hold (main's
                                        `import device`: node, spot.*; the role's
                                        module), collected. Floor 64.
  role_wake_heap_peak_kb_32bit_<role>   the most the heap holds through one whole wake,
                                        the heaviest of three kinds (printed apart as
                                        role_wake_heap_peak_kb_32bit_<kind>_<role>):
                                        quiet, a timed event arriving (schedule), and
                                        a device command queued: verify, apply,
                                        ACK, state report, capability record, commit;
                                        the transport's code is imported, its frames
                                        come from memory (this port has no sockets).
                                        This port collects only between calls from
                                        JavaScript, so the wake runs phase by phase
                                        (device.wake_phases: the firmware collects
                                        between them, on a board too) with a
                                        collection between: a phase's mark is the live
                                        heap it began with plus everything it
                                        allocated, garbage included, and the figure is
                                        the highest mark: an upper bound. Floor 96.
  role_wake_heap_live_kb_32bit_<role>   the live heap right after that wake (node and
                                        result still held), collected: a lower bound.
                                        A board needs between the two.
  role_wake_heap_peak_est_kb_32bit_<role>
                                        an estimate between them: the live heap
                                        after the wake plus the x64 wake's peak above
                                        its own (estimate_peak), 32-bit scaled.
  role_wake_heap_peak_kb_x64_<role>     on the unix port, which does collect inside the
                                        wake: a collection every 4 KB allocated, so
                                        the live peak plus at most 4 KB of garbage.
                                        The virtual board's models are not counted.
  role_*_x64_<role>                     the same on the x64 unix port.
  wake_modules_loaded_<kind>            modules of the image a smart plug loads in one
  wake_import_bytes_<kind>              wake after a deep sleep (a fresh interpreter),
                                        and the bytes of their ESP32 .mpy files; kind:
                                        quiet (nothing queued), command (a device
                                        command), schedule (a timed event arrives).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from host_tools.board import build
from host_tools.paths import BUILD, ROOT

SCRIPTS = ROOT / "host_tools" / "bench" / "device_scripts"
SCRIPT = SCRIPTS / "role32.py"  # the unix port's; role32_wasm.py drives it on the 32-bit one
MICROPYTHON = Path(sys.executable).parent / "micropython"
ROLES = build.ROLES
KINDS = ("quiet", "command", "schedule")
KINDS_ROLE = "smart_plug"
DEV = 0x4401
BOARD = {"clock": "wall", "seed": 1}
GC_EVERY = 4096  # bytes allocated between collections during the measured wake


def boot_modules(role: str) -> list[str]:
    """What a boot imports before its first wake: main.py's `import device` (node and
    the library it needs), and role.make's import of the role's own module."""
    return ["device", "role", build.ROLE_MODULES[role][0]]


def _frames(reg, kind: str) -> list[str]:
    from spot import builders

    key = reg.sender_key(reg.cloud, DEV)
    if kind == "command":
        return [builders.device_command(DEV, reg.cloud, 1, 4, settings={1: 600}, key=key).hex()]
    if kind == "schedule":
        return [builders.timed_event(DEV, reg.cloud, 1, 7, 2_000_000_000, 600, key=key).hex()]
    return []


def _mp32():
    """tests/mp32_runner.py, loaded by path: it is the tests' helper, no package of the host's."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mp32_runner", ROOT / "tests" / "mp32_runner.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mp32_runner", mod)
    spec.loader.exec_module(mod)
    return sys.modules["mp32_runner"]


def run_image(role: str, port: str, modules: list[str], kind: str = "command",
              wake: bool = True) -> dict:
    """role32.py on one role's image, a freshly provisioned device: its figures line.
    port: "32bit" (the WebAssembly port, bytecode image) or "x64" (the unix port)."""
    from host_tools.cloud.registry import Registry

    arch = build.BYTECODE if port == "32bit" else "x64"
    build.build_role(arch, role)
    image = build.role_image_dir(arch, role)
    with tempfile.TemporaryDirectory(prefix="spot-role32-") as tmp_s:
        tmp = Path(tmp_s)
        reg = Registry(tmp / "registry" / "registry.json")
        reg.provision("img", DEV)
        reg.save()
        reg.write_device_files(DEV, tmp / "fs")
        spec = {"modules": modules, "wake": wake, "frames": _frames(reg, kind), "threshold": GC_EVERY,
                "config": {"role": role, "board": BOARD, "control_ms": 20}}
        (tmp / "spec").mkdir()
        if port == "32bit":
            spec["config"]["dir"] = "/fs"
            (tmp / "spec" / "spec.json").write_text(json.dumps(spec))
            res = _mp32().run(SCRIPTS / "role32_wasm.py", ["/spec/spec.json"],
                              path=["/img", "/virtual", "/bench"], top_level_await=True,
                              files={"/bench/role32.py": SCRIPT},
                              mounts={"/img": image, "/fs": tmp / "fs", "/spec": tmp / "spec",
                                      "/virtual": ROOT / "boards" / "virtual"})
        else:
            spec["config"]["dir"] = str(tmp / "fs")
            (tmp / "spec" / "spec.json").write_text(json.dumps(spec))
            env = dict(os.environ, MICROPYPATH=os.pathsep.join(
                [str(image), str(BUILD / "virtual"), ".frozen"]))
            build.build_virtual()
            res = subprocess.run([str(MICROPYTHON), str(SCRIPT), str(tmp / "spec" / "spec.json")],
                                 capture_output=True, text=True, env=env, cwd=tmp, timeout=120)
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    figures = [e for e in lines if e.get("ev") == "figures"]
    if res.returncode or not figures:
        raise SystemExit(f"role image figures: the {role} image failed on the {port} port:\n"
                         f"{res.stdout[-2000:]}{res.stderr[-2000:]}")
    out = figures[0]
    out["events"] = lines[:-1]
    return out


def image_modules(arch: str, role: str) -> dict[str, int]:
    """The image's modules (dotted names) and the bytes of their files."""
    meta = json.loads((build.role_image_dir(arch, role) / "image.json").read_text())
    names = {n: n.rsplit(".", 1)[0].replace("/", ".") for n in meta["bytes"]}
    return {names[n][:-9] if names[n].endswith(".__init__") else names[n]: size
            for n, size in meta["bytes"].items()}


def estimate_peak(runs: dict[str, dict]) -> float:
    """The 32-bit live peak of a wake, estimated: its live heap after the wake, plus
    what the x64 wake held above its own live heap at its peak (its in-wake garbage
    at most GC_EVERY included), scaled by the two ports' ratio of live heaps after
    the wake. The 32-bit port cannot measure it: it never collects inside a wake."""
    w, x = runs["32bit"], runs["x64"]
    return w["live_post"] + max(0, x["peak"] - x["live_post"]) * w["live_post"] / x["live_post"]


def figures() -> dict[str, float]:
    try:
        _mp32().ensure()
    except Exception as e:  # no node or npm: the 32-bit figures cannot be measured
        raise SystemExit(f"role image figures need the 32-bit MicroPython (make mp32): {e}")
    out: dict[str, float] = {}
    for role in ROLES:
        runs = {}
        for port in ("32bit", "x64"):
            r = runs[port] = run_image(role, port, boot_modules(role))
            if not r["cycle"]["ok"] or r["applied"] < 1:
                raise SystemExit(f"role image figures: the {role}'s wake on the {port} port "
                                 f"did not apply its command: {r['cycle']}")
            out[f"role_import_heap_kb_{port}_{role}"] = round(r["import"] / 1024, 1)
            out[f"role_wake_heap_peak_kb_{port}_{role}"] = round(r["peak"] / 1024, 1)
            out[f"role_wake_heap_live_kb_{port}_{role}"] = round(r["live_post"] / 1024, 1)
        out[f"role_wake_heap_peak_est_kb_32bit_{role}"] = round(estimate_peak(runs) / 1024, 1)
        # The floored figure is the heaviest kind of wake: a schedule's (a timed event
        # parsed and kept) weighs more than a command's.
        peaks = {"command": runs["32bit"]["peak"]}
        for kind in ("quiet", "schedule"):
            r = run_image(role, "32bit", boot_modules(role), kind)
            if not r["cycle"]["ok"]:
                raise SystemExit(f"role image figures: the {role}'s {kind} wake failed: {r['cycle']}")
            peaks[kind] = r["peak"]
        for kind, peak in peaks.items():
            out[f"role_wake_heap_peak_kb_32bit_{kind}_{role}"] = round(peak / 1024, 1)
        out[f"role_wake_heap_peak_kb_32bit_{role}"] = round(max(peaks.values()) / 1024, 1)
    build.build_role("xtensawin", KINDS_ROLE)
    sizes = image_modules("xtensawin", KINDS_ROLE)
    for kind in KINDS:
        r = run_image(KINDS_ROLE, "32bit", [], kind)
        loaded = [m for m in r["modules"] if m in sizes]
        out[f"wake_modules_loaded_{kind}"] = len(loaded)
        out[f"wake_import_bytes_{kind}"] = sum(sizes[m] for m in loaded)
    return out


if __name__ == "__main__":
    print(json.dumps(figures(), indent=1, sort_keys=True))
